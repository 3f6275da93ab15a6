// moe_swiglu_experts: the fused dispatch + SwiGLU experts + weighted combine, against a slow
// per-pair loop and against the composed ops (forward and every gradient), gradchecks, the
// no-grad path, partial gradients, and argument errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;

namespace {

// A small problem: T tokens, E experts of width f, pairs sorted by expert with the given
// per-expert counts (an expert may get none), each pair naming a random token.
struct Problem {
  Tensor x, token, weight, offsets, w1, w3, w2;
  TensorList inputs() const { return {x, token, weight, offsets, w1, w3, w2}; }
};

Problem make_problem(int64_t tokens, int64_t d, int64_t f, const std::vector<int64_t>& counts, DType dtype,
                     uint64_t seed) {
  Generator generator(seed);
  const int64_t experts = static_cast<int64_t>(counts.size());
  std::vector<int64_t> offsets{0};
  for (int64_t count : counts) offsets.push_back(offsets.back() + count);
  const int64_t pairs = offsets.back();
  Problem p;
  p.x = randn({tokens, d}, dtype, &generator).requires_grad_();
  p.token = randint(0, tokens, {pairs}, &generator);
  p.weight = rand({pairs, 1}, dtype, &generator, 0.1, 1.0).requires_grad_();
  p.offsets = from_vector(offsets, {experts + 1});
  p.w1 = randn({experts, d, f}, dtype, &generator).requires_grad_();
  p.w3 = randn({experts, d, f}, dtype, &generator).requires_grad_();
  p.w2 = randn({experts, f, d}, dtype, &generator).requires_grad_();
  return p;
}

Tensor run_fused(const TensorList& in) { return moe_swiglu_experts(in[0], in[1], in[2], in[3], in[4], in[5], in[6]); }

// The composed path of nn/dispatch.h: index_select, grouped GEMMs, swiglu, weighted_scatter_add.
Tensor run_composed(const TensorList& in) {
  Tensor x_perm = index_select(in[0], in[1]);
  Tensor hidden = swiglu(grouped_matmul(x_perm, in[4], in[3]), grouped_matmul(x_perm, in[5], in[3]));
  return weighted_scatter_add(grouped_matmul(hidden, in[6], in[3]), in[1], in[2], in[0].size(0));
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// y[t] += w_i * ((silu(x_t W1e) * (x_t W3e)) W2e), pair by pair, in doubles.
std::vector<double> slow_loop(const Problem& p) {
  const int64_t tokens = p.x.size(0), d = p.x.size(1), f = p.w1.size(2), experts = p.w1.size(0);
  std::vector<double> x = p.x.to(DType::f64).to_vector<double>(), w = p.weight.to(DType::f64).to_vector<double>();
  std::vector<double> w1 = p.w1.to(DType::f64).to_vector<double>(), w3 = p.w3.to(DType::f64).to_vector<double>();
  std::vector<double> w2 = p.w2.to(DType::f64).to_vector<double>();
  std::vector<int64_t> token = p.token.to_vector<int64_t>(), offsets = p.offsets.to_vector<int64_t>();
  std::vector<double> y(tokens * d, 0.0);
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      const int64_t t = token[i];
      std::vector<double> act(f);
      for (int64_t j = 0; j < f; ++j) {
        double gate = 0, up = 0;
        for (int64_t c = 0; c < d; ++c) {
          gate += x[t * d + c] * w1[(e * d + c) * f + j];
          up += x[t * d + c] * w3[(e * d + c) * f + j];
        }
        act[j] = silu(gate) * up;
      }
      for (int64_t c = 0; c < d; ++c) {
        double out = 0;
        for (int64_t j = 0; j < f; ++j) out += act[j] * w2[(e * f + j) * d + c];
        y[t * d + c] += w[i] * out;
      }
    }
  return y;
}

double relative_error(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = actual.to(DType::f64).to_vector<double>(), b = expected.to(DType::f64).to_vector<double>();
  REQUIRE(a.size() == b.size());
  double difference = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm == 0 ? std::sqrt(difference) : std::sqrt(difference / norm);
}

}  // namespace

TEST_CASE("moe_swiglu_experts: forward matches a slow per-pair loop", "[moe_swiglu_experts]") {
  // Expert 1 gets no rows; with 7 tokens and 9 pairs some tokens repeat and some get none.
  Problem p = make_problem(7, 5, 3, {4, 0, 2, 3}, DType::f64, 1);
  std::vector<double> want = slow_loop(p);
  std::vector<double> got = run_fused(p.inputs()).to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-12));
  // A token no pair names gets a zero row.
  std::vector<int64_t> token = p.token.to_vector<int64_t>();
  for (int64_t t = 0; t < 7; ++t)
    if (std::find(token.begin(), token.end(), t) == token.end())
      for (int64_t c = 0; c < 5; ++c) CHECK(got[t * 5 + c] == 0.0);
}

TEST_CASE("moe_swiglu_experts: forward and every gradient match the composed ops", "[moe_swiglu_experts]") {
  for (GemmBackend backend : tinymoe::testing::available_backends()) {
    tinymoe::testing::BackendScope scope(backend);
    for (DType dtype : {DType::f32, DType::f64}) {
      INFO(gemm_backend_name(backend) << " " << dtype_name(dtype));
      Problem p = make_problem(40, 24, 16, {13, 0, 30, 1, 20}, dtype, 2);
      Tensor g = randn({40, 24}, dtype);
      Tensor fused = run_fused(p.inputs());
      fused.backward(g);
      TensorList fused_grads{p.x.grad(), p.weight.grad(), p.w1.grad(), p.w3.grad(), p.w2.grad()};
      for (Tensor* t : {&p.x, &p.weight, &p.w1, &p.w3, &p.w2}) t->zero_grad();
      Tensor composed = run_composed(p.inputs());
      composed.backward(g);
      TensorList composed_grads{p.x.grad(), p.weight.grad(), p.w1.grad(), p.w3.grad(), p.w2.grad()};
      const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-5;
      CHECK(relative_error(fused, composed) <= tolerance);
      const char* names[] = {"x", "weight", "w1", "w3", "w2"};
      for (size_t i = 0; i < fused_grads.size(); ++i) {
        INFO("gradient of " << names[i]);
        REQUIRE(fused_grads[i].defined());
        CHECK(fused_grads[i].shape() == composed_grads[i].shape());
        CHECK(relative_error(fused_grads[i], composed_grads[i]) <= tolerance);
      }
      // Expert 1 has no rows: its weight gradients are zero.
      std::vector<double> dw2 = p.w2.grad().to(DType::f64).to_vector<double>();
      for (int64_t k = 16 * 24; k < 2 * 16 * 24; ++k) CHECK(dw2[k] == 0.0);
    }
  }
}

TEST_CASE("moe_swiglu_experts: gradcheck of x, weights and the expert weights", "[moe_swiglu_experts][gradcheck]") {
  Problem p = make_problem(6, 4, 3, {3, 0, 4, 2}, DType::f64, 3);
  check_gradients("all inputs", run_fused, p.inputs());
  check_gradients("x only", run_fused,
                  {p.x, p.token, p.weight.detach(), p.offsets, p.w1.detach(), p.w3.detach(), p.w2.detach()});
  check_gradients("w1 and w2 only", run_fused,
                  {p.x.detach(), p.token, p.weight.detach(), p.offsets, p.w1, p.w3.detach(), p.w2});
  check_gradients("pair weights [P] only", [](const TensorList& in) {
    return moe_swiglu_experts(in[0], in[1], in[2].reshape({-1}), in[3], in[4], in[5], in[6]);
  }, {p.x.detach(), p.token, p.weight, p.offsets, p.w1.detach(), p.w3.detach(), p.w2.detach()});
  Problem none = make_problem(3, 4, 2, {0, 0}, DType::f64, 4);
  check_gradients("no pairs", run_fused, none.inputs());
}

TEST_CASE("moe_swiglu_experts: without recording, the same output", "[moe_swiglu_experts]") {
  Problem p = make_problem(30, 8, 6, {10, 25, 0, 5}, DType::f64, 5);
  Tensor recorded = run_fused(p.inputs());
  Tensor unrecorded;
  {
    NoGradGuard no_grad;
    unrecorded = run_fused(p.inputs());
  }
  CHECK_FALSE(unrecorded.requires_grad());
  CHECK(relative_error(unrecorded, recorded) == 0.0);
}

TEST_CASE("moe_swiglu_experts: bad arguments name the op", "[moe_swiglu_experts][errors]") {
  Problem p = make_problem(5, 4, 3, {2, 2}, DType::f32, 6);
  auto call = [&](const Tensor& x, const Tensor& token, const Tensor& weight, const Tensor& offsets, const Tensor& w1,
                  const Tensor& w3, const Tensor& w2) { return moe_swiglu_experts(x, token, weight, offsets, w1, w3, w2); };
  const auto op = Catch::Contains("moe_swiglu_experts");
  CHECK_THROWS_WITH(call(p.x, from_vector(std::vector<int64_t>{0, 1, 5, 2}, {4}), p.weight, p.offsets, p.w1, p.w3, p.w2),
                    op && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, from_vector(std::vector<int64_t>{0, 3, 3}, {3}), p.w1, p.w3, p.w2),
                    op && Catch::Contains("offsets[2] == 4"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, from_vector(std::vector<int64_t>{0, 3, 2, 4}, {4}), p.w1, p.w3, p.w2),
                    op && Catch::Contains("offsets of shape [3]"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, from_vector(std::vector<int64_t>{0, 3, 1}, {3}), p.w1, p.w3, p.w2),
                    op && Catch::Contains("non-decreasing"));
  CHECK_THROWS_WITH(call(p.x, p.token, ones({3}), p.offsets, p.w1, p.w3, p.w2), op && Catch::Contains("sorted_weight"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight.to(DType::f64), p.offsets, p.w1, p.w3, p.w2), op && Catch::Contains("f32"));
  CHECK_THROWS_WITH(call(p.x, p.token.to(DType::f32), p.weight, p.offsets, p.w1, p.w3, p.w2), op && Catch::Contains("i64"));
  CHECK_THROWS_WITH(call(p.x.to(DType::i64), p.token, p.weight, p.offsets, p.w1, p.w3, p.w2), op);
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, p.offsets, ones({2, 5, 3}), p.w3, p.w2), op && Catch::Contains("w1"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, p.offsets, p.w1, ones({2, 4, 2}), p.w2), op && Catch::Contains("w3"));
  CHECK_THROWS_WITH(call(p.x, p.token, p.weight, p.offsets, p.w1, p.w3, ones({2, 4, 3})), op && Catch::Contains("w2"));
  CHECK_THROWS_WITH(call(p.x.reshape({20}), p.token, p.weight, p.offsets, p.w1, p.w3, p.w2),
                    op && Catch::Contains("2 dimensions"));
}
