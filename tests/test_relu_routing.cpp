// ReLU routing (ReMoE, Wang et al. 2025): the relu score and the positive flags by hand; the
// load-balanced L1 loss by hand and gradchecked; the remoe preset against a slow per-token loop;
// a gradcheck of the rule with its losses and a zero logit reported as selection_unstable; the
// adaptive L1 coefficient (the Router's buffer, the block's and the model's controllers, one
// lambda moved by the mean sparsity); tokens that use no expert; a small model that learns while
// the controller holds the sparsity near its target; bad configs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "nn/moe_block.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router.h"
#include "nn/router_presets.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

RoutingContext context_of(int64_t experts) {
  RoutingContext context;
  context.num_experts = experts;
  return context;
}

// ReMoE eq. 6 applied to lambda once: target 1 - k / E.
double next_lambda(double lambda, double sparsity, int64_t k, int64_t experts) {
  const double target = 1.0 - static_cast<double>(k) / static_cast<double>(experts);
  return sparsity < target ? lambda * 1.2 : (sparsity > target ? lambda / 1.2 : lambda);
}

// ReMoE eq. 7 from its definition: E * sum_i (count_i / (T k)) * mean_t relu(logit_ti).
double slow_l1_loss(const std::vector<double>& logits, int64_t tokens, int64_t experts, int64_t k) {
  double loss = 0.0;
  for (int64_t e = 0; e < experts; ++e) {
    double count = 0.0, mean_score = 0.0;
    for (int64_t t = 0; t < tokens; ++t) {
      const double logit = logits[t * experts + e];
      count += logit > 0.0 ? 1.0 : 0.0;
      mean_score += std::max(logit, 0.0) / static_cast<double>(tokens);
    }
    loss += static_cast<double>(experts) * count / static_cast<double>(tokens * k) * mean_score;
  }
  return loss;
}

SparseMoEConfig remoe_block(int64_t experts, int64_t k, SharedExpertKind shared = SharedExpertKind::none) {
  return tinymoe::testing::small_block_config(remoe(experts, k), ExpertKind::swiglu, shared, DType::f64, 6, 5, 3);
}

void set_gate_weight(Router& gate, const std::vector<double>& values) {
  NoGradGuard no_grad;
  std::copy(values.begin(), values.end(), gate.weight().data<double>());
}

}  // namespace

TEST_CASE("relu_routing: the relu score and the positive flags by hand", "[relu_routing]") {
  Tensor logits = from_vector(std::vector<double>{0.5, -0.2, 0.0, 2.0}, {2, 2});
  CHECK(apply_score_function(ScoreFunction::relu, logits).to_vector<double>() == std::vector<double>{0.5, 0.0, 0.0, 2.0});
  CHECK(std::string(score_function_name(ScoreFunction::relu)) == "relu");
  // Best first per token; a zero logit is no positive score, and a token may keep nothing.
  Tensor selected = from_vector(std::vector<double>{0.5, 0.2, -0.1, 0.0, -0.4, -0.9}, {2, 3});
  CHECK(positive_active(selected).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 0, 0, 0});
  CHECK(positive_active(zeros({0, 3}, DType::f64)).shape() == Shape{0, 3});
  CHECK_THROWS_WITH(positive_active(zeros({3}, DType::f64)), Catch::Contains("positive_active") && Catch::Contains("[T, k]"));
  CHECK_THROWS_WITH(positive_active(zeros({2, 2}, DType::i64)), Catch::Contains("positive_active"));
  Tensor not_a_number = from_vector(std::vector<double>{0.5, std::nan("")}, {1, 2});
  CHECK_THROWS_WITH(positive_active(not_a_number), Catch::Contains("positive_active") && Catch::Contains("NaN"));
}

TEST_CASE("relu_routing: the l1 loss by hand, and its gradient", "[relu_routing]") {
  // T = 2, E = 3; expert 0 used once, expert 2 twice: counts {1, 0, 2}, mean scores {0.5, 0, 2.5}.
  Tensor scores = from_vector(std::vector<double>{1.0, 0.0, 2.0, 0.0, 0.0, 3.0}, {2, 3});
  Tensor pair_expert = from_vector(std::vector<int64_t>{0, 2, 2}, {3});
  // k = 1: f = {0.5, 0, 1}, L = 3 (0.5 * 0.5 + 1 * 2.5) = 8.25; k = 2 halves f.
  CHECK(relu_l1_loss(scores, pair_expert, 1).item<double>() == Approx(8.25).epsilon(1e-14));
  CHECK(relu_l1_loss(scores, pair_expert, 2).item<double>() == Approx(4.125).epsilon(1e-14));
  // At the target load (every expert used by T k / E tokens) each token's term is its L1 norm.
  Tensor balanced = from_vector(std::vector<double>{1.0, 0.0, 0.0, 3.0}, {2, 2});
  CHECK(relu_l1_loss(balanced, from_vector(std::vector<int64_t>{0, 1}, {2}), 1).item<double>() ==
        Approx((1.0 + 3.0) / 2.0).epsilon(1e-14));
  CHECK(relu_l1_loss(zeros({0, 3}, DType::f64), zeros({0}, DType::i64), 2).item<double>() == 0.0);
  // Linear in the scores, the counts constant: d L / d s_ti = E count_i / (T^2 k).
  Tensor input = from_vector(std::vector<double>{0.7, 0.1, 1.3, 0.4, 0.2, 2.1}, {2, 3}).requires_grad_();
  relu_l1_loss(input, pair_expert, 2).backward();
  std::vector<double> grad = input.grad().to_vector<double>();
  for (int64_t i = 0; i < 6; ++i) CHECK(grad[i] == Approx(3.0 * std::vector<double>{1, 0, 2}[i % 3] / (4.0 * 2.0)));
  GradcheckResult result = gradcheck([&](const TensorList& in) { return relu_l1_loss(in[0], pair_expert, 2); }, {input});
  INFO(result.report);
  CHECK(result.passed());
  // Bad inputs name the loss.
  CHECK_THROWS_WITH(relu_l1_loss(scores, pair_expert, 0), Catch::Contains("relu_l1_loss") && Catch::Contains("target_k"));
  CHECK_THROWS_WITH(relu_l1_loss(scores, pair_expert, 4), Catch::Contains("1 <= target_k <= E = 3"));
  CHECK_THROWS_WITH(relu_l1_loss(scores, pair_expert.reshape({3, 1}), 1), Catch::Contains("relu_l1_loss"));
  CHECK_THROWS_WITH(relu_l1_loss(zeros({6}, DType::f64), pair_expert, 1), Catch::Contains("relu_l1_loss"));
  CHECK_THROWS_WITH(relu_l1_loss(scores, from_vector(std::vector<int64_t>{3}, {1}), 1), Catch::Contains("out of range"));
}

TEST_CASE("relu_routing: the remoe preset against the slow loop", "[relu_routing]") {
  const int64_t tokens = 24, experts = 8;
  Generator generator(31);
  Tensor logits = randn({tokens, experts}, DType::f64, &generator);
  for (int64_t e = 0; e < experts; ++e) logits.data<double>()[5 * experts + e] = -0.1 - e;  // token 5 uses none
  Routing routing = make_rule(remoe(experts, 2))(logits, context_of(experts));
  std::vector<double> l = logits.to_vector<double>();
  // Each token: every expert of positive logit (in id order, or best first for a cap), weighted by
  // its logit.
  auto slow_pairs = [&](int64_t cap) {
    std::vector<int64_t> token, expert;
    std::vector<double> weight;
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<int64_t> order(experts);
      std::iota(order.begin(), order.end(), 0);
      if (cap < experts)
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return l[t * experts + a] > l[t * experts + b]; });
      order.resize(cap);
      for (int64_t e : order)
        if (l[t * experts + e] > 0.0) token.push_back(t), expert.push_back(e), weight.push_back(l[t * experts + e]);
    }
    return std::make_tuple(token, expert, weight);
  };
  auto [token, expert, weight] = slow_pairs(experts);
  CHECK(routing.pair_token.to_vector<int64_t>() == token);
  CHECK(routing.pair_expert.to_vector<int64_t>() == expert);
  CHECK(routing.pair_weight.to_vector<double>() == weight);
  CHECK(std::count(token.begin(), token.end(), 5) == 0);
  CHECK(routing.expert_index.shape() == Shape{tokens, experts});  // every expert a candidate
  // A cap of 3: the best 3 by logit, of which the positive ones.
  RouterConfig capped = remoe(experts, 2);
  capped.top_k = 3;
  Routing capped_routing = make_rule(capped)(logits, context_of(experts));
  auto [capped_token, capped_expert, capped_weight] = slow_pairs(3);
  CHECK(capped_routing.pair_token.to_vector<int64_t>() == capped_token);
  CHECK(capped_routing.pair_expert.to_vector<int64_t>() == capped_expert);
  CHECK(capped_routing.pair_weight.to_vector<double>() == capped_weight);
  CHECK(capped_token.size() < token.size());  // the cap did cut
  CHECK(routing.routed_pairs == static_cast<int64_t>(token.size()));
  CHECK(routing.dropped_pairs == 0);
  CHECK(routing.sparsity() == Approx(1.0 - static_cast<double>(token.size()) / (tokens * experts)).epsilon(1e-15));
  // The l1 loss is the only loss, with lambda_0 = 1e-8.
  CHECK(routing.losses.size() == 1);
  CHECK(routing.losses.at("l1_loss").item<double>() == Approx(slow_l1_loss(l, tokens, experts, 2)).epsilon(1e-13));
  CHECK(routing.loss_coefficients.at("l1_loss") == 1e-8);
  CHECK(routing.scores.to_vector<double>() == relu(logits).to_vector<double>());
  // Without the loss (a plain ReLU router), and with the z-loss.
  RouterConfig plain = remoe(experts, 2);
  plain.l1_loss = {};
  plain.z_loss = {true, 1e-3};
  Routing plain_routing = make_rule(plain)(logits, context_of(experts));
  CHECK(plain_routing.pair_expert.to_vector<int64_t>() == expert);
  CHECK(plain_routing.losses.count("l1_loss") == 0);
  CHECK(plain_routing.losses.count("z_loss") == 1);
}

TEST_CASE("relu_routing: gradcheck of the rule with its losses, and a zero logit is a reported choice",
          "[relu_routing][gradcheck]") {
  RouterConfig config = remoe(4, 2);
  config.l1_loss.coefficient = 0.5;  // weighted up, so gradcheck sees it
  config.z_loss = {true, 0.5};
  RoutingRule rule = make_rule(config);
  auto fn = [&](const TensorList& in) {
    Routing routing = rule(in[0], context_of(4));
    return concat({routing.pair_weight, routing.weighted_loss().reshape({1})}, 0);
  };
  Generator generator(32);
  Tensor logits = randn({8, 4}, DType::f64, &generator).requires_grad_();
  GradcheckResult result = gradcheck(fn, {logits});
  INFO(result.report);
  CHECK(result.passed());
  // A logit within eps of 0 can switch its expert on or off.
  Tensor near_zero = logits.detach().clone();
  near_zero.data<double>()[5] = 2e-7;
  GradcheckResult at_zero = gradcheck(fn, {near_zero.requires_grad_()});
  CHECK(at_zero.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(at_zero.report, Catch::Contains("relu"));
}

TEST_CASE("relu_routing: the Router keeps lambda as a buffer and moves it by the sparsity", "[relu_routing][router]") {
  Generator generator(33);
  Router router(remoe(8, 2), 6, &generator, DType::f64);  // target sparsity 1 - 2 / 8 = 0.75
  REQUIRE(router.named_buffers().size() == 1);
  CHECK(router.named_buffers()[0].first == "l1_coefficient");
  CHECK(router.l1_coefficient() == 1e-8);
  router.update_l1_coefficient(0.5);  // too dense: up
  CHECK(router.l1_coefficient() == Approx(1.2e-8).epsilon(1e-15));
  router.update_l1_coefficient(0.9);  // too sparse: down
  CHECK(router.l1_coefficient() == Approx(1e-8).epsilon(1e-15));
  router.update_l1_coefficient(0.75);  // on target: kept
  CHECK(router.l1_coefficient() == Approx(1e-8).epsilon(1e-15));
  // The rule weighs its loss by the live lambda, also one loaded from a state dict.
  Tensor x = randn({10, 6}, DType::f64, &generator);
  router.load_state_dict({{"l1_coefficient", full({1}, 0.25, DType::f64)}}, /*strict=*/false);
  CHECK(router.forward(x).loss_coefficients.at("l1_loss") == 0.25);
  CHECK(router.l1_coefficient() == 0.25);
  for (double wrong : {-1.0, 0.0, std::numeric_limits<double>::infinity()}) {
    router.load_state_dict({{"l1_coefficient", full({1}, wrong, DType::f64)}}, /*strict=*/false);
    CHECK_THROWS_WITH(router.forward(x), Catch::Contains("route") && Catch::Contains("finite and > 0"));
  }
  // An empty batch has no sparsity (NaN), which leaves lambda alone.
  router.load_state_dict({{"l1_coefficient", full({1}, 0.5, DType::f64)}}, /*strict=*/false);
  Routing empty = router.forward(zeros({0, 6}, DType::f64));
  CHECK(std::isnan(empty.sparsity()));
  router.update_l1_coefficient(empty.sparsity());
  CHECK(router.l1_coefficient() == 0.5);
  // A lambda pushed out of the doubles' range says why instead of turning into inf or 0.
  router.load_state_dict({{"l1_coefficient", full({1}, 1e300, DType::f64)}}, /*strict=*/false);
  CHECK_THROWS_WITH(router.update_l1_coefficient(0.0), Catch::Contains("Router::update_l1_coefficient") &&
                                                          Catch::Contains("never reaches its target sparsity"));
  router.load_state_dict({{"l1_coefficient", full({1}, 1e-300, DType::f64)}}, /*strict=*/false);
  CHECK_THROWS_WITH(router.update_l1_coefficient(1.0), Catch::Contains("never reaches"));
  // Outside autograd, in the block's state dict under the gate.
  CHECK_FALSE(router.named_buffers()[0].second.requires_grad());
  SparseMoEBlock block(remoe_block(4, 1));
  CHECK(block.state_dict().at("gate.l1_coefficient").shape() == Shape{1});
  // Errors name the call.
  CHECK_THROWS_WITH(router.update_l1_coefficient(1.5), Catch::Contains("Router::update_l1_coefficient") &&
                                                          Catch::Contains("[0, 1]"));
  Router plain(mixtral(4, 2), 6, &generator);
  CHECK_THROWS_WITH(plain.update_l1_coefficient(0.5), Catch::Contains("no l1 loss"));
  CHECK_THROWS_WITH(plain.l1_coefficient(), Catch::Contains("Router::l1_coefficient"));
}

TEST_CASE("relu_routing: tokens that use no expert get nothing, and backward still runs", "[relu_routing]") {
  SparseMoEBlock block(remoe_block(4, 2));
  // Every logit is x[t, 0]: a token with x[t, 0] < 0 uses no expert, one with x[t, 0] > 0 all four.
  std::vector<double> gate(4 * 6, 0.0);
  for (int64_t e = 0; e < 4; ++e) gate[e * 6] = 1.0;
  set_gate_weight(*block.gate(), gate);
  Generator generator(34);
  Tensor x = randn({6, 6}, DType::f64, &generator);
  for (int64_t t = 0; t < 6; ++t) x.data<double>()[t * 6] = t < 3 ? -1.0 : 1.0;
  x.requires_grad_();
  MoEOutput out = block.forward(x);
  std::vector<double> y = out.output.to_vector<double>();
  for (int64_t i = 0; i < 18; ++i) CHECK(y[i] == 0.0);
  CHECK(out.routing.routed_pairs == 12);
  CHECK(out.diagnostics.experts_per_token == 2.0);
  add(sum(out.output), out.routing.weighted_loss()).backward();
  std::vector<double> dx = x.grad().to_vector<double>();
  for (int64_t i = 0; i < 18; ++i) CHECK(dx[i] == 0.0);
  // No token uses any expert: no pair at all, a zero output, and the backward runs.
  Tensor none = x.detach().clone();
  for (int64_t t = 0; t < 6; ++t) none.data<double>()[t * 6] = -2.0;
  none.requires_grad_();
  MoEOutput empty = block.forward(none);
  CHECK(empty.routing.pair_token.numel() == 0);
  CHECK(empty.routing.sparsity() == 1.0);
  CHECK(empty.tokens_per_expert.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(empty.diagnostics.experts_per_token == 0.0);
  for (double value : empty.output.to_vector<double>()) CHECK(value == 0.0);
  CHECK(empty.routing.losses.at("l1_loss").item<double>() == 0.0);
  add(sum(empty.output), empty.routing.weighted_loss()).backward();
  for (double value : none.grad().to_vector<double>()) CHECK(value == 0.0);
  // A shared expert still serves every token.
  SparseMoEBlock shared(remoe_block(4, 2, SharedExpertKind::ungated));
  set_gate_weight(*shared.gate(), gate);
  MoEOutput shared_out = shared.forward(none.detach());
  Tensor expected = shared_expert_output(*shared.shared_expert(), nullptr, none.detach());
  CHECK(shared_out.output.to_vector<double>() == expected.to_vector<double>());
}

TEST_CASE("relu_routing: the block's controller, and the model's: one lambda moved by the mean sparsity",
          "[relu_routing][moe_transformer]") {
  Generator generator(35);
  SparseMoEBlock block(remoe_block(4, 1), &generator);
  MoEOutput out = block.forward(randn({12, 6}, DType::f64, &generator));
  block.update_l1_coefficient(out);
  CHECK(block.gate()->l1_coefficient() == Approx(next_lambda(1e-8, out.routing.sparsity(), 1, 4)).epsilon(1e-15));

  MoETransformer model(tinymoe::testing::tiny_lm_config(remoe(4, 1), DType::f32, 3), &generator);
  Tensor ids = from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5}, {2, 6});
  LMOutput lm = model(ids);
  double mean_sparsity = 0.0;
  for (const MoEOutput& layer : lm.layers) mean_sparsity += layer.routing.sparsity() / 3.0;
  model.update_router_l1_coefficients(lm);
  for (size_t l = 0; l < 3; ++l)
    CHECK(model.layer(l).block_sparse_moe()->gate()->l1_coefficient() ==
          Approx(next_lambda(1e-8, mean_sparsity, 1, 4)).epsilon(1e-15));
  // Other routers have no lambda to move; a wrong number of layer outputs is an Error.
  MoETransformer plain(tinymoe::testing::tiny_lm_config(mixtral(4, 2)), &generator);
  CHECK_NOTHROW(plain.update_router_l1_coefficients(plain(ids)));
  lm.layers.pop_back();
  CHECK_THROWS_WITH(model.update_router_l1_coefficients(lm), Catch::Contains("update_router_l1_coefficients"));
}

TEST_CASE("relu_routing: a small model learns while lambda brings the sparsity to its target",
          "[relu_routing][moe_transformer][optim]") {
  // E = 4, k = 1: target sparsity 0.75. lambda starts at 1e-4 rather than 1e-8 so that the
  // controller reaches the working range (about 1e-2 here) in tens of steps, not a hundred.
  RouterConfig router = remoe(4, 1);
  router.l1_loss.coefficient = 1e-4;
  Generator generator(36);
  MoETransformer model(tinymoe::testing::tiny_lm_config(router, DType::f32), &generator);
  AdamW optimizer(model.parameters(), AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.0});
  // The cycle 0 1 2 ... 6 0 1 ... from every offset: the next token is (id + 1) mod 7.
  std::vector<int64_t> ids, targets;
  for (int64_t start = 0; start < 7; ++start)
    for (int64_t s = 0; s < 6; ++s) ids.push_back((start + s) % 7), targets.push_back((start + s + 1) % 7);
  Tensor batch_ids = from_vector(ids, {7, 6}), batch_targets = from_vector(targets, {7, 6});
  double first_loss = 0, last_loss = 0, first_sparsity = 0, late_sparsity = 0;
  const int steps = 150, late = 50;
  for (int step = 0; step < steps; ++step) {
    model.zero_grad();
    LMOutput out = model(batch_ids, batch_targets);
    out.total_loss().backward();
    optimizer.step();
    model.update_router_l1_coefficients(out);
    double sparsity = (out.layers[0].routing.sparsity() + out.layers[1].routing.sparsity()) / 2.0;
    if (step == 0) first_loss = out.loss.item<double>(), first_sparsity = sparsity;
    if (step >= steps - late) late_sparsity += sparsity / late;
    last_loss = out.loss.item<double>();
  }
  INFO("loss " << first_loss << " -> " << last_loss << ", sparsity " << first_sparsity << " -> " << late_sparsity
               << " (mean of the last " << late << " steps), lambda "
               << model.layer(0).block_sparse_moe()->gate()->l1_coefficient());
  CHECK(first_sparsity < 0.65);  // about half the relu scores are zero at initialisation
  CHECK(std::abs(late_sparsity - 0.75) < 0.05);
  CHECK(last_loss < 0.1 * first_loss);
}

TEST_CASE("relu_routing: bad configs name RouterConfig", "[relu_routing][errors]") {
  auto refused = [](const RouterConfig& config, const char* text) {
    CHECK_THROWS_WITH(config.validate(), Catch::Contains("RouterConfig") && Catch::Contains(text));
  };
  RouterConfig relu_topk = mixtral(4, 2);
  relu_topk.score_function = ScoreFunction::relu;
  relu_topk.weights.renormalize = false;
  relu_topk.aux_loss = {};
  refused(relu_topk, "relu scores with the positive selection together");
  RouterConfig softmax_positive = remoe(4, 2);
  softmax_positive.score_function = ScoreFunction::softmax;
  refused(softmax_positive, "together");
  RouterConfig l1_elsewhere = mixtral(4, 2);
  l1_elsewhere.l1_loss = {true, 1e-8};
  refused(l1_elsewhere, "needs ReLU routing");
  RouterConfig no_target = remoe(4, 2);
  no_target.relu_target_k = 0;
  refused(no_target, "1 <= relu_target_k <= top_k = 4");
  RouterConfig big_target = remoe(4, 2);
  big_target.relu_target_k = 5;
  refused(big_target, "relu_target_k");
  RouterConfig past_the_cap = remoe(8, 4);
  past_the_cap.top_k = 2;  // a sparsity no routing reaches: lambda would only fall
  refused(past_the_cap, "relu_target_k <= top_k = 2");
  RouterConfig target_elsewhere = mixtral(4, 2);
  target_elsewhere.relu_target_k = 2;
  refused(target_elsewhere, "relu_target_k is ReLU routing's target");
  RouterConfig zero_start = remoe(4, 2);
  zero_start.l1_loss.coefficient = 0.0;  // 0 times 1.2 stays 0
  refused(zero_start, "starting coefficient must be > 0");
  RouterConfig multiplier = remoe(4, 2);
  multiplier.l1_coefficient_multiplier = 1.0;
  refused(multiplier, "multiplier > 1");
  RouterConfig capacity = remoe(4, 2);
  capacity.capacity = CapacityConfig::factor(1.0);
  refused(capacity, "capacity");
  RouterConfig biased = remoe(4, 2);
  biased.selection_bias = true;
  refused(biased, "selection bias");
  RouterConfig renormalised = remoe(4, 2);
  renormalised.weights.renormalize = true;
  refused(renormalised, "renormalisation does not apply");
  RouterConfig aux = remoe(4, 2);
  aux.aux_loss = {true, 0.01};
  refused(aux, "only the l1 loss and the z-loss");
  RouterConfig negative = remoe(4, 2);
  negative.l1_loss.coefficient = -1.0;
  refused(negative, "starting coefficient must be > 0");
  CHECK_NOTHROW(remoe(4, 4).validate());
}
