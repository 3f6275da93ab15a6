// Shape ops that copy: slice, concat, transpose, stack. Each works on every dtype (slicing and
// joining index tensors is common); gradients flow only to floating inputs.
//   slice(x, dim, start, end)  -> x restricted to [start, end) along dim; x gets a gradient
//                                 (zeros outside the slice). Bounds must satisfy
//                                 0 <= start <= end <= x.size(dim); no negative or clamped bounds.
//   concat(tensors, dim)       -> the tensors joined along an existing dim; every other dim must
//                                 agree. Each input gets the matching slice of the gradient.
//   transpose(x)               -> the 2-D transpose [n, m] of x [m, n]; x gets g^T.
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
Tensor stack(const TensorList& tensors, int64_t dim = 0);


}  // namespace tinymoe
