// nn/dispatch.h: the permutation plan, dispatch and combine against hand-computed values, a
// gradcheck through pair weights and tokens, and the routing consistency checks.
#include <catch2/catch.hpp>

#include <vector>

#include "nn/dispatch.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using nn::DispatchPlan;
using nn::Routing;

namespace {

Routing pairs(const std::vector<int64_t>& tokens, const std::vector<int64_t>& experts, const Tensor& weights) {
  Routing routing;
  routing.pair_token = from_vector(tokens, {static_cast<int64_t>(tokens.size())});
  routing.pair_expert = from_vector(experts, {static_cast<int64_t>(experts.size())});
  routing.pair_weight = weights;
  return routing;
}

// 6 pairs of 5 tokens over 4 experts: token 4 has no pair, expert 3 gets none.
const std::vector<int64_t> kTokens = {0, 0, 1, 2, 2, 3};
const std::vector<int64_t> kExperts = {2, 0, 2, 1, 0, 2};
const std::vector<double> kWeights = {0.5, 0.25, 1.0, 2.0, -1.0, 3.0};

}  // namespace

TEST_CASE("dispatch: the plan sorts pairs by expert, stably, with counts and offsets", "[dispatch]") {
  DispatchPlan plan = nn::plan_dispatch(pairs(kTokens, kExperts, from_vector(kWeights, {6})), 5, 4, DType::f64);
  CHECK(plan.num_tokens == 5);
  // Expert 0: pairs 1, 4; expert 1: pair 3; expert 2: pairs 0, 2, 5 (in pair order); expert 3: none.
  CHECK(plan.pair_order.to_vector<int64_t>() == std::vector<int64_t>{1, 4, 3, 0, 2, 5});
  CHECK(plan.sorted_token.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 2, 0, 1, 3});
  CHECK(plan.sorted_weight.shape() == Shape{6, 1});
  CHECK(plan.sorted_weight.to_vector<double>() == std::vector<double>{0.25, -1.0, 2.0, 0.5, 1.0, 3.0});
  CHECK(plan.tokens_per_expert.to_vector<int64_t>() == std::vector<int64_t>{2, 1, 3, 0});
  CHECK(plan.offsets.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 3, 6, 6});
}

TEST_CASE("dispatch: dispatch gathers token rows, combine adds weighted rows back", "[dispatch]") {
  DispatchPlan plan = nn::plan_dispatch(pairs(kTokens, kExperts, from_vector(kWeights, {6})), 5, 4, DType::f64);
  Tensor x = from_vector(std::vector<double>{0, 1, 10, 11, 20, 21, 30, 31, 40, 41}, {5, 2});
  Tensor x_perm = nn::dispatch_tokens(x, plan);
  CHECK(x_perm.to_vector<double>() == std::vector<double>{0, 1, 20, 21, 20, 21, 0, 1, 10, 11, 30, 31});
  // Combine rows y_perm[i] = (i + 1, 1): token t gets sum of weight * row over its pairs.
  Tensor y_perm = from_vector(std::vector<double>{1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1}, {6, 2});
  Tensor y = nn::combine_outputs(y_perm, plan);
  REQUIRE(y.shape() == Shape{5, 2});
  // token 0: 0.25 * (1,1) + 0.5 * (4,1); token 1: 1.0 * (5,1); token 2: -1 * (2,1) + 2 * (3,1);
  // token 3: 3 * (6,1); token 4: no pair, zero.
  CHECK(y.to_vector<double>() == std::vector<double>{2.25, 0.75, 5, 1, 4, 1, 18, 3, 0, 0});
}

TEST_CASE("dispatch: weighing the expert input scales rows at dispatch, combine sums them", "[dispatch]") {
  Routing routing = pairs(kTokens, kExperts, from_vector(kWeights, {6}));
  routing.weight_on_expert_input = true;  // Llama 4
  DispatchPlan plan = nn::plan_dispatch(routing, 5, 4, DType::f64);
  CHECK(plan.weight_on_expert_input);
  Tensor x = from_vector(std::vector<double>{0, 1, 10, 11, 20, 21, 30, 31, 40, 41}, {5, 2});
  // Sorted weights 0.25, -1, 2, 0.5, 1, 3 times the rows of tokens 0, 2, 2, 0, 1, 3.
  CHECK(nn::dispatch_tokens(x, plan).to_vector<double>() ==
        std::vector<double>{0, 0.25, -20, -21, 40, 42, 0, 0.5, 10, 11, 90, 93});
  Tensor y_perm = from_vector(std::vector<double>{1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1}, {6, 2});
  // token 0: (1,1) + (4,1); token 1: (5,1); token 2: (2,1) + (3,1); token 3: (6,1); token 4: zero.
  CHECK(nn::combine_outputs(y_perm, plan).to_vector<double>() == std::vector<double>{5, 2, 5, 1, 5, 2, 6, 1, 0, 0});
  CHECK_THROWS_WITH(nn::dispatch_tokens(x.to(DType::f32), plan),
                    Catch::Contains("dispatch_tokens") && Catch::Contains("pair weights' dtype f64"));
}

TEST_CASE("dispatch: no pairs at all give a zero output", "[dispatch]") {
  Routing empty;
  empty.pair_token = zeros({0}, DType::i64);
  empty.pair_expert = zeros({0}, DType::i64);
  empty.pair_weight = zeros({0});
  DispatchPlan plan = nn::plan_dispatch(empty, 3, 2, DType::f32);
  CHECK(plan.offsets.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});
  Tensor x_perm = nn::dispatch_tokens(ones({3, 4}), plan);
  CHECK(x_perm.shape() == Shape{0, 4});
  Tensor y = nn::combine_outputs(x_perm, plan);
  CHECK(y.shape() == Shape{3, 4});
  for (float v : y.to_vector<float>()) CHECK(v == 0.0f);
}

TEST_CASE("dispatch: gradcheck through x, the expert rows and the pair weights", "[dispatch][gradcheck]") {
  Generator generator(4);
  Tensor x = randn({5, 3}, DType::f64, &generator).requires_grad_();
  Tensor weights = randn({6}, DType::f64, &generator).requires_grad_();
  Tensor scale = randn({6, 3}, DType::f64, &generator).requires_grad_();
  // A stand-in for the experts: each dispatched row times its own scale row.
  auto layer = [](const TensorList& in) {
    DispatchPlan plan = nn::plan_dispatch(pairs(kTokens, kExperts, in[1]), 5, 4, DType::f64);
    return nn::combine_outputs(mul(nn::dispatch_tokens(in[0], plan), in[2]), plan);
  };
  GradcheckResult result = gradcheck(layer, {x, weights, scale});
  INFO(result.report);
  CHECK(result.passed());
  // With the weights on the expert input, behind a nonlinear stand-in (tanh) so that input and
  // output weighting differ.
  auto input_weighted = [](const TensorList& in) {
    Routing routing = pairs(kTokens, kExperts, in[1]);
    routing.weight_on_expert_input = true;
    DispatchPlan plan = nn::plan_dispatch(routing, 5, 4, DType::f64);
    return nn::combine_outputs(tanh(mul(nn::dispatch_tokens(in[0], plan), in[2])), plan);
  };
  GradcheckResult on_input = gradcheck(input_weighted, {x, weights, scale});
  INFO(on_input.report);
  CHECK(on_input.passed());
}

TEST_CASE("dispatch: inconsistent routings are errors naming the op", "[dispatch][errors]") {
  Tensor weights = from_vector(kWeights, {6});
  auto plan = [](const Routing& routing) { return nn::plan_dispatch(routing, 5, 4, DType::f64); };
  CHECK_NOTHROW(plan(pairs(kTokens, kExperts, weights)));
  CHECK_THROWS_WITH(plan(pairs(kTokens, {2, 0, 2, 1, 4, 2}, weights)),
                    Catch::Contains("moe_dispatch") && Catch::Contains("pair_expert[4] = 4") &&
                        Catch::Contains("[0, 4)"));
  CHECK_THROWS_WITH(plan(pairs(kTokens, {2, 0, -1, 1, 0, 2}, weights)), Catch::Contains("moe_dispatch"));
  CHECK_THROWS_WITH(plan(pairs({0, 0, 1, 5, 2, 3}, kExperts, weights)),
                    Catch::Contains("moe_dispatch") && Catch::Contains("pair_token[3] = 5"));
  CHECK_THROWS_WITH(plan(pairs({0, 0, 1}, kExperts, weights)),
                    Catch::Contains("moe_dispatch") && Catch::Contains("pair_expert") && Catch::Contains("[3]"));
  CHECK_THROWS_WITH(plan(pairs(kTokens, kExperts, from_vector(std::vector<double>{1, 2}, {2}))),
                    Catch::Contains("moe_dispatch") && Catch::Contains("pair_weight"));
  CHECK_THROWS_WITH(plan(pairs(kTokens, kExperts, weights.to(DType::f32))),
                    Catch::Contains("moe_dispatch") && Catch::Contains("f32"));
  CHECK_THROWS_WITH(plan(pairs(kTokens, kExperts, weights.reshape({6, 1}))), Catch::Contains("moe_dispatch"));
  Routing float_tokens = pairs(kTokens, kExperts, weights);
  float_tokens.pair_token = float_tokens.pair_token.to(DType::f64);
  CHECK_THROWS_WITH(plan(float_tokens), Catch::Contains("moe_dispatch") && Catch::Contains("i64"));
  Routing missing = pairs(kTokens, kExperts, weights);
  missing.pair_expert = Tensor();
  CHECK_THROWS_WITH(plan(missing), Catch::Contains("moe_dispatch") && Catch::Contains("no pair_expert"));
  CHECK_THROWS_WITH(plan(Routing()), Catch::Contains("moe_dispatch") && Catch::Contains("no pair_token"));
  CHECK_THROWS_WITH(nn::check_routing(pairs(kTokens, kExperts, weights), 3, 4, DType::f64, "MyBlock"),
                    Catch::Contains("MyBlock") && Catch::Contains("pair_token"));

  DispatchPlan good = plan(pairs(kTokens, kExperts, weights));
  CHECK_THROWS_WITH(nn::dispatch_tokens(zeros({4, 2}, DType::f64), good), Catch::Contains("dispatch_tokens"));
  CHECK_THROWS_WITH(nn::combine_outputs(zeros({5, 2}, DType::f64), good), Catch::Contains("combine_outputs"));
  CHECK_THROWS_WITH(nn::combine_outputs(zeros({6, 2}), good),
                    Catch::Contains("combine_outputs") && Catch::Contains("f64"));
}
