#include "nn/moe_block.h"

#include <utility>

#include "nn/dispatch.h"
#include "nn/gpt_oss_experts.h"
#include "ops/elementwise.h"

namespace tinymoe {
namespace nn {
namespace {

constexpr const char* kOp = "SparseMoEBlock";

void check_config(const SparseMoEConfig& config) {
  TINYMOE_CHECK(config.num_experts > 0 && config.hidden_size > 0 && config.intermediate_size > 0, kOp,
                "expected positive num_experts, hidden_size and intermediate_size, got ", config.num_experts, ", ",
                config.hidden_size, " and ", config.intermediate_size);
  TINYMOE_CHECK(is_floating(config.dtype), kOp, "expected a floating dtype (f32 or f64), got ",
                dtype_name(config.dtype));
  TINYMOE_CHECK(config.router.num_experts == 0 || config.router.num_experts == config.num_experts, kOp,
                "the router routes to ", config.router.num_experts, " experts but the block has ", config.num_experts);
  const SharedExpertConfig& shared = config.shared;
  TINYMOE_CHECK(shared.kind == SharedExpertKind::none || (shared.count > 0 && shared.intermediate_size > 0), kOp,
                "expected a positive shared expert count and intermediate_size, got ", shared.count, " and ",
                shared.intermediate_size);
}

std::shared_ptr<Experts> make_experts(const SparseMoEConfig& config, Generator* generator) {
  const int64_t experts = config.num_experts, d = config.hidden_size, f = config.intermediate_size;
  switch (config.expert_kind) {
    case ExpertKind::swiglu: return std::make_shared<SwiGLUExperts>(experts, d, f, generator, config.dtype);
    case ExpertKind::relu: return std::make_shared<MLPExperts>(experts, d, f, Activation::relu, generator, config.dtype);
    case ExpertKind::gpt_oss: return std::make_shared<GptOssExperts>(experts, d, f, generator, config.dtype);
    default: return std::make_shared<MLPExperts>(experts, d, f, Activation::gelu, generator, config.dtype);
  }
}

MoEParts make_parts(const SparseMoEConfig& config, Generator* generator) {
  check_config(config);
  const int64_t d = config.hidden_size;
  MoEParts parts;
  parts.gate = config.router.num_experts > 0
                   ? std::make_shared<Router>(config.router, d, generator, config.dtype)
                   : std::make_shared<Router>(config.rule, config.num_experts, d, generator, config.dtype);
  parts.experts = make_experts(config, generator);
  const SharedExpertConfig& shared = config.shared;
  if (shared.kind != SharedExpertKind::none)
    parts.shared_expert = std::make_shared<SharedExpert>(d, shared.count * shared.intermediate_size, generator,
                                                         config.dtype);
  if (shared.kind == SharedExpertKind::sigmoid_gated)
    parts.shared_expert_gate = std::make_shared<Linear>(d, 1, false, generator, config.dtype);
  return parts;
}

void check_part_dtype(DType dtype, DType expected, const char* part) {
  TINYMOE_CHECK(dtype == expected, kOp, "expected the ", part, " of the experts' dtype ", dtype_name(expected),
                ", got ", dtype_name(dtype));
}

}  // namespace

SparseMoEBlock::SparseMoEBlock(const SparseMoEConfig& config, Generator* generator)
    : SparseMoEBlock(make_parts(config, generator)) {}

SparseMoEBlock::SparseMoEBlock(const MoEParts& parts) {
  TINYMOE_CHECK(parts.gate && parts.experts, kOp, "expected a gate and experts, got ",
                parts.gate ? "no experts" : "no gate");
  const int64_t experts = parts.experts->num_experts(), d = parts.experts->hidden_size();
  const DType dtype = parts.experts->dtype();
  TINYMOE_CHECK(parts.gate->hidden_size() == d && parts.gate->num_experts() == experts, kOp,
                "expected a gate weight of shape [", experts, ", ", d, "] ([E, d] for the experts), got ",
                shape_str(parts.gate->weight().shape()));
  check_part_dtype(parts.gate->dtype(), dtype, "gate");
  if (parts.shared_expert) {
    TINYMOE_CHECK(parts.shared_expert->hidden_size() == d, kOp, "expected a shared expert of hidden size ", d,
                  ", got ", parts.shared_expert->hidden_size());
    check_part_dtype(parts.shared_expert->dtype(), dtype, "shared expert");
  }
  if (parts.shared_expert_gate) {
    TINYMOE_CHECK(parts.shared_expert, kOp, "a shared_expert_gate needs a shared_expert");
    TINYMOE_CHECK(parts.shared_expert_gate->in_features() == d && parts.shared_expert_gate->out_features() == 1, kOp,
                  "expected a shared_expert_gate weight of shape [1, ", d, "], got ",
                  shape_str(parts.shared_expert_gate->weight().shape()));
    check_part_dtype(parts.shared_expert_gate->weight().dtype(), dtype, "shared_expert_gate");
  }
  gate_ = register_module("gate", parts.gate);
  experts_ = register_module("experts", parts.experts);
  // HF's names: Qwen2-MoE's gated "shared_expert" + "shared_expert_gate", DeepSeek-V3's "shared_experts".
  if (parts.shared_expert)
    shared_expert_ = register_module(parts.shared_expert_gate ? "shared_expert" : "shared_experts", parts.shared_expert);
  if (parts.shared_expert_gate) shared_expert_gate_ = register_module("shared_expert_gate", parts.shared_expert_gate);
}

Tensor moe_block_tokens(const Tensor& x, int64_t hidden_size, DType dtype, Device device, const char* op) {
  const int64_t d = hidden_size;
  check_defined(x, op, "x");
  TINYMOE_CHECK((x.dim() == 2 || x.dim() == 3) && x.size(-1) == d, op, "expected x of shape [T, ", d, "] or [B, S, ",
                d, "], got ", shape_str(x.shape()));
  TINYMOE_CHECK(x.dtype() == dtype, op, "expected x of the block's dtype ", dtype_name(dtype), ", got ",
                dtype_name(x.dtype()));
  TINYMOE_CHECK(x.device() == device, op, "expected x on the block's device ", device.str(), ", got ",
                x.device().str(), " (move the block with to(device), or x with x.to(device))");
  const int64_t tokens_count = x.dim() == 3 ? x.size(0) * x.size(1) : x.size(0);
  return x.reshape({tokens_count, d});  // shares x's storage
}

void check_weight_placement(const Routing& routing, const Experts& experts, const char* op) {
  TINYMOE_CHECK(!routing.weight_on_expert_input || experts.maps_zero_to_zero(), op,
                "the routing weighs the experts' inputs (weight_on_expert_input), which needs experts that map a "
                "zero input to zero; these have biases (GPT-OSS's), so a pair of weight 0 would still add them");
}

Tensor shared_expert_output(const SharedExpert& expert, const Linear* gate, const Tensor& tokens) {
  Tensor shared = expert.forward(tokens);
  if (gate == nullptr) return shared;
  // Qwen2-MoE: a per-token scalar gate sigmoid(x w_sg) [T, 1] scales the shared expert.
  return mul(sigmoid(gate->forward(tokens)), shared);
}

MoEOutput SparseMoEBlock::forward(const Tensor& x) const {
  Tensor tokens = moe_block_tokens(x, hidden_size(), dtype(), device(), kOp);
  const int64_t tokens_count = tokens.size(0);

  // S for [B, S, d], T for one sequence: per-sequence capacity and losses count by it.
  Routing routing = gate_->forward(tokens, x.size(-2));
  TINYMOE_CHECK(!routing.pair_token.defined() || routing.pair_token.device() == x.device(), kOp,
                "the routing rule returned pairs on ", routing.pair_token.defined() ? routing.pair_token.device().str() : "",
                " for x on ", x.device().str(), " (a rule makes its pairs on the logits' device)");
  check_weight_placement(routing, *experts_, kOp);
  DispatchPlan plan = plan_dispatch(routing, tokens_count, num_experts(), x.dtype(), kOp);
  Tensor y = experts_->forward_combined(tokens, plan);
  if (shared_expert_) y = add(y, shared_expert_output(*shared_expert_, shared_expert_gate_.get(), tokens));
  RoutingDiagnostics diagnostics = diagnose(routing, gate_->e_score_correction_bias());
  return {y.reshape(x.shape()), std::move(routing), plan.tokens_per_expert, std::move(diagnostics)};
}

}  // namespace nn
}  // namespace tinymoe
