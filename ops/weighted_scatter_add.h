// weighted_scatter_add: the combine step of a MoE layer (docs/design.md, "The sparse MoE block",
// step 6) as one op:
//   out[t, :] = sum over pairs p with index[p] == t of weight[p] * source[p, :]
// source [P, d] floating (each expert output row), index i64 [P] (the row's token, in
// [0, num_rows)), weight of source's dtype with P elements ([P] or [P, 1], the pair's combine
// weight). Returns [num_rows, d]; rows no pair names are zero. Pairs are added in order, so the
// result is deterministic.
// Same result as scatter_add(zeros, index, source * weight), without materialising the [P, d]
// product forward or backward. Gradients: source and weight, each in one pass:
//   d_source[p, :] = weight[p] * g[index[p], :],   d_weight[p] = <g[index[p], :], source[p, :]>.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor weighted_scatter_add(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows);

}  // namespace tinymoe
