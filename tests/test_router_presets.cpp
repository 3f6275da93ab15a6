// Router presets and the Router module: every preset's selection, pairs and weights against a slow
// per-token loop written here from the published formulas; losses by formula; gradchecks of every
// preset; a tie reported as selection_unstable; the Router's names, jitter, noise and bias
// update; the HuggingFace fixtures of tests/data/hf (router logits, losses, choices); bad configs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <vector>

#include "nn/diagnostics.h"
#include "nn/router.h"
#include "nn/safetensors.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

// ---- The slow reference: one token at a time, straight from the formulas. ----

struct Reference {
  std::vector<int64_t> selection;  // [T, k] (token choice) or [E, C] (expert choice)
  std::vector<int64_t> token, expert;
  std::vector<double> weight;
  int64_t dropped = 0;
};

// Indices of v from largest to smallest value, equal values in index order.
std::vector<int64_t> ranked(const std::vector<double>& v) {
  std::vector<int64_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  return order;
}

std::vector<double> scores_of(const std::vector<double>& logits, int64_t t, int64_t experts, bool sigmoid_scores) {
  std::vector<double> s(logits.begin() + t * experts, logits.begin() + (t + 1) * experts);
  double largest = *std::max_element(s.begin(), s.end()), total = 0;
  for (double& v : s) v = sigmoid_scores ? 1.0 / (1.0 + std::exp(-v)) : std::exp(v - largest), total += v;
  if (!sigmoid_scores)
    for (double& v : s) v /= total;
  return s;
}

struct TokenChoice {
  int64_t k = 2;
  bool sigmoid = false, renormalize = false, grouped = false;
  double epsilon = 0, scale = 1;
  std::vector<double> bias;
  int64_t n_group = 1, topk_group = 1;
};

// Top-k of s + b (group-limited as DeepSeek-V3 when grouped), weights from s.
std::vector<int64_t> choose(const std::vector<double>& s, const TokenChoice& rule) {
  std::vector<double> c = s;
  for (size_t e = 0; e < c.size() && !rule.bias.empty(); ++e) c[e] += rule.bias[e];
  if (rule.grouped) {
    int64_t size = static_cast<int64_t>(c.size()) / rule.n_group;
    std::vector<double> group_score(rule.n_group);
    for (int64_t g = 0; g < rule.n_group; ++g) {
      std::vector<double> members(c.begin() + g * size, c.begin() + (g + 1) * size);
      std::vector<int64_t> best = ranked(members);
      group_score[g] = members[best[0]] + members[best[1]];
    }
    std::vector<int64_t> groups = ranked(group_score);
    std::vector<double> masked(c.size(), 0.0);  // HF's masked_fill(0.0)
    for (int64_t j = 0; j < rule.topk_group; ++j)
      for (int64_t e = groups[j] * size; e < (groups[j] + 1) * size; ++e) masked[e] = c[e];
    c = masked;
  }
  std::vector<int64_t> order = ranked(c);
  return std::vector<int64_t>(order.begin(), order.begin() + rule.k);
}

Reference slow_token_choice(const std::vector<double>& logits, int64_t tokens, int64_t experts, const TokenChoice& rule) {
  Reference ref;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> s = scores_of(logits, t, experts, rule.sigmoid);
    std::vector<int64_t> chosen = choose(s, rule);
    double total = 0;
    for (int64_t e : chosen) total += s[e];
    for (int64_t e : chosen) {
      ref.selection.push_back(e);
      ref.token.push_back(t), ref.expert.push_back(e);
      ref.weight.push_back((rule.renormalize ? s[e] / (total + rule.epsilon) : s[e]) * rule.scale);
    }
  }
  return ref;
}

// Switch / HF SwitchTransformersTop1Router: argmax, the c-th token of a sequence on an expert
// kept while c <= capacity; weight = the max probability.
Reference slow_switch(const std::vector<double>& logits, int64_t tokens, int64_t experts, int64_t sequence_length,
                      int64_t capacity) {
  Reference ref;
  std::vector<int64_t> count(experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    if (t % sequence_length == 0) std::fill(count.begin(), count.end(), 0);
    std::vector<double> p = scores_of(logits, t, experts, false);
    int64_t e = ranked(p)[0];
    ref.selection.push_back(e);
    if (++count[e] > capacity) {
      ++ref.dropped;
      continue;
    }
    ref.token.push_back(t), ref.expert.push_back(e), ref.weight.push_back(p[e]);
  }
  return ref;
}

// GShard Algorithm 1 (no random dispatch): first choices in token order, then second choices.
Reference slow_gshard(const std::vector<double>& logits, int64_t tokens, int64_t experts, int64_t capacity) {
  Reference ref;
  std::vector<int64_t> count(experts, 0), kept(2 * tokens, 0);
  std::vector<double> g(2 * tokens);
  for (int64_t slot = 0; slot < 2; ++slot)
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<double> p = scores_of(logits, t, experts, false);
      std::vector<int64_t> order = ranked(p);
      int64_t e = order[slot];
      if (slot == 0) ref.selection.push_back(order[0]), ref.selection.push_back(order[1]);
      g[2 * t + slot] = p[e] / (p[order[0]] + p[order[1]]);
      if (count[e] < capacity) kept[2 * t + slot] = 1;
      else ++ref.dropped;
      ++count[e];
    }
  for (int64_t pair = 0; pair < 2 * tokens; ++pair)
    if (kept[pair]) ref.token.push_back(pair / 2), ref.expert.push_back(ref.selection[pair]), ref.weight.push_back(g[pair]);
  return ref;
}

// Expert choice: each expert's column of softmax scores, its `capacity` best tokens.
Reference slow_expert_choice(const std::vector<double>& logits, int64_t tokens, int64_t experts, int64_t capacity) {
  std::vector<std::vector<double>> p;
  for (int64_t t = 0; t < tokens; ++t) p.push_back(scores_of(logits, t, experts, false));
  Reference ref;
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<double> column;
    for (int64_t t = 0; t < tokens; ++t) column.push_back(p[t][e]);
    std::vector<int64_t> order = ranked(column);
    for (int64_t c = 0; c < capacity; ++c)
      ref.selection.push_back(order[c]), ref.token.push_back(order[c]), ref.expert.push_back(e),
          ref.weight.push_back(column[order[c]]);
  }
  return ref;
}

void check_against(const Routing& routing, const Reference& ref) {
  CHECK(routing.expert_index.to_vector<int64_t>() == ref.selection);
  CHECK(routing.pair_token.to_vector<int64_t>() == ref.token);
  CHECK(routing.pair_expert.to_vector<int64_t>() == ref.expert);
  CHECK(routing.dropped_pairs == ref.dropped);
  std::vector<double> weight = routing.pair_weight.to(DType::f64).to_vector<double>();
  REQUIRE(weight.size() == ref.weight.size());
  for (size_t p = 0; p < weight.size(); ++p) CHECK(weight[p] == Approx(ref.weight[p]).epsilon(1e-12));
}

RoutingContext eval_context(int64_t experts, int64_t sequence_length = 0) {
  RoutingContext context;
  context.num_experts = experts;
  context.sequence_length = sequence_length;
  return context;
}

Tensor random_logits(int64_t tokens, int64_t experts, uint64_t seed) {
  Generator generator(seed);
  return randn({tokens, experts}, DType::f64, &generator);
}

// What gradcheck looks at for a preset: the pair weights, then the weighted loss.
Tensor checked_outputs(const Routing& routing) {
  return concat({routing.pair_weight, routing.weighted_loss().reshape({1})}, 0);
}

}  // namespace

TEST_CASE("router_presets: Llama 4 chooses by logit where f32 sigmoids tie", "[router_presets]") {
  // Logits of a confident top-1 router: every sigmoid above ~16.6 rounds to 1.0f.
  Tensor logits = from_vector(std::vector<float>{18.72f, 21.54f, -11.9f, 13.52f, 20.25f, 9.4f, -2.93f, 24.3f}, {2, 4});
  Routing routing = make_rule(llama4(4, 1))(logits, eval_context(4));
  CHECK(routing.expert_index.to_vector<int64_t>() == std::vector<int64_t>{1, 3});  // HF: topk of the logits
  CHECK(routing.weight_on_expert_input);
  CHECK(routing.pair_weight.to_vector<float>() == std::vector<float>{1.0f, 1.0f});  // sigmoid(l), saturated
  // Top-k of those scores instead would tie, and ties go to the lower index: expert 0 both times.
  RouterConfig on_scores = llama4(4, 1);
  on_scores.select_on_logits = false;
  CHECK(make_rule(on_scores)(logits, eval_context(4)).expert_index.to_vector<int64_t>() ==
        std::vector<int64_t>{0, 0});
  RouterConfig biased = deepseek_v3(4, 1, 1, 1);
  biased.select_on_logits = true;
  CHECK_THROWS_WITH(biased.validate(), Catch::Contains("RouterConfig") && Catch::Contains("selecting on the logits"));
}

TEST_CASE("router_presets: Mixtral and Qwen2-MoE against the slow loop", "[router_presets]") {
  const int64_t tokens = 10, experts = 8;
  Tensor logits = random_logits(tokens, experts, 1);
  std::vector<double> l = logits.to_vector<double>();
  Routing mixtral_routing = make_rule(mixtral(experts, 2))(logits, eval_context(experts));
  TokenChoice rule;
  rule.renormalize = true;
  check_against(mixtral_routing, slow_token_choice(l, tokens, experts, rule));
  CHECK(mixtral_routing.routed_pairs == 20);
  // aux_loss in the HF Mixtral form: E * sum_e (count_e / T) * P_e.
  std::vector<double> count(experts, 0), mean_p(experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> p = scores_of(l, t, experts, false);
    for (int64_t e = 0; e < experts; ++e) mean_p[e] += p[e] / tokens;
    for (int64_t e : choose(p, rule)) count[e] += 1;
  }
  double aux = 0;
  for (int64_t e = 0; e < experts; ++e) aux += experts * count[e] / tokens * mean_p[e];
  CHECK(mixtral_routing.losses.at("aux_loss").item() == Approx(aux));
  CHECK(mixtral_routing.loss_coefficients.at("aux_loss") == 0.001);
  CHECK(mixtral_routing.weighted_loss().item() == Approx(0.001 * aux));

  rule.k = 3;
  check_against(make_rule(qwen2_moe(experts, 3, true))(logits, eval_context(experts)),
                slow_token_choice(l, tokens, experts, rule));
  rule.renormalize = false;
  check_against(make_rule(qwen2_moe(experts, 3))(logits, eval_context(experts)),
                slow_token_choice(l, tokens, experts, rule));
}

TEST_CASE("router_presets: DeepSeek-V3 against the slow loop", "[router_presets]") {
  const int64_t tokens = 16, experts = 8;
  Tensor logits = random_logits(tokens, experts, 2);
  Generator generator(3);
  RouterConfig config = deepseek_v3(experts, 2, 4, 2, 2.5);
  auto state = make_router_state(config);
  state->selection_bias = mul(randn({experts}, DType::f32, &generator), 0.3);
  Routing routing = make_rule(config, state)(logits, eval_context(experts));
  TokenChoice rule;
  rule.sigmoid = rule.renormalize = rule.grouped = true;
  rule.epsilon = 1e-20, rule.scale = 2.5, rule.n_group = 4, rule.topk_group = 2;
  for (float b : state->selection_bias.to_vector<float>()) rule.bias.push_back(b);
  check_against(routing, slow_token_choice(logits.to_vector<double>(), tokens, experts, rule));
  CHECK(routing.losses.empty());
  // Without renormalisation: raw sigmoid times the factor.
  rule.renormalize = false, rule.epsilon = 0;
  check_against(make_rule(deepseek_v3(experts, 2, 4, 2, 2.5, false), state)(logits, eval_context(experts)),
                slow_token_choice(logits.to_vector<double>(), tokens, experts, rule));
  // The optional sequence-wise loss appears when asked for.
  Routing with_loss = make_rule(deepseek_v3(experts, 2, 4, 2, 2.5, true, 1e-4), state)(logits, eval_context(experts, 8));
  CHECK(with_loss.losses.count("seq_aux_loss") == 1);
  CHECK(with_loss.loss_coefficients.at("seq_aux_loss") == 1e-4);
}

TEST_CASE("router_presets: Switch with per-sequence capacity against the slow loop", "[router_presets]") {
  const int64_t tokens = 16, experts = 4, sequence = 8, capacity = 2;
  Tensor logits = random_logits(tokens, experts, 4);
  std::vector<double> l = logits.to_vector<double>();
  Routing routing =
      make_rule(switch_transformer(experts, CapacityConfig::per_sequence_count(capacity)))(logits, eval_context(experts, sequence));
  Reference ref = slow_switch(l, tokens, experts, sequence, capacity);
  check_against(routing, ref);
  CHECK(routing.capacity == capacity);
  CHECK(ref.dropped > 0);
  // HF losses: z = mean_t lse^2; aux per sequence with dropped tokens counted as expert 0.
  double z = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    double total = 0;
    for (int64_t e = 0; e < experts; ++e) total += std::exp(l[t * experts + e]);
    z += std::log(total) * std::log(total) / tokens;
  }
  CHECK(routing.losses.at("z_loss").item() == Approx(z));
  double aux = 0;
  for (int64_t b = 0; b < tokens / sequence; ++b) {
    std::vector<double> f(experts, 0), mean_p(experts, 0), kept_count(experts, 0);
    for (int64_t t = b * sequence; t < (b + 1) * sequence; ++t) {
      std::vector<double> p = scores_of(l, t, experts, false);
      int64_t e = ranked(p)[0];
      bool kept = ++kept_count[e] <= capacity;
      f[kept ? e : 0] += 1.0 / sequence;
      for (int64_t i = 0; i < experts; ++i) mean_p[i] += p[i] / sequence;
    }
    for (int64_t e = 0; e < experts; ++e) aux += f[e] * mean_p[e] * experts / (tokens / sequence);
  }
  CHECK(routing.losses.at("aux_loss").item() == Approx(aux));
  // With a capacity factor the count runs over all T (Megatron): ceil(16 / 4 * 0.5) = 2.
  Routing global = make_rule(switch_transformer(experts, CapacityConfig::factor(0.5)))(logits, eval_context(experts, sequence));
  CHECK(global.capacity == 2);
  check_against(global, slow_switch(l, tokens, experts, tokens, 2));
}

TEST_CASE("router_presets: GShard, noisy top-k and expert choice against the slow loop", "[router_presets]") {
  const int64_t tokens = 12, experts = 4;
  Tensor logits = random_logits(tokens, experts, 5);
  std::vector<double> l = logits.to_vector<double>();
  Routing gshard_routing = make_rule(gshard(experts, 1.0))(logits, eval_context(experts));
  check_against(gshard_routing, slow_gshard(l, tokens, experts, 6));  // ceil(2 * 12 / 4 * 1.0)
  CHECK(gshard_routing.losses.count("aux_loss") == 1);

  // Noisy top-k: in eval no noise; in training the noise N(0,1) softplus(noise_logits).
  TokenChoice rule;
  rule.renormalize = true;
  RoutingRule noisy = make_rule(noisy_topk(experts, 2));
  check_against(noisy(logits, eval_context(experts)), slow_token_choice(l, tokens, experts, rule));
  Tensor noise_logits = random_logits(tokens, experts, 6);
  Generator generator(7), replay(7);
  RoutingContext training = eval_context(experts);
  training.training = true, training.generator = &generator, training.noise_logits = noise_logits;
  Routing noisy_routing = noisy(logits, training);
  std::vector<double> h = l, n = noise_logits.to_vector<double>();
  for (size_t i = 0; i < h.size(); ++i) h[i] += replay.normal() * std::log1p(std::exp(n[i]));
  check_against(noisy_routing, slow_token_choice(h, tokens, experts, rule));
  CHECK(noisy_routing.losses.count("importance_loss") == 1);
  // The load loss (eqs. 8-10) on the same H, in training only.
  REQUIRE(noisy_routing.losses.count("load_loss") == 1);
  CHECK(noisy_routing.loss_coefficients.at("load_loss") == 0.01);
  Tensor h_tensor = from_vector(h, {tokens, experts});
  CHECK(noisy_routing.losses.at("load_loss").item() ==
        Approx(load_loss(logits, h_tensor, softplus(noise_logits), 2).item()).epsilon(1e-12));
  CHECK(noisy(logits, eval_context(experts)).losses.count("load_loss") == 0);

  Routing chosen_by_experts = make_rule(expert_choice(experts, 2.0))(logits, eval_context(experts));
  check_against(chosen_by_experts, slow_expert_choice(l, tokens, experts, 6));  // ceil(12 * 2 / 4)
  CHECK(chosen_by_experts.routed_pairs == 24);
  CHECK(chosen_by_experts.capacity == 6);
}

TEST_CASE("router_presets: GShard's random second choice in training", "[router_presets]") {
  const int64_t tokens = 40, experts = 4;
  Tensor logits = random_logits(tokens, experts, 8);
  RouterConfig config = gshard(experts, 4.0);  // capacity large enough for no drops
  config.gshard_random_second_choice = true;
  Generator generator(9), replay(9);
  RoutingContext training = eval_context(experts);
  training.training = true, training.generator = &generator;
  Routing routing = make_rule(config)(logits, training);
  Routing eval = make_rule(config)(logits, eval_context(experts));
  CHECK(eval.pair_token.numel() == 2 * tokens);
  std::vector<double> w = gather_selected(softmax(logits, -1), eval.expert_index).to_vector<double>();
  int64_t dispatched = 0;
  for (int64_t t = 0; t < tokens; ++t) dispatched += 2.0 * w[2 * t + 1] / (w[2 * t] + w[2 * t + 1]) > replay.uniform();
  CHECK(routing.routed_pairs == tokens + dispatched);
  CHECK(routing.pair_token.numel() == tokens + dispatched);
  CHECK(dispatched < tokens);
  CHECK(routing.dropped_pairs == 0);
}

TEST_CASE("router_presets: gradcheck of every preset's pair weights and losses", "[router_presets][gradcheck]") {
  const int64_t tokens = 8, experts = 4;
  Tensor logits = random_logits(tokens, experts, 10).requires_grad_();
  RouterConfig deepseek = deepseek_v3(experts, 2, 2, 1, 2.5, true, 0.5);
  auto state = make_router_state(deepseek);
  state->selection_bias = from_vector(std::vector<float>{0.05f, -0.1f, 0.0f, 0.1f}, {experts});
  RouterConfig switch_config = switch_transformer(experts, CapacityConfig::per_sequence_count(1));
  switch_config.aux_loss.coefficient = switch_config.z_loss.coefficient = 0.5;
  RouterConfig mixtral_config = mixtral(experts, 2);
  mixtral_config.aux_loss.coefficient = 0.5;
  RouterConfig chooser = expert_choice(experts, 1.5);
  chooser.z_loss = {true, 0.5};
  chooser.entropy_loss = {true, 0.5};
  CHECK(make_rule(chooser)(logits.detach(), eval_context(experts)).losses.count("entropy_loss") == 1);
  RouterConfig dynamic = top_p(experts, 0.6);  // losses weighted up, so gradcheck sees them
  dynamic.aux_loss.coefficient = dynamic.entropy_loss.coefficient = 0.5;
  std::vector<std::pair<RouterConfig, std::shared_ptr<const RouterState>>> presets = {
      {mixtral_config, nullptr},         {qwen2_moe(experts, 3), nullptr}, {qwen2_moe(experts, 2, true), nullptr},
      {deepseek, state},                 {switch_config, nullptr},         {gshard(experts, 0.75), nullptr},
      {noisy_topk(experts, 2), nullptr}, {chooser, nullptr},      {dynamic, nullptr}};
  for (const auto& [config, preset_state] : presets) {
    RoutingRule rule = make_rule(config, preset_state);
    auto fn = [&](const TensorList& in) { return checked_outputs(rule(in[0], eval_context(experts, 4))); };
    GradcheckResult result = gradcheck(fn, {logits});
    INFO(config.name << ": " << result.report);
    CHECK(result.passed());
  }
  // Training-mode noise and GShard's random second choice, with a generator fixed per evaluation.
  Tensor noise_logits = random_logits(tokens, experts, 11).requires_grad_();
  RoutingRule noisy = make_rule(noisy_topk(experts, 2));
  RouterConfig random_gshard = gshard(experts, 1.0);
  random_gshard.gshard_random_second_choice = true;
  RoutingRule gshard_rule = make_rule(random_gshard);
  auto training = [&](const RoutingRule& rule, const TensorList& in) {
    Generator fixed(12);
    RoutingContext context = eval_context(experts);
    context.training = true, context.generator = &fixed;
    if (in.size() > 1) context.noise_logits = in[1];
    return checked_outputs(rule(in[0], context));
  };
  GradcheckResult noisy_result = gradcheck([&](const TensorList& in) { return training(noisy, in); }, {logits, noise_logits});
  INFO(noisy_result.report);
  CHECK(noisy_result.passed());
  CHECK(gradcheck([&](const TensorList& in) { return training(gshard_rule, in); }, {logits}).passed());
}

TEST_CASE("router_presets: a tie in the logits is reported as selection_unstable", "[router_presets][gradcheck]") {
  // Experts 1 and 2 tie for the second place of token 0.
  Tensor tied = from_vector(std::vector<double>{1.0, 0.5, 0.5, -1.0, 0.3, -0.2, 0.9, 0.1}, {2, 4}).requires_grad_();
  RoutingRule rule = make_rule(mixtral(4, 2));
  auto fn = [&](const TensorList& in) { return rule(in[0], eval_context(4)).pair_weight; };
  GradcheckResult result = gradcheck(fn, {tied});
  CHECK(result.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(result.report, Catch::Contains("topk"));
  Tensor apart = from_vector(std::vector<double>{1.0, 0.6, 0.5, -1.0, 0.3, -0.2, 0.9, 0.1}, {2, 4}).requires_grad_();
  CHECK(gradcheck(fn, {apart}).passed());
}

TEST_CASE("router_presets: Router names, eval forward and jitter", "[router_presets][router]") {
  Generator generator(13);
  Router router(deepseek_v3(8, 2, 4, 2), 6, &generator);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : router.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"weight"});
  CHECK(router.named_buffers().at(0).first == "e_score_correction_bias");
  CHECK(router.e_score_correction_bias().dtype() == DType::f32);
  struct Block : Module {
    std::shared_ptr<Router> gate;
    Block() : gate(register_module("gate", std::make_shared<Router>(mixtral(4, 2), 6))) {}
  } block;
  CHECK(block.state_dict().count("gate.weight") == 1);
  Router noisy(noisy_topk(4, 2), 6);
  CHECK(noisy.named_parameters().at(1).first == "noise_weight");

  Router switch_router(switch_transformer(4, CapacityConfig::per_sequence_count(3)), 6, &generator);
  Tensor x = randn({6, 6}, DType::f32, &generator);
  switch_router.eval();
  Routing eval = switch_router.forward(x, 3);
  Routing direct = switch_router.rule()(linear(x, switch_router.weight()), eval_context(4, 3));
  CHECK(eval.router_logits.to_vector<float>() == direct.router_logits.to_vector<float>());
  CHECK(eval.pair_weight.to_vector<float>() == direct.pair_weight.to_vector<float>());
  // Training: jitter U(0.99, 1.01) on the router input moves the logits a little.
  switch_router.train();
  std::vector<float> jittered = switch_router.forward(x, 3).router_logits.to_vector<float>();
  std::vector<float> plain = eval.router_logits.to_vector<float>();
  double largest_change = 0;
  for (size_t i = 0; i < plain.size(); ++i) largest_change = std::max(largest_change, double(std::abs(jittered[i] - plain[i])));
  CHECK(largest_change > 0);
  CHECK(largest_change < 0.1);
  // An f64 input to an f32 router is cast: f32 logits.
  CHECK(switch_router.forward(x.to(DType::f64), 3).router_logits.dtype() == DType::f32);
}

TEST_CASE("router_presets: gradcheck through the Router w.r.t. x", "[router_presets][router][gradcheck]") {
  Generator generator(14);
  Tensor x = randn({6, 5}, DType::f64, &generator).requires_grad_();
  for (const RouterConfig& config : {mixtral(4, 2), switch_transformer(4, CapacityConfig::factor(1.0))}) {
    Router router(config, 5, &generator, DType::f64);
    router.eval();
    GradcheckResult result = gradcheck([&](const TensorList& in) { return checked_outputs(router.forward(in[0], 3)); }, {x});
    INFO(config.name << ": " << result.report);
    CHECK(result.passed());
  }
  // The weight's gradient arrives through the logits: dL/dW = (dL/dlogits)^T x.
  Router router(mixtral(4, 2), 5, &generator, DType::f64);
  router.eval();
  Routing routing = router.forward(x.detach());
  sum(routing.pair_weight * routing.pair_weight).backward();
  CHECK(router.weight().grad().defined());
}

TEST_CASE("router_presets: bias update pushes load toward the mean", "[router_presets][router]") {
  Router router(deepseek_v3(4, 1, 2, 1, 1.0), 3);
  router.update_bias(std::vector<int64_t>{5, 1, 2, 0}, 0.1);  // mean load 2
  std::vector<float> bias = router.e_score_correction_bias().to_vector<float>();
  CHECK(bias[0] == Approx(-0.1f));  // overloaded sinks
  CHECK(bias[1] == Approx(0.1f));   // underloaded rises
  CHECK(bias[2] == 0.0f);           // at the mean stays
  CHECK(bias[3] == Approx(0.1f));
  CHECK_FALSE(router.e_score_correction_bias().requires_grad());

  // Repeated updates balance a router that prefers expert 0.
  Generator generator(15);
  Router skewed(deepseek_v3(4, 1, 2, 1, 1.0), 4, &generator);
  skewed.eval();
  {
    NoGradGuard no_grad;
    float* w = skewed.weight().data<float>();
    for (int64_t i = 0; i < 4; ++i) w[i] += 1.5f;  // expert 0's row
  }
  Tensor x = add(randn({64, 4}, DType::f32, &generator), 1.0);
  double first_cv = diagnose(skewed.forward(x)).coefficient_of_variation, last_cv = 0;
  for (int step = 0; step < 300; ++step) {
    Routing routing = skewed.forward(x);
    last_cv = diagnose(routing, skewed.e_score_correction_bias()).coefficient_of_variation;
    skewed.update_bias(routing, 0.01);
  }
  CHECK(first_cv > 0.5);
  CHECK(last_cv < first_cv / 2);
  CHECK(skewed.e_score_correction_bias().to_vector<float>()[0] < 0);
}

TEST_CASE("router_presets: matches the HuggingFace fixtures' router logits, losses and choices", "[router_presets][hf]") {
  struct Case {
    std::string name, gate;
    RouterConfig config;
  };
  RouterConfig switch_with_bias = switch_transformer(4, CapacityConfig::per_sequence_count(3));
  switch_with_bias.gate_bias = true;  // HF router_bias
  std::vector<Case> cases = {
      {"mixtral_basic", "gate.weight", mixtral(4, 2)},
      {"mixtral_prefixed", "model.layers.0.block_sparse_moe.gate.weight", mixtral(4, 2)},
      {"qwen2_moe_norm", "gate.weight", qwen2_moe(6, 2, true)},
      {"qwen2_moe_nonorm", "gate.weight", qwen2_moe(6, 3, false)},
      {"qwen3_moe_norm", "model.layers.0.mlp.gate.weight", qwen2_moe(8, 3, true)},  // Qwen2-MoE's router
      {"olmoe_nonorm", "gate.weight", qwen2_moe(6, 2, false)},
      {"deepseek_v3_grouped", "gate.weight", deepseek_v3(8, 2, 4, 2, 2.5)},
      {"deepseek_v2_grouped", "model.layers.1.mlp.gate.weight", deepseek_v2(8, 3, 4, 2, 2.0)},
      {"deepseek_v2_greedy", "gate.weight", deepseek_v2(6, 2, 1, 1, 16.0)},
      {"glm4_moe_ungrouped", "model.layers.1.mlp.gate.weight", deepseek_v3(8, 3, 1, 1, 2.5)},  // DeepSeek-V3's router
      {"llama4_text_top1", "model.layers.0.feed_forward.router.weight", llama4(4, 1)},
      {"gpt_oss_clamped", "model.layers.0.mlp.router.weight", gpt_oss(4, 2)},
      {"switch_capacity", "router.classifier.weight", switch_transformer(4, CapacityConfig::per_sequence_count(2))},
      {"switch_router_bias", "encoder.block.1.layer.1.mlp.router.classifier.weight", switch_with_bias}};
  for (const Case& c : cases) {
    INFO(c.name);
    std::string dir = std::string(TINYMOE_TEST_DATA_DIR) + "/hf/" + c.name + "/";
    TensorMap layer = load_safetensors(dir + "layer.safetensors");
    TensorMap expected = load_safetensors(dir + "expected.safetensors");
    Tensor x = load_safetensors(dir + "input.safetensors").at("hidden_states");
    int64_t d = x.size(-1), sequence = x.dim() == 3 ? x.size(1) : x.size(0);
    Router router(c.config, d);
    router.eval();
    StateDict state = {{"weight", layer.at(c.gate)}};
    if (c.config.gate_bias) state["bias"] = layer.at(c.gate.substr(0, c.gate.size() - 6) + "bias");
    if (c.config.selection_bias)  // beside the gate's weight: <prefix>gate.e_score_correction_bias
      state["e_score_correction_bias"] = layer.at(c.gate.substr(0, c.gate.size() - 6) + "e_score_correction_bias");
    router.load_state_dict(state);
    Routing routing = router.forward(x.reshape({-1, d}), sequence);
    std::vector<float> logits = routing.router_logits.to_vector<float>(), want = expected.at("router_logits").to_vector<float>();
    REQUIRE(logits.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) CHECK(std::abs(logits[i] - want[i]) <= 1e-5 + 1e-4 * std::abs(want[i]));
    for (const char* loss : {"aux_loss", "z_loss"}) {
      CHECK(routing.losses.count(loss) == expected.count(loss));
      if (!expected.count(loss)) continue;
      double value = routing.losses.at(loss).item(), reference = expected.at(loss).item();
      CHECK(std::abs(value - reference) <= 1e-5 * std::max(1.0, std::abs(reference)));
    }
    std::ifstream file(dir + "routing.json");
    std::stringstream text;
    text << file.rdbuf();
    // Pull the numbers (or true/false flags) of one top-level key out of routing.json.
    auto numbers = [&](const std::string& key) {
      std::string json = text.str();
      size_t at = json.find(':', json.find("\"" + key + "\"")) + 1;
      std::vector<double> out;
      for (; at < json.size() && json[at] != '"' && json[at] != '}'; ++at) {
        if (json.compare(at, 4, "true") == 0) out.push_back(1);
        if (json.compare(at, 5, "false") == 0) out.push_back(0);
        if (!std::isdigit(static_cast<unsigned char>(json[at])) && json[at] != '-') continue;
        size_t used = 0;
        out.push_back(std::stod(json.substr(at, 40), &used));
        at += used - 1;
      }
      return out;
    };
    if (c.config.name == "switch_transformer") {
      std::vector<double> chosen = numbers("expert_of_token"), kept = numbers("kept");
      std::vector<int64_t> selection = routing.expert_index.to_vector<int64_t>(), kept_tokens;
      REQUIRE((chosen.size() == selection.size() && kept.size() == selection.size()));
      for (size_t t = 0; t < chosen.size(); ++t) {
        CHECK(selection[t] == chosen[t]);
        if (kept[t]) kept_tokens.push_back(static_cast<int64_t>(t));
      }
      CHECK(routing.pair_token.to_vector<int64_t>() == kept_tokens);
      continue;
    }
    // Token-major pairs; DeepSeek's HF order within a token is unspecified, so compare by expert.
    std::vector<double> chosen = numbers("selected_experts"), weights = numbers("routing_weights");
    std::vector<int64_t> experts = routing.pair_expert.to_vector<int64_t>();
    std::vector<float> got = routing.pair_weight.to_vector<float>();
    REQUIRE((experts.size() == chosen.size() && weights.size() == chosen.size()));
    const size_t k = static_cast<size_t>(c.config.top_k);
    for (size_t p = 0; p < chosen.size(); ++p) {
      size_t first = p - p % k, match = first;
      while (match < first + k && experts[match] != chosen[p]) ++match;
      REQUIRE(match < first + k);
      CHECK(std::abs(got[match] - weights[p]) <= 1e-5 + 1e-4 * std::abs(weights[p]));
    }
  }
}

TEST_CASE("router_presets: bad configs and inputs name the place", "[router_presets][errors]") {
  CHECK_THROWS_WITH(make_rule(mixtral(4, 5)), Catch::Contains("RouterConfig") && Catch::Contains("k"));
  CHECK_THROWS_WITH(make_rule(mixtral(0, 1)), Catch::Contains("RouterConfig"));
  CHECK_THROWS_WITH(make_rule(deepseek_v3(8, 2, 4, 5), make_router_state(deepseek_v3(8, 2, 4, 5))),
                    Catch::Contains("RouterConfig") && Catch::Contains("topk_group"));
  CHECK_THROWS_WITH(make_rule(deepseek_v3(8, 2, 3, 1)), Catch::Contains("RouterConfig") && Catch::Contains("divisible"));
  CHECK_THROWS_WITH(make_rule(deepseek_v3(8, 2, 8, 1)), Catch::Contains("RouterConfig") && Catch::Contains(">= 2"));
  CHECK_THROWS_WITH(make_rule(deepseek_v3(8, 5, 4, 2)), Catch::Contains("RouterConfig") && Catch::Contains("kept groups"));
  CHECK_THROWS_WITH(make_rule(deepseek_v3(8, 2, 4, 2)), Catch::Contains("make_rule") && Catch::Contains("RouterState"));
  CHECK_THROWS_WITH(switch_transformer(4, CapacityConfig::factor(0.0)), Catch::Contains("CapacityConfig"));
  RouterConfig negative = mixtral(4, 2);
  negative.capacity.capacity_factor = -1.0;
  CHECK_THROWS_WITH(make_rule(negative), Catch::Contains("RouterConfig") && Catch::Contains("capacity factor"));
  CHECK_THROWS_WITH(make_rule(expert_choice(4, 0.0)), Catch::Contains("RouterConfig") && Catch::Contains("capacity factor"));
  RouterConfig random_k3 = mixtral(4, 3);
  random_k3.gshard_random_second_choice = true;
  CHECK_THROWS_WITH(make_rule(random_k3), Catch::Contains("RouterConfig") && Catch::Contains("k = 2"));
  RouterConfig jitter = mixtral(4, 2);
  jitter.jitter_epsilon = 1.0;
  CHECK_THROWS_WITH(make_rule(jitter), Catch::Contains("RouterConfig") && Catch::Contains("jitter"));
  RouterConfig coefficient = mixtral(4, 2);
  coefficient.aux_loss.coefficient = -1;
  CHECK_THROWS_WITH(make_rule(coefficient), Catch::Contains("RouterConfig") && Catch::Contains("aux_loss"));
  RouterConfig choice_with_aux = expert_choice(4, 1.0);
  choice_with_aux.aux_loss.enabled = true;
  CHECK_THROWS_WITH(make_rule(choice_with_aux), Catch::Contains("RouterConfig"));
  RouterConfig global_switch = switch_transformer(4, CapacityConfig::factor(1.0));
  global_switch.aux_loss_global_batch = true;  // hf_switch counts per sequence
  CHECK_THROWS_WITH(make_rule(global_switch), Catch::Contains("RouterConfig") && Catch::Contains("hf_switch"));
  RouterConfig global_without_aux = deepseek_v3(8, 2, 4, 2);
  global_without_aux.aux_loss_global_batch = true;
  CHECK_THROWS_WITH(make_rule(global_without_aux, make_router_state(global_without_aux)),
                    Catch::Contains("RouterConfig") && Catch::Contains("no aux loss"));
  RouterConfig load_without_noise = mixtral(4, 2);
  load_without_noise.load_loss = {true, 0.01};
  CHECK_THROWS_WITH(make_rule(load_without_noise), Catch::Contains("RouterConfig") && Catch::Contains("load loss"));
  RouterConfig load_with_bias = noisy_topk(4, 2);
  load_with_bias.selection_bias = true;
  CHECK_THROWS_WITH(make_rule(load_with_bias, make_router_state(load_with_bias)),
                    Catch::Contains("RouterConfig") && Catch::Contains("load loss"));

  RoutingRule rule = make_rule(mixtral(4, 2));
  CHECK_THROWS_WITH(rule(zeros({3, 5}, DType::f64), eval_context(4)), Catch::Contains("route") && Catch::Contains("[T, 4]"));
  CHECK_THROWS_WITH(rule(zeros({3, 4}, DType::i64), eval_context(4)), Catch::Contains("route"));
  CHECK_THROWS_WITH(rule(zeros({3, 4}, DType::f64), eval_context(4, 2)), Catch::Contains("route"));
  CHECK_THROWS_WITH(rule(zeros({3, 4}, DType::f64), eval_context(6)), Catch::Contains("route"));
  RoutingContext training = eval_context(4);
  training.training = true;
  CHECK_THROWS_WITH(make_rule(noisy_topk(4, 2))(zeros({3, 4}, DType::f64), training),
                    Catch::Contains("route") && Catch::Contains("noise_logits"));

  Router router(mixtral(4, 2), 6);
  CHECK_THROWS_WITH(router.forward(zeros({3, 5})), Catch::Contains("Router"));
  CHECK_THROWS_WITH(router.forward(zeros({4, 6}), 3), Catch::Contains("Router"));
  CHECK_THROWS_WITH(router.update_bias(std::vector<int64_t>{1, 1, 1, 1}, 0.1), Catch::Contains("update_bias"));
  CHECK_THROWS_WITH(Router(mixtral(4, 2), 0), Catch::Contains("Router"));
  Router deepseek(deepseek_v3(4, 1, 2, 1), 6);
  CHECK_THROWS_WITH(deepseek.update_bias(std::vector<int64_t>{1, 1}, 0.1), Catch::Contains("update_bias"));
  CHECK_THROWS_WITH(deepseek.update_bias(std::vector<int64_t>{1, 1, 1, 1}, -0.1), Catch::Contains("update_bias"));
}

TEST_CASE("router_presets: the Sinkhorn preset balances in training and takes the plain top-k in eval",
          "[router_presets][sinkhorn]") {
  const int64_t tokens = 64, experts = 4;
  Generator generator(9);
  Tensor logits = add(randn({tokens, experts}, DType::f64, &generator),
                      from_vector(std::vector<double>{3.0, 0.0, 0.0, 0.0}, {1, experts}));
  RoutingRule rule = make_rule(sinkhorn(experts, 1));
  RoutingContext context;
  context.num_experts = experts;
  context.training = true;
  Routing training = rule(logits, context);
  CHECK(training.expert_index.to_vector<int64_t>() == select_topk(sinkhorn_plan(logits), 1).to_vector<int64_t>());
  // Weights: the sigmoid of the chosen logit (k = 1), not renormalised.
  CHECK(training.pair_weight.to_vector<double>() ==
        gather(sigmoid(logits), 1, training.expert_index).to_vector<double>());
  context.training = false;
  CHECK(rule(logits, context).expert_index.to_vector<int64_t>() == select_topk(logits, 1).to_vector<int64_t>());
  RouterConfig top2 = sinkhorn(experts, 2);
  CHECK(top2.score_function == ScoreFunction::softmax);
  RouterConfig biased = sinkhorn(experts, 1);
  biased.selection_bias = true;
  CHECK_THROWS_WITH(biased.validate(), Catch::Contains("RouterConfig") && Catch::Contains("Sinkhorn"));
}

TEST_CASE("router_presets: top-p keeps a varying number of experts, and its losses count them", "[router_presets][top_p]") {
  const int64_t tokens = 24, experts = 4;
  Generator generator(10);
  Tensor logits = mul(randn({tokens, experts}, DType::f64, &generator), 2.0);
  RouterConfig config = top_p(experts, 0.6);
  Routing routing = make_rule(config)(logits, eval_context(experts));
  // The kept pairs are the fewest best experts of each token reaching 0.6.
  std::vector<double> p = softmax(logits, -1).to_vector<double>();
  std::vector<int64_t> kept_per_token(tokens, 0), counts(experts, 0);
  std::vector<int64_t> pair_token = routing.pair_token.to_vector<int64_t>(), pair_expert = routing.pair_expert.to_vector<int64_t>();
  for (size_t i = 0; i < pair_token.size(); ++i) ++kept_per_token[pair_token[i]], ++counts[pair_expert[i]];
  int64_t more_than_one = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> row(p.begin() + t * experts, p.begin() + (t + 1) * experts);
    std::sort(row.begin(), row.end(), std::greater<double>());
    double reached = 0.0;
    int64_t needed = 0;
    while (needed == 0 || reached < 0.6) reached += row[needed++];
    CHECK(kept_per_token[t] == needed);
    more_than_one += needed > 1;
  }
  CHECK(more_than_one > 0);
  CHECK(more_than_one < tokens);  // some tokens are sure enough for one expert
  CHECK(routing.routed_pairs == static_cast<int64_t>(pair_token.size()));
  CHECK(routing.dropped_pairs == 0);
  // aux: E * sum_i f_i P_i with f over the kept pairs; entropy: the mean entropy of p.
  double aux = 0.0, entropy = 0.0;
  for (int64_t e = 0; e < experts; ++e) {
    double mean_p = 0.0;
    for (int64_t t = 0; t < tokens; ++t) mean_p += p[t * experts + e] / tokens;
    aux += experts * (static_cast<double>(counts[e]) / pair_token.size()) * mean_p;
  }
  for (double value : p) entropy -= value * std::log(value) / tokens;
  CHECK(routing.losses.at("aux_loss").item<double>() == Approx(aux).epsilon(1e-12));
  CHECK(routing.losses.at("entropy_loss").item<double>() == Approx(entropy).epsilon(1e-12));
  CHECK(routing.loss_coefficients.at("entropy_loss") == 1e-4);
  // What top-p cannot be combined with.
  RouterConfig sigmoid_scores = config;
  sigmoid_scores.score_function = ScoreFunction::sigmoid;
  CHECK_THROWS_WITH(sigmoid_scores.validate(), Catch::Contains("RouterConfig") && Catch::Contains("top-p"));
  RouterConfig with_capacity = config;
  with_capacity.capacity = CapacityConfig::factor(1.0);
  CHECK_THROWS_WITH(with_capacity.validate(), Catch::Contains("capacity"));
  RouterConfig per_sequence = config;
  per_sequence.seq_aux_loss = {true, 1e-3};
  CHECK_THROWS_WITH(per_sequence.validate(), Catch::Contains("own number of experts"));
  RouterConfig out_of_range = config;
  out_of_range.top_p = 1.5;
  CHECK_THROWS_WITH(out_of_range.validate(), Catch::Contains("0 <= top_p <= 1"));
  RouterConfig renormalised = mixtral(experts, 3);  // the weight function would see the cut slots
  renormalised.top_p = 0.5;
  renormalised.aux_loss = {};
  CHECK_THROWS_WITH(renormalised.validate(), Catch::Contains("renormalisation does not apply"));
  RouterConfig first_choices = config;
  first_choices.aux_loss_first_choice_only = true;
  CHECK_THROWS_WITH(first_choices.validate(), Catch::Contains("every kept pair"));
  RouterConfig noisy = config;
  noisy.noisy_gating = true;
  CHECK_THROWS_WITH(noisy.validate(), Catch::Contains("noisy gating"));
  CHECK_THROWS_WITH(top_p(experts, 0.0), Catch::Contains("0 < p <= 1"));
  CHECK_THROWS_WITH(top_p(experts, 0.5, -1), Catch::Contains("max_k >= 0"));
}
