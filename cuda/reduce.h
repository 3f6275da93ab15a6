// CUDA kernels for reductions along one dimension (ops/reduce.h) and for row-wise softmax,
// log_softmax and logsumexp with their backward. They compute without recording on the tape:
// the autograd stays in ops/*.cpp, which calls these for cuda inputs.
//
// Each reduction runs one thread block per output element over [outer, extent, inner] (the
// layout around `dim`); the block's threads stride over the reduced dimension, so a reduction
// along the last dimension reads contiguous memory. Errors (tinymoe::Error naming the op): an
// input not on cuda, a dim out of range, max over an empty dimension, shapes that do not match.
#pragma once

#include "ops/reduce.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// Sum along dim (any dtype). Summation order is a tree per block: f32 results differ from the
// CPU's sequential sum by rounding only.
Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim = false);

// Maximum along dim (any dtype) and its index (i64). Ties go to the lowest index, as on the CPU;
// a NaN counts as larger than any number (it propagates, as in torch).
ValuesIndices max_dim(const Tensor& x, int64_t dim, bool keepdim = false);
// The gradient of max_dim: zeros of input_shape, with grad_values[j] at the position indices[j]
// chose along dim. grad_values and indices have the reduced shape (keepdim or not).
Tensor max_dim_backward(const Tensor& grad_values, const Tensor& indices, const Shape& input_shape, int64_t dim);

// softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along dim (floating dtypes);
// log_softmax(x)_i = x_i - max x - log sum_j exp(x_j - max x).
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Backward given y = softmax(x): dx = y * (dy - sum(dy * y)).
Tensor softmax_backward(const Tensor& grad_y, const Tensor& y, int64_t dim);
// Backward given y = log_softmax(x): dx = dy - exp(y) * sum(dy).
Tensor log_softmax_backward(const Tensor& grad_y, const Tensor& y, int64_t dim);

// logsumexp(x) = m + log sum_j exp(x_j - m) along dim (floating dtypes), m the maximum; as on the
// CPU, -inf for an empty or all -inf row and +inf for a row holding +inf.
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);
// Backward given out = logsumexp(x, dim, keepdim) and grad_out of out's shape: dx = g * exp(x - out).
Tensor logsumexp_backward(const Tensor& grad_out, const Tensor& x, const Tensor& out, int64_t dim);

}  // namespace cuda
}  // namespace tinymoe
