#include "nn/router_presets.h"

#include <algorithm>
#include <cmath>

#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/shape.h"

namespace tinymoe::nn {
namespace {

constexpr const char* kConfig = "RouterConfig";

void check_loss_switch(const LossSwitch& loss, const char* name) {
  TINYMOE_CHECK(loss.coefficient >= 0.0 && std::isfinite(loss.coefficient), kConfig, "expected a ", name,
                " coefficient >= 0, got ", loss.coefficient);
}

void validate_group_selection(const RouterConfig& c) {
  TINYMOE_CHECK(c.n_group >= 1 && c.num_experts % c.n_group == 0, kConfig, "E = ", c.num_experts,
                " experts are not divisible into n_group = ", c.n_group, " groups");
  const int64_t group_size = c.num_experts / c.n_group;
  TINYMOE_CHECK(c.group_score_experts >= 1, kConfig, "expected group_score_experts >= 1, got ", c.group_score_experts);
  TINYMOE_CHECK(c.group_score_experts <= group_size, kConfig, "a group score sums the top ", c.group_score_experts,
                " experts of a group: expected E / n_group >= ", c.group_score_experts, ", got ", group_size);
  TINYMOE_CHECK(c.topk_group >= 1 && c.topk_group <= c.n_group, kConfig, "expected 1 <= topk_group <= n_group = ",
                c.n_group, ", got topk_group = ", c.topk_group);
  TINYMOE_CHECK(c.top_k <= c.topk_group * group_size, kConfig, "k = ", c.top_k, " experts do not fit in the ",
                c.topk_group, " kept groups of ", group_size);
}

void validate_expert_choice(const RouterConfig& c) {
  TINYMOE_CHECK(c.expert_choice_capacity_factor > 0.0 && std::isfinite(c.expert_choice_capacity_factor), kConfig,
                "expert choice needs a capacity factor > 0, got ", c.expert_choice_capacity_factor);
  TINYMOE_CHECK(!c.capacity.enabled() && !c.weights.renormalize && !c.selection_bias && !c.gshard_random_second_choice,
                kConfig, "expert choice has its own capacity and no per-token k: capacity, renormalisation, "
                "selection bias and GShard's second choice do not apply");
  TINYMOE_CHECK(!c.aux_loss.enabled && !c.seq_aux_loss.enabled && !c.importance_loss.enabled &&
                    !c.device_balance_loss.enabled && !c.communication_balance_loss.enabled,
                kConfig, "expert choice is balanced by construction: only the z-loss applies");
}

void validate_capacity(const CapacityConfig& capacity) {
  TINYMOE_CHECK(capacity.capacity_factor >= 0.0 && std::isfinite(capacity.capacity_factor), kConfig,
                "expected a capacity factor > 0 (or 0 for none), got ", capacity.capacity_factor);
  TINYMOE_CHECK(capacity.expert_capacity >= 0, kConfig, "expected expert_capacity >= 1 (or 0 for none), got ",
                capacity.expert_capacity);
  TINYMOE_CHECK(!(capacity.capacity_factor > 0.0 && capacity.expert_capacity > 0), kConfig,
                "give either a capacity factor or an absolute expert capacity, not both");
}

void add_loss(Routing& routing, const char* name, const LossSwitch& loss, const Tensor& value) {
  routing.losses[name] = value;
  routing.loss_coefficients[name] = loss.coefficient;
}

// The aux loss of top-p routing: f_i counts the kept pairs only (each token keeps its own number of
// experts): switch_megatron divides by the kept pairs (uniform routing gives 1), hf_mixtral by the
// tokens (its minimum is the mean number of experts per token).
Tensor top_p_aux_loss(const RouterConfig& c, const Routing& routing, const CapacityResult& kept) {
  const int64_t pairs = kept.pairs.expert.numel();
  std::vector<double> counts = expert_pair_counts(kept.pairs.expert.reshape({pairs, 1}), c.num_experts);
  const int64_t tokens = routing.scores.size(0);
  const int64_t divisor = c.aux_loss_form == LoadBalanceForm::switch_megatron ? kept.routed : tokens;
  return load_balancing_loss_with_batch(routing.scores, 1, c.aux_loss_form, counts, divisor);
}

// D for DeepSeek-V2's device losses, and the most devices one token can reach.
int64_t balance_devices(const RouterConfig& c) { return c.balance_devices > 0 ? c.balance_devices : c.n_group; }
int64_t max_devices_per_token(const RouterConfig& c) {
  const int64_t devices = balance_devices(c);
  const bool device_limited = c.selection == SelectionKind::group_limited_topk && devices == c.n_group;
  return std::min(c.top_k, device_limited ? c.topk_group : devices);
}

void add_device_losses(const RouterConfig& c, Routing& routing, int64_t sequence_length) {
  if (c.device_balance_loss.enabled)
    add_loss(routing, "device_balance_loss", c.device_balance_loss,
             device_balance_loss(balance_probabilities(c, routing.scores), routing.expert_index, balance_devices(c),
                                 sequence_length));
  if (c.communication_balance_loss.enabled)
    add_loss(routing, "communication_balance_loss", c.communication_balance_loss,
             communication_balance_loss(balance_probabilities(c, routing.scores), routing.expert_index,
                                        balance_devices(c), max_devices_per_token(c), sequence_length));
}

void add_token_choice_losses(const RouterConfig& c, Routing& routing, const Tensor& weights,
                             const CapacityResult& kept, int64_t sequence_length) {
  if (c.aux_loss.enabled && c.top_p > 0.0) {
    add_loss(routing, "aux_loss", c.aux_loss, top_p_aux_loss(c, routing, kept));
  } else if (c.aux_loss.enabled) {
    Tensor counted = c.aux_loss_form == LoadBalanceForm::hf_switch
                         ? hf_switch_loss_expert_index(routing.expert_index, kept.kept)
                         : routing.expert_index;
    counted = aux_loss_counted_index(c, counted);
    add_loss(routing, "aux_loss", c.aux_loss,
             load_balancing_loss(balance_probabilities(c, routing.scores), counted, c.aux_loss_form, sequence_length));
  }
  if (c.seq_aux_loss.enabled)
    add_loss(routing, "seq_aux_loss", c.seq_aux_loss,
             sequence_aux_loss(balance_probabilities(c, routing.scores), routing.expert_index, sequence_length));
  if (c.z_loss.enabled) add_loss(routing, "z_loss", c.z_loss, z_loss(routing.router_logits));
  if (c.importance_loss.enabled)
    add_loss(routing, "importance_loss", c.importance_loss, importance_loss(weights, routing.expert_index, c.num_experts));
  if (c.entropy_loss.enabled) add_loss(routing, "entropy_loss", c.entropy_loss, entropy_loss(routing.router_logits));
  add_device_losses(c, routing, sequence_length);
}

// i64 [T, E] with row t = 0, 1, ..., E-1, on the logits' device.
Tensor every_expert(const Tensor& logits) {
  const int64_t tokens = logits.size(0), experts = logits.size(1);
  std::vector<int64_t> ids(static_cast<size_t>(tokens * experts));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i) % experts;
  return from_vector(ids, {tokens, experts}).to(logits.device());
}

Tensor select_token_choice(const RouterConfig& c, const Tensor& bias, const Tensor& logits, const Tensor& scores,
                           const RoutingContext& context) {
  switch (c.selection) {
    case SelectionKind::group_limited_topk:
      return select_group_limited_topk(scores, c.top_k, c.n_group, c.topk_group, bias, c.masked_group_score,
                                       c.group_score_experts);
    case SelectionKind::sinkhorn_topk:
      // Megatron's sinkhorn_load_balancing: the balanced plan chooses in training only.
      return context.training ? select_topk(sinkhorn_plan(logits), c.top_k) : select_topk(scores, c.top_k);
    case SelectionKind::positive:
      // Uncapped, every expert is a candidate, in id order: no sort, and no order to report to
      // gradcheck. With a cap the logits rank the positive scores as the scores do, and keep the
      // zero scores apart (a tie among them at the cut would be a choice that changes nothing).
      return c.top_k == c.num_experts ? every_expert(logits) : select_topk(logits, c.top_k);
    default:
      return select_topk(c.select_on_logits ? logits : scores, c.top_k, bias);
  }
}

Routing route_token_choice(const RouterConfig& c, const Tensor& bias, const Tensor& logits, const Tensor& scores,
                           const RoutingContext& context) {
  Tensor expert_index = select_token_choice(c, bias, logits, scores, context);
  Tensor weights = c.weights(gather_selected(scores, expert_index));
  Tensor active;
  if (c.gshard_random_second_choice && context.training) active = gshard_second_choice_mask(weights, context.generator);
  if (c.top_p > 0.0) active = top_p_active(gather_selected(scores.detach(), expert_index), c.top_p);
  if (c.selection == SelectionKind::positive) active = positive_active(gather_selected(logits.detach(), expert_index));
  CapacityResult kept = apply_capacity(expert_index, weights, c.num_experts, c.capacity, context.sequence_length, active);
  Routing routing = token_choice_routing(logits, scores, expert_index, kept);
  add_token_choice_losses(c, routing, weights, kept, context.sequence_length);
  return routing;
}

// ReMoE's L1 term, weighted by the controller's lambda when the Router keeps one.
void add_l1_loss(const RouterConfig& c, const RouterState* state, Routing& routing) {
  if (!c.l1_loss.enabled) return;
  LossSwitch weighted = c.l1_loss;
  if (state && state->l1_coefficient.defined()) weighted.coefficient = state->l1_coefficient.item<double>();
  TINYMOE_CHECK(weighted.coefficient > 0.0 && std::isfinite(weighted.coefficient), "route",
                "the l1 coefficient of the rule '", c.name, "' must be finite and > 0 (the controller only ever "
                "multiplies it), got ", weighted.coefficient);
  add_loss(routing, "l1_loss", weighted, relu_l1_loss(routing.scores, routing.pair_expert, c.relu_target_k));
}

Routing route_expert_choice(const RouterConfig& c, const Tensor& logits, const Tensor& scores) {
  int64_t capacity = expert_choice_capacity(scores.size(0), c.num_experts, c.expert_choice_capacity_factor);
  Tensor token_index = select_expert_choice(scores, capacity);
  Tensor weights = c.weights(gather(transpose(scores), 1, token_index));
  Routing routing = expert_choice_routing(logits, scores, token_index, weights);
  if (c.z_loss.enabled) add_loss(routing, "z_loss", c.z_loss, z_loss(logits));
  if (c.entropy_loss.enabled) add_loss(routing, "entropy_loss", c.entropy_loss, entropy_loss(logits));
  return routing;
}

Routing route(const RouterConfig& c, const RouterState* state, const Tensor& logits, const RoutingContext& context) {
  check_router_logits(logits, c.num_experts, "route");
  TINYMOE_CHECK(context.num_experts == 0 || context.num_experts == c.num_experts, "route", "the context says E = ",
                context.num_experts, " but the rule '", c.name, "' routes to ", c.num_experts, " experts");
  sequence_count(logits.size(0), context.sequence_length, "route");
  Tensor gate_logits = logits;
  if (c.noisy_gating && context.training) {
    TINYMOE_CHECK(context.noise_logits.defined(), "route", "the noisy rule '", c.name,
                  "' needs context.noise_logits (x W_noise) in training");
    gate_logits = noisy_logits(logits, context.noise_logits, context.generator);
  }
  Tensor scores = apply_score_function(c.score_function, gate_logits);
  if (c.selection == SelectionKind::expert_choice) return route_expert_choice(c, logits, scores);
  Routing routing = route_token_choice(c, c.selection_bias ? state->selection_bias : Tensor(), logits, scores, context);
  add_l1_loss(c, state, routing);
  // The top k of the (monotone) scores is the top k of H = gate_logits, which the load loss needs.
  if (c.load_loss.enabled && c.noisy_gating && context.training)
    add_loss(routing, "load_loss", c.load_loss,
             load_loss(logits, gate_logits, softplus(context.noise_logits), c.top_k));
  return routing;
}

void validate_top_p(const RouterConfig& c) {
  TINYMOE_CHECK(c.top_p >= 0.0 && c.top_p <= 1.0, kConfig, "expected 0 <= top_p <= 1, got ", c.top_p);
  if (c.top_p == 0.0) return;
  TINYMOE_CHECK(c.score_function == ScoreFunction::softmax && c.selection == SelectionKind::topk && !c.selection_bias &&
                    !c.noisy_gating && !c.gshard_random_second_choice && !c.capacity.enabled(),
                kConfig, "top-p routing sums the router's probabilities: it needs softmax scores and a plain top-k, "
                "without a selection bias, noisy gating, GShard's second choice or capacity");
  // The weight function sees all top_k slots before the cut: renormalising there would spread the
  // weight over experts the token does not keep. The paper keeps the probabilities as they are.
  TINYMOE_CHECK(!c.weights.renormalize && c.weights.epsilon == 0.0, kConfig,
                "top-p routing keeps the kept experts' probabilities as weights: renormalisation does not apply");
  TINYMOE_CHECK(!c.seq_aux_loss.enabled && !c.importance_loss.enabled && !c.load_loss.enabled &&
                    !c.device_balance_loss.enabled && !c.communication_balance_loss.enabled &&
                    !c.aux_loss_global_batch && !c.aux_loss_first_choice_only &&
                    (!c.aux_loss.enabled || c.aux_loss_form != LoadBalanceForm::hf_switch),
                kConfig, "with top-p each token keeps its own number of experts: only the whole-batch aux loss over "
                "every kept pair (switch_megatron or hf_mixtral, per rank), the z-loss and the entropy loss count them");
}

// ReLU routing: relu scores and the positive selection come together, and only the losses that
// read the relu scores as they are (the l1 loss) or the logits (the z-loss) apply.
void validate_relu_routing(const RouterConfig& c) {
  const bool relu_scores = c.score_function == ScoreFunction::relu, positive = c.selection == SelectionKind::positive;
  TINYMOE_CHECK(relu_scores == positive, kConfig, "ReLU routing takes relu scores with the positive selection together, got ",
                score_function_name(c.score_function), " scores with ", positive ? "the positive selection" : "another selection");
  TINYMOE_CHECK(!c.l1_loss.enabled || positive, kConfig, "the l1 loss regularises relu scores: it needs ReLU routing");
  TINYMOE_CHECK(c.relu_target_k == 0 || positive, kConfig, "relu_target_k is ReLU routing's target: it needs ReLU routing");
  if (!positive) return;
  TINYMOE_CHECK(c.relu_target_k >= 1 && c.relu_target_k <= c.top_k, kConfig,
                "ReLU routing needs the target experts per token 1 <= relu_target_k <= top_k = ", c.top_k,
                " (the most a token may take), got ", c.relu_target_k);
  TINYMOE_CHECK(!c.l1_loss.enabled || c.l1_loss.coefficient > 0.0, kConfig,
                "the l1 loss's starting coefficient must be > 0 (the controller only ever multiplies it), got ",
                c.l1_loss.coefficient);
  TINYMOE_CHECK(c.l1_coefficient_multiplier > 1.0 && std::isfinite(c.l1_coefficient_multiplier), kConfig,
                "expected an l1 coefficient multiplier > 1, got ", c.l1_coefficient_multiplier);
  TINYMOE_CHECK(!c.selection_bias && !c.noisy_gating && !c.gshard_random_second_choice && !c.capacity.enabled() &&
                    c.top_p == 0.0 && !c.select_on_logits,
                kConfig, "ReLU routing keeps every expert of positive score: a selection bias, noisy gating, GShard's "
                "second choice, capacity, top-p or selecting on the logits do not apply");
  TINYMOE_CHECK(!c.weights.renormalize && c.weights.epsilon == 0.0, kConfig,
                "ReLU routing weighs each expert by its relu score: renormalisation does not apply");
  TINYMOE_CHECK(!c.aux_loss.enabled && !c.seq_aux_loss.enabled && !c.importance_loss.enabled && !c.load_loss.enabled &&
                    !c.entropy_loss.enabled && !c.device_balance_loss.enabled && !c.communication_balance_loss.enabled &&
                    !c.aux_loss_global_batch,
                kConfig, "ReLU routing's scores are no probabilities: only the l1 loss and the z-loss apply");
}

}  // namespace

Tensor balance_probabilities(const RouterConfig& config, const Tensor& scores) {
  return config.score_function == ScoreFunction::softmax ? scores : normalised_scores(scores);
}

Tensor aux_loss_counted_index(const RouterConfig& config, const Tensor& expert_index) {
  return config.aux_loss_first_choice_only ? slice(expert_index, 1, 0, 1) : expert_index;
}

void RouterConfig::validate() const {
  TINYMOE_CHECK(num_experts >= 1, kConfig, "expected num_experts >= 1, got ", num_experts);
  if (selection != SelectionKind::expert_choice)
    TINYMOE_CHECK(top_k >= 1 && top_k <= num_experts, kConfig, "expected 1 <= k <= E = ", num_experts, ", got k = ",
                  top_k);
  if (selection == SelectionKind::group_limited_topk) validate_group_selection(*this);
  if (selection == SelectionKind::expert_choice) validate_expert_choice(*this);
  TINYMOE_CHECK(selection != SelectionKind::sinkhorn_topk || (!selection_bias && !noisy_gating), kConfig,
                "Sinkhorn selection balances the logits themselves: a selection bias or noisy gating does not apply");
  TINYMOE_CHECK(!select_on_logits || (selection == SelectionKind::topk && !selection_bias && !noisy_gating), kConfig,
                "selecting on the logits needs a plain top-k, without a selection bias or noisy gating");
  validate_capacity(capacity);
  validate_top_p(*this);
  validate_relu_routing(*this);
  TINYMOE_CHECK(weights.epsilon >= 0.0 && weights.scaling_factor > 0.0 && std::isfinite(weights.scaling_factor),
                kConfig, "expected epsilon >= 0 and a scaling factor > 0, got ", weights.epsilon, " and ",
                weights.scaling_factor);
  TINYMOE_CHECK(jitter_epsilon >= 0.0 && jitter_epsilon < 1.0, kConfig, "expected 0 <= jitter_epsilon < 1, got ",
                jitter_epsilon);
  TINYMOE_CHECK(!gshard_random_second_choice || top_k == 2, kConfig,
                "GShard's random second choice needs k = 2, got k = ", top_k);
  check_loss_switch(aux_loss, "aux_loss");
  check_loss_switch(seq_aux_loss, "seq_aux_loss");
  check_loss_switch(z_loss, "z_loss");
  check_loss_switch(importance_loss, "importance_loss");
  check_loss_switch(load_loss, "load_loss");
  check_loss_switch(entropy_loss, "entropy_loss");
  check_loss_switch(device_balance_loss, "device_balance_loss");
  check_loss_switch(communication_balance_loss, "communication_balance_loss");
  check_loss_switch(l1_loss, "l1_loss");
  if (device_balance_loss.enabled || communication_balance_loss.enabled) {
    const int64_t devices = balance_devices > 0 ? balance_devices : n_group;
    TINYMOE_CHECK(balance_devices >= 0 && devices >= 1 && num_experts % devices == 0, kConfig,
                  "the device balance losses need D = balance_devices (or n_group) >= 1 dividing E = ", num_experts,
                  ", got ", devices);
  }
  TINYMOE_CHECK(!aux_loss_global_batch || (aux_loss.enabled && aux_loss_form != LoadBalanceForm::hf_switch), kConfig,
                "global-batch balancing counts the aux loss's f_i over every rank: it needs the aux loss enabled in "
                "a whole-batch form (switch_megatron or hf_mixtral), got ",
                aux_loss.enabled ? load_balance_form_name(aux_loss_form) : "no aux loss");
  TINYMOE_CHECK(!load_loss.enabled || (noisy_gating && selection == SelectionKind::topk && !selection_bias), kConfig,
                "the load loss (Shazeer 2017) needs noisy gating and a plain top-k on the noisy logits (no groups, "
                "no selection bias)");
}

RouterConfig mixtral(int64_t num_experts, int64_t k) {
  RouterConfig c;
  c.name = "mixtral";
  c.num_experts = num_experts, c.top_k = k;
  c.weights.renormalize = true;
  c.aux_loss = {true, 0.001};
  c.aux_loss_form = LoadBalanceForm::hf_mixtral;
  return c;
}

RouterConfig switch_transformer(int64_t num_experts, const CapacityConfig& capacity) {
  RouterConfig c;
  c.name = "switch_transformer";
  c.num_experts = num_experts, c.top_k = 1;
  c.capacity = capacity;
  c.jitter_epsilon = 0.01;
  c.aux_loss = {true, 0.001};
  c.aux_loss_form = LoadBalanceForm::hf_switch;
  c.z_loss = {true, 0.001};
  return c;
}

RouterConfig deepseek_v3(int64_t num_experts, int64_t k, int64_t n_group, int64_t topk_group,
                         double routed_scaling_factor, bool norm_topk_prob, double seq_aux_loss_coef) {
  RouterConfig c;
  c.name = "deepseek_v3";
  c.num_experts = num_experts, c.top_k = k;
  c.score_function = ScoreFunction::sigmoid;
  c.selection = SelectionKind::group_limited_topk;
  c.n_group = n_group, c.topk_group = topk_group;
  c.selection_bias = true;
  c.weights = {norm_topk_prob, norm_topk_prob ? 1e-20 : 0.0, routed_scaling_factor};
  c.seq_aux_loss = {seq_aux_loss_coef > 0.0, seq_aux_loss_coef};
  return c;
}

RouterConfig deepseek_v2(int64_t num_experts, int64_t k, int64_t n_group, int64_t topk_group,
                         double routed_scaling_factor) {
  RouterConfig c;
  c.name = "deepseek_v2";
  c.num_experts = num_experts, c.top_k = k;
  if (n_group > 1) {  // group_limited_greedy; greedy otherwise
    c.selection = SelectionKind::group_limited_topk;
    c.n_group = n_group, c.topk_group = topk_group;
    c.group_score_experts = 1;  // the group's max score
  }
  c.weights.scaling_factor = routed_scaling_factor;
  return c;
}

RouterConfig qwen2_moe(int64_t num_experts, int64_t k, bool norm_topk_prob) {
  RouterConfig c = mixtral(num_experts, k);
  c.name = "qwen2_moe";
  c.weights.renormalize = norm_topk_prob;
  return c;
}

RouterConfig llama4(int64_t num_experts, int64_t k) {
  RouterConfig c;
  c.name = "llama4";
  c.num_experts = num_experts, c.top_k = k;
  c.score_function = ScoreFunction::sigmoid;
  c.select_on_logits = true;  // HF's top-k of the logits: f32 sigmoids of large logits tie at 1
  c.weight_on_expert_input = true;
  return c;
}

RouterConfig gpt_oss(int64_t num_experts, int64_t k) {
  RouterConfig c = mixtral(num_experts, k);
  c.name = "gpt_oss";
  c.gate_bias = true;
  c.select_on_logits = true;  // HF's topk(router_logits): a softmax underflows to tied zeros far below the top
  c.aux_loss.coefficient = 0.9;
  return c;
}

RouterConfig gshard(int64_t num_experts, double capacity_factor) {
  RouterConfig c;
  c.name = "gshard";
  c.num_experts = num_experts, c.top_k = 2;
  c.weights.renormalize = true;
  c.capacity = CapacityConfig::factor(capacity_factor, DropPolicy::position);
  c.aux_loss = {true, 0.01};
  c.aux_loss_first_choice_only = true;
  return c;
}

RouterConfig noisy_topk(int64_t num_experts, int64_t k) {
  RouterConfig c;
  c.name = "noisy_topk";
  c.num_experts = num_experts, c.top_k = k;
  c.noisy_gating = true;
  c.weights.renormalize = true;
  c.importance_loss = {true, 0.01};
  c.load_loss = {true, 0.01};
  return c;
}

RouterConfig expert_choice(int64_t num_experts, double capacity_factor) {
  RouterConfig c;
  c.name = "expert_choice";
  c.num_experts = num_experts;
  c.selection = SelectionKind::expert_choice;
  c.expert_choice_capacity_factor = capacity_factor;
  return c;
}

RouterConfig top_p(int64_t num_experts, double p, int64_t max_k) {
  // p = 0 would switch top-p off and leave a dense top-E router.
  TINYMOE_CHECK(p > 0.0 && p <= 1.0 && max_k >= 0, kConfig, "top_p expects 0 < p <= 1 and max_k >= 0 (0: E), got p = ",
                p, " and max_k = ", max_k);
  RouterConfig c;
  c.name = "top_p";
  c.num_experts = num_experts, c.top_k = max_k > 0 ? max_k : num_experts;
  c.top_p = p;
  c.aux_loss = {true, 0.01};
  c.entropy_loss = {true, 1e-4};
  return c;
}

RouterConfig sinkhorn(int64_t num_experts, int64_t k) {
  RouterConfig c;
  c.name = "sinkhorn";
  c.num_experts = num_experts, c.top_k = k;
  c.score_function = k == 1 ? ScoreFunction::sigmoid : ScoreFunction::softmax;
  c.selection = SelectionKind::sinkhorn_topk;
  return c;
}

RouterConfig remoe(int64_t num_experts, int64_t k) {
  RouterConfig c;
  c.name = "remoe";
  c.num_experts = num_experts, c.top_k = num_experts;
  c.score_function = ScoreFunction::relu;
  c.selection = SelectionKind::positive;
  c.relu_target_k = k;
  c.l1_loss = {true, 1e-8};  // lambda_0 of the paper (and of its code's default)
  return c;
}

std::shared_ptr<RouterState> make_router_state(const RouterConfig& config) {
  auto state = std::make_shared<RouterState>();
  if (config.selection_bias) state->selection_bias = zeros({config.num_experts}, DType::f32);
  if (config.l1_loss.enabled) state->l1_coefficient = full({1}, config.l1_loss.coefficient, DType::f64);
  return state;
}

RoutingRule make_rule(const RouterConfig& config, std::shared_ptr<const RouterState> state) {
  config.validate();
  if (config.selection_bias) {
    TINYMOE_CHECK(state && state->selection_bias.defined(), "make_rule", "the rule '", config.name,
                  "' selects with a bias: pass a RouterState holding it (make_router_state)");
    TINYMOE_CHECK(state->selection_bias.shape() == Shape{config.num_experts}, "make_rule",
                  "expected a selection bias of shape [", config.num_experts, "], got ",
                  shape_str(state->selection_bias.shape()));
  }
  if (state && state->l1_coefficient.defined())
    TINYMOE_CHECK(state->l1_coefficient.numel() == 1 && is_floating(state->l1_coefficient.dtype()), "make_rule",
                  "expected the l1 coefficient as one floating value, got ", dtype_name(state->l1_coefficient.dtype()),
                  " ", shape_str(state->l1_coefficient.shape()));
  return [config, state](const Tensor& logits, const RoutingContext& context) {
    Routing routing = route(config, state.get(), logits, context);
    routing.weight_on_expert_input = config.weight_on_expert_input;
    return routing;
  };
}

}  // namespace tinymoe::nn
