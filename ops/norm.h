// RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"), as HuggingFace's
// LlamaRMSNorm: over the last dim of size d,
//   y = x / sqrt(mean(x^2) + eps) * weight
// x [..., d] floating (d >= 1), weight [d] of x's dtype, or an undefined Tensor for no scale;
// eps >= 0. One fused op: the row statistics accumulate in double. x and weight get gradients:
// with r = 1 / sqrt(mean(x^2) + eps), n = x r and dn = g * weight,
//   dx = r * (dn - n * mean(dn * n)),   dweight = sum over rows of g * n.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

}  // namespace tinymoe
