#include "nn/experts.h"

#include <cmath>

#include "nn/in_place.h"
#include "ops/elementwise.h"
#include "ops/grouped_matmul.h"
#include "ops/moe_swiglu_experts.h"
#include "ops/shape.h"
#include "ops/swiglu.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace nn {
void check_positive_sizes(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, const char* op) {
  TINYMOE_CHECK(num_experts > 0 && hidden_size > 0 && intermediate_size > 0, op,
                "expected positive num_experts, hidden_size and intermediate_size, got ", num_experts, ", ",
                hidden_size, " and ", intermediate_size);
}

Tensor stacked_init(int64_t num_experts, int64_t in, int64_t out, Generator* generator, DType dtype, const char* op) {
  TINYMOE_CHECK(is_floating(dtype), op, "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  double bound = 1.0 / std::sqrt(static_cast<double>(in));
  return rand({num_experts, in, out}, dtype, generator, -bound, bound);
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    default: return "silu";
  }
}

Tensor activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::relu: return relu(x);
    case Activation::gelu: return gelu(x);
    default: return silu(x);
  }
}

void Experts::set_sizes(const Tensor& input_projection, const Tensor& output_projection, const char* op) {
  check_floating(input_projection, op, "input projection");
  check_floating(output_projection, op, "output projection");
  check_dim(input_projection, 3, op, "input projection");
  check_dim(output_projection, 3, op, "output projection");
  TINYMOE_CHECK(input_projection.dtype() == output_projection.dtype(), op, "expected weights of one dtype, got ",
                dtype_name(input_projection.dtype()), " and ", dtype_name(output_projection.dtype()));
  num_experts_ = input_projection.size(0);
  hidden_size_ = input_projection.size(1);
  intermediate_size_ = input_projection.size(2);
  dtype_ = input_projection.dtype();
  Shape expected{num_experts_, intermediate_size_, hidden_size_};
  TINYMOE_CHECK(output_projection.shape() == expected, op, "expected the output projection of shape ",
                shape_str(expected), " ([E, f, d] for an input projection ", shape_str(input_projection.shape()),
                "), got ", shape_str(output_projection.shape()));
}

void Experts::check_input(const Tensor& x_perm, const char* op) const {
  check_defined(x_perm, op, "x_perm");
  TINYMOE_CHECK(x_perm.dim() == 2 && x_perm.size(1) == hidden_size_, op, "expected x_perm of shape [N, ",
                hidden_size_, "], got ", shape_str(x_perm.shape()));
  TINYMOE_CHECK(x_perm.dtype() == dtype_, op, "expected x_perm of the experts' dtype ", dtype_name(dtype_), ", got ",
                dtype_name(x_perm.dtype()));
}

Tensor Experts::forward_combined(const Tensor& x, const DispatchPlan& plan) const {
  return combine_outputs(forward(dispatch_tokens(x, plan), plan.offsets), plan);
}

// ---- SwiGLUExperts ----

SwiGLUExperts::SwiGLUExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size,
                             Generator* generator, DType dtype) {
  const char* op = "SwiGLUExperts";
  check_positive_sizes(num_experts, hidden_size, intermediate_size, op);
  w1_ = register_parameter("w1", stacked_init(num_experts, hidden_size, intermediate_size, generator, dtype, op));
  w3_ = register_parameter("w3", stacked_init(num_experts, hidden_size, intermediate_size, generator, dtype, op));
  w2_ = register_parameter("w2", stacked_init(num_experts, intermediate_size, hidden_size, generator, dtype, op));
  set_sizes(w1_, w2_, op);
}

SwiGLUExperts::SwiGLUExperts(const Tensor& w1, const Tensor& w3, const Tensor& w2) {
  const char* op = "SwiGLUExperts";
  set_sizes(w1, w2, op);
  check_defined(w3, op, "w3");
  TINYMOE_CHECK(w3.shape() == w1.shape() && w3.dtype() == w1.dtype(), op, "expected w3 like w1 (",
                dtype_name(w1.dtype()), " ", shape_str(w1.shape()), "), got ", dtype_name(w3.dtype()), " ",
                shape_str(w3.shape()));
  w1_ = register_parameter("w1", w1);
  w3_ = register_parameter("w3", w3);
  w2_ = register_parameter("w2", w2);
}

Tensor SwiGLUExperts::forward(const Tensor& x_perm, const Tensor& offsets) const {
  check_input(x_perm, "SwiGLUExperts");
  // SwiGLU (Shazeer 2020), Mixtral's w2(silu(w1 x) * w3 x), one grouped GEMM per projection;
  // silu(.) * (.) is one fused op (ops/swiglu.h).
  Tensor hidden = swiglu(grouped_matmul(x_perm, w1_, offsets), grouped_matmul(x_perm, w3_, offsets));
  return grouped_matmul(hidden, w2_, offsets);
}

Tensor SwiGLUExperts::forward_combined(const Tensor& x, const DispatchPlan& plan) const {
  // The fused CPU kernel weighs outputs; other devices and input weighting (Llama 4) compose ops.
  if (!x.device().is_cpu() || plan.weight_on_expert_input) return Experts::forward_combined(x, plan);
  check_defined(x, "SwiGLUExperts", "x");
  TINYMOE_CHECK(x.dim() == 2 && x.size(0) == plan.num_tokens, "SwiGLUExperts", "expected x of shape [",
                plan.num_tokens, ", ", hidden_size(), "] (the plan's tokens), got ", shape_str(x.shape()));
  check_input(x, "SwiGLUExperts");
  return moe_swiglu_experts(x, plan.sorted_token, plan.sorted_weight, plan.offsets, w1_, w3_, w2_);
}

void SwiGLUExperts::load_expert_from_hf(int64_t expert, const Tensor& w1, const Tensor& w3, const Tensor& w2) {
  load_expert_weight_from_hf(w1_, expert, w1, "w1");
  load_expert_weight_from_hf(w3_, expert, w3, "w3");
  load_expert_weight_from_hf(w2_, expert, w2, "w2");
}

// ---- MLPExperts ----

MLPExperts::MLPExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, Activation activation,
                       Generator* generator, DType dtype)
    : activation_(activation) {
  const char* op = "MLPExperts";
  check_positive_sizes(num_experts, hidden_size, intermediate_size, op);
  wi_ = register_parameter("wi", stacked_init(num_experts, hidden_size, intermediate_size, generator, dtype, op));
  wo_ = register_parameter("wo", stacked_init(num_experts, intermediate_size, hidden_size, generator, dtype, op));
  set_sizes(wi_, wo_, op);
}

MLPExperts::MLPExperts(const Tensor& wi, const Tensor& wo, Activation activation) : activation_(activation) {
  set_sizes(wi, wo, "MLPExperts");
  wi_ = register_parameter("wi", wi);
  wo_ = register_parameter("wo", wo);
}

Tensor MLPExperts::forward(const Tensor& x_perm, const Tensor& offsets) const {
  check_input(x_perm, "MLPExperts");
  // Switch Transformer's DenseActDense: wo(act(wi x)), dropout omitted.
  return grouped_matmul(activate(grouped_matmul(x_perm, wi_, offsets), activation_), wo_, offsets);
}

void MLPExperts::load_expert_from_hf(int64_t expert, const Tensor& wi, const Tensor& wo) {
  load_expert_weight_from_hf(wi_, expert, wi, "wi");
  load_expert_weight_from_hf(wo_, expert, wo, "wo");
}

// ---- HF layout ----

namespace {

// Checks `stacked` is [E, in, out] and expert is in [0, E).
void check_stacked_expert(const Tensor& stacked, int64_t expert, const char* op) {
  check_floating(stacked, op, "stacked");
  check_dim(stacked, 3, op, "stacked");
  TINYMOE_CHECK(expert >= 0 && expert < stacked.size(0), op, "expert ", expert, " out of range for ",
                stacked.size(0), " experts");
}

}  // namespace

// Both directions are moves of values (slice, transpose), done by ops on the stack's device.
Tensor expert_weight_to_hf(const Tensor& stacked, int64_t expert) {
  check_stacked_expert(stacked, expert, "expert_weight_to_hf");
  NoGradGuard no_grad;
  const int64_t in = stacked.size(1), out = stacked.size(2);
  return transpose(slice(stacked.detach(), 0, expert, expert + 1).reshape({in, out}));
}

void load_expert_weight_from_hf(const Tensor& stacked, int64_t expert, const Tensor& hf_weight, const char* name) {
  const char* op = "load_expert_from_hf";
  check_stacked_expert(stacked, expert, op);
  check_floating(hf_weight, op, name);
  const int64_t in = stacked.size(1), out = stacked.size(2);
  TINYMOE_CHECK(hf_weight.shape() == Shape({out, in}), op, "expected '", name, "' of shape [", out, ", ", in,
                "] (the HF nn.Linear layout [out, in] of stacked ", shape_str(stacked.shape()), "), got ",
                shape_str(hf_weight.shape()));
  NoGradGuard no_grad;
  // Checkpoints may be f32 for an f64 model, and on the host for a model on a device.
  Tensor source = hf_weight.detach().to(stacked.dtype()).to(stacked.device());
  write_values(stacked, transpose(source), op, expert * in * out);
}

// ---- SharedExpert ----

SharedExpert::SharedExpert(int64_t hidden_size, int64_t intermediate_size, Generator* generator, DType dtype) {
  TINYMOE_CHECK(hidden_size > 0 && intermediate_size > 0, "SharedExpert",
                "expected positive hidden_size and intermediate_size, got ", hidden_size, " and ", intermediate_size);
  gate_proj_ = register_module("gate_proj", std::make_shared<Linear>(hidden_size, intermediate_size, false, generator, dtype));
  up_proj_ = register_module("up_proj", std::make_shared<Linear>(hidden_size, intermediate_size, false, generator, dtype));
  down_proj_ = register_module("down_proj", std::make_shared<Linear>(intermediate_size, hidden_size, false, generator, dtype));
}

SharedExpert::SharedExpert(const Tensor& gate_proj, const Tensor& up_proj, const Tensor& down_proj) {
  gate_proj_ = register_module("gate_proj", std::make_shared<Linear>(gate_proj));
  up_proj_ = register_module("up_proj", std::make_shared<Linear>(up_proj));
  down_proj_ = register_module("down_proj", std::make_shared<Linear>(down_proj));
  check_sizes();
}

void SharedExpert::check_sizes() const {
  const Tensor &gate = gate_proj_->weight(), &up = up_proj_->weight(), &down = down_proj_->weight();
  const int64_t f = gate.size(0), d = gate.size(1);
  TINYMOE_CHECK(up.shape() == gate.shape() && down.shape() == Shape({d, f}), "SharedExpert",
                "expected gate_proj and up_proj [f, d] and down_proj [d, f], got ", shape_str(gate.shape()), ", ",
                shape_str(up.shape()), " and ", shape_str(down.shape()));
  TINYMOE_CHECK(up.dtype() == gate.dtype() && down.dtype() == gate.dtype(), "SharedExpert",
                "expected weights of one dtype, got ", dtype_name(gate.dtype()), ", ", dtype_name(up.dtype()), " and ",
                dtype_name(down.dtype()));
}

Tensor SharedExpert::forward(const Tensor& x) const {
  check_defined(x, "SharedExpert", "x");
  TINYMOE_CHECK(x.dim() >= 1 && x.size(-1) == hidden_size(), "SharedExpert", "expected x of shape [..., ",
                hidden_size(), "], got ", shape_str(x.shape()));
  TINYMOE_CHECK(x.dtype() == dtype(), "SharedExpert", "expected x of the weights' dtype ", dtype_name(dtype()),
                ", got ", dtype_name(x.dtype()));
  return down_proj_->forward(swiglu(gate_proj_->forward(x), up_proj_->forward(x)));
}

}  // namespace nn
}  // namespace tinymoe
