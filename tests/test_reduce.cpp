// Reductions: sum/mean/max along dims and over everything, sum_to (the reverse of broadcasting).
// Forward against slow loops written here, f64 gradchecks, ties and bad input.
#include <catch2/catch.hpp>

#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;
namespace matchers = Catch::Matchers;

namespace {

// Sum over dim of a [d0, d1, d2] tensor, by explicit coordinates.
std::vector<double> slow_sum_3d(const Tensor& x, int dim) {
  const Shape& s = x.shape();
  std::vector<double> values = x.to_vector<double>();
  Shape out = s;
  out[dim] = 1;
  std::vector<double> result(shape_numel(out), 0.0);
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t j = 0; j < s[1]; ++j)
      for (int64_t k = 0; k < s[2]; ++k) {
        int64_t c[3] = {i, j, k};
        c[dim] = 0;
        result[(c[0] * out[1] + c[1]) * out[2] + c[2]] += values[(i * s[1] + j) * s[2] + k];
      }
  return result;
}

}  // namespace

TEST_CASE("reduce: sum and mean along each dim match a slow loop", "[reduce]") {
  Generator generator(5);
  Tensor x = randn({2, 3, 4}, DType::f64, &generator);
  for (int dim = 0; dim < 3; ++dim) {
    INFO("dim " << dim);
    std::vector<double> expected = slow_sum_3d(x, dim);
    Shape kept = x.shape();
    kept[dim] = 1;
    Shape dropped = x.shape();
    dropped.erase(dropped.begin() + dim);
    Tensor summed = sum(x, dim);
    CHECK(summed.shape() == dropped);
    CHECK_THAT(summed.to_vector<double>(), matchers::Approx(expected));
    CHECK(sum(x, dim, true).shape() == kept);
    CHECK(sum(x, dim - 3).shape() == dropped);  // negative dims count from the end
    std::vector<double> expected_mean = expected;
    for (double& value : expected_mean) value /= static_cast<double>(x.size(dim));
    CHECK_THAT(mean(x, dim, true).to_vector<double>(), matchers::Approx(expected_mean));
  }
  double total = 0;
  for (double value : x.to_vector<double>()) total += value;
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x).item() == Approx(total));
  CHECK(mean(x).item() == Approx(total / 24));
}

TEST_CASE("reduce: hand-computed values, i64, 0-d and empty", "[reduce]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum(x, 0).to_vector<double>() == std::vector<double>{5, 7, 9});
  CHECK(sum(x, 1).to_vector<double>() == std::vector<double>{6, 15});
  CHECK(mean(x, 1).to_vector<double>() == std::vector<double>{2, 5});
  CHECK(sum(x).item() == 21);
  Tensor ids = from_vector(std::vector<int64_t>{1, 2, 3, 4}, {2, 2});
  CHECK(sum(ids, 0).to_vector<int64_t>() == std::vector<int64_t>{4, 6});
  CHECK(sum(ids).dtype() == DType::i64);
  Tensor scalar_value = scalar(2.5, DType::f64);
  CHECK(sum(scalar_value).item() == 2.5);
  CHECK(mean(scalar_value).item() == 2.5);
  CHECK(sum(zeros({0, 3}), 0).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(sum(zeros({2, 0}), 1).to_vector<float>() == std::vector<float>{0, 0});
}

TEST_CASE("reduce: max values, indices and ties toward the lowest index", "[reduce]") {
  Tensor x = from_vector(std::vector<double>{1, 5, 5, 7, 0, 7, -1, -2, -3}, {3, 3});
  ValuesIndices rows = max(x, 1);
  CHECK(rows.values.to_vector<double>() == std::vector<double>{5, 7, -1});
  CHECK(rows.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  ValuesIndices columns = max(x, 0, true);
  CHECK(columns.values.shape() == Shape{1, 3});
  CHECK(columns.values.to_vector<double>() == std::vector<double>{7, 5, 7});
  CHECK(columns.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
  CHECK(max(x).item() == 7);
  CHECK(max(from_vector(std::vector<int64_t>{3, 9, 2}, {3}), 0).values.item<int64_t>() == 9);
  // The gradient goes to the element whose index is returned.
  Tensor leaf = x.clone().requires_grad_();
  sum(max(leaf, 1).values).backward();
  CHECK(leaf.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 1, 0, 0, 1, 0, 0});
}

TEST_CASE("reduce: sum_to reverses broadcasting", "[reduce]") {
  Tensor x = arange(24, DType::f64).reshape({2, 3, 4});
  Tensor to_row = sum_to(x, {4});
  CHECK(to_row.shape() == Shape{4});
  CHECK(to_row.to_vector<double>() == std::vector<double>{60, 66, 72, 78});
  Tensor to_column = sum_to(x, {3, 1});
  CHECK(to_column.shape() == Shape{3, 1});
  CHECK(to_column.to_vector<double>() == std::vector<double>{60, 92, 124});
  CHECK(sum_to(x, {}).item() == 276);
  CHECK(sum_to(x, {1, 1, 1}).item() == 276);
  CHECK(sum_to(x, {2, 3, 4}).to_vector<double>() == x.to_vector<double>());
}

TEST_CASE("reduce: gradcheck sum, mean, max, sum_to", "[reduce][gradcheck]") {
  Generator generator(6);
  for (const Shape& shape : {Shape{2, 3, 4}, Shape{1, 4}, Shape{4, 1}, Shape{5}}) {
    Tensor x = randn(shape, DType::f64, &generator).requires_grad_();
    int64_t ndim = static_cast<int64_t>(shape.size());
    for (int64_t dim = -ndim; dim < ndim; ++dim)
      for (bool keepdim : {false, true}) {
        std::string what = shape_str(shape) + " dim " + std::to_string(dim) + (keepdim ? " keepdim" : "");
        check_gradients(("sum " + what).c_str(),
                        [dim, keepdim](const TensorList& in) { return sum(in[0], dim, keepdim); }, {x});
        check_gradients(("mean " + what).c_str(),
                        [dim, keepdim](const TensorList& in) { return mean(in[0], dim, keepdim); }, {x});
        // randn draws are distinct with probability 1, so no tie sits within eps.
        check_gradients(("max " + what).c_str(),
                        [dim, keepdim](const TensorList& in) { return max(in[0], dim, keepdim).values; }, {x});
      }
    check_gradients("sum all", [](const TensorList& in) { return sum(in[0]); }, {x});
    check_gradients("mean all", [](const TensorList& in) { return mean(in[0]); }, {x});
    check_gradients("max all", [](const TensorList& in) { return max(in[0]); }, {x});
  }
  Tensor x = randn({2, 3, 4}, DType::f64, &generator).requires_grad_();
  for (const Shape& target : {Shape{4}, Shape{3, 1}, Shape{}, Shape{2, 1, 4}}) {
    check_gradients(("sum_to " + shape_str(target)).c_str(),
                    [target](const TensorList& in) { return sum_to(in[0], target); }, {x});
  }
  check_gradients("sum 0-d", [](const TensorList& in) { return sum(in[0]); },
                  {scalar(1.5, DType::f64).requires_grad_()});
}

TEST_CASE("reduce: errors name the op", "[reduce][errors]") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH(sum(x, 2), Catch::Contains("sum") && Catch::Contains("dim 2 out of range"));
  CHECK_THROWS_WITH(sum(x, -3), Catch::Contains("sum") && Catch::Contains("dim -3"));
  CHECK_THROWS_WITH(mean(x, 5), Catch::Contains("mean") && Catch::Contains("dim 5"));
  CHECK_THROWS_WITH(mean(zeros({2}, DType::i64)), Catch::Contains("mean") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(mean(zeros({2, 0}), 1), Catch::Contains("mean") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(mean(zeros({0})), Catch::Contains("mean") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(max(x, 2), Catch::Contains("max") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(max(zeros({2, 0}), 1), Catch::Contains("max") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(max(zeros({0})), Catch::Contains("max") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(sum(Tensor()), Catch::Contains("sum") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(sum_to(x, {4}), Catch::Contains("sum_to") && Catch::Contains("[4]"));
  CHECK_THROWS_WITH(sum_to(x, {1, 2, 3}), Catch::Contains("sum_to"));
  CHECK_THROWS_WITH(sum_to(x, {2, 2}), Catch::Contains("sum_to"));
}
