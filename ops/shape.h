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

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor concat(const TensorList& tensors, int64_t dim = 0);
Tensor transpose(const Tensor& x);
Tensor stack(const TensorList& tensors, int64_t dim = 0);

// A contiguous shape seen as [outer, extent, inner] around one dim: the layout every kernel that
// works along a dim walks (element (o, e, i) sits at (o * extent + e) * inner + i).
struct AxisLayout {
  int64_t outer = 1, extent = 1, inner = 1;
  int64_t lanes() const { return outer * inner; }
  // Flat index of element e of lane `lane` (lanes numbered o * inner + i).
  int64_t lane_start(int64_t lane) const { return (lane / inner) * extent * inner + lane % inner; }
};
AxisLayout axis_layout(const Shape& shape, int64_t dim);  // dim already normalised

}  // namespace tinymoe
