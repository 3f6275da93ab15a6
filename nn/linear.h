// nn::Linear: y = x W^T + b on ops/matmul.h linear(), with the HuggingFace/PyTorch layout
// (weight [out_features, in_features], bias [out_features]), so checkpoints load unchanged.
// x, weight and bias all get gradients.
#pragma once

#include <cstdint>

#include "nn/module.h"
#include "tinymoe/random.h"

namespace tinymoe {
namespace nn {

class Linear : public Module {
 public:
  // Parameters "weight" and (when `bias`) "bias", drawn uniform(-1/sqrt(in), 1/sqrt(in)) from
  // `generator` (the global one when null): torch's default, kaiming_uniform_(a=sqrt(5)) for the
  // weight and the same bound for the bias. The weight is drawn first, then the bias. With
  // in_features == 0 the bias starts at zero, as in torch.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* generator = nullptr,
         DType dtype = DType::f32);
  // Wraps existing tensors as the parameters (kept by handle, marked requires_grad): weight
  // [out, in], bias [out] of the same dtype or undefined. For tied weights (an LM head sharing
  // the embedding matrix) and for gradient checks of the module itself.
  explicit Linear(const Tensor& weight, const Tensor& bias = Tensor());

  // x [..., in_features] -> [..., out_features].
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without a bias
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_ = 0, out_features_ = 0;
  Tensor weight_, bias_;
};

}  // namespace nn
}  // namespace tinymoe
