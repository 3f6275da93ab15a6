#include "nn/linear.h"

#include <cmath>

#include "ops/matmul.h"

namespace tinymoe {
namespace nn {
namespace {

// uniform(-bound, bound), or zeros when the bound is zero (rand needs low < high).
Tensor uniform_init(const Shape& shape, double bound, DType dtype, Generator* generator) {
  if (bound == 0.0) return zeros(shape, dtype);
  return rand(shape, dtype, generator, -bound, bound);
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator* generator, DType dtype)
    : in_features_(in_features), out_features_(out_features) {
  TINYMOE_CHECK(in_features >= 0 && out_features >= 0, "Linear", "expected non-negative sizes, got in_features ",
                in_features, " and out_features ", out_features);
  TINYMOE_CHECK(is_floating(dtype), "Linear", "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  // torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) has bound
  // gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)), which is 1/sqrt(fan_in).
  double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
  weight_ = register_parameter("weight", uniform_init({out_features, in_features}, bound, dtype, generator));
  if (bias) bias_ = register_parameter("bias", uniform_init({out_features}, bound, dtype, generator));
}

Linear::Linear(const Tensor& weight, const Tensor& bias) {
  check_floating(weight, "Linear", "weight");
  check_dim(weight, 2, "Linear", "weight");
  in_features_ = weight.size(1);
  out_features_ = weight.size(0);
  if (bias.defined()) {
    TINYMOE_CHECK(bias.dtype() == weight.dtype() && bias.shape() == Shape{out_features_}, "Linear",
                  "expected a ", dtype_name(weight.dtype()), " bias of shape [", out_features_, "], got ",
                  dtype_name(bias.dtype()), " ", shape_str(bias.shape()));
  }
  weight_ = register_parameter("weight", weight);
  if (bias.defined()) bias_ = register_parameter("bias", bias);
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight_, bias_); }

}  // namespace nn
}  // namespace tinymoe
