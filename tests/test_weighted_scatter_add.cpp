// weighted_scatter_add: the fused MoE combine, against a slow loop and against the unfused ops,
// gradchecks for source and weight, and argument errors.
#include <catch2/catch.hpp>

#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;

TEST_CASE("weighted_scatter_add: forward matches a slow loop, duplicates accumulate", "[weighted_scatter_add]") {
  Generator generator(41);
  Tensor source = randn({5, 3}, DType::f64, &generator);
  Tensor index = from_vector(std::vector<int64_t>{2, 0, 2, 3, 2}, {5});
  Tensor weight = randn({5}, DType::f64, &generator);
  Tensor out = weighted_scatter_add(source, index, weight, 4);
  REQUIRE(out.shape() == Shape{4, 3});
  std::vector<double> want(12, 0.0), s = source.to_vector<double>(), w = weight.to_vector<double>();
  std::vector<int64_t> rows = index.to_vector<int64_t>();
  for (int p = 0; p < 5; ++p)
    for (int j = 0; j < 3; ++j) want[rows[p] * 3 + j] += w[p] * s[p * 3 + j];
  std::vector<double> got = out.to_vector<double>();
  for (int i = 0; i < 12; ++i) CHECK(got[i] == Approx(want[i]).margin(1e-15));
  for (int j = 0; j < 3; ++j) CHECK(got[1 * 3 + j] == 0.0);  // row 1 is named by no pair
  // Same as the unfused scatter_add of the weighted rows, also with a [P, 1] weight.
  Tensor unfused = scatter_add(zeros({4, 3}, DType::f64), index, mul(source, weight.reshape({5, 1})));
  std::vector<double> fused_column = weighted_scatter_add(source, index, weight.reshape({5, 1}), 4).to_vector<double>();
  std::vector<double> reference = unfused.to_vector<double>();
  for (int i = 0; i < 12; ++i) CHECK(fused_column[i] == Approx(reference[i]).margin(1e-15));
}

TEST_CASE("weighted_scatter_add: gradcheck of source and weight", "[weighted_scatter_add][gradcheck]") {
  Generator generator(42);
  Tensor index = from_vector(std::vector<int64_t>{1, 1, 0, 3, 1, 0}, {6});
  Tensor source = randn({6, 4}, DType::f64, &generator).requires_grad_();
  Tensor weight = randn({6}, DType::f64, &generator).requires_grad_();
  check_gradients("both", [](const TensorList& in) { return weighted_scatter_add(in[0], in[1], in[2], 5); },
                  {source, index, weight});
  check_gradients("source only",
                  [](const TensorList& in) { return weighted_scatter_add(in[0], in[1], in[2], 5); },
                  {source, index, weight.detach()});
  check_gradients("weight only, [P, 1]",
                  [](const TensorList& in) { return weighted_scatter_add(in[0], in[1], in[2].reshape({6, 1}), 4); },
                  {source.detach(), index, weight});
  Tensor empty_index = zeros({0}, DType::i64);
  check_gradients("no pairs",
                  [](const TensorList& in) { return weighted_scatter_add(in[0], in[1], in[2], 3); },
                  {zeros({0, 4}, DType::f64).requires_grad_(), empty_index, zeros({0}, DType::f64).requires_grad_()});
}

TEST_CASE("weighted_scatter_add: bad arguments name the op", "[weighted_scatter_add][errors]") {
  Tensor source = ones({3, 2});
  Tensor index = from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  Tensor weight = ones({3});
  CHECK_THROWS_WITH(weighted_scatter_add(source, index, weight, 2),
                    Catch::Contains("weighted_scatter_add") && Catch::Contains("index 2 out of range"));
  CHECK_THROWS_WITH(weighted_scatter_add(source, index, ones({2}), 3), Catch::Contains("weighted_scatter_add"));
  CHECK_THROWS_WITH(weighted_scatter_add(source, index, ones({3}, DType::f64), 3), Catch::Contains("f32"));
  CHECK_THROWS_WITH(weighted_scatter_add(source, index.to(DType::f32), weight, 3), Catch::Contains("i64"));
  CHECK_THROWS_WITH(weighted_scatter_add(ones({3}), index, weight, 3), Catch::Contains("2 dimensions"));
  CHECK_THROWS_WITH(weighted_scatter_add(source, index, weight, -1), Catch::Contains("non-negative"));
}
