// Shape ops that copy: slice, concat, transpose, stack. Each works on every dtype (slicing and
// joining index tensors is common); gradients flow only to floating inputs.
//   slice(x, dim, start, end)  -> x restricted to [start, end) along dim; x gets a gradient
//                                 (zeros outside the slice). Bounds must satisfy
//                                 0 <= start <= end <= x.size(dim); no negative or clamped bounds.
//   concat(tensors, dim)       -> the tensors joined along an existing dim; every other dim must
//                                 agree. Each input gets the matching slice of the gradient.
//   transpose(x)               -> the 2-D transpose [n, m] of x [m, n]; x gets g^T.
//   transpose(x, dim0, dim1)   -> x with dims dim0 and dim1 swapped, copied into a new contiguous
//                                 tensor (torch.transpose(...).contiguous()); negative dims count
//                                 from the end, dim0 == dim1 copies. x gets transpose(g, dim0, dim1).
//                                 Splitting attention heads: [B, S, H, dh] -> [B, H, S, dh].
//   stack(tensors, dim)        -> the equally shaped tensors joined along a new dim inserted at
//                                 position dim (0 <= dim <= ndim, negative counts from the end);
//                                 each input gets its slice of the gradient.
#pragma once

#include "ops/axis_layout.h"
#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor concat(const TensorList& tensors, int64_t dim = 0);
Tensor transpose(const Tensor& x);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor stack(const TensorList& tensors, int64_t dim = 0);

}  // namespace tinymoe
