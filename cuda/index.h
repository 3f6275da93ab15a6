// The indexing kernels behind ops/index.h, ops/embedding.h and ops/weighted_scatter_add.h on a
// cuda device: selecting blocks along a dimension (MoE dispatch, embedding lookup), adding them
// back (MoE combine, and the backward of every selection), the flat offsets of gather, and the
// backward of the weighted combine. They compute without recording on the tape: the autograd
// stays in ops/*.cpp, which calls these for cuda inputs.
//
// Layout: around a (normalised) dim a tensor is [outer, extent, inner] (cuda/launch.cuh's
// DimSplit); a "block" is the `inner` contiguous elements at one (outer, position) pair.
// Index tensors are i64. A function that takes an index checks it on the device before it
// addresses memory (cuda/index_check.h: "op: index 9 (position 3) out of range [0, 8)"), unless
// the caller passes IndexValidation::done for an index it has checked against the same bound
// (a backward that reuses its forward's index skips a second device-to-host wait). Other
// errors (tinymoe::Error naming `op`): inputs not on cuda, mixed devices, dtypes or shapes that
// do not fit.
#pragma once

#include "cuda/permute.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

enum class IndexValidation { check, done };

// out block (o, j) = x block (o, index[j]): x's shape with index.numel() at dim. Any dtype;
// index 1-D with entries in [0, x.size(dim)); duplicates allowed.
Tensor index_select(const Tensor& x, const Tensor& index, int64_t dim, const char* op,
                    IndexValidation validation = IndexValidation::check);

// torch's index_add: out = base, then out block (o, index[j]) += source block (o, j). base of
// any dtype; source of base's dtype and shape with index.numel() at dim; index 1-D in
// [0, base.size(dim)). ScatterMode::deterministic adds each destination's sources in index
// order, bit-identical run to run and to the CPU's sequential loop; ScatterMode::atomic uses
// atomicAdd for floating dtypes (i64 sums are exact in any order and always take the
// deterministic path).
Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim, ScatterMode mode,
                   const char* op, IndexValidation validation = IndexValidation::check);

// The MoE combine: out[t, :] = sum over p with index[p] == t, in order of p, of
// weight[p] * source[p, :], as [num_rows, d]. source [P, d] floating; index [P] in
// [0, num_rows); weight of source's dtype with P elements ([P] or [P, 1]). Deterministic.
Tensor weighted_scatter_add(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows,
                            IndexValidation validation = IndexValidation::check);

struct WeightedScatterGrads {
  Tensor d_source;  // [P, d]: d_source[p, :] = weight[p] * grad[index[p], :]
  Tensor d_weight;  // [P]:    d_weight[p] = <grad[index[p], :], source[p, :]>
};
// The backward of weighted_scatter_add given its output gradient grad [num_rows, d]; an output
// that is not wanted stays undefined (source may then be undefined too when the weight's
// gradient is not wanted). index must already be checked against num_rows (the forward did).
WeightedScatterGrads weighted_scatter_add_backward(const Tensor& grad, const Tensor& source, const Tensor& index,
                                                   const Tensor& weight, bool want_source, bool want_weight);

// Where gather(x, dim, index) reads: offsets[p] is the flat position in x (of shape x_shape) of
// element p of index, i.e. p's own coordinates with index[p] at dim. index: i64 with x's number
// of dimensions (at most 8), index.size(d) <= x_shape[d] for d != dim, entries checked against
// x_shape[dim] on the device. The forward is then a flat index_select and the backward a flat
// scatter_add of the gradient into zeros.
Tensor gather_offsets(const Shape& x_shape, const Tensor& index, int64_t dim, const char* op);

}  // namespace cuda
}  // namespace tinymoe
