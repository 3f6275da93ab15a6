#include "nn/rms_norm.h"

#include "ops/norm.h"

namespace tinymoe {
namespace nn {

RMSNorm::RMSNorm(int64_t hidden_size, double eps, DType dtype) : eps_(eps) {
  TINYMOE_CHECK(hidden_size > 0, "RMSNorm", "expected a positive hidden_size, got ", hidden_size);
  TINYMOE_CHECK(eps >= 0, "RMSNorm", "expected eps >= 0, got ", eps);
  TINYMOE_CHECK(is_floating(dtype), "RMSNorm", "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  weight_ = register_parameter("weight", ones({hidden_size}, dtype));
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight_, eps_); }

}  // namespace nn
}  // namespace tinymoe
