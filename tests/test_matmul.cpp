// matmul and linear on every GEMM backend of this build (Eigen always, CBLAS when found):
// forward against a naive triple loop, f64 gradchecks, and bad input.
#include <catch2/catch.hpp>

#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::available_backends;
using tinymoe::testing::BackendScope;
using tinymoe::testing::check_gradients;
namespace matchers = Catch::Matchers;

namespace {

// out[r, j] = sum_k a[r, k] * b[k, j] (b_transposed: b[j, k]), rows = every leading index of a.
std::vector<double> naive_product(const Tensor& a, const Tensor& b, bool b_transposed) {
  std::vector<double> values_a = a.to(DType::f64).to_vector<double>();
  std::vector<double> values_b = b.to(DType::f64).to_vector<double>();
  int64_t inner = a.shape().back();
  int64_t rows = shape_numel(Shape(a.shape().begin(), a.shape().end() - 1));
  int64_t cols = b_transposed ? b.size(0) : b.size(1);
  std::vector<double> out(rows * cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < inner; ++k)
        out[r * cols + j] +=
            values_a[r * inner + k] * (b_transposed ? values_b[j * inner + k] : values_b[k * cols + j]);
  return out;
}

}  // namespace

TEST_CASE("matmul: hand-computed 2x2", "[matmul]") {
  Tensor a = from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector(std::vector<float>{5, 6, 7, 8}, {2, 2});
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    INFO(gemm_backend_name(backend));
    CHECK(matmul(a, b).to_vector<float>() == std::vector<float>{19, 22, 43, 50});
    CHECK(linear(a, b).to_vector<float>() == std::vector<float>{17, 23, 39, 53});  // a b^T
    CHECK(linear(a, b, from_vector(std::vector<float>{1, -1}, {2})).to_vector<float>() ==
          std::vector<float>{18, 22, 40, 52});
  }
}

TEST_CASE("matmul: forward matches a naive loop on every backend", "[matmul]") {
  GemmBackend original = gemm_backend();
  Generator generator(7);
  struct Case {
    Shape a, b;
  };
  std::vector<Case> cases = {{{3, 4}, {4, 5}}, {{1, 7}, {7, 2}}, {{5, 1}, {1, 3}}, {{2, 3, 4}, {4, 6}},
                             {{4}, {4, 3}},    {{0, 4}, {4, 3}}, {{3, 0}, {0, 2}}, {{33, 65}, {65, 17}}};
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    for (DType dtype : {DType::f32, DType::f64}) {
      for (const Case& c : cases) {
        INFO(gemm_backend_name(backend) << " " << dtype_name(dtype) << " " << shape_str(c.a) << " x "
                                        << shape_str(c.b));
        Tensor a = randn(c.a, dtype, &generator), b = randn(c.b, dtype, &generator);
        Tensor out = matmul(a, b);
        Shape expected_shape = c.a;
        expected_shape.back() = c.b[1];
        CHECK(out.shape() == expected_shape);
        CHECK(out.dtype() == dtype);
        double tolerance = dtype == DType::f32 ? 1e-5 : 1e-12;
        CHECK_THAT(out.to(DType::f64).to_vector<double>(),
                   matchers::Approx(naive_product(a, b, false)).epsilon(tolerance).margin(tolerance * 10));
        // linear takes its weight as [out, in].
        Tensor weight = randn({c.b[1], c.b[0]}, dtype, &generator);
        CHECK_THAT(linear(a, weight).to(DType::f64).to_vector<double>(),
                   matchers::Approx(naive_product(a, weight, true)).epsilon(tolerance).margin(tolerance * 10));
      }
    }
  }
  CHECK(gemm_backend() == original);
}

TEST_CASE("matmul: linear adds the bias to every row", "[matmul]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor weight = from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor bias = from_vector(std::vector<double>{10, 20, 30}, {3});
  CHECK(linear(x, weight, bias).to_vector<double>() == std::vector<double>{11, 22, 33, 13, 24, 37, 15, 26, 41});
  CHECK(linear(x.reshape({1, 3, 2}), weight, bias).shape() == Shape{1, 3, 3});
}

TEST_CASE("matmul: gradcheck on every backend", "[matmul][gradcheck]") {
  Generator generator(8);
  for (GemmBackend backend : available_backends()) {
    BackendScope scope(backend);
    std::string name = gemm_backend_name(backend);
    for (const auto& [shape_a, shape_b] : std::vector<std::pair<Shape, Shape>>{
             {{3, 4}, {4, 2}}, {{1, 3}, {3, 2}}, {{2, 3, 4}, {4, 3}}, {{3}, {3, 2}}, {{2, 1}, {1, 3}}}) {
      Tensor a = randn(shape_a, DType::f64, &generator).requires_grad_();
      Tensor b = randn(shape_b, DType::f64, &generator).requires_grad_();
      std::string what = name + " matmul " + shape_str(shape_a) + " x " + shape_str(shape_b);
      check_gradients(what.c_str(), [](const TensorList& in) { return matmul(in[0], in[1]); }, {a, b});
    }
    Tensor x = randn({2, 3, 4}, DType::f64, &generator).requires_grad_();
    Tensor weight = randn({5, 4}, DType::f64, &generator).requires_grad_();
    Tensor bias = randn({5}, DType::f64, &generator).requires_grad_();
    check_gradients((name + " linear with bias").c_str(),
                    [](const TensorList& in) { return linear(in[0], in[1], in[2]); }, {x, weight, bias});
    check_gradients((name + " linear without bias").c_str(), [](const TensorList& in) { return linear(in[0], in[1]); },
                    {x, weight});
    Tensor one_row = randn({1, 4}, DType::f64, &generator).requires_grad_();
    check_gradients((name + " linear one row").c_str(),
                    [](const TensorList& in) { return linear(in[0], in[1], in[2]); }, {one_row, weight, bias});
  }
}

TEST_CASE("matmul: gradient to one operand only", "[matmul]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor b = from_vector(std::vector<double>{1, 0, 0, 2}, {2, 2});
  sum(matmul(a, b)).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1, 2, 1, 2});  // g b^T with g = ones
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("matmul: errors name the op", "[matmul][errors]") {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  CHECK_THROWS_WITH(matmul(a, b), Catch::Contains("matmul") && Catch::Contains("[2, 3]") && Catch::Contains("[4, 5]"));
  CHECK_THROWS_WITH(matmul(a, zeros({3, 2}, DType::f64)), Catch::Contains("matmul") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(matmul(a, zeros({3})), Catch::Contains("matmul") && Catch::Contains("2 dimensions"));
  CHECK_THROWS_WITH(matmul(a, zeros({1, 3, 2})), Catch::Contains("matmul"));
  CHECK_THROWS_WITH(matmul(scalar(1.0), zeros({1, 2})), Catch::Contains("matmul") && Catch::Contains("scalar"));
  CHECK_THROWS_WITH(matmul(zeros({2, 3}, DType::i64), zeros({3, 2})),
                    Catch::Contains("matmul") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(linear(a, zeros({4, 2})), Catch::Contains("linear") && Catch::Contains("3 features"));
  CHECK_THROWS_WITH(linear(a, zeros({4, 3}), zeros({3})), Catch::Contains("linear") && Catch::Contains("bias"));
  CHECK_THROWS_WITH(linear(a, zeros({4, 3}), zeros({4}, DType::f64)),
                    Catch::Contains("linear") && Catch::Contains("bias"));
  CHECK_THROWS_WITH(linear(a, zeros({4, 3}), zeros({4}, DType::i64)),
                    Catch::Contains("linear") && Catch::Contains("bias"));
  CHECK_THROWS_WITH(linear(a, zeros({4, 3}, DType::f64)), Catch::Contains("linear"));
  CHECK_THROWS_WITH(linear(Tensor(), zeros({4, 3})), Catch::Contains("linear") && Catch::Contains("undefined"));
}
