// CUDA kernels for the elementwise ops of ops/elementwise.h: the forward of each op and the
// backward of each unary op, on tensors of one cuda device. They compute; they do not record
// on the tape: ops/elementwise.cpp keeps the autograd and calls these for cuda inputs (the
// broadcast backward is cuda::sum_dim, as on the CPU it is sum_to).
//
// Every function throws tinymoe::Error naming the op for an undefined input, an input not on a
// cuda device, mixed devices or dtypes, and shapes that do not fit.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

enum class BinaryOp { add, sub, mul, div };
const char* binary_name(BinaryOp op);

// a op b with numpy broadcasting (at most 8 dimensions); both of one dtype (f32, f64 or i64).
// Same shapes take a flat kernel; other shapes index each operand through broadcast strides.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

// x repeated along its size-1 (or missing leading) dimensions to `shape`, as broadcasting
// would: the backward of a sum along a dimension.
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// Floating unary ops, with the same formulas as the CPU (stable sigmoid, exact erf gelu,
// softplus as max(x, 0) + log1p(exp(-|x|))). add_scalar, mul_scalar and pow take `scalar`.
enum class UnaryOp {
  neg, exp, log, sqrt, tanh, sigmoid, silu, relu, gelu, softplus, normal_cdf, add_scalar, mul_scalar, pow
};
const char* unary_name(UnaryOp op);

// y = op(x).
Tensor unary(UnaryOp op, const Tensor& x, double scalar = 0.0);
// dx = grad_y * op'(x), where y = unary(op, x, scalar) (some derivatives read y: exp, sqrt,
// tanh, sigmoid). grad_y, x and y share one shape, dtype and device.
Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y, double scalar = 0.0);

}  // namespace cuda
}  // namespace tinymoe
