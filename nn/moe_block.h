// nn/moe_block.h: SparseMoEBlock, the sparse Mixture-of-Experts layer (Megatron-style dropless
// dispatch; docs/design.md, "The sparse MoE block"; docs/moe_block.md walks through it with shapes).
//
//   x [T, d] or [B, S, d]  (viewed as T = B*S token rows, no copy)
//   routing = gate(x, S)  (nn::Router: logits = x gate.weight^T [T, E], then its rule with
//             {E, S, training, generator}; jitter and noise in training)  pairs (token, expert, weight)
//   plan    = plan_dispatch(routing)                             sort pairs by expert, offsets
//   y_perm  = experts(x[sorted_token], offsets)                  grouped GEMMs      [P, d]
//   y       = scatter_add(zeros, sorted_token, y_perm * weight)                    [T, d]
//   y      += shared(x)  or  sigmoid(x shared_expert_gate^T) * shared(x)
//
// After each forward the block reads the loads into MoEOutput::diagnostics (nn/diagnostics.h).
//
// Devices: the block runs where its parameters are; block.to(Device::cuda(0)) (Module::to) moves
// them all, buffers (the DeepSeek-V3 bias) included, and x must then be on cuda:0 too. Every step
// runs there; what decides one pair at a time (capacity drops, GShard's random second choice) and
// the random draws (jitter, noise) run on the host, and some steps read a few numbers back
// (docs/cuda.md lists them).
//
// Pairs a capacity rule dropped are simply absent: they contribute nothing, and a token whose
// pairs were all dropped gets 0 from the routed experts (the residual is added outside the
// block). x gets gradients through the experts and through the routing weights (logits depend
// on x and gate.weight); every parameter gets gradients.
//
// Parameter names (HF's, so a later loader maps checkpoints one to one where it can):
//   gate.weight                      [E, d]   router (nn::Router; a bias-free Linear's layout)
//   gate.noise_weight                [E, d]   noisy top-k only (Shazeer 2017)
//   gate.bias                        [E]      with RouterConfig::gate_bias only (GPT-OSS)
//   gate.e_score_correction_bias     [E] f32 buffer, DeepSeek-V3 only (update_bias moves it)
//   gate.l1_coefficient              [1] f64 buffer, ReMoE only (update_l1_coefficient moves it)
//   experts.w1, experts.w3 [E, d, f], experts.w2 [E, f, d]   (swiglu; nn/experts.h)
//   experts.wi [E, d, f], experts.wo [E, f, d]               (relu / gelu)
//   shared_experts.{gate,up,down}_proj.weight    ungated shared experts (DeepSeek-V3)
//   shared_expert.{gate,up,down}_proj.weight,
//   shared_expert_gate.weight [1, d]             sigmoid-gated shared expert (Qwen2-MoE)
#pragma once

#include <cstdint>
#include <memory>

#include "nn/diagnostics.h"
#include "nn/experts.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/router.h"
#include "nn/routing.h"

namespace tinymoe {
namespace nn {

// swiglu: Mixtral's SwiGLUExperts; relu, gelu: Switch's MLPExperts; gpt_oss: GPT-OSS's clamped
// SwiGLU with biases (nn/gpt_oss_experts.h).
enum class ExpertKind { swiglu, relu, gelu, gpt_oss };

enum class SharedExpertKind {
  none,
  ungated,        // DeepSeek-V3: out += shared_experts(x)
  sigmoid_gated,  // Qwen2-MoE:   out += sigmoid(x shared_expert_gate^T) * shared_expert(x)
};

struct SharedExpertConfig {
  SharedExpertKind kind = SharedExpertKind::none;
  // DeepSeek-V3's n_shared_experts: `count` SwiGLU experts of `intermediate_size` run as one MLP
  // of width count * intermediate_size (as HF's DeepseekV3MoE builds them).
  int64_t count = 1;
  int64_t intermediate_size = 0;
};

struct SparseMoEConfig {
  int64_t num_experts = 0;        // E
  int64_t hidden_size = 0;        // d
  int64_t intermediate_size = 0;  // f of each routed expert
  ExpertKind expert_kind = ExpertKind::swiglu;
  SharedExpertConfig shared;
  // The gate: a preset or configured router (nn/router_presets.h) when router.num_experts > 0
  // (it must equal num_experts), else `rule`, a user's logits [T, E] -> Routing (nn/routing.h).
  RouterConfig router;
  RoutingRule rule;
  DType dtype = DType::f32;       // of every parameter; inputs must match
};

// The parts a block is assembled from, for weights made or loaded elsewhere and for gradient
// checks of the whole block: the gate is the Router (with the rule), weight [E, d] of the
// experts' dtype; shared_expert may be null; a non-null shared_expert_gate ([1, d], needs
// shared_expert) makes the shared expert sigmoid-gated.
struct MoEParts {
  std::shared_ptr<Router> gate;
  std::shared_ptr<Experts> experts;
  std::shared_ptr<SharedExpert> shared_expert;
  std::shared_ptr<Linear> shared_expert_gate;
};

struct MoEOutput {
  Tensor output;             // x's shape: routed (+ shared) output, no residual
  Routing routing;           // what the rule returned (router_logits filled in when it left them out)
  Tensor tokens_per_expert;  // i64 [E]: kept pairs per expert (after capacity drops)
  // diagnose(routing, gate's selection bias): loads, CV, drops, entropy, dead experts, collapse.
  RoutingDiagnostics diagnostics;
};

class SparseMoEBlock : public Module {
 public:
  // Builds the gate (Router(config.router, d, ...) or Router(config.rule, E, d, ...)), the
  // experts and the shared expert from the config; parameters are drawn from `generator` (the
  // global one when null) in the order gate, experts, shared expert, its gate.
  explicit SparseMoEBlock(const SparseMoEConfig& config, Generator* generator = nullptr);
  // Assembles a block from existing parts (registered by handle; see MoEParts). The rule is the
  // gate's.
  explicit SparseMoEBlock(const MoEParts& parts);

  // x [T, d] (one sequence of T tokens) or [B, S, d] (B sequences; the rule's
  // context.sequence_length is S, T for a 2-D x). x must have the parameters' dtype.
  MoEOutput forward(const Tensor& x) const;
  MoEOutput operator()(const Tensor& x) const { return forward(x); }

  int64_t num_experts() const { return experts_->num_experts(); }
  int64_t hidden_size() const { return experts_->hidden_size(); }
  DType dtype() const { return experts_->dtype(); }
  // Where the parameters live (the gate's weight; Module::to moves them all): x must be there.
  Device device() const { return gate_->weight().device(); }
  const RoutingRule& rule() const { return gate_->rule(); }
  // The generator of the router's jitter and noise, passed in the rule's context (null: the
  // global one). Forwards to Router::set_generator.
  void set_routing_generator(Generator* generator) { gate_->set_generator(generator); }
  // Auxiliary-loss-free balancing (DeepSeek-V3): moves the gate's selection bias by the loads of
  // output.routing (Router::update_bias), outside the gradient. Needs a router with a bias.
  void update_bias(const MoEOutput& output, double rate) { gate_->update_bias(output.routing, rate); }
  // ReMoE's L1 controller: moves the gate's lambda by the sparsity of output.routing
  // (Router::update_l1_coefficient). Needs a router with the l1 loss.
  void update_l1_coefficient(const MoEOutput& output) { gate_->update_l1_coefficient(output.routing.sparsity()); }

  const std::shared_ptr<Router>& gate() const { return gate_; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  const std::shared_ptr<SharedExpert>& shared_expert() const { return shared_expert_; }  // null when none
  const std::shared_ptr<Linear>& shared_expert_gate() const { return shared_expert_gate_; }  // null unless gated

 private:
  std::shared_ptr<Router> gate_;
  std::shared_ptr<Experts> experts_;
  std::shared_ptr<SharedExpert> shared_expert_;
  std::shared_ptr<Linear> shared_expert_gate_;
};

// The token rows [T, d] of a block input x [T, d] or [B, S, d] (a view of x), after checking x
// against the block's width, dtype and device; errors name `op`. Shared by the MoE blocks.
Tensor moe_block_tokens(const Tensor& x, int64_t hidden_size, DType dtype, Device device, const char* op);

// Weights on the expert input (Llama 4) need experts that map zero to zero (Experts::
// maps_zero_to_zero): with biased experts a zero-weight pair would add the bias. An Error naming
// `op` otherwise. Shared by the MoE blocks.
void check_weight_placement(const Routing& routing, const Experts& experts, const char* op);

// The shared expert on token rows: ungated (DeepSeek-V3), or times sigmoid(tokens gate^T) per
// token when `gate` ([1, d]) is given (Qwen2-MoE).
Tensor shared_expert_output(const SharedExpert& expert, const Linear* gate, const Tensor& tokens);

}  // namespace nn
}  // namespace tinymoe
