// Indexing ops: the moves of MoE dispatch and combine (Megatron-style token permutation).
//   x_perm = index_select(x, token_of_pair)                     (dispatch)
//   y      = scatter_add(zeros, token_of_pair, y_perm * weight)  (combine)
// The two are each other's backward. Indices are i64; an index outside its dimension is an
// Error ("index_select: index 9 out of range for dim 0 of size 8"), never an out-of-bounds read.
// Data may be floating (differentiable) or i64 (never differentiable).
#pragma once

#include "ops/axis_layout.h"
#include "tinymoe/tensor.h"

namespace tinymoe {

// out.select(dim, i) = x.select(dim, index[i]); out has x's shape with size index.numel() at dim.
// index: i64, 1-D; duplicates allowed. Gradient: x (scatter_add of the gradient into zeros, so
// duplicated indices accumulate, in index order on every device: deterministic). index gets none.
Tensor index_select(const Tensor& x, const Tensor& index, int64_t dim = 0);

// out = base + contributions, out.select(dim, index[i]) += source.select(dim, i) (torch's
// index_add). source has base's shape with size index.numel() at dim; index: i64, 1-D;
// duplicates accumulate. Gradients: base (d_base = g) and source (d_source = index_select(g,
// index, dim)); index gets none.
// deterministic: the CPU kernel always adds in source order, so every CPU run is bit-identical
// whatever the flag. The flag matters on CUDA, where the fast kernel uses atomics (summation
// order varies run to run) and deterministic=true uses a sorted segmented sum instead.
Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim = 0,
                   bool deterministic = false);

// torch.gather: out[..., j, ...] = x[..., index[..., j, ...], ...] along dim. index: i64 with
// x's number of dimensions and index.size(d) <= x.size(d) for d != dim; out has index's shape.
// Gradient: x (the gradient scattered back into zeros, duplicates accumulating in index order).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

// gather() that checks its arguments and records under `op` (a string literal: the tape keeps
// the pointer). topk and sort take their values through it, so their errors and the tape name them.
Tensor gather_values(const char* op, const Tensor& x, int64_t dim, const Tensor& index);


}  // namespace tinymoe
