// grouped_matmul: forward against a naive triple loop, f64 gradchecks on edge-case groupings,
// both GEMM backends, and argument errors.
#include <catch2/catch.hpp>

#include <vector>

#include "ops/gemm.h"
#include "ops/grouped_matmul.h"
#include "ops/reduce.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::available_backends;
using tinymoe::testing::BackendScope;

namespace {

// The expert that owns `row`: the e with offsets[e] <= row < offsets[e + 1].
int64_t expert_of_row(const std::vector<int64_t>& offsets, int64_t row) {
  int64_t expert = 0;
  while (!(offsets[expert] <= row && row < offsets[expert + 1])) ++expert;
  return expert;
}

// out[r, j] = sum_i x[r, i] * w[e(r), i, j]   (w[e(r), j, i] when transposed), one element at a time.
std::vector<double> naive_grouped_matmul(const std::vector<double>& x, const std::vector<double>& w,
                                         const std::vector<int64_t>& offsets, int64_t k, int64_t n,
                                         bool transpose_weight) {
  int64_t rows = offsets.back();
  std::vector<double> out(static_cast<size_t>(rows * n), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t e = expert_of_row(offsets, r);
    for (int64_t j = 0; j < n; ++j) {
      double total = 0;
      for (int64_t i = 0; i < k; ++i) {
        double weight = transpose_weight ? w[(e * n + j) * k + i] : w[(e * k + i) * n + j];
        total += x[r * k + i] * weight;
      }
      out[r * n + j] = total;
    }
  }
  return out;
}

struct Case {
  std::vector<int64_t> offsets;
  int64_t k, n;
  bool transpose_weight;
};

Shape weight_shape(const Case& c) {
  int64_t experts = static_cast<int64_t>(c.offsets.size()) - 1;
  return c.transpose_weight ? Shape{experts, c.n, c.k} : Shape{experts, c.k, c.n};
}

Tensor offsets_tensor(const std::vector<int64_t>& offsets) {
  return from_vector(offsets, {static_cast<int64_t>(offsets.size())});
}

const std::vector<Case>& edge_cases() {
  static const std::vector<Case> cases = {
      {{0, 2, 2, 5}, 4, 3, false},     // an empty expert group in the middle
      {{0, 0, 0, 4}, 3, 5, false},     // leading empty groups, all rows in the last
      {{0, 4, 4, 4}, 3, 2, false},     // all rows in the first group
      {{0, 0, 1, 1}, 3, 4, false},     // one token
      {{0, 1, 3, 6}, 4, 3, true},      // transpose_weight ([E, n, k], HF layout)
      {{0, 0, 3, 3, 5}, 2, 3, true},   // transpose_weight with empty groups
  };
  return cases;
}

}  // namespace

TEST_CASE("grouped_matmul: forward matches a naive loop", "[grouped_matmul]") {
  Generator generator(11);
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    for (const Case& c : edge_cases()) {
      INFO("backend " << gemm_backend_name(backend) << ", offsets [" << c.offsets.size() << "], transpose "
                      << c.transpose_weight);
      Tensor x = randn({c.offsets.back(), c.k}, DType::f64, &generator);
      Tensor w = randn(weight_shape(c), DType::f64, &generator);
      Tensor out = grouped_matmul(x, w, offsets_tensor(c.offsets), c.transpose_weight);
      REQUIRE(out.shape() == Shape{c.offsets.back(), c.n});
      std::vector<double> expected = naive_grouped_matmul(x.to_vector<double>(), w.to_vector<double>(), c.offsets,
                                                          c.k, c.n, c.transpose_weight);
      std::vector<double> got = out.to_vector<double>();
      for (size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-12));
    }
  }
}

TEST_CASE("grouped_matmul: f32 forward at a larger shape matches the naive loop", "[grouped_matmul]") {
  Generator generator(5);
  std::vector<int64_t> offsets = {0, 17, 17, 64, 100};
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    INFO("backend " << gemm_backend_name(backend));
    Tensor x = randn({100, 48}, DType::f32, &generator);
    Tensor w = randn({4, 48, 40}, DType::f32, &generator);
    std::vector<float> got = grouped_matmul(x, w, offsets_tensor(offsets)).to_vector<float>();
    std::vector<float> x32 = x.to_vector<float>(), w32 = w.to_vector<float>();
    std::vector<double> expected = naive_grouped_matmul(std::vector<double>(x32.begin(), x32.end()),
                                                        std::vector<double>(w32.begin(), w32.end()), offsets,
                                                        48, 40, false);
    for (size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == Approx(expected[i]).epsilon(1e-4).margin(1e-4));
  }
}

TEST_CASE("grouped_matmul: gradcheck on edge-case groupings, both backends", "[grouped_matmul][gradcheck]") {
  Generator generator(3);
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    for (const Case& c : edge_cases()) {
      Tensor offsets = offsets_tensor(c.offsets);
      Tensor x = randn({c.offsets.back(), c.k}, DType::f64, &generator).requires_grad_();
      Tensor w = randn(weight_shape(c), DType::f64, &generator).requires_grad_();
      bool transpose_weight = c.transpose_weight;
      GradcheckResult result = gradcheck(
          [&](const TensorList& in) { return grouped_matmul(in[0], in[1], offsets, transpose_weight); }, {x, w});
      INFO("backend " << gemm_backend_name(backend) << ": " << result.report);
      CHECK(result.passed());
    }
  }
}

TEST_CASE("grouped_matmul: an empty group gets a zero weight gradient", "[grouped_matmul]") {
  Tensor x = randn({3, 2}, DType::f64).requires_grad_();
  Tensor w = randn({3, 2, 4}, DType::f64).requires_grad_();
  sum(grouped_matmul(x, w, offsets_tensor({0, 3, 3, 3}))).backward();
  std::vector<double> dw = w.grad().to_vector<double>();
  for (size_t i = 8; i < dw.size(); ++i) CHECK(dw[i] == 0.0);
  // dw[0] = x^T ones: every column j of row i is the sum of x's column i.
  std::vector<double> xs = x.to_vector<double>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(dw[i * 4 + j] == Approx(xs[i] + xs[2 + i] + xs[4 + i]));
}

TEST_CASE("grouped_matmul: only the inputs that require grad get one", "[grouped_matmul]") {
  Tensor offsets = offsets_tensor({0, 1, 3});
  Tensor x = randn({3, 2}, DType::f64).requires_grad_();
  Tensor w = randn({2, 2, 2}, DType::f64);
  sum(grouped_matmul(x, w, offsets)).backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  Tensor x2 = randn({3, 2}, DType::f64);
  Tensor w2 = randn({2, 2, 2}, DType::f64).requires_grad_();
  sum(grouped_matmul(x2, w2, offsets)).backward();
  CHECK(w2.grad().defined());
  NoGradGuard no_grad;
  CHECK_FALSE(grouped_matmul(x, w2, offsets).requires_grad());
}

TEST_CASE("grouped_matmul: bad offsets", "[grouped_matmul][errors]") {
  Tensor x = randn({4, 3});
  Tensor w = randn({2, 3, 5});
  auto call = [&](const std::vector<int64_t>& offsets) { return grouped_matmul(x, w, offsets_tensor(offsets)); };
  using Catch::Contains;
  CHECK_THROWS_WITH(call({1, 2, 4}), Contains("grouped_matmul: expected offsets[0] == 0, got offsets[0] = 1"));
  CHECK_THROWS_WITH(call({0, 3, 2}),
                    Contains("grouped_matmul: expected non-decreasing offsets, got offsets[1] = 3 > offsets[2] = 2"));
  CHECK_THROWS_WITH(call({0, 2, 3}), Contains("grouped_matmul: expected offsets[2] == 4 (the rows of x), got 3"));
  CHECK_THROWS_WITH(call({0, 2, 5}), Contains("grouped_matmul: expected offsets[2] == 4 (the rows of x), got 5"));
  CHECK_THROWS_WITH(call({0, 4}), Contains("grouped_matmul: expected offsets of shape [3]") && Contains("got [2]"));
  CHECK_THROWS_WITH(call({0, 1, 2, 4}), Contains("grouped_matmul: expected offsets of shape [3]") && Contains("got [4]"));
  CHECK_THROWS_WITH(grouped_matmul(x, w, offsets_tensor({0, 2, 4}).reshape({3, 1})),
                    Contains("grouped_matmul: expected offsets of shape [3]") && Contains("got [3, 1]"));
  CHECK_THROWS_WITH(grouped_matmul(x, w, from_vector(std::vector<float>{0, 2, 4}, {3})),
                    Contains("grouped_matmul: expected 'offsets' of dtype i64, got f32"));
}

TEST_CASE("grouped_matmul: bad x and w", "[grouped_matmul][errors]") {
  Tensor offsets = offsets_tensor({0, 2, 4});
  using Catch::Contains;
  CHECK_THROWS_WITH(grouped_matmul(randn({4, 3}), randn({2, 4, 5}), offsets),
                    Contains("grouped_matmul: x [4, 3] has 3 features but w [2, 4, 5]") && Contains("expects 4"));
  CHECK_THROWS_WITH(grouped_matmul(randn({4, 3}), randn({2, 3, 5}), offsets, true),
                    Contains("grouped_matmul") && Contains("transposed") && Contains("expects 5"));
  CHECK_THROWS_WITH(grouped_matmul(randn({4, 3}), randn({3, 5}), offsets),
                    Contains("grouped_matmul: expected 'w' with 3 dimensions, got shape [3, 5]"));
  CHECK_THROWS_WITH(grouped_matmul(randn({12}), randn({2, 3, 5}), offsets),
                    Contains("grouped_matmul: expected 'x' with 2 dimensions, got shape [12]"));
  CHECK_THROWS_WITH(grouped_matmul(randn({4, 3}), randn({2, 3, 5}, DType::f64), offsets),
                    Contains("grouped_matmul: expected x and w of one dtype, got f32 and f64"));
  CHECK_THROWS_WITH(grouped_matmul(arange(12).reshape({4, 3}), randn({2, 3, 5}), offsets),
                    Contains("grouped_matmul: expected 'x' of a floating dtype"));
  CHECK_THROWS_WITH(grouped_matmul(Tensor(), randn({2, 3, 5}), offsets),
                    Contains("grouped_matmul: argument 'x' is an undefined tensor"));
}
