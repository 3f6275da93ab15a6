// Every router preset (nn/router_presets.h) run as the gate of a SparseMoEBlock: the block output
// against a slow per-token reference that routes each token with plain loops following the
// preset's formula (docs/routing.md) and runs the experts with plain loops (tests/moe_reference.h),
// dropless and with capacity, in eval and in training (Switch jitter, noisy top-k noise from a
// seeded generator); an f64 gradcheck of the whole block (x and every parameter) per preset;
// DeepSeek-V3's bias balancing through the block; the diagnostics of each forward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "moe_reference.h"
#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using namespace tinymoe::testing;

namespace {

// ---- The preset's routing, one token at a time. ----

// Indices of the n largest values, best first, ties to the lower index (as the topk op).
std::vector<int64_t> top_indices(const std::vector<double>& v, int64_t n) {
  std::vector<int64_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&v](int64_t a, int64_t b) { return v[a] > v[b]; });
  order.resize(n);
  return order;
}

std::vector<double> score_row(ScoreFunction function, const double* logits, int64_t experts) {
  std::vector<double> scores(logits, logits + experts);
  if (function == ScoreFunction::relu) {
    for (double& s : scores) s = std::max(s, 0.0);
    return scores;
  }
  if (function == ScoreFunction::sigmoid) {
    for (double& s : scores) s = 1.0 / (1.0 + std::exp(-s));
    return scores;
  }
  double top = *std::max_element(scores.begin(), scores.end()), total = 0.0;
  for (double& s : scores) total += (s = std::exp(s - top));
  for (double& s : scores) s /= total;
  return scores;
}

// DeepSeek group-limited keys: c = s + b; groups of E / n_group scored by the sum of their
// group_score_experts largest c (V3: 2, V2: 1); experts outside the topk_group best groups get
// masked_group_score.
void mask_groups(const RouterConfig& c, std::vector<double>& keys) {
  const int64_t group_size = c.num_experts / c.n_group;
  std::vector<double> group_score(c.n_group);
  for (int64_t g = 0; g < c.n_group; ++g) {
    std::vector<double> members(keys.begin() + g * group_size, keys.begin() + (g + 1) * group_size);
    // DeepSeek-V3 sums a group's best 2, DeepSeek-V2 takes its best 1 (the max).
    for (int64_t best : top_indices(members, c.group_score_experts)) group_score[g] += members[best];
  }
  std::vector<int64_t> kept = top_indices(group_score, c.topk_group);
  for (int64_t e = 0; e < c.num_experts; ++e)
    if (std::find(kept.begin(), kept.end(), e / group_size) == kept.end()) keys[e] = c.masked_group_score;
}

struct TokenChoice {
  std::vector<int64_t> experts;  // k, best first
  std::vector<double> weights;
};

// `keys`: what the selection ranks when it is not the scores (Sinkhorn's plan in training).
TokenChoice choose_for_token(const RouterConfig& c, const std::vector<double>& scores, const std::vector<double>& bias,
                             const std::vector<double>& selection_keys = {}) {
  std::vector<double> keys = selection_keys.empty() ? scores : selection_keys;
  for (size_t e = 0; e < bias.size(); ++e) keys[e] += bias[e];
  if (c.selection == SelectionKind::group_limited_topk) mask_groups(c, keys);
  TokenChoice choice;
  choice.experts = top_indices(keys, c.top_k);
  if (c.top_p > 0.0) {  // Huang et al. 2024: the fewest best experts whose probabilities reach p
    double reached = 0.0;
    size_t keep = 0;
    while (keep < choice.experts.size() && (keep == 0 || reached < c.top_p)) reached += scores[choice.experts[keep++]];
    choice.experts.resize(keep);
  }
  if (c.selection == SelectionKind::positive)  // ReMoE: every expert of positive relu score
    choice.experts.erase(std::remove_if(choice.experts.begin(), choice.experts.end(), [&](int64_t e) { return scores[e] <= 0.0; }),
                         choice.experts.end());
  double total = 0.0;
  for (int64_t e : choice.experts) total += scores[e];
  for (int64_t e : choice.experts) {
    double w = c.weights.renormalize ? scores[e] / (total + c.weights.epsilon) : scores[e];
    choice.weights.push_back(w * c.weights.scaling_factor);
  }
  return choice;
}

// Megatron-core's moe_utils.sinkhorn, literally: cost = exp(logits) (no shift), d1 = 1, then
// d0 = (1/T) / (cost d1 + eps), d1 = (1/E) / (cost^T d0 + eps) until mean |d1 - d1_old| <= 1e-4;
// the plan d0_t cost_te d1_e, per token.
std::vector<std::vector<double>> sinkhorn_reference(const std::vector<double>& logits, int64_t tokens, int64_t experts) {
  const double eps = 1e-8;
  std::vector<double> d0(tokens, 1.0), d1(experts, 1.0);
  for (double error = 1e9; error > 1e-4;) {
    for (int64_t t = 0; t < tokens; ++t) {
      double row = 0.0;
      for (int64_t e = 0; e < experts; ++e) row += d1[e] * std::exp(logits[t * experts + e]);
      d0[t] = 1.0 / tokens / (row + eps);
    }
    error = 0.0;
    for (int64_t e = 0; e < experts; ++e) {
      double column = 0.0;
      for (int64_t t = 0; t < tokens; ++t) column += d0[t] * std::exp(logits[t * experts + e]);
      double updated = 1.0 / experts / (column + eps);
      error += std::abs(updated - d1[e]) / experts;
      d1[e] = updated;
    }
  }
  std::vector<std::vector<double>> plan(tokens, std::vector<double>(experts));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < experts; ++e) plan[t][e] = d0[t] * std::exp(logits[t * experts + e]) * d1[e];
  return plan;
}

// Capacity with GShard's position priority: in each counting group, all first choices in token
// order, then all second choices, ...; an expert keeps its first C candidates.
std::vector<ReferencePair> keep_within_capacity(const RouterConfig& c, const std::vector<TokenChoice>& choices,
                                                int64_t sequence_length, int64_t* dropped) {
  const int64_t tokens = static_cast<int64_t>(choices.size());
  const int64_t group = c.capacity.per_sequence ? sequence_length : tokens;
  const int64_t capacity =
      c.capacity.expert_capacity > 0
          ? c.capacity.expert_capacity
          : static_cast<int64_t>(std::ceil(double(group * c.top_k) / double(c.num_experts) * c.capacity.capacity_factor));
  std::vector<ReferencePair> kept;
  for (int64_t first = 0; first < tokens; first += group) {
    std::vector<int64_t> taken(c.num_experts, 0);
    for (int64_t slot = 0; slot < c.top_k; ++slot)
      for (int64_t t = first; t < first + group; ++t) {
        int64_t e = choices[t].experts[slot];
        if (taken[e]++ < capacity)
          kept.push_back({t, e, choices[t].weights[slot]});
        else
          ++*dropped;
      }
  }
  return kept;
}

// Expert choice (Zhou et al. 2022): expert e takes its ceil(T * cf / E) best tokens, weight = score.
std::vector<ReferencePair> expert_choice_pairs(const RouterConfig& c, const std::vector<std::vector<double>>& scores) {
  const int64_t tokens = static_cast<int64_t>(scores.size());
  const int64_t capacity =
      std::min<int64_t>(tokens, static_cast<int64_t>(std::ceil(tokens * c.expert_choice_capacity_factor / c.num_experts)));
  std::vector<ReferencePair> pairs;
  for (int64_t e = 0; e < c.num_experts; ++e) {
    std::vector<double> column(tokens);
    for (int64_t t = 0; t < tokens; ++t) column[t] = scores[t][e];
    for (int64_t t : top_indices(column, capacity)) pairs.push_back({t, e, column[t]});
  }
  return pairs;
}

// What the router adds in training, drawn as the Router draws it from a generator of `seed`:
// Switch's jitter U(1-eps, 1+eps) on its copy of x, then noisy top-k's N(0, 1) [T, E].
struct TrainingDraws {
  std::vector<double> jitter, noise;
};

TrainingDraws training_draws(const RouterConfig& c, int64_t tokens, int64_t d, uint64_t seed) {
  Generator generator(seed);
  TrainingDraws draws;
  if (c.jitter_epsilon > 0.0)
    draws.jitter = values(rand({tokens, d}, DType::f64, &generator, 1.0 - c.jitter_epsilon, 1.0 + c.jitter_epsilon));
  if (c.noisy_gating) draws.noise = values(randn({tokens, c.num_experts}, DType::f64, &generator));
  return draws;
}

std::vector<double> router_logits(const ReferenceWeights& w, const std::vector<double>& xs, const TrainingDraws& draws,
                                  const std::vector<double>& noise_weight) {
  std::vector<double> router_x = xs;
  for (size_t i = 0; i < draws.jitter.size(); ++i) router_x[i] *= draws.jitter[i];
  std::vector<double> logits = reference_logits(w, router_x);
  if (draws.noise.empty()) return logits;
  // Shazeer et al. 2017 eq. 4: H = logits + N(0, 1) softplus(x W_noise).
  ReferenceWeights noise = w;
  noise.gate = noise_weight;
  noise.gate_bias.clear();
  std::vector<double> noise_logits = reference_logits(noise, router_x);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] += draws.noise[i] * std::log1p(std::exp(noise_logits[i]));
  return logits;
}

struct ReferenceRouting {
  std::vector<ReferencePair> pairs;
  int64_t dropped = 0;
};

// The block's router, slowly. seed: the routing generator's seed (training only).
ReferenceRouting reference_routing(const SparseMoEBlock& block, const Tensor& x, uint64_t seed) {
  const Router& router = *block.gate();
  const RouterConfig& c = router.config();
  ReferenceWeights w = reference_weights(block);
  std::vector<double> xs = values(x);
  const int64_t tokens = x.numel() / w.d;
  TrainingDraws draws = router.is_training() ? training_draws(c, tokens, w.d, seed) : TrainingDraws();
  std::vector<double> noise_weight = c.noisy_gating ? values(router.noise_weight()) : std::vector<double>();
  std::vector<double> logits = router_logits(w, xs, draws, noise_weight);
  std::vector<double> bias = c.selection_bias ? values(router.e_score_correction_bias()) : std::vector<double>();
  std::vector<std::vector<double>> scores;
  for (int64_t t = 0; t < tokens; ++t) scores.push_back(score_row(c.score_function, &logits[t * w.experts], w.experts));

  ReferenceRouting routing;
  if (c.selection == SelectionKind::expert_choice) {
    routing.pairs = expert_choice_pairs(c, scores);
    return routing;
  }
  std::vector<std::vector<double>> plan;
  if (c.selection == SelectionKind::sinkhorn_topk && router.is_training())
    plan = sinkhorn_reference(logits, tokens, w.experts);
  std::vector<TokenChoice> choices;
  for (int64_t t = 0; t < tokens; ++t)
    choices.push_back(choose_for_token(c, scores[t], bias, plan.empty() ? std::vector<double>() : plan[t]));
  if (c.capacity.enabled()) {
    routing.pairs = keep_within_capacity(c, choices, x.size(-2), &routing.dropped);
    return routing;
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (size_t j = 0; j < choices[t].experts.size(); ++j)
      routing.pairs.push_back({t, choices[t].experts[j], choices[t].weights[j]});
  return routing;
}

// ---- The presets in a block. ----

struct PresetCase {
  std::string name;
  RouterConfig router;
  ExpertKind experts = ExpertKind::swiglu;
  SharedExpertKind shared = SharedExpertKind::none;
  bool training = false;
  bool drops = false;  // capacity drops pairs at this case's sizes
};

RouterConfig without_capacity(RouterConfig config) {
  config.capacity = CapacityConfig();
  return config;
}

// ReLU routing with a cap: each token keeps at most its 2 best positive experts.
RouterConfig remoe_at_most_two() {
  RouterConfig config = remoe(4, 1);
  config.top_k = 2;
  return config;
}

// Every preset, with capacity where it has one and dropless; training where it adds randomness.
std::vector<PresetCase> preset_cases() {
  RouterConfig deepseek_ungrouped = deepseek_v3(8, 3, 2, 1, 1.0, false);
  return {
      {"mixtral", mixtral(4, 2)},
      {"switch capacity factor", switch_transformer(4, CapacityConfig::factor(1.0)), ExpertKind::relu,
       SharedExpertKind::none, false, true},
      {"switch per-sequence expert_capacity", switch_transformer(4, CapacityConfig::per_sequence_count(2)),
       ExpertKind::relu, SharedExpertKind::none, false, true},
      {"switch dropless", without_capacity(switch_transformer(4, CapacityConfig::factor(1.0))), ExpertKind::relu},
      {"switch training (jitter)", switch_transformer(4, CapacityConfig::per_sequence_count(3)), ExpertKind::relu,
       SharedExpertKind::none, true, true},
      {"deepseek_v3 groups, bias, shared", deepseek_v3(8, 2, 4, 2), ExpertKind::swiglu, SharedExpertKind::ungated},
      {"deepseek_v3 one group of two, unnormalised", deepseek_ungrouped, ExpertKind::swiglu, SharedExpertKind::ungated},
      {"qwen2_moe gated shared", qwen2_moe(4, 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated},
      {"qwen2_moe normalised", qwen2_moe(4, 2, true), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated},
      {"gshard capacity", gshard(4, 1.0), ExpertKind::gelu, SharedExpertKind::none, false, true},
      {"gshard dropless", without_capacity(gshard(4, 1.0)), ExpertKind::gelu},
      {"noisy_topk eval", noisy_topk(4, 2)},
      {"noisy_topk training", noisy_topk(4, 2), ExpertKind::swiglu, SharedExpertKind::none, true},
      {"expert_choice", expert_choice(4, 2.0), ExpertKind::relu},
      {"sinkhorn top-1 eval", sinkhorn(4, 1), ExpertKind::relu},
      {"top_p 0.6 of up to 3", top_p(4, 0.6, 3)},
      {"top_p 0.9 of all", top_p(4, 0.9), ExpertKind::gelu},
      {"sinkhorn top-1 training", sinkhorn(4, 1), ExpertKind::relu, SharedExpertKind::none, true},
      {"sinkhorn top-2 training", sinkhorn(4, 2), ExpertKind::swiglu, SharedExpertKind::none, true},
      {"llama4 top-1, weight on the expert input, shared", llama4(4, 1), ExpertKind::swiglu, SharedExpertKind::ungated},
      {"deepseek_v2 groups by max, scaled, shared", deepseek_v2(8, 3, 4, 2, 2.0), ExpertKind::swiglu,
       SharedExpertKind::ungated},
      {"deepseek_v2 greedy", deepseek_v2(4, 2), ExpertKind::swiglu},
      {"gpt_oss (router bias)", gpt_oss(4, 2), ExpertKind::swiglu},
      {"llama4 top-2, gelu experts", llama4(4, 2), ExpertKind::gelu},
      {"remoe (relu routing), shared", remoe(4, 2), ExpertKind::swiglu, SharedExpertKind::ungated},
      {"remoe at most 2 of 4, gelu experts", remoe_at_most_two(), ExpertKind::gelu},
  };
}

SparseMoEConfig block_config(const PresetCase& c, int64_t d, int64_t f) {
  SparseMoEConfig config;
  config.num_experts = c.router.num_experts;
  config.hidden_size = d;
  config.intermediate_size = f;
  config.expert_kind = c.experts;
  config.shared = {c.shared, c.shared == SharedExpertKind::ungated ? 2 : 1, 3};
  config.router = c.router;
  config.dtype = DType::f64;
  return config;
}

// Gives the router's state that starts at zero something to do: a selection bias (DeepSeek-V3)
// and a noise weight (noisy top-k), drawn from generator.
void perturb_router_state(Router& router, Generator& generator) {
  NoGradGuard no_grad;
  if (router.config().selection_bias) {
    std::vector<double> bias = values(randn({router.num_experts()}, DType::f64, &generator));
    float* data = router.e_score_correction_bias().data<float>();
    for (int64_t e = 0; e < router.num_experts(); ++e) data[e] = static_cast<float>(0.1 * bias[e]);
  }
  if (router.config().noisy_gating) {
    Tensor noise = randn(router.noise_weight().shape(), router.dtype(), &generator);
    std::copy(noise.data<double>(), noise.data<double>() + noise.numel(), router.noise_weight().data<double>());
  }
}

void set_mode(SparseMoEBlock& block, bool training, Generator* routing_generator) {
  block.train(training);
  block.set_routing_generator(routing_generator);
}

std::vector<double> to_doubles(const std::vector<int64_t>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

TEST_CASE("moe_presets: every preset in the block matches the per-token reference", "[moe_presets]") {
  int64_t seed = 500;
  for (const PresetCase& c : preset_cases()) {
    INFO(c.name);
    Generator generator(++seed);
    SparseMoEBlock block(block_config(c, 6, 5), &generator);
    perturb_router_state(*block.gate(), generator);
    for (const Shape& shape : {Shape{16, 6}, Shape{2, 8, 6}}) {
      INFO("x " << shape_str(shape));
      Tensor x = randn(shape, DType::f64, &generator);
      Generator routing_generator(seed * 7);
      set_mode(block, c.training, &routing_generator);
      MoEOutput out = block.forward(x);
      ReferenceRouting expected = reference_routing(block, x, seed * 7);
      REQUIRE(out.output.shape() == shape);
      const bool on_input = c.router.weight_on_expert_input;
      CHECK(out.routing.weight_on_expert_input == on_input);
      check_close(values(out.output), reference_combine(reference_weights(block), values(x), expected.pairs, on_input),
                  1e-12);
      CHECK(out.routing.dropped_pairs == expected.dropped);
      CHECK(out.routing.pair_token.numel() == static_cast<int64_t>(expected.pairs.size()));
      if (c.drops) CHECK(expected.dropped > 0);
      CHECK(out.diagnostics.tokens_per_expert == out.tokens_per_expert.to_vector<int64_t>());
    }
  }
}

TEST_CASE("moe_presets: Llama 4 weighs the expert input, which is not weighing its output", "[moe_presets]") {
  Generator generator(404);
  SparseMoEBlock block(block_config({"llama4", llama4(4, 1)}, 6, 5), &generator);
  Tensor x = randn({16, 6}, DType::f64, &generator);
  MoEOutput out = block.forward(x);
  std::vector<ReferencePair> pairs;
  std::vector<int64_t> token = out.routing.pair_token.to_vector<int64_t>(), expert = out.routing.pair_expert.to_vector<int64_t>();
  std::vector<double> weight = values(out.routing.pair_weight);
  for (size_t i = 0; i < token.size(); ++i) pairs.push_back({token[i], expert[i], weight[i]});
  const ReferenceWeights w = reference_weights(block);
  check_close(values(out.output), reference_combine(w, values(x), pairs, true), 1e-12);
  // A SwiGLU expert is not homogeneous: expert(s x) != s expert(x).
  std::vector<double> on_output = reference_combine(w, values(x), pairs, false), got = values(out.output);
  double largest_gap = 0.0;
  for (size_t i = 0; i < got.size(); ++i) largest_gap = std::max(largest_gap, std::abs(got[i] - on_output[i]));
  CHECK(largest_gap > 1e-2);
  // Weights are sigmoid(logit) of the chosen expert, in (0, 1), not renormalised.
  for (double value : weight) CHECK((value > 0.0 && value < 1.0));
}

TEST_CASE("moe_presets: training noise and jitter come from the routing generator, eval has none", "[moe_presets]") {
  for (const RouterConfig& router : {noisy_topk(4, 2), switch_transformer(4, CapacityConfig::factor(2.0))}) {
    INFO(router.name);
    Generator generator(71);
    SparseMoEBlock block(block_config({router.name, router}, 6, 5), &generator);
    perturb_router_state(*block.gate(), generator);
    Tensor x = randn({12, 6}, DType::f64, &generator);
    Generator first(3), second(3), other(4);
    set_mode(block, true, &first);
    std::vector<double> a = values(block.forward(x).output);
    set_mode(block, true, &second);
    CHECK(values(block.forward(x).output) == a);  // same seed, same draws
    set_mode(block, true, &other);
    CHECK(values(block.forward(x).output) != a);
  }
}

namespace {

// A block assembled from `params` in named_parameters() order (gate.weight, [gate.noise_weight],
// [gate.bias], experts, shared expert, its gate), so autograd reaches the very tensors gradcheck
// perturbs; the selection bias is copied from `bias` (a buffer, not an input).
SparseMoEBlock block_from(const SparseMoEConfig& config, const TensorList& params, const Tensor& bias) {
  MoEParts parts;
  size_t next = 1;
  Tensor noise_weight = config.router.noisy_gating ? params[next++] : Tensor();
  Tensor gate_bias = config.router.gate_bias ? params[next++] : Tensor();
  parts.gate = std::make_shared<Router>(config.router, params[0], noise_weight, gate_bias);
  if (bias.defined()) parts.gate->load_state_dict({{"e_score_correction_bias", bias}}, /*strict=*/false);
  add_expert_parts(parts, config, params, next);
  return SparseMoEBlock(parts);
}

// gradcheck of the block output w.r.t. x and every parameter; in training, each evaluation draws
// the same jitter / noise from a fresh generator of one seed.
GradcheckResult gradcheck_preset(const PresetCase& c, const Shape& x_shape, uint64_t seed) {
  SparseMoEConfig config = block_config(c, 4, 3);
  Generator generator(seed);
  SparseMoEBlock block(config, &generator);
  perturb_router_state(*block.gate(), generator);
  Tensor bias = config.router.selection_bias ? block.gate()->e_score_correction_bias().clone() : Tensor();
  TensorList inputs = {randn(x_shape, DType::f64, &generator).requires_grad_()};
  for (const Tensor& parameter : block.parameters()) inputs.push_back(parameter);
  return gradcheck(
      [&](const TensorList& in) {
        SparseMoEBlock copy = block_from(config, TensorList(in.begin() + 1, in.end()), bias);
        REQUIRE(copy.parameters().size() == in.size() - 1);  // every parameter is checked
        Generator routing_generator(seed + 1);
        set_mode(copy, c.training, &routing_generator);
        return copy.forward(in[0]).output;
      },
      inputs);
}

}  // namespace

TEST_CASE("moe_presets: gradcheck of the whole block for every preset", "[moe_presets][gradcheck]") {
  uint64_t seed = 40;
  for (const PresetCase& c : preset_cases()) {
    INFO(c.name);
    GradcheckResult result = gradcheck_preset(c, {2, 4, 4}, ++seed);
    INFO(result.report);
    CHECK(result.passed());
  }
}

TEST_CASE("moe_presets: DeepSeek-V3 bias updates move the selection and balance a skewed router", "[moe_presets]") {
  PresetCase c{"deepseek_v3", deepseek_v3(8, 2, 4, 2, 1.0)};
  Generator generator(808);
  SparseMoEBlock block(block_config(c, 6, 5), &generator);
  block.eval();
  // Skew: a constant feature that only experts 0 and 1 (group 0) read, strongly.
  Tensor x = randn({64, 6}, DType::f64, &generator);
  for (int64_t t = 0; t < 64; ++t) x.data<double>()[t * 6] = 3.0;
  {
    NoGradGuard no_grad;
    double* w = block.gate()->weight().data<double>();
    for (int64_t e = 0; e < 8; ++e) w[e * 6] = e < 2 ? 1.5 : 0.0;
  }
  std::vector<double> gate_before = values(block.gate()->weight());
  MoEOutput first = block.forward(x);
  CHECK(first.diagnostics.collapsed);
  MoEOutput out = first;
  bool selection_moved = false;
  for (int step = 0; step < 60; ++step) {
    block.update_bias(out, 0.02);
    out = block.forward(x);
    selection_moved = selection_moved ||
                      out.routing.expert_index.to_vector<int64_t>() != first.routing.expert_index.to_vector<int64_t>();
  }
  CHECK(selection_moved);
  CHECK_FALSE(out.diagnostics.collapsed);
  CHECK(out.diagnostics.coefficient_of_variation < 0.5 * first.diagnostics.coefficient_of_variation);
  CHECK(out.diagnostics.max_load < first.diagnostics.max_load);
  std::vector<double> bias = values(block.gate()->e_score_correction_bias());
  CHECK(bias[0] < 0.0);
  CHECK(bias[1] < 0.0);
  CHECK(out.diagnostics.selection_bias == bias);
  // Outside the gradient: the bias is a buffer, the weights did not move, no gradient appeared.
  CHECK(values(block.gate()->weight()) == gate_before);
  CHECK_FALSE(block.gate()->weight().grad().defined());
  CHECK_FALSE(block.gate()->e_score_correction_bias().requires_grad());
}

TEST_CASE("moe_presets: the diagnostics of each forward", "[moe_presets]") {
  Generator generator(12);
  SparseMoEBlock switch_block(block_config({"switch", switch_transformer(4, CapacityConfig::factor(1.0))}, 6, 5),
                              &generator);
  switch_block.eval();
  Tensor x = randn({16, 6}, DType::f64, &generator);
  MoEOutput out = switch_block.forward(x);
  const RoutingDiagnostics& d = out.diagnostics;
  std::vector<int64_t> load = out.tokens_per_expert.to_vector<int64_t>();
  CHECK(d.tokens_per_expert == load);
  CHECK(d.max_load == *std::max_element(load.begin(), load.end()));
  CHECK(d.mean_load == Approx(std::accumulate(load.begin(), load.end(), 0.0) / 4.0));
  CHECK(d.dropped_fraction == Approx(out.routing.dropped_pairs / 16.0));
  CHECK(d.dropped_fraction > 0.0);
  CHECK(d.dead_experts == std::count(load.begin(), load.end(), 0));
  CHECK(d.router_entropy > 0.0);
  CHECK(d.router_entropy <= std::log(4.0) + 1e-12);
  CHECK(d.selection_bias.empty());
  CHECK(d.str().find("dropped") != std::string::npos);

  SparseMoEBlock deepseek_block(block_config({"deepseek", deepseek_v3(8, 2, 4, 2)}, 6, 5), &generator);
  perturb_router_state(*deepseek_block.gate(), generator);
  MoEOutput deepseek_out = deepseek_block.forward(x);
  CHECK(deepseek_out.diagnostics.selection_bias == values(deepseek_block.gate()->e_score_correction_bias()));
  CHECK(deepseek_out.diagnostics.dropped_fraction == 0.0);
  CHECK(to_doubles(deepseek_out.diagnostics.tokens_per_expert) == values(deepseek_out.tokens_per_expert));
}

TEST_CASE("moe_presets: the router's names in the block, and what needs a bias", "[moe_presets]") {
  SparseMoEBlock deepseek_block(block_config({"deepseek", deepseek_v3(8, 2, 4, 2)}, 6, 5));
  StateDict state = deepseek_block.state_dict();
  CHECK(state.count("gate.weight") == 1);
  CHECK(state.at("gate.e_score_correction_bias").shape() == Shape{8});
  CHECK(deepseek_block.named_buffers().at(0).first == "gate.e_score_correction_bias");
  SparseMoEBlock noisy_block(block_config({"noisy", noisy_topk(4, 2)}, 6, 5));
  CHECK(noisy_block.named_parameters().at(1).first == "gate.noise_weight");
  CHECK(noisy_block.named_buffers().empty());
  MoEOutput noisy_out = noisy_block.forward(zeros({3, 6}, DType::f64));
  CHECK_THROWS_WITH(noisy_block.update_bias(noisy_out, 0.1), Catch::Contains("Router::update_bias") &&
                                                                 Catch::Contains("no selection bias"));
  MoEOutput deepseek_out = deepseek_block.forward(zeros({3, 6}, DType::f64));
  CHECK_THROWS_WITH(deepseek_block.update_bias(deepseek_out, -1.0), Catch::Contains("Router::update_bias"));
}

TEST_CASE("moe_presets: routers from tensors and rules check their arguments, naming Router", "[moe_presets][errors]") {
  auto router_error = [](const std::function<void()>& make, const char* text) {
    CHECK_THROWS_WITH(make(), Catch::Contains("Router") && Catch::Contains(text));
  };
  Tensor weight = zeros({4, 6}, DType::f64);
  router_error([&] { Router(mixtral(4, 2), zeros({3, 6}, DType::f64)); }, "[4, d]");
  router_error([&] { Router(mixtral(4, 2), zeros({4, 6}, DType::i64)); }, "weight");
  router_error([&] { Router(noisy_topk(4, 2), weight); }, "needs a noise_weight");
  router_error([&] { Router(mixtral(4, 2), weight, zeros({4, 6}, DType::f64)); }, "no noise_weight");
  router_error([&] { Router(noisy_topk(4, 2), weight, zeros({4, 5}, DType::f64)); }, "noise_weight of shape [4, 6]");
  router_error([&] { Router(RoutingRule(), weight); }, "empty RoutingRule");
  router_error([&] { Router(make_rule(mixtral(4, 2)), zeros({6}, DType::f64)); }, "weight");
  router_error([&] { Router(make_rule(mixtral(4, 2)), 4, 0); }, "hidden_size >= 1");
  router_error([&] { Router(make_rule(mixtral(4, 2)), 4, 6, nullptr, DType::i64); }, "floating dtype");
  Router from_rule(make_rule(mixtral(4, 2)), weight);
  CHECK(from_rule.config().name == "custom");
  CHECK(from_rule.num_experts() == 4);
  CHECK(from_rule.hidden_size() == 6);
  CHECK(from_rule.weight().raw_data() == weight.raw_data());  // kept by handle
  CHECK_FALSE(from_rule.e_score_correction_bias().defined());
}
