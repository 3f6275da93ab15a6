// gradcheck itself: it passes right gradients, catches wrong ones (full and fast mode), catches a
// non-reentrant backward, says "selection unstable" at a top-k tie and where a choice changes the
// number of outputs, and rejects bad use.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {
// x^2 with a backward scaled by `factor` (1 is right).
Tensor scaled_square(const Tensor& x, double factor) {
  Tensor out = mul(x.detach(), x.detach());
  if (needs_record({&x})) {
    Tensor saved = x.detach();
    record("scaled_square", {x}, {out}, [saved, factor](const TensorList& g) -> TensorList {
      return {mul(mul(g[0], saved), 2.0 * factor)};
    });
  }
  return out;
}
}  // namespace

TEST_CASE("gradcheck: passes a right backward, full and fast mode", "[gradcheck]") {
  Generator generator(3);
  Tensor x = randn({3, 2}, DType::f64, &generator).requires_grad_();
  auto fn = [](const TensorList& in) { return scaled_square(in[0], 1.0); };
  CHECK(gradcheck(fn, {x}).passed());
  GradcheckOptions fast;
  fast.fast_mode = true;
  CHECK(gradcheck(fn, {x}, fast).passed());
}

TEST_CASE("gradcheck: catches a wrong backward and names the worst element", "[gradcheck]") {
  Generator generator(4);
  Tensor x = randn({5}, DType::f64, &generator).requires_grad_();
  auto fn = [](const TensorList& in) { return scaled_square(in[0], 1.01); };  // 1% off
  GradcheckResult full = gradcheck(fn, {x});
  CHECK(full.status == GradcheckStatus::failed);
  CHECK(full.input == 0);
  CHECK(full.index >= 0);
  CHECK(full.analytic == Approx(1.01 * full.numeric).epsilon(1e-6));
  CHECK_THAT(full.report, Catch::Contains("FAILED") && Catch::Contains("worst element"));
  GradcheckOptions fast;
  fast.fast_mode = true;
  CHECK(gradcheck(fn, {x}, fast).status == GradcheckStatus::failed);
}

TEST_CASE("gradcheck: catches a backward that is not reentrant", "[gradcheck]") {
  auto fn = [](const TensorList& in) {
    static int calls = 0;
    Tensor x = in[0];
    Tensor out = mul(x.detach(), 3.0);
    record("drifting", {x}, {out}, [](const TensorList& g) -> TensorList {
      return {mul(g[0], 3.0 + 1e-12 * ++calls)};  // differs from run to run, within tolerance
    });
    return out;
  };
  GradcheckResult result = gradcheck(fn, {randn({3}, DType::f64).requires_grad_()});
  CHECK(result.status == GradcheckStatus::failed);
  CHECK_THAT(result.report, Catch::Contains("reentrant"));
}

TEST_CASE("gradcheck: a top-k tie gives selection_unstable, not a failure", "[gradcheck]") {
  auto fn = [](const TensorList& in) { return topk(in[0], 1).values; };
  Tensor tie = from_vector(std::vector<double>{1.0, 1.0, 0.0}, {3}).requires_grad_();
  GradcheckResult at_tie = gradcheck(fn, {tie});
  CHECK(at_tie.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(at_tie.report, Catch::Contains("topk"));
  Tensor apart = from_vector(std::vector<double>{1.0, 0.5, 0.0}, {3}).requires_grad_();
  GradcheckResult away = gradcheck(fn, {apart});
  CHECK(away.passed());
  CHECK(away.smallest_choice_margin == Approx(0.5));
}

namespace {
// The entries of x that are positive: as many outputs as positive entries, the choice reported
// as "positive" with the smallest |x| as its margin (as ReLU routing reports its pairs).
Tensor positive_entries(const Tensor& x, bool report) {
  std::vector<double> values = x.to_vector<double>();
  std::vector<int64_t> flags, kept;
  double margin = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < values.size(); ++i) {
    flags.push_back(values[i] > 0.0);
    if (values[i] > 0.0) kept.push_back(static_cast<int64_t>(i));
    margin = std::min(margin, std::abs(values[i]));
  }
  if (report) note_choice("positive", flags.data(), static_cast<int64_t>(flags.size()), margin);
  return index_select(x, from_vector(kept, {static_cast<int64_t>(kept.size())}));
}
}  // namespace

TEST_CASE("gradcheck: a choice that changes the number of outputs is reported, never read past", "[gradcheck]") {
  // Entry 1 sits within eps of 0: a perturbation adds or removes an output element.
  Tensor near_zero = from_vector(std::vector<double>{0.8, 4e-7, -0.5, 1.3}, {4}).requires_grad_();
  for (bool fast : {false, true}) {
    GradcheckOptions options;
    options.fast_mode = fast;
    GradcheckResult result = gradcheck([](const TensorList& in) { return positive_entries(in[0], true); }, {near_zero},
                                       options);
    CHECK(result.status == GradcheckStatus::selection_unstable);
    CHECK_THAT(result.report, Catch::Contains("positive"));
  }
  Tensor apart = from_vector(std::vector<double>{0.8, 0.4, -0.5, 1.3}, {4}).requires_grad_();
  CHECK(gradcheck([](const TensorList& in) { return positive_entries(in[0], true); }, {apart}).passed());
  // The same size change with no choice reported is an Error, not a read past the outputs.
  CHECK_THROWS_WITH(gradcheck([](const TensorList& in) { return positive_entries(in[0], false); }, {near_zero}),
                    Catch::Contains("gradcheck") && Catch::Contains("no choice reported"));
}

TEST_CASE("gradcheck: leaves the caller's tensors and gradients alone", "[gradcheck]") {
  Tensor x = from_vector(std::vector<double>{1, 2}, {2}).requires_grad_();
  std::vector<double> before = x.to_vector<double>();
  gradcheck([](const TensorList& in) { return exp(in[0]); }, {x});
  CHECK(x.to_vector<double>() == before);
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("gradcheck: integer and non-differentiated inputs pass through", "[gradcheck]") {
  Tensor x = randn({4, 3}, DType::f64).requires_grad_();
  Tensor index = from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  auto fn = [](const TensorList& in) { return index_select(in[0], in[1]); };
  CHECK(gradcheck(fn, {x, index}).passed());
}

TEST_CASE("gradcheck: bad use is a clear error", "[gradcheck][errors]") {
  auto identity = [](const TensorList& in) { return mul(in[0], 1.0); };
  CHECK_THROWS_WITH(gradcheck(identity, {randn({2}, DType::f32).requires_grad_()}),
                    Catch::Contains("gradcheck") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(gradcheck(identity, {randn({2}, DType::f64)}), Catch::Contains("no input requires grad"));
  auto to_f32 = [](const TensorList& in) { return in[0].to(DType::f32); };
  CHECK_THROWS_WITH(gradcheck(to_f32, {randn({2}, DType::f64).requires_grad_()}), Catch::Contains("return f64"));
  GradcheckOptions bad;
  bad.eps = 0;
  CHECK_THROWS_WITH(gradcheck(identity, {randn({2}, DType::f64).requires_grad_()}, bad), Catch::Contains("eps"));
}

TEST_CASE("gradcheck_in_place: checks tensors the function reads itself, then restores them", "[gradcheck]") {
  Generator generator(5);
  Tensor weight = randn({3, 2}, DType::f64, &generator).requires_grad_();
  Tensor x = randn({4, 3}, DType::f64, &generator);
  std::vector<double> before = weight.to_vector<double>();
  weight.impl()->grad = full({3, 2}, 7.0, DType::f64);  // an earlier step's gradient stays
  GradcheckResult right = gradcheck_in_place([&] { return tanh(matmul(x, weight)); }, {weight});
  INFO(right.report);
  CHECK(right.passed());
  CHECK(weight.to_vector<double>() == before);
  CHECK(weight.grad().to_vector<double>() == std::vector<double>(6, 7.0));
  // A wrong backward through the tensor is caught.
  GradcheckResult wrong = gradcheck_in_place([&] { return scaled_square(weight, 0.5); }, {weight});
  CHECK(wrong.status == GradcheckStatus::failed);
  CHECK(weight.to_vector<double>() == before);
}

TEST_CASE("gradcheck_in_place: restores the tensors when the function throws", "[gradcheck][errors]") {
  Tensor weight = from_vector(std::vector<double>{1, 2}, {2}).requires_grad_();
  int calls = 0;
  auto throws_later = [&] {
    if (++calls > 2) throw Error("boom");
    return exp(weight);
  };
  CHECK_THROWS_WITH(gradcheck_in_place(throws_later, {weight}), Catch::Contains("boom"));
  CHECK(weight.to_vector<double>() == std::vector<double>{1, 2});
}

TEST_CASE("gradcheck_in_place: bad tensors are a clear error", "[gradcheck][errors]") {
  auto fn = [] { return zeros({}, DType::f64); };
  CHECK_THROWS_WITH(gradcheck_in_place(fn, {randn({2}, DType::f64)}),
                    Catch::Contains("gradcheck_in_place") && Catch::Contains("requires grad"));
  CHECK_THROWS_WITH(gradcheck_in_place(fn, {randn({2}, DType::f32).requires_grad_()}),
                    Catch::Contains("gradcheck_in_place") && Catch::Contains("f64"));
  Tensor leaf = randn({2}, DType::f64).requires_grad_();
  CHECK_THROWS_WITH(gradcheck_in_place(fn, {mul(leaf, 2.0)}), Catch::Contains("leaf"));
}
