// topk: forward against hand values and a slow selection loop, gradients, the choice margin that
// lets gradcheck tell a tie, and bad arguments.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/topk.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {

// Repeated arg-best over the entries not taken yet; the strict comparison keeps the lower index on
// ties. rows x n row-major in, rows x k out.
void slow_topk(const std::vector<double>& x, int64_t rows, int64_t n, int64_t k, bool largest,
               std::vector<double>& values, std::vector<int64_t>& indices) {
  values.assign(rows * k, 0);
  indices.assign(rows * k, 0);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<bool> taken(n, false);
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < n; ++e) {
        if (taken[e]) continue;
        double v = x[r * n + e];
        if (best < 0 || (largest ? v > x[r * n + best] : v < x[r * n + best])) best = e;
      }
      taken[best] = true;
      values[r * k + j] = x[r * n + best];
      indices[r * k + j] = best;
    }
  }
}

// Records the margins of the choices made while it is installed.
struct MarginProbe final : ChoiceObserver {
  MarginProbe() { set_choice_observer(this); }
  ~MarginProbe() override { set_choice_observer(nullptr); }
  void observe(const char* op, const int64_t*, int64_t, double margin) override {
    ops.emplace_back(op);
    margins.push_back(margin);
  }
  std::vector<std::string> ops;
  std::vector<double> margins;
};

}  // namespace

TEST_CASE("topk: hand values, ties to the lower index", "[topk]") {
  Tensor x = from_vector(std::vector<float>{1, 3, 2, 3, 0, -1, 5, 5}, {2, 4});
  TopK best = topk(x, 2);
  CHECK(best.values.shape() == Shape{2, 2});
  CHECK(best.values.to_vector<float>() == std::vector<float>{3, 3, 5, 5});
  CHECK(best.indices.dtype() == DType::i64);
  CHECK(best.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2, 3});

  TopK smallest = topk(x, 3, -1, /*largest=*/false);
  CHECK(smallest.values.to_vector<float>() == std::vector<float>{1, 2, 3, -1, 0, 5});
  CHECK(smallest.indices.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 1, 1, 0, 2});

  // Unsorted: the same members, in position order.
  TopK unsorted = topk(from_vector(std::vector<float>{1, 9, 4, 7}, {4}), 3, 0, true, /*sorted=*/false);
  CHECK(unsorted.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
  CHECK(unsorted.values.to_vector<float>() == std::vector<float>{9, 4, 7});

  // k == n is a full sort; i64 input works too.
  TopK all = topk(from_vector(std::vector<int64_t>{2, 7, 2, 1}, {4}), 4);
  CHECK(all.values.to_vector<int64_t>() == std::vector<int64_t>{7, 2, 2, 1});
  CHECK(all.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 2, 3});

  // No rows: empty results of the right shape.
  CHECK(topk(zeros({0, 5}), 2).indices.shape() == Shape{0, 2});
}

TEST_CASE("topk: NaN ranks above every number", "[topk]") {
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = from_vector(std::vector<double>{1, nan, 3, nan}, {4});
  CHECK(topk(x, 3).indices.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2});
  CHECK(topk(x, 2, 0, false).indices.to_vector<int64_t>() == std::vector<int64_t>{0, 2});
}

TEST_CASE("topk: matches a slow selection loop along every dim", "[topk]") {
  Generator generator(11);
  // Few distinct values, so ties are everywhere. The long last dim takes the partial-sort path
  // for k = n/2 and k = n, the others the insertion path.
  Tensor x = randint(0, 6, {5, 7, 40}, &generator).to(DType::f64);
  for (int64_t dim = 0; dim < 3; ++dim)
    for (bool largest : {true, false}) {
      int64_t n = x.size(dim);
      for (int64_t k : {int64_t{1}, int64_t{2}, n / 2, n}) {
        // Move dim last with an explicit loop, run the slow selection, compare element by element.
        std::vector<int64_t> other;
        for (int64_t d = 0; d < 3; ++d)
          if (d != dim) other.push_back(d);
        Shape shape = x.shape();
        int64_t rows = shape[other[0]] * shape[other[1]];
        std::vector<double> data = x.to_vector<double>(), rows_last(rows * n);
        auto flat = [&](int64_t a, int64_t b, int64_t e) {
          int64_t at[3];
          at[other[0]] = a, at[other[1]] = b, at[dim] = e;
          return (at[0] * shape[1] + at[1]) * shape[2] + at[2];
        };
        for (int64_t a = 0; a < shape[other[0]]; ++a)
          for (int64_t b = 0; b < shape[other[1]]; ++b)
            for (int64_t e = 0; e < n; ++e) rows_last[(a * shape[other[1]] + b) * n + e] = data[flat(a, b, e)];
        std::vector<double> want_values;
        std::vector<int64_t> want_indices;
        slow_topk(rows_last, rows, n, k, largest, want_values, want_indices);

        TopK got = topk(x, k, dim, largest);
        Shape out_shape = shape;
        out_shape[dim] = k;
        REQUIRE(got.values.shape() == out_shape);
        std::vector<double> values = got.values.to_vector<double>();
        std::vector<int64_t> indices = got.indices.to_vector<int64_t>();
        for (int64_t a = 0; a < shape[other[0]]; ++a)
          for (int64_t b = 0; b < shape[other[1]]; ++b)
            for (int64_t j = 0; j < k; ++j) {
              int64_t at[3];
              at[other[0]] = a, at[other[1]] = b, at[dim] = j;
              int64_t got_at = (at[0] * out_shape[1] + at[1]) * out_shape[2] + at[2];
              int64_t want_at = (a * shape[other[1]] + b) * k + j;
              CHECK(values[got_at] == want_values[want_at]);
              CHECK(indices[got_at] == want_indices[want_at]);
            }
      }
    }
}

TEST_CASE("topk: gradcheck of the values", "[topk][gradcheck]") {
  Generator generator(3);
  struct Case {
    Shape shape;
    int64_t k, dim;
    bool largest;
  };
  std::vector<Case> cases = {
      {{3, 5}, 2, -1, true},     // router-like rows
      {{4, 3, 2}, 3, 1, true},   // k == n along a middle dim
      {{1, 6}, 4, 1, false},     // one row, smallest
      {{6}, 1, 0, true},         // 1-D, k = 1
      {{2, 4}, 2, 0, true},      // k == n along dim 0
  };
  for (const Case& c : cases) {
    Tensor x = randn(c.shape, DType::f64, &generator).requires_grad_();
    GradcheckResult result = gradcheck(
        [&](const TensorList& in) { return topk(in[0], c.k, c.dim, c.largest).values; }, {x});
    INFO(shape_str(c.shape) << " k=" << c.k << " dim=" << c.dim << ": " << result.report);
    CHECK(result.passed());
  }
}

TEST_CASE("topk: backward puts the gradient at the chosen positions", "[topk]") {
  Tensor x = from_vector(std::vector<double>{0.5, 2, -1, 4}, {4}).requires_grad_();
  TopK best = topk(x, 2);
  best.values.backward(from_vector(std::vector<double>{10, 20}, {2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 20, 0, 10});
  CHECK(tape_ops().back() == "topk");
}

TEST_CASE("topk: margin covers membership and order", "[topk]") {
  MarginProbe probe;
  // Row 0 sorted: 5, 3, 2 | 1 -> gaps 2, 1. Row 1 sorted: 10, 9.5, 4 | 0 -> gaps 0.5, 5.5.
  topk(from_vector(std::vector<double>{5, 1, 3, 2, 0, 10, 4, 9.5}, {2, 4}), 2);
  // k == n: every neighbour pair counts (3 -> 2.75: 0.25).
  topk(from_vector(std::vector<double>{2.75, 3}, {2}), 2);
  // n == 1: nothing to swap with.
  topk(from_vector(std::vector<double>{7}, {1}), 1);
  REQUIRE(probe.margins.size() == 3);
  CHECK(probe.ops[0] == "topk");
  CHECK(probe.margins[0] == 0.5);
  CHECK(probe.margins[1] == 0.25);
  CHECK(probe.margins[2] == std::numeric_limits<double>::infinity());
}

TEST_CASE("topk: gradcheck says selection unstable at a tie, passes away from it", "[topk][gradcheck]") {
  auto top2 = [](const TensorList& in) { return topk(in[0], 2).values; };
  // A tie at the k boundary: entries 1 and 2 compete for the second place.
  Tensor tied = from_vector(std::vector<double>{3, 1, 1, 0}, {4}).requires_grad_();
  GradcheckResult at_tie = gradcheck(top2, {tied});
  CHECK(at_tie.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(at_tie.report, Catch::Contains("topk"));
  CHECK(at_tie.smallest_choice_margin == 0);
  // A tie in order among the chosen (k == n).
  Tensor tied_order = from_vector(std::vector<double>{2, 2}, {2}).requires_grad_();
  CHECK(gradcheck([](const TensorList& in) { return topk(in[0], 2).values; }, {tied_order}).status ==
        GradcheckStatus::selection_unstable);
  Tensor apart = from_vector(std::vector<double>{3, 1.5, 1, 0}, {4}).requires_grad_();
  GradcheckResult away = gradcheck(top2, {apart});
  INFO(away.report);
  CHECK(away.passed());
  CHECK(away.smallest_choice_margin == 0.5);
}

TEST_CASE("topk: errors name the op", "[topk][errors]") {
  Tensor x = zeros({3, 4});
  CHECK_THROWS_WITH(topk(x, 5), Catch::Contains("topk") && Catch::Contains("k = 5") && Catch::Contains("n = 4"));
  CHECK_THROWS_WITH(topk(x, 0), Catch::Contains("topk") && Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(topk(x, -2), Catch::Contains("topk"));
  CHECK_THROWS_WITH(topk(x, 1, 2), Catch::Contains("topk") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(topk(zeros({3, 0}), 1), Catch::Contains("topk") && Catch::Contains("n = 0"));
  CHECK_THROWS_WITH(topk(Tensor(), 1), Catch::Contains("topk"));
  CHECK_THROWS_WITH(topk(scalar(1.0), 1), Catch::Contains("topk"));
}
