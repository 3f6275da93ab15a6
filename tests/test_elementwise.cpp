// Elementwise arithmetic (broadcasting add/sub/mul/div, scalar forms) and the unary activations:
// forward against formulas written here, f64 gradchecks, numerical edge cases and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>

#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;
namespace matchers = Catch::Matchers;

namespace {

// Flat index into `shape` of the output element `index` of the broadcast shape `out`.
int64_t broadcast_source(const Shape& shape, const Shape& out, int64_t index) {
  int64_t source = 0, stride = 1;
  for (size_t d = out.size(); d-- > 0;) {
    int64_t coordinate = index % out[d];
    index /= out[d];
    size_t offset = out.size() - shape.size();
    if (d < offset) continue;
    if (shape[d - offset] != 1) source += coordinate * stride;
    stride *= shape[d - offset];
  }
  return source;
}

// The broadcast result of fn, one output element at a time.
std::vector<double> broadcast_reference(const Tensor& a, const Tensor& b, const Shape& out,
                                        const std::function<double(double, double)>& fn) {
  std::vector<double> values_a = a.to_vector<double>(), values_b = b.to_vector<double>();
  std::vector<double> result(shape_numel(out));
  for (int64_t i = 0; i < shape_numel(out); ++i)
    result[i] = fn(values_a[broadcast_source(a.shape(), out, i)], values_b[broadcast_source(b.shape(), out, i)]);
  return result;
}

// Values in [0.5, 2) with random signs: safe denominators and far from relu's kink.
Tensor away_from_zero(const Shape& shape, Generator& generator) {
  Tensor magnitude = rand(shape, DType::f64, &generator, 0.5, 2.0);
  double* values = magnitude.data<double>();
  for (int64_t i = 0; i < magnitude.numel(); ++i)
    if (generator.uniform() < 0.5) values[i] = -values[i];
  return magnitude;
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> reference;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double a, double b) { return a / b; }},
  };
  return cases;
}

}  // namespace

TEST_CASE("elementwise: same-shape arithmetic by hand", "[elementwise]") {
  Tensor a = from_vector(std::vector<double>{1, -2, 3, 4}, {2, 2});
  Tensor b = from_vector(std::vector<double>{2, 4, -1, 8}, {2, 2});
  CHECK(add(a, b).to_vector<double>() == std::vector<double>{3, 2, 2, 12});
  CHECK(sub(a, b).to_vector<double>() == std::vector<double>{-1, -6, 4, -4});
  CHECK(mul(a, b).to_vector<double>() == std::vector<double>{2, -8, -3, 32});
  CHECK(div(a, b).to_vector<double>() == std::vector<double>{0.5, -0.5, -3, 0.5});
  CHECK((a + b).shape() == Shape{2, 2});
  CHECK((a - 1.0).to_vector<double>() == std::vector<double>{0, -3, 2, 3});
  CHECK((2.0 * a).to_vector<double>() == std::vector<double>{2, -4, 6, 8});
  CHECK((a / 2.0).to_vector<double>() == std::vector<double>{0.5, -1, 1.5, 2});
  CHECK((1.0 - a).to_vector<double>() == std::vector<double>{0, 3, -2, -3});
  CHECK((-a).to_vector<double>() == std::vector<double>{-1, 2, -3, -4});
  Tensor ids = from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  CHECK(add(ids, ids).to_vector<int64_t>() == std::vector<int64_t>{2, 4, 6});
  CHECK(mul(ids, from_vector(std::vector<int64_t>{2}, {1})).to_vector<int64_t>() == std::vector<int64_t>{2, 4, 6});
}

TEST_CASE("elementwise: broadcasting forward matches a slow loop", "[elementwise]") {
  Generator generator(1);
  std::vector<std::pair<Shape, Shape>> pairs = {{{2, 3}, {3}},       {{2, 3}, {2, 1}}, {{2, 3}, {1}},   {{2, 3}, {}},
                                                {{3}, {2, 3}},       {{2, 1}, {1, 3}}, {{}, {2, 3}},    {{}, {}},
                                                {{2, 1, 3}, {4, 1}}, {{1}, {3, 1}},    {{1, 1, 1}, {1}}};
  for (const auto& [shape_a, shape_b] : pairs) {
    Tensor a = away_from_zero(shape_a, generator), b = away_from_zero(shape_b, generator);
    Shape out = broadcast_shapes(shape_a, shape_b, "test");
    for (const BinaryCase& binary : binary_cases()) {
      INFO(binary.name << " " << shape_str(shape_a) << " with " << shape_str(shape_b));
      Tensor result = binary.op(a, b);
      CHECK(result.shape() == out);
      CHECK_THAT(result.to_vector<double>(), matchers::Approx(broadcast_reference(a, b, out, binary.reference)));
    }
  }
  CHECK(broadcast_shapes({2, 1, 3}, {4, 1}, "test") == Shape{2, 4, 3});
  CHECK(broadcast_shapes({0, 3}, {3}, "test") == Shape{0, 3});
  CHECK(add(zeros({0, 3}), ones({3})).numel() == 0);
}

TEST_CASE("elementwise: broadcasting gradcheck for both operands", "[elementwise][gradcheck]") {
  Generator generator(2);
  std::vector<std::pair<Shape, Shape>> pairs = {{{2, 3}, {3}}, {{2, 3}, {2, 1}}, {{2, 3}, {1}},
                                                {{2, 3}, {}},  {{3}, {2, 3}},    {{2, 1}, {1, 3}},
                                                {{}, {}},      {{1, 4}, {1, 4}}, {{2, 1, 3}, {4, 1}}};
  for (const auto& [shape_a, shape_b] : pairs) {
    Tensor a = away_from_zero(shape_a, generator).requires_grad_();
    Tensor b = away_from_zero(shape_b, generator).requires_grad_();
    for (const BinaryCase& binary : binary_cases()) {
      std::string what = std::string(binary.name) + " " + shape_str(shape_a) + " with " + shape_str(shape_b);
      auto op = binary.op;
      check_gradients(what.c_str(), [op](const TensorList& in) { return op(in[0], in[1]); }, {a, b});
    }
  }
}

TEST_CASE("elementwise: gradient to one operand only, and to a tensor used twice", "[elementwise]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  Tensor b = from_vector(std::vector<double>{4, 5, 6}, {3});
  sum(mul(a, b)).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{4, 5, 6});
  CHECK_FALSE(b.grad().defined());
  a.zero_grad();
  sum(div(a, a)).backward();  // a / a = 1: the two paths cancel
  CHECK_THAT(a.grad().to_vector<double>(), matchers::Approx(std::vector<double>{0, 0, 0}).margin(1e-15));
}

TEST_CASE("elementwise: scalar forms and pow", "[elementwise][gradcheck]") {
  Tensor x = from_vector(std::vector<double>{0.5, 1.5, 2.0, 3.0}, {2, 2});
  CHECK(add(x, 1.5).to_vector<double>() == std::vector<double>{2, 3, 3.5, 4.5});
  CHECK(mul(x, -2.0).to_vector<double>() == std::vector<double>{-1, -3, -4, -6});
  CHECK_THAT(pow(x, 3.0).to_vector<double>(), matchers::Approx(std::vector<double>{0.125, 3.375, 8, 27}));
  CHECK_THAT(pow(x, 0.5).to_vector<double>(),
             matchers::Approx(std::vector<double>{std::sqrt(0.5), std::sqrt(1.5), std::sqrt(2.0), std::sqrt(3.0)}));
  CHECK_THAT(pow(x, -1.0).to_vector<double>(), matchers::Approx(std::vector<double>{2, 1 / 1.5, 0.5, 1 / 3.0}));
  Tensor leaf = x.clone().requires_grad_();
  for (double exponent : {3.0, 0.5, -1.0, 2.0}) {
    std::string what = "pow " + std::to_string(exponent);
    check_gradients(what.c_str(), [exponent](const TensorList& in) { return pow(in[0], exponent); }, {leaf});
  }
  check_gradients("add scalar", [](const TensorList& in) { return add(in[0], 2.5); }, {leaf});
  check_gradients("mul scalar", [](const TensorList& in) { return mul(in[0], -1.5); }, {leaf});
  check_gradients("operators", [](const TensorList& in) { return 1.0 - in[0] / 3.0 + 2.0 * in[0]; }, {leaf});
}

namespace {

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> reference;
  bool positive_only;  // log and sqrt
};

double reference_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, false},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, reference_sigmoid, false},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x * reference_sigmoid(x); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, false},
      {"gelu", [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, false},
      {"softplus", [](const Tensor& x) { return softplus(x); }, [](double x) { return std::log(1.0 + std::exp(x)); },
       false},
      {"normal_cdf", [](const Tensor& x) { return normal_cdf(x); },
       [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }, false},
  };
  return cases;
}

}  // namespace

TEST_CASE("elementwise: unary forward matches the formulas", "[elementwise]") {
  Generator generator(3);
  for (const UnaryCase& unary : unary_cases()) {
    INFO(unary.name);
    Tensor x = away_from_zero({3, 4}, generator);
    if (unary.positive_only) x = rand({3, 4}, DType::f64, &generator, 0.1, 3.0);
    std::vector<double> expected;
    for (double value : x.to_vector<double>()) expected.push_back(unary.reference(value));
    CHECK_THAT(unary.op(x).to_vector<double>(), matchers::Approx(expected).epsilon(1e-12));
    // f32 runs the same formula to float precision.
    CHECK_THAT(unary.op(x.to(DType::f32)).to(DType::f64).to_vector<double>(), matchers::Approx(expected).epsilon(1e-5));
  }
  Tensor at_zero = zeros({1}, DType::f64);
  CHECK(gelu(at_zero).item() == 0);
  CHECK(silu(at_zero).item() == 0);
  CHECK(sigmoid(at_zero).item() == 0.5);
  CHECK(softplus(at_zero).item() == Approx(std::log(2.0)));
  CHECK(normal_cdf(at_zero).item() == 0.5);
  CHECK(normal_cdf(full({1}, 1.959963984540054, DType::f64)).item() == Approx(0.975).epsilon(1e-12));
  // The left tail keeps its relative precision (1 + erf would cancel to 0 below about -8.3).
  CHECK(normal_cdf(full({1}, -8.0, DType::f64)).item() == Approx(6.220960574271819e-16).epsilon(1e-12));
  CHECK(normal_cdf(full({1}, -10.0, DType::f64)).item() == Approx(7.619853024160593e-24).epsilon(1e-12));
}

TEST_CASE("elementwise: unary gradcheck, including 1-element and 0-d inputs", "[elementwise][gradcheck]") {
  Generator generator(4);
  for (const Shape& shape : {Shape{2, 3}, Shape{1}, Shape{}, Shape{1, 5}}) {
    for (const UnaryCase& unary : unary_cases()) {
      Tensor x = unary.positive_only ? rand(shape, DType::f64, &generator, 0.2, 3.0) : away_from_zero(shape, generator);
      std::string what = std::string(unary.name) + " " + shape_str(shape);
      auto op = unary.op;
      check_gradients(what.c_str(), [op](const TensorList& in) { return op(in[0]); }, {x.requires_grad_()});
    }
  }
}

TEST_CASE("elementwise: relu gradient is 0 at and below 0", "[elementwise]") {
  Tensor x = from_vector(std::vector<double>{-1, 0, 2}, {3}).requires_grad_();
  sum(relu(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 1});
}

TEST_CASE("elementwise: extreme inputs stay finite", "[elementwise]") {
  Tensor x = from_vector(std::vector<double>{-1000, -40, 40, 1000}, {4});
  CHECK_THAT(sigmoid(x).to_vector<double>(),
             matchers::Approx(std::vector<double>{0, reference_sigmoid(-40), reference_sigmoid(40), 1}).epsilon(1e-12));
  std::vector<double> softplus_values = softplus(x).to_vector<double>();
  CHECK(softplus_values[0] == 0);
  CHECK(softplus_values[3] == 1000);
  CHECK(softplus_values[2] == Approx(40.0));
  std::vector<double> silu_values = silu(x).to_vector<double>();
  CHECK(silu_values[0] == Approx(0.0).margin(1e-300));
  CHECK(silu_values[3] == 1000);
  Tensor x32 = x.to(DType::f32);
  for (float value : sigmoid(x32).to_vector<float>()) CHECK(std::isfinite(value));
  for (float value : softplus(x32).to_vector<float>()) CHECK(std::isfinite(value));
  for (float value : gelu(x32).to_vector<float>()) CHECK(std::isfinite(value));
}

TEST_CASE("elementwise: errors name the op", "[elementwise][errors]") {
  Tensor a = zeros({2, 3}), b = zeros({2, 3}, DType::f64);
  CHECK_THROWS_WITH(add(a, b), Catch::Contains("add") && Catch::Contains("f32") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(sub(a, zeros({2})), Catch::Contains("sub") && Catch::Contains("cannot be broadcast"));
  CHECK_THROWS_WITH(mul(a, zeros({3, 3})), Catch::Contains("mul") && Catch::Contains("[3, 3]"));
  CHECK_THROWS_WITH(div(a, Tensor()), Catch::Contains("div") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(div(zeros({2}, DType::i64), zeros({2})), Catch::Contains("div"));
  Tensor ids = zeros({2}, DType::i64);
  for (const UnaryCase& unary : unary_cases()) {
    INFO(unary.name);
    CHECK_THROWS_WITH(unary.op(ids), Catch::Contains(unary.name) && Catch::Contains("i64"));
  }
  CHECK_THROWS_WITH(pow(ids, 2.0), Catch::Contains("pow"));
  CHECK_THROWS_WITH(add(ids, 1.0), Catch::Contains("add"));
  CHECK_THROWS_WITH(mul(ids, 2.0), Catch::Contains("mul"));
  CHECK_THROWS_WITH(exp(Tensor()), Catch::Contains("exp") && Catch::Contains("undefined"));
}
