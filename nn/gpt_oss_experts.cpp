#include "nn/gpt_oss_experts.h"

#include <cmath>
#include <vector>

#include "ops/elementwise.h"
#include "ops/grouped_matmul.h"
#include "ops/index.h"

namespace tinymoe::nn {
namespace {

constexpr const char* kOp = "GptOssExperts";

void check_bias(const Tensor& bias, const Shape& shape, DType dtype, const char* name) {
  check_defined(bias, kOp, name);
  TINYMOE_CHECK(bias.shape() == shape && bias.dtype() == dtype, kOp, "expected ", name, " ", dtype_name(dtype), " ",
                shape_str(shape), ", got ", dtype_name(bias.dtype()), " ", shape_str(bias.shape()));
}

// min(z, limit) = z - relu(z - limit): torch.clamp(max=limit), gradient 1 below the limit, 0 above.
Tensor clamp_above(const Tensor& z, double limit) { return sub(z, relu(add(z, -limit))); }

// clamp(z, -limit, limit) = min(z, limit) + relu(-limit - z).
Tensor clamp_both(const Tensor& z, double limit) { return add(clamp_above(z, limit), relu(add(neg(z), -limit))); }

}  // namespace

GptOssExperts::GptOssExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size,
                             Generator* generator, DType dtype, double limit, double alpha)
    : limit_(limit), alpha_(alpha) {
  check_positive_sizes(num_experts, hidden_size, intermediate_size, kOp);
  Tensor w1 = stacked_init(num_experts, hidden_size, intermediate_size, generator, dtype, kOp);
  Tensor w3 = stacked_init(num_experts, hidden_size, intermediate_size, generator, dtype, kOp);
  Tensor w2 = stacked_init(num_experts, intermediate_size, hidden_size, generator, dtype, kOp);
  register_all(w1, w3, w2, zeros({num_experts, intermediate_size}, dtype), zeros({num_experts, intermediate_size}, dtype),
               zeros({num_experts, hidden_size}, dtype));
}

GptOssExperts::GptOssExperts(const Tensor& w1, const Tensor& w3, const Tensor& w2, const Tensor& b1,
                             const Tensor& b3, const Tensor& b2, double limit, double alpha)
    : limit_(limit), alpha_(alpha) {
  register_all(w1, w3, w2, b1, b3, b2);
}

void GptOssExperts::register_all(const Tensor& w1, const Tensor& w3, const Tensor& w2, const Tensor& b1,
                                 const Tensor& b3, const Tensor& b2) {
  TINYMOE_CHECK(limit_ > 0.0 && std::isfinite(limit_) && std::isfinite(alpha_), kOp,
                "expected a finite limit > 0 and a finite alpha, got ", limit_, " and ", alpha_);
  set_sizes(w1, w2, kOp);
  check_defined(w3, kOp, "w3");
  TINYMOE_CHECK(w3.shape() == w1.shape() && w3.dtype() == w1.dtype(), kOp, "expected w3 like w1 (",
                dtype_name(w1.dtype()), " ", shape_str(w1.shape()), "), got ", dtype_name(w3.dtype()), " ",
                shape_str(w3.shape()));
  check_bias(b1, {num_experts(), intermediate_size()}, dtype(), "b1");
  check_bias(b3, {num_experts(), intermediate_size()}, dtype(), "b3");
  check_bias(b2, {num_experts(), hidden_size()}, dtype(), "b2");
  w1_ = register_parameter("w1", w1);
  w3_ = register_parameter("w3", w3);
  w2_ = register_parameter("w2", w2);
  b1_ = register_parameter("b1", b1);
  b3_ = register_parameter("b3", b3);
  b2_ = register_parameter("b2", b2);
}

Tensor GptOssExperts::forward(const Tensor& x_perm, const Tensor& offsets) const {
  check_input(x_perm, kOp);
  Tensor gate = grouped_matmul(x_perm, w1_, offsets);  // checks the offsets against x_perm's rows
  Tensor row_expert = expert_of_rows(offsets);
  gate = clamp_above(add(gate, index_select(b1_, row_expert)), limit_);
  Tensor up = clamp_both(add(grouped_matmul(x_perm, w3_, offsets), index_select(b3_, row_expert)), limit_);
  // OpenAI's swiglu: x_glu * sigmoid(alpha x_glu) * (x_linear + 1).
  Tensor hidden = mul(mul(gate, sigmoid(mul(gate, alpha_))), add(up, 1.0));
  return add(grouped_matmul(hidden, w2_, offsets), index_select(b2_, row_expert));
}

Tensor expert_of_rows(const Tensor& offsets) {
  const char* op = "expert_of_rows";
  check_dtype(offsets, DType::i64, op, "offsets");
  check_dim(offsets, 1, op, "offsets");
  TINYMOE_CHECK(offsets.numel() >= 1, op, "expected offsets [E+1], got an empty tensor");
  const std::vector<int64_t> bounds = offsets.to(Device::cpu()).to_vector<int64_t>();
  TINYMOE_CHECK(bounds.front() == 0, op, "expected offsets[0] = 0, got ", bounds.front());
  std::vector<int64_t> owner;
  for (size_t e = 0; e + 1 < bounds.size(); ++e) {
    TINYMOE_CHECK(bounds[e + 1] >= bounds[e], op, "expected non-decreasing offsets, got offsets[", e, "] = ",
                  bounds[e], " > offsets[", e + 1, "] = ", bounds[e + 1]);
    owner.insert(owner.end(), static_cast<size_t>(bounds[e + 1] - bounds[e]), static_cast<int64_t>(e));
  }
  return from_vector(owner, {static_cast<int64_t>(owner.size())}).to(offsets.device());
}

}  // namespace tinymoe::nn
