// The small MoE language model the examples train (train_tiny_lm, compare_routers): its training
// window, the built-in text, the routers they offer by name (each with the knobs its paper or
// HuggingFace config uses), the model itself, and one training step.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

namespace tiny_lm {

// The training windows' length, and so the model's longest context.
constexpr int64_t kWindow = 64;

inline constexpr const char* kText =
    "A mixture of experts replaces one wide feed-forward layer with many narrow ones. A router "
    "looks at each token and sends it to a few experts; the others never see it. The model holds "
    "the knowledge of all its experts but pays, for each token, only for the few it uses. The hard "
    "part is balance. A router left alone sends most tokens to the experts that are already good, "
    "they get better, and the rest starve. Switch adds a loss that rewards even loads and caps how "
    "many tokens an expert may take. Mixtral renormalises the weights of its two chosen experts. "
    "DeepSeek-V3 keeps a bias for each expert, raised when the expert is idle and lowered when it "
    "is busy, and needs no balancing loss at all. Expert choice turns the question around: each "
    "expert picks the tokens it wants. Watch the loads below while the model learns this text.\n";

// DeepSeek-V2 as trained in its paper (sec. 2.2): device-limited routing over 4 groups of 2
// experts, at most 2 groups per token, with the expert-, device- and communication-level balance
// losses (0.003, 0.05, 0.02).
inline tinymoe::nn::RouterConfig deepseek_v2_trained() {
  tinymoe::nn::RouterConfig c = tinymoe::nn::deepseek_v2(8, 2, 4, 2, 1.0);
  c.aux_loss = {true, 0.003};
  c.device_balance_loss = {true, 0.05};
  c.communication_balance_loss = {true, 0.02};
  return c;
}

// The presets by name, for E = 8 experts.
inline std::vector<std::pair<std::string, tinymoe::nn::RouterConfig>> router_presets() {
  using namespace tinymoe::nn;
  return {
      {"mixtral", mixtral(8, 2)},
      {"switch", switch_transformer(8, CapacityConfig::factor(1.25))},
      {"deepseek_v3", deepseek_v3(8, 2, 4, 2)},
      {"qwen2_moe", qwen2_moe(8, 2, true)},
      {"gshard", gshard(8, 2.0)},
      {"noisy_topk", noisy_topk(8, 2)},
      {"expert_choice", expert_choice(8, 2.0)},
      {"sinkhorn", sinkhorn(8, 1)},
      {"top_p", top_p(8, 0.4)},
      {"llama4", llama4(8, 1)},
      {"deepseek_v2", deepseek_v2_trained()},
      {"gpt_oss", gpt_oss(8, 2)},  // with GPT-OSS's experts (tiny_lm_model)
      {"remoe", remoe(8, 2)},
  };
}

inline std::vector<std::string> router_names() {
  std::vector<std::string> names;
  for (const auto& preset : router_presets()) names.push_back(preset.first);
  return names;
}

inline tinymoe::nn::RouterConfig router_by_name(const std::string& name) {
  for (const auto& [preset, config] : router_presets())
    if (preset == name) return config;
  tinymoe::fail("tiny_lm", "no router named '", name, "'");
}

// 2 layers of 4 heads, E = 8 experts of width 64, over `vocab_size` characters, routed by
// `router` (GPT-OSS's router with GPT-OSS's clamped SwiGLU experts with biases). A router config
// with num_experts = 0 leaves the gate to config.moe.rule, which the caller sets.
inline tinymoe::nn::MoETransformerConfig tiny_lm_model(const tinymoe::nn::RouterConfig& router, int64_t vocab_size) {
  tinymoe::nn::MoETransformerConfig config;
  config.vocab_size = vocab_size;
  config.max_sequence_length = kWindow;
  config.num_layers = 2;
  config.num_heads = 4;
  config.moe.num_experts = 8;
  config.moe.hidden_size = 64;
  config.moe.intermediate_size = 64;
  config.moe.router = router;
  if (router.name == "gpt_oss") config.moe.expert_kind = tinymoe::nn::ExpertKind::gpt_oss;
  return config;
}

// One optimisation step on a batch: forward, backward, the replicated parameters' gradients summed
// over the ranks (nothing to sum on one process), every gradient clipped to norm 1 over the whole
// model, every rank's experts included (so that every rank scales its copies alike), the
// optimizer's step, then the routers' updates outside the gradient: DeepSeek-V3's bias and
// ReMoE's L1 coefficient (no-ops for the other routers). Returns the forward's output.
inline tinymoe::nn::LMOutput train_on_batch(tinymoe::nn::MoETransformer& model, tinymoe::nn::Optimizer& optimizer,
                                            tinymoe::Communicator& comm, const tinymoe::Tensor& ids,
                                            const tinymoe::Tensor& targets) {
  model.zero_grad();
  tinymoe::nn::LMOutput out = model(ids, targets);
  out.total_loss().backward();
  tinymoe::nn::all_reduce_gradients(model.replicated_parameters(), comm);
  tinymoe::nn::clip_grad_norm(model.replicated_parameters(), model.local_expert_parameters(), 1.0, comm);
  optimizer.step();
  model.update_router_biases(out, 1e-3);
  model.update_router_l1_coefficients(out);
  return out;
}

}  // namespace tiny_lm
