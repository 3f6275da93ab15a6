// softmax, log_softmax, logsumexp: forward against a slow loop, numerical stability, f64
// gradchecks along every dim, and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "ops/softmax.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;
namespace matchers = Catch::Matchers;

namespace {

const double infinity = std::numeric_limits<double>::infinity();

// The three ops by the textbook formulas, unshifted, for moderate inputs of a [d0, d1, d2] tensor.
struct Reference {
  std::vector<double> softmax, log_softmax, logsumexp;  // logsumexp in keepdim layout
};

Reference slow_reference(const Tensor& x, int dim) {
  Shape s = x.shape();
  std::vector<double> values = x.to_vector<double>();
  Shape reduced = s;
  reduced[dim] = 1;
  Reference result{std::vector<double>(values.size()), std::vector<double>(values.size()),
                   std::vector<double>(shape_numel(reduced), 0.0)};
  auto reduced_index = [&](int64_t i, int64_t j, int64_t k) {
    int64_t c[3] = {i, j, k};
    c[dim] = 0;
    return (c[0] * reduced[1] + c[1]) * reduced[2] + c[2];
  };
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t j = 0; j < s[1]; ++j)
      for (int64_t k = 0; k < s[2]; ++k)
        result.logsumexp[reduced_index(i, j, k)] += std::exp(values[(i * s[1] + j) * s[2] + k]);
  for (double& total : result.logsumexp) total = std::log(total);
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t j = 0; j < s[1]; ++j)
      for (int64_t k = 0; k < s[2]; ++k) {
        int64_t flat = (i * s[1] + j) * s[2] + k;
        result.log_softmax[flat] = values[flat] - result.logsumexp[reduced_index(i, j, k)];
        result.softmax[flat] = std::exp(result.log_softmax[flat]);
      }
  return result;
}

}  // namespace

TEST_CASE("softmax: forward along every dim matches a slow loop", "[softmax]") {
  Generator generator(9);
  Tensor x = randn({2, 3, 4}, DType::f64, &generator);
  for (int dim = 0; dim < 3; ++dim) {
    INFO("dim " << dim);
    Reference expected = slow_reference(x, dim);
    CHECK_THAT(softmax(x, dim).to_vector<double>(), matchers::Approx(expected.softmax).epsilon(1e-12));
    CHECK_THAT(softmax(x, dim - 3).to_vector<double>(), matchers::Approx(expected.softmax).epsilon(1e-12));
    CHECK_THAT(log_softmax(x, dim).to_vector<double>(), matchers::Approx(expected.log_softmax).epsilon(1e-12));
    Tensor kept = logsumexp(x, dim, true);
    Shape kept_shape = x.shape();
    kept_shape[dim] = 1;
    CHECK(kept.shape() == kept_shape);
    CHECK_THAT(kept.to_vector<double>(), matchers::Approx(expected.logsumexp).epsilon(1e-12));
    Shape dropped_shape = x.shape();
    dropped_shape.erase(dropped_shape.begin() + dim);
    CHECK(logsumexp(x, dim).shape() == dropped_shape);
    // f32 agrees to float precision.
    CHECK_THAT(softmax(x.to(DType::f32), dim).to(DType::f64).to_vector<double>(),
               matchers::Approx(expected.softmax).epsilon(1e-5));
  }
}

TEST_CASE("softmax: hand-computed values and default dim", "[softmax]") {
  Tensor x = from_vector(std::vector<double>{0, std::log(3.0), 1, 1}, {2, 2});
  CHECK_THAT(softmax(x).to_vector<double>(), matchers::Approx(std::vector<double>{0.25, 0.75, 0.5, 0.5}));
  CHECK_THAT(log_softmax(x).to_vector<double>(),
             matchers::Approx(std::vector<double>{std::log(0.25), std::log(0.75), std::log(0.5), std::log(0.5)}));
  CHECK_THAT(logsumexp(x).to_vector<double>(), matchers::Approx(std::vector<double>{std::log(4.0), 1 + std::log(2.0)}));
  CHECK(softmax(from_vector(std::vector<double>{3}, {1})).item() == 1);
  CHECK(softmax(zeros({2, 0})).shape() == Shape{2, 0});
}

TEST_CASE("softmax: large and infinite inputs stay stable", "[softmax]") {
  double e = std::exp(1.0);
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype));
    Tensor large = from_vector(std::vector<double>{1000, 1001}, {2}).to(dtype);
    std::vector<double> probabilities = softmax(large).to(DType::f64).to_vector<double>();
    CHECK_THAT(probabilities, matchers::Approx(std::vector<double>{1 / (1 + e), e / (1 + e)}).epsilon(1e-6));
    CHECK_THAT(log_softmax(large).to(DType::f64).to_vector<double>(),
               matchers::Approx(std::vector<double>{-std::log1p(e), -std::log1p(1 / e)}).epsilon(1e-6));
    CHECK(logsumexp(large).item() == Approx(1001 + std::log1p(1 / e)));
    Tensor very_negative = from_vector(std::vector<double>{-1000, -1000}, {2}).to(dtype);
    CHECK(logsumexp(very_negative).item() == Approx(-1000 + std::log(2.0)));
    CHECK_THAT(softmax(very_negative).to(DType::f64).to_vector<double>(),
               matchers::Approx(std::vector<double>{0.5, 0.5}));
  }
  CHECK(logsumexp(from_vector(std::vector<double>{1e300, 1e300}, {2})).item() == Approx(1e300));
  // -inf masks an entry out; a lane of all -inf (or an empty lane) has logsumexp -inf.
  Tensor masked = from_vector(std::vector<double>{0, -infinity, 0}, {3});
  CHECK(softmax(masked).to_vector<double>() == std::vector<double>{0.5, 0, 0.5});
  CHECK(logsumexp(masked).item() == Approx(std::log(2.0)));
  CHECK(logsumexp(from_vector(std::vector<double>{-infinity, -infinity}, {2})).item() == -infinity);
  CHECK(logsumexp(zeros({3, 0}, DType::f64), 1).to_vector<double>() == std::vector<double>(3, -infinity));
  CHECK(logsumexp(from_vector(std::vector<double>{1, infinity}, {2})).item() == infinity);
  // The same along a dim that is not the last (lanes are columns of [2, 3] blocks).
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype) << " along dim 0");
    Tensor columns = from_vector(std::vector<double>{1000, 0, -1000, 1001, -infinity, -1000}, {2, 3}).to(dtype);
    CHECK_THAT(softmax(columns, 0).to(DType::f64).to_vector<double>(),
               matchers::Approx(std::vector<double>{1 / (1 + e), 1, 0.5, e / (1 + e), 0, 0.5}).epsilon(1e-6));
    CHECK_THAT(log_softmax(columns, 0).to(DType::f64).to_vector<double>(),
               matchers::Approx(std::vector<double>{-std::log1p(e), 0, -std::log(2.0), -std::log1p(1 / e), -infinity,
                                                    -std::log(2.0)})
                   .epsilon(1e-6));
  }
  CHECK(softmax(zeros({0, 3}, DType::f64), 0).shape() == Shape({0, 3}));
}

TEST_CASE("softmax: gradcheck at several shapes and dims", "[softmax][gradcheck]") {
  Generator generator(10);
  struct Case {
    Shape shape;
    int64_t dim;
  };
  for (const Case& c : std::vector<Case>{{{1, 5}, -1},
                                         {{3, 4}, 0},
                                         {{3, 4}, 1},
                                         {{2, 3, 4}, 1},
                                         {{2, 3, 4}, 0},
                                         {{4, 1}, -1},
                                         {{1, 1}, 0},
                                         {{5}, 0},
                                         {{2, 1, 3}, 1}}) {
    Tensor x = randn(c.shape, DType::f64, &generator).requires_grad_();
    int64_t dim = c.dim;
    std::string where = shape_str(c.shape) + " dim " + std::to_string(dim);
    check_gradients(("softmax " + where).c_str(), [dim](const TensorList& in) { return softmax(in[0], dim); }, {x});
    check_gradients(("log_softmax " + where).c_str(), [dim](const TensorList& in) { return log_softmax(in[0], dim); },
                    {x});
    check_gradients(("logsumexp " + where).c_str(), [dim](const TensorList& in) { return logsumexp(in[0], dim); }, {x});
    check_gradients(("logsumexp keepdim " + where).c_str(),
                    [dim](const TensorList& in) { return logsumexp(in[0], dim, true); }, {x});
  }
  // Large inputs: the stable forms keep the gradient exact.
  Tensor large = from_vector(std::vector<double>{500, 501, 499, 502}, {2, 2}).requires_grad_();
  check_gradients("softmax large", [](const TensorList& in) { return softmax(in[0]); }, {large});
  check_gradients("log_softmax large", [](const TensorList& in) { return log_softmax(in[0]); }, {large});
  check_gradients("logsumexp large", [](const TensorList& in) { return logsumexp(in[0]); }, {large});
}

TEST_CASE("softmax: gradients by hand", "[softmax]") {
  Tensor x = from_vector(std::vector<double>{0, std::log(3.0)}, {2}).requires_grad_();
  logsumexp(x).backward();  // d logsumexp = softmax
  CHECK_THAT(x.grad().to_vector<double>(), matchers::Approx(std::vector<double>{0.25, 0.75}));
  x.zero_grad();
  sum(softmax(x)).backward();  // softmax sums to 1: zero gradient
  CHECK_THAT(x.grad().to_vector<double>(), matchers::Approx(std::vector<double>{0, 0}).margin(1e-15));
  x.zero_grad();
  sum(log_softmax(x)).backward();  // 1 - 2 softmax
  CHECK_THAT(x.grad().to_vector<double>(), matchers::Approx(std::vector<double>{0.5, -0.5}));
}

TEST_CASE("softmax: errors name the op", "[softmax][errors]") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH(softmax(zeros({2}, DType::i64)), Catch::Contains("softmax") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(log_softmax(zeros({2}, DType::i64)), Catch::Contains("log_softmax"));
  CHECK_THROWS_WITH(logsumexp(zeros({2}, DType::i64)), Catch::Contains("logsumexp"));
  CHECK_THROWS_WITH(softmax(x, 2), Catch::Contains("softmax") && Catch::Contains("dim 2 out of range"));
  CHECK_THROWS_WITH(log_softmax(x, -3), Catch::Contains("log_softmax") && Catch::Contains("dim -3"));
  CHECK_THROWS_WITH(logsumexp(x, 2, true), Catch::Contains("logsumexp") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(softmax(scalar(1.0)), Catch::Contains("softmax") && Catch::Contains("0 dimensions"));
  CHECK_THROWS_WITH(softmax(Tensor()), Catch::Contains("softmax") && Catch::Contains("undefined"));
}
