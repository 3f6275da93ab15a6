// topk: the selection step of MoE routing (Shazeer et al. 2017; Mixtral and Switch take the top-k
// of softmax(logits), DeepSeek-V3 of sigmoid(logits) + bias).
//
// The k largest (or smallest) entries along a dimension, in the order sort and argsort use
// (ops/sort.h): ties go to the lower index, NaN ranks above every number.
// Gradient: values, for floating x (each value's gradient goes back to the position it was
// taken from; the rest of x gets zero); indices get none.
//
// Choosing is discontinuous at ties, so topk reports its choice (tinymoe::note_choice("topk",
// ...)) with a margin: the smallest gap, over all rows, between neighbours in sorted order among
// the first k+1 values. That covers both a change of membership (k-th vs (k+1)-th) and a change of
// order among the chosen; +inf when there is no such pair (n == 1). gradcheck uses it to answer
// "selection unstable" at a tie instead of a false failure.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

struct TopK {
  Tensor values;   // x's dtype; x's shape with size k at dim
  Tensor indices;  // i64, positions along dim: values = gather(x, dim, indices)
};

// 1 <= k <= x.size(dim), else Error. sorted: best first (largest first when largest, smallest
// first otherwise); unsorted: the chosen entries in position order. Fast for router rows (many
// rows, small k, n up to a few hundred): a partial selection per row, not a full sort.
TopK topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);

}  // namespace tinymoe
