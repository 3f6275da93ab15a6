// Routing diagnostics on hand-made routings: loads, CV, dead experts, collapse, entropy, dropped
// fraction, padding left out, the selection bias, the JSON forms, and bad inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/diagnostics.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

// A routing of `tokens` tokens over `experts` whose kept pairs go to `experts_of_pairs`.
Routing hand_routing(int64_t tokens, int64_t experts, const std::vector<int64_t>& experts_of_pairs) {
  Routing routing;
  routing.scores = full({tokens, experts}, 1.0 / static_cast<double>(experts), DType::f64);
  routing.pair_expert = from_vector(experts_of_pairs, {static_cast<int64_t>(experts_of_pairs.size())});
  routing.routed_pairs = static_cast<int64_t>(experts_of_pairs.size());
  return routing;
}

}  // namespace

TEST_CASE("diagnostics: loads, CV and dead experts by hand", "[diagnostics]") {
  // 6 tokens, top-1, E = 4: loads (3, 2, 1, 0).
  RoutingDiagnostics d = diagnose(hand_routing(6, 4, {0, 0, 1, 2, 1, 0}));
  CHECK(d.tokens_per_expert == std::vector<int64_t>{3, 2, 1, 0});
  CHECK(d.max_load == 3);
  CHECK(d.mean_load == Approx(1.5));
  // Population std of (3, 2, 1, 0) is sqrt(1.25).
  CHECK(d.coefficient_of_variation == Approx(std::sqrt(1.25) / 1.5));
  CHECK(d.dead_experts == 1);
  CHECK_FALSE(d.collapsed);  // 3 of 6 is not more than half
  CHECK(d.dropped_fraction == 0.0);
  // Balanced: CV 0.
  RoutingDiagnostics balanced = diagnose(hand_routing(4, 4, {3, 2, 1, 0}));
  CHECK(balanced.coefficient_of_variation == 0.0);
  CHECK(balanced.dead_experts == 0);
}

TEST_CASE("diagnostics: collapse when one expert takes more than half of the tokens", "[diagnostics]") {
  CHECK(diagnose(hand_routing(6, 4, {0, 0, 0, 0, 1, 2})).collapsed);
  // Top-2: every token uses expert 0 (6 of 6 tokens), though only half the pairs.
  RoutingDiagnostics top2 = diagnose(hand_routing(6, 4, {0, 1, 0, 2, 0, 3, 0, 1, 0, 2, 0, 3}));
  CHECK(top2.collapsed);
  CHECK(top2.tokens_per_expert == std::vector<int64_t>{6, 2, 2, 2});
  CHECK_FALSE(diagnose(hand_routing(4, 4, {0, 1, 2, 3, 1, 2, 3, 0})).collapsed);
}

TEST_CASE("diagnostics: router entropy of softmax and of sigmoid scores", "[diagnostics]") {
  Routing uniform = hand_routing(2, 4, {0, 1});
  CHECK(diagnose(uniform).router_entropy == Approx(std::log(4.0)));
  Routing one_hot = hand_routing(2, 4, {0, 1});
  one_hot.scores = from_vector(std::vector<double>{1, 0, 0, 0, 0, 0, 1, 0}, {2, 4});
  CHECK(diagnose(one_hot).router_entropy == Approx(0.0).margin(1e-15));
  // Mixed: row 0 is (0.5, 0.5, 0, 0) -> log 2; row 1 one-hot -> 0; mean log(2)/2.
  Routing mixed = hand_routing(2, 4, {0, 1});
  mixed.scores = from_vector(std::vector<double>{0.5, 0.5, 0, 0, 0, 0, 1, 0}, {2, 4});
  CHECK(diagnose(mixed).router_entropy == Approx(std::log(2.0) / 2));
  // Sigmoid scores (0.2, 0.2) are normalised to (0.5, 0.5) first.
  Routing sigmoid_scores = hand_routing(1, 2, {0});
  sigmoid_scores.scores = from_vector(std::vector<double>{0.2, 0.2}, {1, 2});
  CHECK(diagnose(sigmoid_scores).router_entropy == Approx(std::log(2.0)));
}

TEST_CASE("diagnostics: router entropy in f32 over many experts, NaN scores left out", "[diagnostics]") {
  // 64 experts: rows longer than a vector register. Row 0 uniform -> log 64; row 1 a NaN and
  // two halves -> log 2; row 2 all NaN or negative -> 0.
  const int64_t experts = 64;
  std::vector<float> values(3 * experts, 0.0f);
  for (int64_t i = 0; i < experts; ++i) values[i] = 1.0f / experts;
  values[experts + 3] = std::numeric_limits<float>::quiet_NaN();
  values[experts + 10] = values[experts + 40] = 0.5f;
  for (int64_t i = 0; i < experts; ++i) values[2 * experts + i] = i % 2 ? -1.0f : std::nanf("");
  Routing routing = hand_routing(3, experts, {0, 1, 2});
  routing.scores = from_vector(values, {3, experts});
  CHECK(diagnose(routing).router_entropy == Approx((std::log(64.0) + std::log(2.0)) / 3).epsilon(1e-6));
}

TEST_CASE("diagnostics: dropped fraction, padding left out, selection bias, str", "[diagnostics]") {
  // 3 kept pairs and 2 padding pairs of 5 routed with 2 dropped.
  Routing routing = hand_routing(5, 3, {0, 1, 1, 2, 2});
  routing.routed_pairs = 5;
  routing.dropped_pairs = 2;
  routing.padded_pairs = 2;
  Tensor bias = from_vector(std::vector<float>{0.5f, -0.25f, 0.0f}, {3});
  RoutingDiagnostics d = diagnose(routing, bias);
  CHECK(d.tokens_per_expert == std::vector<int64_t>{1, 2, 0});
  CHECK(d.dropped_fraction == Approx(0.4));
  CHECK(d.dead_experts == 1);
  CHECK(d.experts_per_token == Approx(3.0 / 5.0));  // 3 kept pairs over 5 tokens
  CHECK(d.selection_bias == std::vector<double>{0.5, -0.25, 0.0});
  std::string text = d.str();
  CHECK_THAT(text, Catch::Contains("tokens per expert: 1 2 0"));
  CHECK_THAT(text, Catch::Contains("experts per token 0.6, dropped 40%"));
  CHECK_THAT(text, Catch::Contains("dead experts 1"));
  CHECK_THAT(text, Catch::Contains("selection bias: 0.5 -0.25 0"));
  CHECK_THAT(diagnose(hand_routing(4, 2, {0, 0, 0, 1})).str(), Catch::Contains("COLLAPSED"));
  // Nothing routed: no division by zero.
  RoutingDiagnostics empty = diagnose(hand_routing(0, 2, {}));
  CHECK(empty.dropped_fraction == 0.0);
  CHECK(empty.router_entropy == 0.0);
  CHECK(empty.coefficient_of_variation == 0.0);
  CHECK(empty.dead_experts == 2);
}

TEST_CASE("diagnostics: bad inputs name diagnose", "[diagnostics][errors]") {
  CHECK_THROWS_WITH(diagnose(hand_routing(2, 2, {0, 2})), Catch::Contains("diagnose") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(diagnose(hand_routing(2, 2, {0, 1}), zeros({3})), Catch::Contains("diagnose"));
  Routing no_scores;
  no_scores.pair_expert = zeros({0}, DType::i64);
  CHECK_THROWS_WITH(diagnose(no_scores), Catch::Contains("diagnose"));
  Routing too_many_pads = hand_routing(2, 2, {0, 1});
  too_many_pads.padded_pairs = 3;
  CHECK_THROWS_WITH(diagnose(too_many_pads), Catch::Contains("diagnose"));
}

TEST_CASE("diagnostics: the JSON forms hold every field, exactly", "[diagnostics][json]") {
  Generator generator(8);
  Tensor logits = randn({12, 4}, DType::f64, &generator);
  RoutingContext context;
  context.num_experts = 4;
  RouterConfig config = deepseek_v3(4, 2, 2, 1, 2.5, true, 1e-3);
  auto state = make_router_state(config);
  state->selection_bias = from_vector(std::vector<float>{0.1f, -0.2f, 0.0f, 0.3f}, {4});
  Routing routing = make_rule(config, state)(logits, context);
  RoutingDiagnostics d = diagnose(routing, state->selection_bias);
  nlohmann::json alone = nlohmann::json::parse(d.json());
  CHECK(alone.at("tokens_per_expert").get<std::vector<int64_t>>() == d.tokens_per_expert);
  CHECK(alone.at("coefficient_of_variation").get<double>() == d.coefficient_of_variation);  // read back exactly
  CHECK(alone.at("router_entropy").get<double>() == d.router_entropy);
  CHECK(alone.at("selection_bias").get<std::vector<double>>() == d.selection_bias);
  CHECK(alone.at("collapsed").get<bool>() == d.collapsed);
  CHECK(alone.size() == 10);

  nlohmann::json step = nlohmann::json::parse(routing_json(routing, d));
  for (const auto& [key, value] : alone.items()) CHECK(step.at(key) == value);
  CHECK(step.at("losses").at("seq_aux_loss").get<double>() == routing.losses.at("seq_aux_loss").item<double>());
  CHECK(step.at("loss_coefficients").at("seq_aux_loss").get<double>() == 1e-3);
  CHECK(step.at("routed_pairs").get<int64_t>() == 24);
  CHECK(step.at("sparsity").get<double>() == 0.5);  // 2 of 4 experts per token
  // An empty batch has no sparsity: null, as JSON has no NaN.
  Routing empty = make_rule(mixtral(4, 2))(zeros({0, 4}, DType::f64), context);
  nlohmann::json none = nlohmann::json::parse(routing_json(empty, diagnose(empty)));
  CHECK(none.at("sparsity").is_null());
  CHECK(none.at("tokens_per_expert").get<std::vector<int64_t>>() == std::vector<int64_t>{0, 0, 0, 0});
}
