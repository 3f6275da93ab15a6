// RouterConfig: every knob of a routing rule, the presets of the published routers, and
// make_rule, which builds a RoutingRule (nn/routing.h) from the parts of nn/routing_parts.h:
//
//   [noise, training] -> score function -> selection (+ bias) -> weight function
//     -> [GShard random 2nd choice, training | top-p cut | positive scores] -> capacity
//     -> pairs -> losses
//
// Formulas and sources per preset: docs/routing.md. The HF-named presets reproduce HuggingFace
// transformers' layers exactly (docs/hf_check.md) in eval mode.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "nn/balance_losses.h"
#include "nn/device_balance_losses.h"
#include "nn/routing.h"
#include "nn/routing_parts.h"

namespace tinymoe::nn {

// sinkhorn_topk: in training, the top-k of the Sinkhorn-balanced plan of the logits
// (sinkhorn_plan); in eval, the top-k of the scores (Megatron's sinkhorn load balancing).
// positive: every expert whose relu score is positive, at most top_k (ReLU routing, ReMoE).
enum class SelectionKind { topk, group_limited_topk, expert_choice, sinkhorn_topk, positive };

// A loss the rule adds to Routing::losses (under its name) when enabled, with its coefficient in
// Routing::loss_coefficients. The raw loss is reported even with coefficient 0.
struct LossSwitch {
  bool enabled = false;
  double coefficient = 0.0;
};

struct RouterConfig {
  std::string name = "custom";
  int64_t num_experts = 0;  // E
  int64_t top_k = 1;        // k (token choice)

  ScoreFunction score_function = ScoreFunction::softmax;
  SelectionKind selection = SelectionKind::topk;
  // Group-limited top-k (DeepSeek-V3).
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double masked_group_score = 0.0;  // HF: 0.0; DeepSeek's reference code: -inf
  int64_t group_score_experts = 2;  // a group's score sums its best m: DeepSeek-V3 2, DeepSeek-V2 1 (max)
  // A per-expert bias added to the scores for selection only (DeepSeek-V3 e_score_correction_bias);
  // the Router keeps it as the f32 buffer "e_score_correction_bias" and updates it outside autograd.
  bool selection_bias = false;
  // Expert choice (Zhou et al. 2022): capacity = ceil(T * factor / E) tokens per expert.
  double expert_choice_capacity_factor = 0.0;

  WeightFunction weights;          // renormalise over k, epsilon, scaling factor
  CapacityConfig capacity;         // dropless unless set

  double jitter_epsilon = 0.0;     // Switch input jitter U(1-eps, 1+eps), training only (Router)
  bool noisy_gating = false;       // Shazeer noisy top-k: Router owns "noise_weight", training only
  bool gshard_random_second_choice = false;  // GShard: dispatch the 2nd choice iff 2*w2 > U, training only
  // Top-p (Huang et al. 2024): > 0 keeps, of each token's top_k experts, the fewest whose
  // probabilities sum to at least top_p (top_p_active); top_k is then the most a token may get.
  // Softmax scores and a plain top-k; the aux loss counts the kept pairs only.
  double top_p = 0.0;
  // Llama 4: the block scales each expert's input by the pair weight and sums the outputs
  // unweighted, y_t = sum_e expert_e(w_te x_t) (Routing::weight_on_expert_input, nn/dispatch.h).
  bool weight_on_expert_input = false;
  // A plain top-k of the logits rather than of the scores (Llama 4, as HF's Llama4Router). The same
  // choice in exact arithmetic, but an f32 sigmoid rounds every logit above about 16.6 to 1, and
  // the tied scores would go to the lowest expert index. Needs a plain top-k without a selection
  // bias or noisy gating.
  bool select_on_logits = false;
  // A trained bias on the logits, x W^T + b: the Router owns "bias" [E] (GPT-OSS's router, Switch
  // with router_bias). Unlike selection_bias it is a parameter and reaches the weights.
  bool gate_bias = false;
  // ReLU routing (ReMoE, Wang et al. 2025): ScoreFunction::relu with SelectionKind::positive (the
  // one needs the other). A token takes each expert whose score relu(logit) is positive, at most
  // top_k of them (E in the preset: every expert a candidate, in id order; a smaller cap keeps the
  // best by logit), weighted by that score; it may take none. relu_target_k (1 ..top_k) is the k
  // of the top-k MoE it matches in compute: the L1 controller aims at the sparsity
  // 1 - relu_target_k / E (Routing::sparsity), and the l1 loss counts f_i over T * relu_target_k
  // pairs.
  int64_t relu_target_k = 0;
  double l1_coefficient_multiplier = 1.2;  // alpha of ReMoE eq. 6, > 1

  LossSwitch l1_loss;              // "l1_loss": relu_l1_loss (ReMoE eq. 7), ReLU routing only; its
                                   // coefficient is the controller's starting lambda (Router)

  LossSwitch aux_loss;             // "aux_loss": load_balancing_loss in aux_loss_form
  LoadBalanceForm aux_loss_form = LoadBalanceForm::switch_megatron;
  bool aux_loss_first_choice_only = false;  // GShard/Lingvo: f_i counts first choices only
  // Global-batch balancing (Qiu et al. 2025, "Demons in the Detail: On Implementing Load Balancing
  // Loss for Training Specialized Mixture-of-Expert Models"): when the batch is split over ranks
  // (ExpertParallelMoEBlock), the aux loss counts f_i over every rank's tokens, P_i staying each
  // rank's own mean, scaled by the rank's share of the tokens (N T_r / T) so that the ranks' mean
  // is the whole batch's loss. A single-process block's batch is the whole batch, so it changes
  // nothing there. Needs the aux loss in a whole-batch form (switch_megatron or hf_mixtral).
  bool aux_loss_global_batch = false;
  LossSwitch seq_aux_loss;         // "seq_aux_loss": sequence_aux_loss (DeepSeek-V3)
  LossSwitch z_loss;               // "z_loss": z_loss of the router logits (ST-MoE)
  LossSwitch importance_loss;      // "importance_loss": CV^2 of importance (Shazeer 2017)
  LossSwitch load_loss;            // "load_loss": CV^2 of the smooth load (Shazeer 2017), noisy gating, training
  LossSwitch entropy_loss;         // "entropy_loss": mean entropy of softmax(logits) (Huang et al. 2024)
  // DeepSeek-V2's losses over D devices of E / D contiguous experts, per sequence
  // (nn/device_balance_losses.h): "device_balance_loss" and "communication_balance_loss". D =
  // balance_devices, or n_group when 0; a token reaches at most M = min(k, topk_group) devices
  // under group-limited routing with D = n_group, else M = min(k, D).
  LossSwitch device_balance_loss;
  LossSwitch communication_balance_loss;
  int64_t balance_devices = 0;

  // Throws an Error naming "RouterConfig" for inconsistent knobs (k > E, topk_group > n_group,
  // E not divisible by n_group, capacity factor <= 0, ...).
  void validate() const;
};

// The probabilities the balance losses weigh: softmax scores as they are, sigmoid scores normalised
// per token (DeepSeek-V3 eq. 19).
Tensor balance_probabilities(const RouterConfig& config, const Tensor& scores);

// The expert ids the whole-batch aux loss forms count: expert_index [T, k], or its first column
// with aux_loss_first_choice_only.
Tensor aux_loss_counted_index(const RouterConfig& config, const Tensor& expert_index);

// ---- Presets (E = num_experts). HF config defaults where HF has the model. ----
// Mixtral (HF MixtralSparseMoeBlock): softmax, top-k, always renormalised; aux loss in the
// hf_mixtral form, coefficient 0.001 (MixtralConfig.router_aux_loss_coef).
RouterConfig mixtral(int64_t num_experts, int64_t k = 2);
// Switch Transformer (Fedus et al. 2021; HF SwitchTransformersTop1Router): softmax, top-1, weight =
// the chosen probability, capacity with position priority, jitter 0.01 in training, z-loss and the
// hf_switch aux loss (both coefficient 0.001). Pass CapacityConfig::per_sequence_count(n) for
// HF's expert_capacity or CapacityConfig::factor(cf) for ceil(T/E * cf) over all T.
RouterConfig switch_transformer(int64_t num_experts, const CapacityConfig& capacity);
// DeepSeek-V3 (HF DeepseekV3TopkRouter): sigmoid, group-limited top-k on s + bias, weights from s,
// renormalised (+1e-20) when norm_topk_prob, times routed_scaling_factor; balanced by the bias
// (Router::update_bias). seq_aux_loss_coef > 0 adds the paper's sequence-wise loss (alpha = 1e-4
// in the paper); HF has none, so 0 by default.
RouterConfig deepseek_v3(int64_t num_experts, int64_t k = 8, int64_t n_group = 8, int64_t topk_group = 4,
                         double routed_scaling_factor = 2.5, bool norm_topk_prob = true,
                         double seq_aux_loss_coef = 0.0);
// Qwen2-MoE (HF Qwen2MoeSparseMoeBlock): Mixtral's routing, renormalised only with
// norm_topk_prob (HF default false); hf_mixtral aux loss, coefficient 0.001.
RouterConfig qwen2_moe(int64_t num_experts, int64_t k, bool norm_topk_prob = false);
// DeepSeek-V2 (HF DeepseekV2MoE / DeepseekV2MoEGate, as HF runs it): softmax scores, top-k, or
// with n_group > 1 group-limited top-k whose group score is the group's max score
// (topk_method "group_limited_greedy", the paper's device-limited routing); weights the chosen
// scores times routed_scaling_factor, not renormalised (HF ignores norm_topk_prob). HF computes
// no loss; the paper's expert-, device- and communication-balance losses are training-only.
RouterConfig deepseek_v2(int64_t num_experts, int64_t k = 6, int64_t n_group = 1, int64_t topk_group = 1,
                         double routed_scaling_factor = 1.0);
// GShard (Lepikhin et al. 2020, Algorithm 1): softmax top-2 renormalised over the two, capacity
// ceil(2T/E * cf) per expert with first choices served first (DropPolicy::position), aux loss
// E * sum_i f1_i P_i over first choices. The random second-choice dispatch is off by default
// (set gshard_random_second_choice for the paper's training behaviour).
RouterConfig gshard(int64_t num_experts, double capacity_factor = 2.0);
// Noisy top-k gating (Shazeer et al. 2017): H = logits + N(0,1) softplus(x W_noise) in training,
// weights = softmax over the k kept H (= renormalised top-k of softmax(H)), the importance loss
// (eq. 6) and the smooth load loss (eqs. 8-10, training only), each with coefficient 0.01 (the
// paper tunes w_importance and w_load per experiment).
RouterConfig noisy_topk(int64_t num_experts, int64_t k);
// Expert choice (Zhou et al. 2022): softmax scores, each expert takes its top
// ceil(T * capacity_factor / E) tokens, weight = the score; no loss needed.
RouterConfig expert_choice(int64_t num_experts, double capacity_factor = 2.0);
// Top-p routing (Huang et al. 2024, "Harder Tasks Need More Experts: Dynamic Routing in MoE
// Models"): softmax, and per token the fewest experts (at most max_k) whose probabilities sum to
// at least p; weights are those probabilities, not renormalised; the aux loss (switch_megatron,
// over the kept pairs) and the entropy ("dynamic") loss, coefficients 0.01 and 1e-4 by default.
RouterConfig top_p(int64_t num_experts, double p = 0.4, int64_t max_k = 0 /* 0: E */);
// Sinkhorn routing (S-BASE, Clark et al. 2022; Megatron-core's TopKRouter with
// moe_router_load_balancing_type = "sinkhorn"): in training the experts are the top-k of the
// Sinkhorn-balanced plan of the logits, so the assignment is balanced by construction; in eval
// the top-k of the scores. Weights are the chosen experts' scores, not renormalised: sigmoid for
// k = 1, softmax otherwise (Megatron's _sinkhorn_activation). No loss: the selection balances.
RouterConfig sinkhorn(int64_t num_experts, int64_t k = 1);
// Llama 4 (HF Llama4Router / Llama4TextMoe): top-k of the logits (select_on_logits), weight sigmoid(logit) of each
// chosen expert (no renormalisation), applied to the expert's INPUT: y_t = sum over the chosen e
// of expert_e(sigmoid(l_te) x_t) (weight_on_expert_input). HF trains it with no balancing loss.
RouterConfig llama4(int64_t num_experts, int64_t k = 1);
// GPT-OSS (HF GptOssTopKRouter): logits x W^T + b with a trained bias (gate_bias), top-k of the
// logits, weights softmax over the k chosen logits (= the renormalised top-k of the softmax);
// hf_mixtral aux loss with GptOssConfig's coefficient 0.9. Its experts are ExpertKind::gpt_oss.
RouterConfig gpt_oss(int64_t num_experts, int64_t k = 4);

// ReLU routing (ReMoE: Wang et al. 2025, "ReMoE: Fully Differentiable Mixture-of-Experts with
// ReLU Routing"): relu scores, each token takes every expert whose score is positive (at most
// E), weighted by the score, not renormalised; the load-balanced L1 loss "l1_loss" (eq. 7) with
// a coefficient lambda that starts at 1e-8 and is multiplied by 1.2^sign(target - sparsity) after
// every step (eq. 6; Router::update_l1_coefficient), target = 1 - k / E, so that a token uses k
// experts on average. No other loss: the L1 term balances.
RouterConfig remoe(int64_t num_experts, int64_t k = 2);

// State a rule reads at every call, shared with its owner (the Router), updated in place outside
// autograd: the selection bias, an f32 [E] tensor, and ReMoE's L1 coefficient lambda, f64 [1].
struct RouterState {
  Tensor selection_bias;
  Tensor l1_coefficient;
};
// A state with a zero [E] f32 bias when the config uses one, and lambda = the l1 loss's
// coefficient when it has one; else an empty state.
std::shared_ptr<RouterState> make_router_state(const RouterConfig& config);

// Validates config and returns the rule. A config with selection_bias needs a state holding an
// [E] bias (make_router_state); the rule reads state->selection_bias at each call, and the l1
// loss's coefficient from state->l1_coefficient when the state holds one (else the config's). Each call
// checks logits ([T, E], floating) and context (sequence_length dividing T), naming "route".
RoutingRule make_rule(const RouterConfig& config, std::shared_ptr<const RouterState> state = nullptr);

}  // namespace tinymoe::nn
