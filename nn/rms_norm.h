// nn::RMSNorm: HuggingFace's LlamaRMSNorm as a module (parameter "weight" [d], starting at ones)
// on the fused ops/norm.h op: y = x / sqrt(mean(x^2) + eps) * weight over the last dim.
#pragma once

#include <cstdint>

#include "nn/module.h"

namespace tinymoe {
namespace nn {

class RMSNorm : public Module {
 public:
  // hidden_size > 0, eps >= 0.
  explicit RMSNorm(int64_t hidden_size, double eps = 1e-6, DType dtype = DType::f32);

  // x [..., hidden_size] of the weight's dtype and device -> x's shape.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  const Tensor& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  Tensor weight_;
  double eps_;
};

}  // namespace nn
}  // namespace tinymoe
