// The MoE permutation on a cuda device (docs/design.md, block step 3, "Permute"): sort the T*k (expert id, pair
// index) pairs by expert, stably; count tokens per expert; turn counts into offsets. Built on
// CUB (cuda/permute.cu is the only translation unit that includes it: CUB takes ~20 s to
// compile). Also the small top-k of routing and scatter_add, the combine step.
//
// None of these record on the tape (indices have no gradient; topk and scatter_add give their
// backward as functions below). Errors are tinymoe::Error naming the op: inputs not on cuda,
// wrong dtype or shape, an id or index out of range (checked on the device before use).
#pragma once

#include "ops/reduce.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

struct SortedPairs {
  Tensor keys;
  Tensor values;
};

// Stable sort of the pairs (keys[i], values[i]) by key; keys and values are 1-D i64 of one
// length, keys in [0, key_bound). Equal keys keep their input order, so with values =
// 0..n-1 (cuda::device_arange) the values are the stable argsort. A radix sort over only the
// ceil(log2(key_bound)) low bits that can differ.
SortedPairs sort_pairs(const Tensor& keys, const Tensor& values, int64_t key_bound);
// sort_pairs for callers that have already run check_index_range on the keys (cuda/index_check.h):
// skips a second check and its device-to-host wait.
SortedPairs sort_pairs_prechecked(const Tensor& keys, const Tensor& values, int64_t key_bound, const char* op);

// counts[b] = number of ids equal to b, for 1-D i64 ids in [0, bins): tokens per expert.
Tensor bincount(const Tensor& ids, int64_t bins);

// out[i] = x[0] + ... + x[i-1] (out[0] = 0) for a 1-D i64 x.
Tensor exclusive_cumsum(const Tensor& x);

// [n + 1] offsets 0, c0, c0 + c1, ..., total from [n] counts: group e owns rows
// offsets[e]..offsets[e+1] of the sorted order (the row ranges of a grouped GEMM).
Tensor segment_offsets(const Tensor& counts);

// The k largest entries along the last dimension, in descending order, with their indices
// (i64); ties go to the lower index and NaN counts as the largest value (as torch). One warp
// per row: 1 <= k <= kTopkMaxK and n <= kTopkMaxColumns entries per row (router logits over
// experts).
constexpr int64_t kTopkMaxK = 8;
constexpr int64_t kTopkMaxColumns = 256;
ValuesIndices topk(const Tensor& x, int64_t k);
// The gradient of topk's values: zeros of input_shape with grad_values[r, j] at indices[r, j].
Tensor topk_backward(const Tensor& grad_values, const Tensor& indices, const Shape& input_shape);

enum class ScatterMode {
  atomic,         // atomicAdd per element: fast; f32 sums may differ in the last bits run to run
  deterministic,  // stable sort of index, then each destination row sums its sources in input
                  // order: bit-identical run to run, and equal to the CPU's sequential loop
};

// out = base + scatter: out[index[i], ...] += src[i, ...] for i in order, where base is
// [N, ...], index is 1-D i64 [M] with values in [0, N), src is [M, ...] with base's trailing
// shape. The combine of a MoE layer (rows of expert outputs back to their tokens); its backward
// is an index_select of the gradient rows by index (and the identity for base).
Tensor scatter_add_rows(const Tensor& base, const Tensor& index, const Tensor& src,
                        ScatterMode mode = ScatterMode::deterministic);

}  // namespace cuda
}  // namespace tinymoe
