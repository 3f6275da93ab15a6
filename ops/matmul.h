// Dense matrix products on the GEMM kernel of ops/gemm.h.
// matmul(a [..., k], b [k, n]) -> [..., n]; both inputs get gradients:
//   da = g b^T, db = a^T g (leading dims of a flattened into rows).
// linear(x [..., in], weight [out, in], bias [out] or undefined) = x weight^T + bias, the
// HuggingFace/PyTorch layout; x, weight and bias get gradients.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor matmul(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace tinymoe
