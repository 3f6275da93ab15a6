// Routing parts: score functions, selections (top-k with bias, group-limited, expert choice),
// weight functions, pairs, capacity and drops (position, token position, probability, per
// sequence, padding), noise and jitter; each against hand values or a slow loop written here,
// gradchecks of the differentiable parts, and bad inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "nn/router_presets.h"
#include "nn/routing_parts.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

Tensor ids(const std::vector<int64_t>& values, const Shape& shape) { return from_vector(values, shape); }

// Best-first positions of the k largest values, repeated arg-max with ties to the lower index.
std::vector<int64_t> slow_best(const std::vector<double>& values, int64_t k) {
  std::vector<int64_t> chosen;
  std::vector<bool> taken(values.size(), false);
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t i = 0; i < static_cast<int64_t>(values.size()); ++i)
      if (!taken[i] && (best < 0 || values[i] > values[best])) best = i;
    taken[best] = true;
    chosen.push_back(best);
  }
  return chosen;
}

// DeepSeek-V3's group-limited choice for one token, straight from the description in HF.
std::vector<int64_t> slow_group_limited(const std::vector<double>& c, int64_t k, int64_t n_group, int64_t topk_group,
                                        double masked_score) {
  int64_t group_size = static_cast<int64_t>(c.size()) / n_group;
  std::vector<double> group_score(n_group);
  for (int64_t g = 0; g < n_group; ++g) {
    std::vector<double> members(c.begin() + g * group_size, c.begin() + (g + 1) * group_size);
    std::sort(members.rbegin(), members.rend());
    group_score[g] = members[0] + members[1];
  }
  std::vector<int64_t> kept = slow_best(group_score, topk_group);
  std::vector<double> masked(c.size(), masked_score);
  for (int64_t g : kept)
    for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) masked[i] = c[i];
  return slow_best(masked, k);
}

std::vector<double> row(const std::vector<double>& matrix, int64_t r, int64_t width) {
  return std::vector<double>(matrix.begin() + r * width, matrix.begin() + (r + 1) * width);
}

}  // namespace

TEST_CASE("routing_parts: score functions by hand", "[routing_parts]") {
  Tensor logits = from_vector(std::vector<double>{0, std::log(3.0), 0, 0}, {2, 2});
  std::vector<double> p = apply_score_function(ScoreFunction::softmax, logits).to_vector<double>();
  CHECK(p[0] == Approx(0.25));
  CHECK(p[1] == Approx(0.75));
  CHECK(p[2] == Approx(0.5));
  std::vector<double> s = apply_score_function(ScoreFunction::sigmoid, logits).to_vector<double>();
  CHECK(s[0] == Approx(0.5));
  CHECK(s[1] == Approx(0.75));
  CHECK(std::string(score_function_name(ScoreFunction::sigmoid)) == "sigmoid");
}

TEST_CASE("routing_parts: top-k selection, the bias moves the choice only", "[routing_parts]") {
  Tensor scores = from_vector(std::vector<double>{0.1, 0.5, 0.3, 0.1, 0.4, 0.2, 0.3, 0.1}, {2, 4});
  CHECK(select_topk(scores, 2).to_vector<int64_t>() == std::vector<int64_t>{1, 2, 0, 2});
  Tensor bias = from_vector(std::vector<float>{0.0f, 0.0f, 0.0f, 0.35f}, {4});
  Tensor chosen = select_topk(scores, 2, bias);
  CHECK(chosen.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 3, 0});
  // Weights come from the unbiased scores.
  CHECK(gather_selected(scores, chosen).to_vector<double>() == std::vector<double>{0.5, 0.1, 0.1, 0.4});
}

TEST_CASE("routing_parts: group-limited top-k against a slow loop", "[routing_parts]") {
  Generator generator(11);
  const int64_t tokens = 12, experts = 8, k = 2;
  Tensor scores = sigmoid(randn({tokens, experts}, DType::f64, &generator));
  Tensor bias = mul(randn({experts}, DType::f32, &generator), 0.1);
  std::vector<double> s = scores.to_vector<double>();
  std::vector<float> b = bias.to_vector<float>();
  for (auto [n_group, topk_group] : std::vector<std::pair<int64_t, int64_t>>{{4, 2}, {2, 1}, {4, 4}, {1, 1}}) {
    std::vector<int64_t> got = select_group_limited_topk(scores, k, n_group, topk_group, bias).to_vector<int64_t>();
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<double> c = row(s, t, experts);
      for (int64_t e = 0; e < experts; ++e) c[e] += b[e];
      std::vector<int64_t> want = slow_group_limited(c, k, n_group, topk_group, 0.0);
      CHECK(std::vector<int64_t>(got.begin() + t * k, got.begin() + (t + 1) * k) == want);
    }
  }
}

TEST_CASE("routing_parts: a group's score sums its best m experts (V3: 2, V2: the max)", "[routing_parts]") {
  // Groups {0, 1, 2} and {3, 4, 5}; one kept; k = 1. Top-2 sums: 0.5 + 0.45 = 0.95 vs 0.6 + 0.1 =
  // 0.7, so V3 keeps group 0; maxima: 0.5 vs 0.6, so V2 keeps group 1.
  Tensor scores = from_vector(std::vector<double>{0.5, 0.45, 0.0, 0.6, 0.1, 0.0}, {1, 6});
  CHECK(select_group_limited_topk(scores, 1, 2, 1).to_vector<int64_t>() == std::vector<int64_t>{0});
  CHECK(select_group_limited_topk(scores, 1, 2, 1, Tensor(), 0.0, 1).to_vector<int64_t>() == std::vector<int64_t>{3});
  CHECK(select_group_limited_topk(scores, 1, 2, 1, Tensor(), 0.0, 3).to_vector<int64_t>() == std::vector<int64_t>{0});
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 1, 2, 1, Tensor(), 0.0, 4),
                    Catch::Contains("select_group_limited_topk") && Catch::Contains("E / n_group >= 4"));
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 1, 2, 1, Tensor(), 0.0, 0),
                    Catch::Contains("group_score_experts >= 1"));
  RouterConfig v2 = deepseek_v2(6, 1, 2, 1);
  CHECK(v2.group_score_experts == 1);
  v2.group_score_experts = 4;
  CHECK_THROWS_WITH(v2.validate(), Catch::Contains("RouterConfig") && Catch::Contains("E / n_group >= 4"));
}

TEST_CASE("routing_parts: group-limited top-k fills dropped groups with 0.0 as HF does", "[routing_parts]") {
  // Two groups {0, 1}, {2, 3}; one kept; k = 2.
  Tensor scores = from_vector(std::vector<double>{0.1, 0.2, 0.9, 0.8}, {1, 4});
  CHECK(select_group_limited_topk(scores, 2, 2, 1).to_vector<int64_t>() == std::vector<int64_t>{2, 3});
  // A strongly negative bias: c = {-4.9, -4.8, -0.1, -0.2}. Group 1 is kept (-0.3 > -9.7), but its
  // experts sit below the 0.0 that HF writes into the masked group, so HF picks experts 0 and 1.
  Tensor bias = from_vector(std::vector<double>{-5.0, -5.0, -1.0, -1.0}, {4});
  CHECK(select_group_limited_topk(scores, 2, 2, 1, bias).to_vector<int64_t>() == std::vector<int64_t>{0, 1});
  // DeepSeek's reference code masks with -inf: the kept group wins.
  double minus_infinity = -std::numeric_limits<double>::infinity();
  CHECK(select_group_limited_topk(scores, 2, 2, 1, bias, minus_infinity).to_vector<int64_t>() ==
        std::vector<int64_t>{2, 3});
}

TEST_CASE("routing_parts: expert choice against a slow loop", "[routing_parts]") {
  CHECK(expert_choice_capacity(16, 4, 2.0) == 8);
  CHECK(expert_choice_capacity(10, 4, 1.0) == 3);  // ceil(2.5)
  CHECK(expert_choice_capacity(3, 2, 4.0) == 3);   // at most T
  Generator generator(3);
  const int64_t tokens = 9, experts = 3, capacity = 4;
  Tensor scores = softmax(randn({tokens, experts}, DType::f64, &generator), -1);
  std::vector<double> s = scores.to_vector<double>();
  std::vector<int64_t> got = select_expert_choice(scores, capacity).to_vector<int64_t>();
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<double> column(tokens);
    for (int64_t t = 0; t < tokens; ++t) column[t] = s[t * experts + e];
    CHECK(std::vector<int64_t>(got.begin() + e * capacity, got.begin() + (e + 1) * capacity) ==
          slow_best(column, capacity));
  }
  CHECK(select_expert_choice(scores, 0).shape() == Shape{experts, 0});
  Pairs pairs = expert_choice_pairs(ids({2, 0, 1, 1}, {2, 2}), from_vector(std::vector<double>{.5, .4, .3, .2}, {2, 2}));
  CHECK(pairs.token.to_vector<int64_t>() == std::vector<int64_t>{2, 0, 1, 1});
  CHECK(pairs.expert.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 1});
}

TEST_CASE("routing_parts: weight functions by hand", "[routing_parts]") {
  Tensor selected = from_vector(std::vector<double>{0.3, 0.1, 0.2, 0.2}, {2, 2});
  CHECK(WeightFunction{}(selected).to_vector<double>() == selected.to_vector<double>());
  std::vector<double> renormalised = WeightFunction{true, 0.0, 1.0}(selected).to_vector<double>();
  CHECK(renormalised[0] == Approx(0.75));
  CHECK(renormalised[1] == Approx(0.25));
  CHECK(renormalised[2] == Approx(0.5));
  std::vector<double> scaled = WeightFunction{true, 0.6, 2.5}(selected).to_vector<double>();
  CHECK(scaled[0] == Approx(2.5 * 0.3 / 1.0));
  CHECK(scaled[3] == Approx(2.5 * 0.2 / 1.0));
  CHECK(WeightFunction{false, 0.0, 2.0}(selected).to_vector<double>()[1] == Approx(0.2));
}

TEST_CASE("routing_parts: token-choice pairs are token-major", "[routing_parts]") {
  Tensor weights = from_vector(std::vector<double>{.6, .4, .7, .3, .9, .1}, {3, 2});
  Pairs pairs = token_choice_pairs(ids({1, 0, 2, 1, 0, 3}, {3, 2}), weights);
  CHECK(pairs.token.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 1, 2, 2});
  CHECK(pairs.expert.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 2, 1, 0, 3});
  CHECK(pairs.weight.to_vector<double>() == weights.to_vector<double>());
}

TEST_CASE("routing_parts: capacity drops by position, token position and probability", "[routing_parts][capacity]") {
  // 4 tokens, top-2 over 2 experts, capacity 2 per expert (one counting group).
  Tensor expert_index = ids({0, 1, 0, 1, 1, 0, 0, 1}, {4, 2});
  Tensor weights = from_vector(std::vector<double>{.6, .4, .55, .45, .9, .1, .3, .7}, {4, 2});
  CapacityConfig capacity;
  capacity.expert_capacity = 2;
  // GShard slot-major: first choices t0->0, t1->0, t2->1, t3->0 (dropped), then second choices
  // t0->1 (kept, 2nd on expert 1), t1->1 (dropped), t2->0 (dropped), t3->1 (dropped).
  CapacityResult position = apply_capacity(expert_index, weights, 2, capacity);
  CHECK(position.capacity == 2);
  CHECK(position.routed == 8);
  CHECK(position.dropped == 4);
  CHECK(position.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 0, 1, 0, 0, 0});
  CHECK(position.pairs.token.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 2});
  CHECK(position.pairs.expert.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 0, 1});
  CHECK(position.pairs.weight.to_vector<double>() == std::vector<double>{.6, .4, .55, .9});
  // Megatron token order: t0 and t1 fill both experts, t2 and t3 are dropped entirely.
  capacity.drop_policy = DropPolicy::token_position;
  CapacityResult by_token = apply_capacity(expert_index, weights, 2, capacity);
  CHECK(by_token.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1, 0, 0, 0, 0});
  CHECK(by_token.dropped == 4);
  // Probability: expert 0 candidates .6 .55 .1 .3 -> keeps .6 .55; expert 1: .4 .45 .9 .7 -> .9 .7.
  capacity.drop_policy = DropPolicy::probability;
  CapacityResult by_probability = apply_capacity(expert_index, weights, 2, capacity);
  CHECK(by_probability.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 0, 1, 0, 0, 1});
  CHECK(by_probability.pairs.weight.to_vector<double>() == std::vector<double>{.6, .55, .9, .7});
  // Dropless config keeps everything.
  CapacityResult dropless = apply_capacity(expert_index, weights, 2, CapacityConfig());
  CHECK(dropless.dropped == 0);
  CHECK(dropless.pairs.token.numel() == 8);
  CHECK(dropless.capacity == 0);
}

TEST_CASE("routing_parts: position drops match GShard's cumsum positions", "[routing_parts][capacity]") {
  // GShard computes position_in_expert of slot j as cumsum over tokens of its one-hot mask plus
  // the counts of all earlier slots; a pair is kept when that position < C.
  Generator generator(21);
  const int64_t tokens = 40, experts = 5, k = 3;
  Tensor scores = softmax(randn({tokens, experts}, DType::f64, &generator), -1);
  Tensor expert_index = select_topk(scores, k);
  Tensor weights = gather_selected(scores, expert_index);
  for (double factor : {0.5, 0.8, 1.0}) {
    CapacityResult result = apply_capacity(expert_index, weights, experts, CapacityConfig::factor(factor));
    int64_t capacity = static_cast<int64_t>(std::ceil(static_cast<double>(tokens * k) / experts * factor));
    CHECK(result.capacity == capacity);
    std::vector<int64_t> e = expert_index.to_vector<int64_t>(), kept(tokens * k), earlier_slots(experts, 0);
    int64_t dropped = 0;
    for (int64_t j = 0; j < k; ++j) {
      std::vector<int64_t> running(experts, 0);
      for (int64_t t = 0; t < tokens; ++t) {
        int64_t position = earlier_slots[e[t * k + j]] + running[e[t * k + j]]++;
        kept[t * k + j] = position < capacity ? 1 : 0;
        dropped += position < capacity ? 0 : 1;
      }
      for (int64_t x = 0; x < experts; ++x) earlier_slots[x] += running[x];
    }
    CHECK(result.kept.to_vector<int64_t>() == kept);
    CHECK(result.dropped == dropped);
  }
}

TEST_CASE("routing_parts: per-sequence capacity restarts the count (HF Switch)", "[routing_parts][capacity]") {
  // Two sequences of 4 tokens, top-1; every token picks expert 1 except token 5.
  Tensor expert_index = ids({1, 1, 1, 1, 1, 0, 1, 1}, {8, 1});
  Tensor weights = from_vector(std::vector<double>{.5, .6, .7, .8, .5, .6, .7, .8}, {8, 1});
  CapacityResult per_sequence = apply_capacity(expert_index, weights, 2, CapacityConfig::per_sequence_count(2), 4);
  CHECK(per_sequence.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 0, 1, 1, 1, 0});
  CHECK(per_sequence.dropped == 3);
  CapacityConfig whole_batch = CapacityConfig::per_sequence_count(2);
  whole_batch.per_sequence = false;
  CapacityResult batch = apply_capacity(expert_index, weights, 2, whole_batch, 4);
  CHECK(batch.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 0, 0, 1, 0, 0});
  CHECK(batch.dropped == 5);
  // Capacity factor per sequence: ceil(4 * 1 / 2 * 0.5) = 1 per sequence.
  CapacityConfig factor = CapacityConfig::factor(0.5);
  factor.per_sequence = true;
  CapacityResult small = apply_capacity(expert_index, weights, 2, factor, 4);
  CHECK(small.capacity == 1);
  CHECK(small.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 0, 1, 1, 0, 0});
}

TEST_CASE("routing_parts: padding fills every expert to capacity and is reported", "[routing_parts][capacity]") {
  Tensor expert_index = ids({1, 1, 1, 0, 1, 1}, {6, 1});
  Tensor weights = from_vector(std::vector<double>{.5, .6, .7, .8, .9, .4}, {6, 1});
  CapacityConfig capacity = CapacityConfig::per_sequence_count(2);
  capacity.pad_to_capacity = true;
  CapacityResult result = apply_capacity(expert_index, weights, 3, capacity, 3);
  // Sequence 0 (tokens 0-2): expert 1 keeps t0, t1 (t2 dropped); expert 0 pads 2, expert 2 pads 2.
  // Sequence 1 (tokens 3-5): expert 0 keeps t3 and pads 1; expert 1 keeps t4, t5; expert 2 pads 2.
  CHECK(result.dropped == 1);
  CHECK(result.padded == 7);
  CHECK(result.pairs.token.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 3, 4, 5, 0, 0, 0, 0, 3, 3, 3});
  CHECK(result.pairs.expert.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 1, 1, 0, 0, 2, 2, 0, 2, 2});
  CHECK(result.pairs.weight.to_vector<double>() == std::vector<double>{.5, .6, .8, .9, .4, 0, 0, 0, 0, 0, 0, 0});
  std::vector<int64_t> per_expert(3, 0);
  for (int64_t e : result.pairs.expert.to_vector<int64_t>()) ++per_expert[e];
  CHECK(per_expert == std::vector<int64_t>{4, 4, 4});  // 2 sequences x capacity 2
  Routing routing = token_choice_routing(zeros({6, 3}, DType::f64), zeros({6, 3}, DType::f64), expert_index, result);
  CHECK(routing.padded_pairs == 7);
  CHECK(routing.dropped_pairs == 1);
  CHECK(routing.capacity == 2);
}

TEST_CASE("routing_parts: capacity factor formula and inactive pairs", "[routing_parts][capacity]") {
  CHECK(capacity_from_factor(16, 2, 4, 1.25) == 10);
  CHECK(capacity_from_factor(10, 1, 4, 1.0) == 3);
  CHECK(capacity_from_factor(0, 2, 4, 1.0) == 0);
  // An inactive pair (GShard's second choice not dispatched) takes no capacity and is not dropped.
  Tensor expert_index = ids({0, 1, 1, 0, 1, 0}, {3, 2});
  Tensor weights = from_vector(std::vector<double>{.6, .4, .7, .3, .8, .2}, {3, 2});
  CapacityConfig capacity;
  capacity.expert_capacity = 2;
  CapacityResult result = apply_capacity(expert_index, weights, 2, capacity, 0, ids({1, 0, 1, 1, 1, 0}, {3, 2}));
  CHECK(result.routed == 4);
  // Slot 0: t0->0, t1->1, t2->1; slot 1: t1->0 (t0's and t2's second choices inactive).
  CHECK(result.kept.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 1, 1, 0});
  CHECK(result.dropped == 0);
}

TEST_CASE("routing_parts: GShard second choice, noise and jitter from a seeded generator", "[routing_parts]") {
  Tensor weights = from_vector(std::vector<double>{.9, .1, .6, .4, .55, .45}, {3, 2});
  Generator generator(5), replay(5);
  std::vector<int64_t> mask = gshard_second_choice_mask(weights, &generator).to_vector<int64_t>();
  for (int64_t t = 0; t < 3; ++t) {
    CHECK(mask[2 * t] == 1);
    CHECK(mask[2 * t + 1] == (2.0 * weights.to_vector<double>()[2 * t + 1] > replay.uniform() ? 1 : 0));
  }
  Tensor logits = from_vector(std::vector<double>{0.1, -0.2, 0.3, 0.0}, {2, 2});
  Tensor noise_logits = from_vector(std::vector<double>{-1.0, 0.5, 2.0, -3.0}, {2, 2});
  Generator noise(9), noise_replay(9);
  std::vector<double> h = noisy_logits(logits, noise_logits, &noise).to_vector<double>();
  std::vector<double> l = logits.to_vector<double>(), n = noise_logits.to_vector<double>();
  for (int64_t i = 0; i < 4; ++i)
    CHECK(h[i] == Approx(l[i] + noise_replay.normal() * std::log1p(std::exp(n[i]))).epsilon(1e-12));
  Tensor x = ones({50, 4}, DType::f64);
  std::vector<double> jittered = multiplicative_jitter(x, 0.1, &generator).to_vector<double>();
  for (double v : jittered) CHECK((v >= 0.9 && v < 1.1));
  CHECK(*std::max_element(jittered.begin(), jittered.end()) > 1.05);
  CHECK(multiplicative_jitter(x, 0.0).impl() == x.impl());
}

TEST_CASE("routing_parts: gradcheck of weights, capacity pairs, noise and jitter", "[routing_parts][gradcheck]") {
  Generator generator(13);
  Tensor logits = randn({6, 5}, DType::f64, &generator).requires_grad_();
  for (WeightFunction weigh : {WeightFunction{}, WeightFunction{true, 0.0, 1.0}, WeightFunction{true, 1e-20, 2.5}})
    for (ScoreFunction score : {ScoreFunction::softmax, ScoreFunction::sigmoid}) {
      auto fn = [&](const TensorList& in) {
        Tensor scores = apply_score_function(score, in[0]);
        return weigh(gather_selected(scores, select_topk(scores, 2)));
      };
      GradcheckResult result = gradcheck(fn, {logits});
      INFO(result.report);
      CHECK(result.passed());
    }
  for (DropPolicy policy : {DropPolicy::position, DropPolicy::token_position, DropPolicy::probability}) {
    CapacityConfig capacity = CapacityConfig::factor(0.7, policy);
    capacity.pad_to_capacity = policy == DropPolicy::probability;
    auto fn = [&](const TensorList& in) {
      Tensor scores = softmax(in[0], -1);
      Tensor expert_index = select_topk(scores, 2);
      return apply_capacity(expert_index, gather_selected(scores, expert_index), 5, capacity).pairs.weight;
    };
    GradcheckResult result = gradcheck(fn, {logits});
    INFO(drop_policy_name(policy) << ": " << result.report);
    CHECK(result.passed());
  }
  Tensor noise_logits = randn({6, 5}, DType::f64, &generator).requires_grad_();
  auto noisy = [](const TensorList& in) {
    Generator fixed(4);  // the same noise at every evaluation
    return noisy_logits(in[0], in[1], &fixed);
  };
  CHECK(gradcheck(noisy, {logits, noise_logits}).passed());
  auto jitter = [](const TensorList& in) {
    Generator fixed(4);
    return multiplicative_jitter(in[0], 0.2, &fixed);
  };
  CHECK(gradcheck(jitter, {logits}).passed());
}

TEST_CASE("routing_parts: capacity by probability reports a tie to gradcheck", "[routing_parts][gradcheck]") {
  // Two tokens send their only pair to expert 0 with equal weights: capacity 1 must pick one, and
  // a perturbation flips it.
  Tensor weights = from_vector(std::vector<double>{0.5, 0.5}, {2, 1}).requires_grad_();
  CapacityConfig capacity;
  capacity.expert_capacity = 1;
  capacity.drop_policy = DropPolicy::probability;
  auto fn = [&](const TensorList& in) { return apply_capacity(ids({0, 0}, {2, 1}), in[0], 1, capacity).pairs.weight; };
  GradcheckResult result = gradcheck(fn, {weights});
  CHECK(result.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(result.report, Catch::Contains("capacity"));
}

TEST_CASE("routing_parts: bad inputs name the part", "[routing_parts][errors]") {
  Tensor scores = softmax(zeros({3, 4}, DType::f64), -1);
  CHECK_THROWS_WITH(select_topk(scores, 5), Catch::Contains("select_topk") && Catch::Contains("k"));
  CHECK_THROWS_WITH(select_topk(scores, 0), Catch::Contains("select_topk"));
  CHECK_THROWS_WITH(select_topk(scores, 2, zeros({3})), Catch::Contains("select_topk"));
  CHECK_THROWS_WITH(select_topk(zeros({4}), 1), Catch::Contains("select_topk"));
  CHECK_THROWS_WITH(select_topk(zeros({2, 2}, DType::i64), 1), Catch::Contains("select_topk"));
  const char* group = "select_group_limited_topk";
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 2, 3, 1), Catch::Contains(group) && Catch::Contains("n_group"));
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 2, 2, 3), Catch::Contains(group) && Catch::Contains("topk_group"));
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 3, 2, 1), Catch::Contains(group));
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 1, 4, 1), Catch::Contains(group) && Catch::Contains(">= 2"));
  CHECK_THROWS_WITH(select_group_limited_topk(scores, 5, 1, 1), Catch::Contains(group));
  CHECK_THROWS_WITH(select_expert_choice(scores, 4), Catch::Contains("select_expert_choice"));
  CHECK_THROWS_WITH(expert_choice_capacity(4, 2, 0.0), Catch::Contains("expert_choice_capacity"));
  CHECK_THROWS_WITH(gather_selected(scores, ids({0, 1}, {2, 1})), Catch::Contains("gather_selected"));
  CHECK_THROWS_WITH(CapacityConfig::factor(0.0), Catch::Contains("CapacityConfig"));
  CHECK_THROWS_WITH(CapacityConfig::factor(-1.0), Catch::Contains("CapacityConfig"));
  CHECK_THROWS_WITH(CapacityConfig::per_sequence_count(0), Catch::Contains("CapacityConfig"));
  CHECK_THROWS_WITH(capacity_from_factor(4, 1, 2, 0.0), Catch::Contains("capacity_from_factor"));
  Tensor expert_index = ids({0, 1, 2}, {3, 1});
  Tensor weights = ones({3, 1}, DType::f64);
  CHECK_THROWS_WITH(apply_capacity(expert_index, weights, 2, CapacityConfig()), Catch::Contains("apply_capacity") &&
                                                                                     Catch::Contains("out of range"));
  CHECK_THROWS_WITH(apply_capacity(expert_index, ones({3, 2}, DType::f64), 3, CapacityConfig()),
                    Catch::Contains("apply_capacity"));
  CHECK_THROWS_WITH(apply_capacity(expert_index, weights, 3, CapacityConfig::per_sequence_count(1), 2),
                    Catch::Contains("apply_capacity") && Catch::Contains("sequences"));
  CapacityConfig both = CapacityConfig::factor(1.0);
  both.expert_capacity = 2;
  CHECK_THROWS_WITH(apply_capacity(expert_index, weights, 3, both), Catch::Contains("apply_capacity"));
  CapacityConfig negative;
  negative.capacity_factor = -0.5;
  CHECK_THROWS_WITH(apply_capacity(expert_index, weights, 3, negative), Catch::Contains("apply_capacity"));
  CHECK_THROWS_WITH(apply_capacity(expert_index, weights, 3, CapacityConfig(), 0, ids({1, 1}, {2, 1})),
                    Catch::Contains("apply_capacity"));
  CHECK_THROWS_WITH(noisy_logits(scores, zeros({3, 3}, DType::f64)), Catch::Contains("noisy_logits"));
  CHECK_THROWS_WITH(multiplicative_jitter(scores, 1.0), Catch::Contains("multiplicative_jitter"));
  CHECK_THROWS_WITH(multiplicative_jitter(scores, -0.1), Catch::Contains("multiplicative_jitter"));
  CHECK_THROWS_WITH(gshard_second_choice_mask(scores), Catch::Contains("gshard_second_choice_mask"));
  CHECK_THROWS_WITH(token_choice_pairs(expert_index, ones({3, 2}, DType::f64)), Catch::Contains("token_choice_pairs"));
  CHECK_THROWS_WITH(check_router_logits(scores, 5, "route"), Catch::Contains("route") && Catch::Contains("[T, 5]"));
}

TEST_CASE("routing_parts: Sinkhorn's plan balances tokens over experts", "[routing_parts][sinkhorn]") {
  const int64_t tokens = 64, experts = 4;
  Generator generator(8);
  // Every token prefers expert 0 by a wide margin: plain top-1 sends them all there.
  Tensor logits = add(randn({tokens, experts}, DType::f64, &generator),
                      from_vector(std::vector<double>{3.0, 0.0, 0.0, 0.0}, {1, experts}));
  CHECK(bincount(select_topk(logits, 1).reshape({tokens}), experts).to_vector<int64_t>()[0] > 50);
  Tensor plan = sinkhorn_plan(logits, 1e-10);
  CHECK_FALSE(plan.requires_grad());
  // Rows sum to 1/T and columns to 1/E: a balanced (fractional) assignment.
  for (double row : sum(plan, 1).to_vector<double>()) CHECK(row == Approx(1.0 / tokens).epsilon(1e-6));
  for (double column : sum(plan, 0).to_vector<double>()) CHECK(column == Approx(1.0 / experts).epsilon(1e-6));
  // Its top-1 spreads the tokens: every expert within a factor 2 of T / E.
  for (int64_t load : bincount(select_topk(plan, 1).reshape({tokens}), experts).to_vector<int64_t>()) {
    CHECK(load >= tokens / experts / 2);
    CHECK(load <= 2 * tokens / experts);
  }
  // A constant per row changes nothing (d0 absorbs it), and logits past exp's f32 range stay finite.
  Tensor shifted = add(logits, mul(randn({tokens, 1}, DType::f64, &generator), 100.0));
  std::vector<double> expected = sinkhorn_plan(logits).to_vector<double>(), got = sinkhorn_plan(shifted).to_vector<double>();
  for (size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == Approx(expected[i]).epsilon(1e-9));
  Tensor huge = add(logits.to(DType::f32), 200.0f);
  for (float value : sinkhorn_plan(huge).to_vector<float>()) CHECK(std::isfinite(value));
  CHECK(sinkhorn_plan(zeros({0, experts}, DType::f64)).shape() == Shape{0, experts});
  CHECK_THROWS_WITH(sinkhorn_plan(logits, 0.0), Catch::Contains("sinkhorn_plan") && Catch::Contains("tolerance > 0"));
  // One NaN or +inf logit would make every scaling NaN: an Error, not every token on expert 0.
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    Tensor damaged = logits.clone();
    damaged.data<double>()[5] = bad;
    CHECK_THROWS_WITH(sinkhorn_plan(damaged), Catch::Contains("sinkhorn_plan") && Catch::Contains("NaN or +inf"));
  }
  // A row of -inf keeps cost 0 (as in Megatron, which does not shift) and the rest stays finite.
  Tensor masked = logits.clone();
  for (int64_t e = 0; e < experts; ++e) masked.data<double>()[e] = -std::numeric_limits<double>::infinity();
  std::vector<double> masked_plan = sinkhorn_plan(masked).to_vector<double>();
  for (size_t i = 0; i < masked_plan.size(); ++i) CHECK((i < size_t(experts) ? masked_plan[i] == 0.0 : std::isfinite(masked_plan[i])));
  CHECK_THROWS_WITH(sinkhorn_plan(zeros({3, 0}, DType::f64)), Catch::Contains("sinkhorn_plan") && Catch::Contains("at least one expert"));
  CHECK_THROWS_WITH(sinkhorn_plan(zeros({4}, DType::f64)), Catch::Contains("sinkhorn_plan"));
}

TEST_CASE("routing_parts: top-p keeps the fewest best experts that reach p", "[routing_parts][top_p]") {
  // Each row best first: 0.5 alone is short of 0.6; 0.7 reaches it; 0.25 + 0.25 < 0.6 needs a third.
  Tensor selected = from_vector(std::vector<double>{0.5, 0.2, 0.1, 0.7, 0.2, 0.1, 0.25, 0.25, 0.25}, {3, 3});
  CHECK(top_p_active(selected, 0.6).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 1, 0, 0, 1, 1, 1});
  CHECK(top_p_active(selected, 1.0).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1});
  CHECK(top_p_active(selected, 0.5).to_vector<int64_t>()[0 + 1] == 0);  // 0.5 reaches 0.5 exactly: enough
  // At least one expert, however small p.
  CHECK(top_p_active(selected, 1e-9).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1, 0, 0, 1, 0, 0});
  CHECK(top_p_active(zeros({0, 3}, DType::f64), 0.5).shape() == Shape{0, 3});
  CHECK_THROWS_WITH(top_p_active(selected, 0.0), Catch::Contains("top_p_active") && Catch::Contains("0 < p <= 1"));
  CHECK_THROWS_WITH(top_p_active(selected, 1.5), Catch::Contains("0 < p <= 1"));
  CHECK_THROWS_WITH(top_p_active(zeros({3}, DType::f64), 0.5), Catch::Contains("[T, k]"));
}
