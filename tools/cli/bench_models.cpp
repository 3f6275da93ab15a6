#include "tools/cli/bench_models.h"

#include <cmath>
#include <sstream>

#include "nn/router_presets.h"
#include "ops/matmul.h"
#include "ops/swiglu.h"

namespace tinymoe::cli {

std::string MoeShape::str() const {
  std::ostringstream text;
  text << name << ": T=" << tokens << " d=" << d_model << " f=" << d_ff << " E=" << experts << " k=" << top_k;
  return text.str();
}

std::string MoeShape::dense_str() const {
  std::ostringstream text;
  text << name << " dense: T=" << tokens << " d=" << d_model << " f=" << dense_ff();
  return text.str();
}

Workload make_workload(const MoeShape& shape, Generator* generator, Device device) {
  Tensor x = randn({shape.tokens, shape.d_model}, DType::f32, generator).to(device).requires_grad_();
  return {x, randn({shape.tokens, shape.d_model}, DType::f32, generator).to(device)};
}

DenseSwiGLU::DenseSwiGLU(const MoeShape& shape, Generator* generator, Device device) {
  double bound_in = 1.0 / std::sqrt(static_cast<double>(shape.d_model));
  double bound_out = 1.0 / std::sqrt(static_cast<double>(shape.dense_ff()));
  auto weight = [&](int64_t rows, int64_t columns, double bound) {
    return rand({rows, columns}, DType::f32, generator, -bound, bound).to(device).requires_grad_();
  };
  w1 = weight(shape.d_model, shape.dense_ff(), bound_in);
  w3 = weight(shape.d_model, shape.dense_ff(), bound_in);
  w2 = weight(shape.dense_ff(), shape.d_model, bound_out);
}

Tensor DenseSwiGLU::forward(const Tensor& x) const { return matmul(swiglu(matmul(x, w1), matmul(x, w3)), w2); }

void DenseSwiGLU::zero_grad() {
  for (Tensor* w : {&w1, &w3, &w2}) w->zero_grad();
}

nn::SparseMoEConfig block_config(const MoeShape& shape) {
  nn::SparseMoEConfig config;
  config.num_experts = shape.experts;
  config.hidden_size = shape.d_model;
  config.intermediate_size = shape.d_ff;
  config.expert_kind = nn::ExpertKind::swiglu;
  config.router = nn::mixtral(shape.experts, shape.top_k);
  return config;
}

std::function<void()> dense_step(DenseSwiGLU& dense, Workload& work) {
  return [&dense, &work] {
    dense.forward(work.x).backward(work.grad_output);
    dense.zero_grad();
    work.x.zero_grad();
  };
}

}  // namespace tinymoe::cli
