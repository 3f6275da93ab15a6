// Softmax family along one dim, numerically stable (every lane is shifted by its maximum
// before exponentiating, so softmax([1000, 1001]) is finite). Each is one fused op with its own
// backward, and each differentiates x (floating, at least 1 dimension):
//   softmax(x)_i     = exp(x_i - m) / sum_j exp(x_j - m)          backward: y * (g - sum(g * y))
//   log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)           backward: g - softmax(x) * sum(g)
//   logsumexp(x)     = m + log sum_j exp(x_j - m)                 backward: g * softmax(x)
// with m the lane maximum. As in torch: a lane of all -inf gives NaN from softmax/log_softmax and
// -inf from logsumexp (also over an empty dim); a lane holding +inf gives logsumexp +inf.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// keepdim keeps the reduced dim with size 1.
Tensor logsumexp(const Tensor& x, int64_t dim = -1, bool keepdim = false);

}  // namespace tinymoe
