// nn/experts.h: stacked SwiGLU and MLP experts and the shared expert, against per-expert loops
// over HF-layout ([out, in]) matrices; HF loading, gradchecks and argument errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "nn/experts.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using nn::Activation;
using nn::MLPExperts;
using nn::SharedExpert;
using nn::SwiGLUExperts;

namespace {

// A row-major [rows, cols] matrix in the HF nn.Linear layout: y = W x.
struct HfMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;

  std::vector<double> apply(const std::vector<double>& x) const {
    std::vector<double> y(rows, 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) y[r] += values[r * cols + c] * x[c];
    return y;
  }
  Tensor tensor() const { return from_vector(values, {rows, cols}); }
};

HfMatrix random_matrix(int64_t rows, int64_t cols, Generator& generator) {
  Tensor t = randn({rows, cols}, DType::f64, &generator);
  return {rows, cols, t.to_vector<double>()};
}

double scalar_activation(double z, Activation activation) {
  switch (activation) {
    case Activation::relu: return z > 0 ? z : 0.0;
    case Activation::gelu: return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
    default: return z / (1.0 + std::exp(-z));
  }
}

// HF's per-expert MLPs on one row: w2(silu(w1 x) * w3 x), or wo(act(wi x)).
std::vector<double> hf_swiglu(const HfMatrix& w1, const HfMatrix& w3, const HfMatrix& w2, const std::vector<double>& x) {
  std::vector<double> gate = w1.apply(x), up = w3.apply(x);
  for (size_t j = 0; j < gate.size(); ++j) gate[j] = scalar_activation(gate[j], Activation::silu) * up[j];
  return w2.apply(gate);
}

std::vector<double> hf_mlp(const HfMatrix& wi, const HfMatrix& wo, Activation activation, const std::vector<double>& x) {
  std::vector<double> hidden = wi.apply(x);
  for (double& h : hidden) h = scalar_activation(h, activation);
  return wo.apply(hidden);
}

std::vector<double> row_of(const Tensor& x, int64_t row) {
  std::vector<double> all = x.to_vector<double>();
  int64_t width = x.size(1);
  return std::vector<double>(all.begin() + row * width, all.begin() + (row + 1) * width);
}

// The expert owning `row`: offsets[e] <= row < offsets[e + 1].
int64_t owner(const std::vector<int64_t>& offsets, int64_t row) {
  int64_t expert = 0;
  while (row >= offsets[expert + 1]) ++expert;
  return expert;
}

// Rows 0..N-1 spread over 3 experts, expert 1 empty.
const std::vector<int64_t> kOffsets = {0, 3, 3, 7};

}  // namespace

TEST_CASE("experts: SwiGLU forward matches HF's per-expert MLPs after load_expert_from_hf", "[experts]") {
  const int64_t experts = 3, d = 4, f = 5;
  Generator generator(11);
  std::vector<HfMatrix> w1, w3, w2;
  SwiGLUExperts module(experts, d, f, &generator, DType::f64);
  for (int64_t e = 0; e < experts; ++e) {
    w1.push_back(random_matrix(f, d, generator));
    w3.push_back(random_matrix(f, d, generator));
    w2.push_back(random_matrix(d, f, generator));
    module.load_expert_from_hf(e, w1[e].tensor(), w3[e].tensor(), w2[e].tensor());
  }
  Tensor x = randn({kOffsets.back(), d}, DType::f64, &generator);
  Tensor y = module.forward(x, from_vector(kOffsets, {experts + 1}));
  REQUIRE(y.shape() == Shape{kOffsets.back(), d});
  for (int64_t row = 0; row < kOffsets.back(); ++row) {
    int64_t e = owner(kOffsets, row);
    std::vector<double> expected = hf_swiglu(w1[e], w3[e], w2[e], row_of(x, row));
    std::vector<double> got = row_of(y, row);
    for (int64_t c = 0; c < d; ++c) CHECK(got[c] == Approx(expected[c]).epsilon(1e-12).margin(1e-12));
  }
  // Reading back gives the HF matrices unchanged.
  CHECK(nn::expert_weight_to_hf(module.w1(), 2).to_vector<double>() == w1[2].values);
  CHECK(nn::expert_weight_to_hf(module.w2(), 0).to_vector<double>() == w2[0].values);
}

TEST_CASE("experts: MLP (relu, gelu) forward matches HF's per-expert MLPs", "[experts]") {
  const int64_t experts = 3, d = 3, f = 6;
  for (Activation activation : {Activation::relu, Activation::gelu}) {
    Generator generator(5);
    MLPExperts module(experts, d, f, activation, &generator, DType::f64);
    std::vector<HfMatrix> wi, wo;
    for (int64_t e = 0; e < experts; ++e) {
      wi.push_back(random_matrix(f, d, generator));
      wo.push_back(random_matrix(d, f, generator));
      module.load_expert_from_hf(e, wi[e].tensor(), wo[e].tensor());
    }
    Tensor x = randn({kOffsets.back(), d}, DType::f64, &generator);
    Tensor y = module.forward(x, from_vector(kOffsets, {experts + 1}));
    for (int64_t row = 0; row < kOffsets.back(); ++row) {
      int64_t e = owner(kOffsets, row);
      std::vector<double> expected = hf_mlp(wi[e], wo[e], activation, row_of(x, row));
      std::vector<double> got = row_of(y, row);
      for (int64_t c = 0; c < d; ++c) CHECK(got[c] == Approx(expected[c]).epsilon(1e-12).margin(1e-12));
    }
  }
}

TEST_CASE("experts: parameter names, shapes and init bounds", "[experts]") {
  Generator generator(1);
  SwiGLUExperts swiglu(4, 6, 8, &generator);
  nn::StateDict state = swiglu.state_dict();
  REQUIRE(state.size() == 3);
  CHECK(state.at("w1").shape() == Shape{4, 6, 8});
  CHECK(state.at("w3").shape() == Shape{4, 6, 8});
  CHECK(state.at("w2").shape() == Shape{4, 8, 6});
  CHECK(swiglu.num_experts() == 4);
  CHECK(swiglu.hidden_size() == 6);
  CHECK(swiglu.intermediate_size() == 8);
  // Each slice is drawn like nn.Linear of its fan-in: |w| <= 1/sqrt(fan_in).
  for (double v : swiglu.w1().to(DType::f64).to_vector<double>()) CHECK(std::abs(v) <= 1.0 / std::sqrt(6.0));
  for (double v : swiglu.w2().to(DType::f64).to_vector<double>()) CHECK(std::abs(v) <= 1.0 / std::sqrt(8.0));

  MLPExperts mlp(2, 3, 5, Activation::gelu, &generator, DType::f64);
  nn::StateDict mlp_state = mlp.state_dict();
  REQUIRE(mlp_state.size() == 2);
  CHECK(mlp_state.at("wi").shape() == Shape{2, 3, 5});
  CHECK(mlp_state.at("wo").shape() == Shape{2, 5, 3});
  CHECK(mlp_state.at("wi").dtype() == DType::f64);
  CHECK(std::string(nn::activation_name(mlp.activation())) == "gelu");

  SharedExpert shared(6, 10, &generator);
  nn::StateDict shared_state = shared.state_dict();
  REQUIRE(shared_state.size() == 3);
  CHECK(shared_state.at("gate_proj.weight").shape() == Shape{10, 6});
  CHECK(shared_state.at("up_proj.weight").shape() == Shape{10, 6});
  CHECK(shared_state.at("down_proj.weight").shape() == Shape{6, 10});
}

TEST_CASE("experts: the shared expert is HF's SwiGLU MLP on every token, any leading shape", "[experts]") {
  Generator generator(3);
  HfMatrix gate = random_matrix(7, 4, generator), up = random_matrix(7, 4, generator), down = random_matrix(4, 7, generator);
  SharedExpert shared(gate.tensor(), up.tensor(), down.tensor());
  Tensor x = randn({2, 3, 4}, DType::f64, &generator);
  Tensor y = shared.forward(x);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  Tensor rows = x.reshape({6, 4}), y_rows = y.reshape({6, 4});
  for (int64_t t = 0; t < 6; ++t) {
    std::vector<double> expected = hf_swiglu(gate, up, down, row_of(rows, t));
    std::vector<double> got = row_of(y_rows, t);
    for (int64_t c = 0; c < 4; ++c) CHECK(got[c] == Approx(expected[c]).epsilon(1e-12).margin(1e-12));
  }
}

TEST_CASE("experts: gradcheck of SwiGLU and MLP experts with an empty expert", "[experts][gradcheck]") {
  const int64_t experts = 3, d = 3, f = 4;
  Generator generator(21);
  Tensor offsets = from_vector(kOffsets, {experts + 1});
  Tensor x = randn({kOffsets.back(), d}, DType::f64, &generator).requires_grad_();
  auto weight = [&](int64_t in, int64_t out) { return randn({experts, in, out}, DType::f64, &generator).requires_grad_(); };
  Tensor w1 = weight(d, f), w3 = weight(d, f), w2 = weight(f, d);
  GradcheckResult swiglu = gradcheck(
      [&](const TensorList& in) { return SwiGLUExperts(in[1], in[2], in[3]).forward(in[0], offsets); }, {x, w1, w3, w2});
  INFO(swiglu.report);
  CHECK(swiglu.passed());
  for (Activation activation : {Activation::relu, Activation::gelu}) {
    GradcheckResult mlp = gradcheck(
        [&](const TensorList& in) { return MLPExperts(in[1], in[2], activation).forward(in[0], offsets); }, {x, w1, w2});
    INFO(nn::activation_name(activation) << ": " << mlp.report);
    CHECK(mlp.passed());
  }
}

namespace {

// A dispatch plan for T tokens: pairs (token, expert, weight) as given, sorted by expert.
nn::DispatchPlan plan_for(int64_t tokens, int64_t experts, const std::vector<int64_t>& pair_token,
                          const std::vector<int64_t>& pair_expert, const Tensor& pair_weight) {
  nn::Routing routing;
  const int64_t pairs = static_cast<int64_t>(pair_token.size());
  routing.pair_token = from_vector(pair_token, {pairs});
  routing.pair_expert = from_vector(pair_expert, {pairs});
  routing.pair_weight = pair_weight;
  return nn::plan_dispatch(routing, tokens, experts, pair_weight.dtype());
}

}  // namespace

TEST_CASE("experts: forward_combined equals dispatch, forward and combine, SwiGLU's fused path too",
          "[experts]") {
  Generator generator(31);
  // 5 tokens, 3 experts (expert 1 unused), token 3 routed nowhere, token 0 twice.
  const std::vector<int64_t> pair_token{0, 2, 4, 0, 1, 2}, pair_expert{2, 0, 2, 0, 2, 2};
  Tensor pair_weight = rand({6}, DType::f64, &generator, 0.1, 1.0).requires_grad_();
  nn::DispatchPlan plan = plan_for(5, 3, pair_token, pair_expert, pair_weight);
  Tensor x = randn({5, 4}, DType::f64, &generator).requires_grad_();
  SwiGLUExperts swiglu(3, 4, 6, &generator, DType::f64);
  MLPExperts mlp(3, 4, 6, Activation::gelu, &generator, DType::f64);
  for (const nn::Experts* experts : std::initializer_list<const nn::Experts*>{&swiglu, &mlp}) {
    Tensor combined = experts->forward_combined(x, plan);
    Tensor composed = nn::combine_outputs(experts->forward(nn::dispatch_tokens(x, plan), plan.offsets), plan);
    std::vector<double> a = combined.to_vector<double>(), b = composed.to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-12));
    for (int64_t c = 0; c < 4; ++c) CHECK(a[3 * 4 + c] == 0.0);  // token 3 has no pair
  }
  GradcheckResult result = gradcheck(
      [&](const TensorList& in) {
        nn::DispatchPlan p = plan_for(5, 3, pair_token, pair_expert, in[1]);
        return SwiGLUExperts(in[2], in[3], in[4]).forward_combined(in[0], p);
      },
      {x, pair_weight, swiglu.w1().detach().requires_grad_(), swiglu.w3().detach().requires_grad_(),
       swiglu.w2().detach().requires_grad_()});
  INFO(result.report);
  CHECK(result.passed());
  CHECK_THROWS_WITH(swiglu.forward_combined(randn({4, 4}, DType::f64), plan),
                    Catch::Contains("SwiGLUExperts") && Catch::Contains("plan's tokens"));
}

TEST_CASE("experts: gradcheck of the shared expert", "[experts][gradcheck]") {
  Generator generator(8);
  Tensor x = randn({2, 2, 3}, DType::f64, &generator).requires_grad_();
  Tensor gate = randn({4, 3}, DType::f64, &generator).requires_grad_();
  Tensor up = randn({4, 3}, DType::f64, &generator).requires_grad_();
  Tensor down = randn({3, 4}, DType::f64, &generator).requires_grad_();
  GradcheckResult result = gradcheck(
      [](const TensorList& in) { return SharedExpert(in[1], in[2], in[3]).forward(in[0]); }, {x, gate, up, down});
  INFO(result.report);
  CHECK(result.passed());
}

TEST_CASE("experts: an expert without rows gets zero weight gradients", "[experts]") {
  Generator generator(2);
  SwiGLUExperts module(3, 2, 3, &generator, DType::f64);
  Tensor x = randn({kOffsets.back(), 2}, DType::f64, &generator);
  sum(module.forward(x, from_vector(kOffsets, {4}))).backward();
  for (const Tensor& w : {module.w1(), module.w3(), module.w2()}) {
    std::vector<double> empty_expert = nn::expert_weight_to_hf(w.grad(), 1).to_vector<double>();
    for (double g : empty_expert) CHECK(g == 0.0);
    std::vector<double> used_expert = nn::expert_weight_to_hf(w.grad(), 0).to_vector<double>();
    double magnitude = 0;
    for (double g : used_expert) magnitude += std::abs(g);
    CHECK(magnitude > 0);
  }
}

TEST_CASE("experts: load_expert_from_hf accepts f32 checkpoints for an f64 module", "[experts]") {
  SwiGLUExperts module(2, 2, 3, nullptr, DType::f64);
  Tensor w1 = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2});
  module.load_expert_from_hf(1, w1, w1, from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}));
  // w1[1] = w1_hf^T: [[1, 3, 5], [2, 4, 6]].
  std::vector<double> all = module.w1().to_vector<double>();
  CHECK(std::vector<double>(all.begin() + 6, all.end()) == std::vector<double>{1, 3, 5, 2, 4, 6});
  CHECK(module.w1().requires_grad());
  CHECK(module.w1().is_leaf());
}

TEST_CASE("experts: bad arguments name the module or function", "[experts][errors]") {
  SwiGLUExperts swiglu(2, 3, 4);
  Tensor offsets = from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  CHECK_THROWS_WITH(swiglu.forward(zeros({2, 5}), offsets), Catch::Contains("SwiGLUExperts") && Catch::Contains("[N, 3]"));
  CHECK_THROWS_WITH(swiglu.forward(zeros({2, 3, 1}), offsets), Catch::Contains("SwiGLUExperts"));
  CHECK_THROWS_WITH(swiglu.forward(zeros({2, 3}, DType::f64), offsets), Catch::Contains("SwiGLUExperts") &&
                                                                            Catch::Contains("f64"));
  CHECK_THROWS_WITH(swiglu.forward(zeros({2, 3}), from_vector(std::vector<int64_t>{0, 2}, {2})),
                    Catch::Contains("grouped_matmul"));
  CHECK_THROWS_WITH(SwiGLUExperts(0, 3, 4), Catch::Contains("SwiGLUExperts"));
  CHECK_THROWS_WITH(SwiGLUExperts(2, 3, 4, nullptr, DType::i64), Catch::Contains("SwiGLUExperts"));
  CHECK_THROWS_WITH(SwiGLUExperts(zeros({2, 3, 4}), zeros({2, 3, 5}), zeros({2, 4, 3})),
                    Catch::Contains("SwiGLUExperts") && Catch::Contains("w3"));
  CHECK_THROWS_WITH(SwiGLUExperts(zeros({2, 3, 4}), zeros({2, 3, 4}), zeros({2, 3, 4})),
                    Catch::Contains("SwiGLUExperts") && Catch::Contains("[2, 4, 3]"));
  CHECK_THROWS_WITH(MLPExperts(zeros({2, 3, 4}), zeros({2, 4, 3}, DType::f64), Activation::relu),
                    Catch::Contains("MLPExperts"));
  CHECK_THROWS_WITH(MLPExperts(2, -1, 4, Activation::relu), Catch::Contains("MLPExperts"));
  MLPExperts mlp(2, 3, 4, Activation::relu);
  CHECK_THROWS_WITH(mlp.forward(zeros({2, 4}), offsets), Catch::Contains("MLPExperts"));

  CHECK_THROWS_WITH(swiglu.load_expert_from_hf(2, zeros({4, 3}), zeros({4, 3}), zeros({3, 4})),
                    Catch::Contains("load_expert_from_hf") && Catch::Contains("expert 2 out of range"));
  CHECK_THROWS_WITH(swiglu.load_expert_from_hf(0, zeros({3, 4}), zeros({4, 3}), zeros({3, 4})),
                    Catch::Contains("load_expert_from_hf") && Catch::Contains("'w1'") && Catch::Contains("[4, 3]"));
  CHECK_THROWS_WITH(mlp.load_expert_from_hf(0, zeros({4, 3}), zeros({4, 3})),
                    Catch::Contains("load_expert_from_hf") && Catch::Contains("'wo'"));
  CHECK_THROWS_WITH(nn::expert_weight_to_hf(zeros({2, 3}), 0), Catch::Contains("expert_weight_to_hf"));
  CHECK_THROWS_WITH(nn::expert_weight_to_hf(zeros({2, 3, 4}), -1), Catch::Contains("expert_weight_to_hf"));

  SharedExpert shared(3, 4);
  CHECK_THROWS_WITH(shared.forward(zeros({2, 4})), Catch::Contains("SharedExpert"));
  CHECK_THROWS_WITH(shared.forward(zeros({2, 3}, DType::f64)), Catch::Contains("SharedExpert"));
  CHECK_THROWS_WITH(SharedExpert(zeros({4, 3}), zeros({4, 3}), zeros({4, 3})), Catch::Contains("SharedExpert"));
  CHECK_THROWS_WITH(SharedExpert(3, 0), Catch::Contains("SharedExpert"));
}
