// index_select, scatter_add, gather: forward against slow loops and hand values, gradients
// (duplicate and empty indices), determinism, and bad arguments.
#include <catch2/catch.hpp>

#include <vector>

#include "ops/index.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {

Tensor indices(const std::vector<int64_t>& values) {
  return from_vector(values, {static_cast<int64_t>(values.size())});
}

}  // namespace

TEST_CASE("index_select: hand values with duplicates, every dim, i64 data", "[index]") {
  Tensor x = arange(12, DType::f32).reshape({4, 3});
  Tensor rows = index_select(x, indices({3, 0, 3}));
  CHECK(rows.shape() == Shape{3, 3});
  CHECK(rows.to_vector<float>() == std::vector<float>{9, 10, 11, 0, 1, 2, 9, 10, 11});
  Tensor columns = index_select(x, indices({2, 2, 1, 0}), -1);
  CHECK(columns.shape() == Shape{4, 4});
  CHECK(columns.to_vector<float>() == std::vector<float>{2, 2, 1, 0, 5, 5, 4, 3, 8, 8, 7, 6, 11, 11, 10, 9});
  Tensor ids = index_select(arange(6).reshape({3, 2}), indices({1}));
  CHECK(ids.dtype() == DType::i64);
  CHECK(ids.to_vector<int64_t>() == std::vector<int64_t>{2, 3});
}

TEST_CASE("index_select: middle dim matches a slow loop, empty index", "[index]") {
  Generator generator(5);
  Tensor x = randn({2, 5, 3}, DType::f64, &generator);
  std::vector<int64_t> chosen = {4, 1, 1, 0};
  Tensor out = index_select(x, indices(chosen), 1);
  REQUIRE(out.shape() == Shape{2, 4, 3});
  std::vector<double> in = x.to_vector<double>(), got = out.to_vector<double>();
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t c = 0; c < 3; ++c) CHECK(got[(a * 4 + j) * 3 + c] == in[(a * 5 + chosen[j]) * 3 + c]);
  CHECK(index_select(x, indices({}), 1).shape() == Shape{2, 0, 3});
  CHECK(index_select(x, indices({}), 0).shape() == Shape{0, 5, 3});
}

TEST_CASE("index_select: gradcheck with duplicates and an empty index", "[index][gradcheck]") {
  Generator generator(6);
  Tensor x = randn({4, 3}, DType::f64, &generator).requires_grad_();
  for (int64_t dim : {0, 1}) {
    Tensor index = dim == 0 ? indices({1, 3, 1, 1}) : indices({2, 0, 2});
    GradcheckResult result = gradcheck([&](const TensorList& in) { return index_select(in[0], index, dim); }, {x});
    INFO(result.report);
    CHECK(result.passed());
  }
  GradcheckResult empty = gradcheck([](const TensorList& in) { return index_select(in[0], indices({}), 0); }, {x});
  CHECK(empty.passed());
  Tensor cube = randn({2, 3, 2}, DType::f64, &generator).requires_grad_();
  CHECK(gradcheck([](const TensorList& in) { return index_select(in[0], indices({2, 2, 0}), 1); }, {cube}).passed());
}

TEST_CASE("index_select: backward accumulates duplicates", "[index]") {
  Tensor x = zeros({3, 2}, DType::f64).requires_grad_();
  index_select(x, indices({2, 0, 2})).backward(ones({3, 2}, DType::f64));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 0, 2, 2});
}

TEST_CASE("index_select: errors name the op", "[index][errors]") {
  Tensor x = zeros({8, 2});
  CHECK_THROWS_WITH(index_select(x, indices({9})), Catch::Equals("index_select: index 9 out of range for dim 0 of size 8"));
  CHECK_THROWS_WITH(index_select(x, indices({-1})), Catch::Contains("index_select") && Catch::Contains("index -1"));
  CHECK_THROWS_WITH(index_select(x, indices({2}), 1), Catch::Contains("index 2 out of range for dim 1 of size 2"));
  CHECK_THROWS_WITH(index_select(x, zeros({2})), Catch::Contains("index_select") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(index_select(x, zeros({2, 1}, DType::i64)), Catch::Contains("index_select") && Catch::Contains("1 dimensions"));
  CHECK_THROWS_WITH(index_select(x, indices({0}), 2), Catch::Contains("index_select") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(index_select(Tensor(), indices({0})), Catch::Contains("index_select"));
}

TEST_CASE("scatter_add: hand values with duplicates, dim 1, i64, empty index", "[index]") {
  Tensor base = from_vector(std::vector<float>{1, 1, 1, 1, 1, 1}, {3, 2});
  Tensor source = from_vector(std::vector<float>{1, 2, 10, 20, 100, 200, 5, 6}, {4, 2});
  Tensor out = scatter_add(base, indices({2, 0, 2, 2}), source);
  CHECK(out.to_vector<float>() == std::vector<float>{11, 21, 1, 1, 107, 209});
  CHECK(base.to_vector<float>() == std::vector<float>{1, 1, 1, 1, 1, 1});  // base untouched

  Tensor by_column = scatter_add(zeros({2, 3}, DType::i64), indices({1, 1}), arange(4).reshape({2, 2}), 1);
  CHECK(by_column.dtype() == DType::i64);
  CHECK(by_column.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 0, 0, 5, 0});

  Tensor unchanged = scatter_add(base, indices({}), zeros({0, 2}));
  CHECK(unchanged.to_vector<float>() == base.to_vector<float>());
}

TEST_CASE("scatter_add: matches a slow loop, dispatch then combine counts each token", "[index]") {
  Generator generator(8);
  Tensor base = randn({2, 4, 3}, DType::f64, &generator);
  Tensor source = randn({2, 6, 3}, DType::f64, &generator);
  std::vector<int64_t> target = {3, 0, 3, 1, 3, 0};
  std::vector<double> want = base.to_vector<double>(), from = source.to_vector<double>();
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t c = 0; c < 3; ++c) want[(a * 4 + target[j]) * 3 + c] += from[(a * 6 + j) * 3 + c];
  CHECK(scatter_add(base, indices(target), source, 1).to_vector<double>() == want);

  // MoE round trip: x_perm = index_select(x, token_of_pair); y = scatter_add(0, token_of_pair, x_perm).
  Tensor x = randn({3, 2}, DType::f64, &generator);
  Tensor token_of_pair = indices({0, 2, 2, 1, 0, 2});
  Tensor y = scatter_add(zeros({3, 2}, DType::f64), token_of_pair, index_select(x, token_of_pair));
  std::vector<double> xs = x.to_vector<double>(), ys = y.to_vector<double>();
  std::vector<double> pairs_per_token = {2, 1, 3};
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t c = 0; c < 2; ++c) CHECK(ys[t * 2 + c] == Approx(pairs_per_token[t] * xs[t * 2 + c]));
}

TEST_CASE("scatter_add: deterministic runs are bit-identical", "[index]") {
  Generator generator(9);
  Tensor source = randn({4096, 8}, DType::f32, &generator);
  Tensor target = randint(0, 16, {4096}, &generator);
  Tensor first = scatter_add(zeros({16, 8}), target, source, 0, true);
  for (int run = 0; run < 3; ++run)
    CHECK(scatter_add(zeros({16, 8}), target, source, 0, true).to_vector<float>() == first.to_vector<float>());
  CHECK(scatter_add(zeros({16, 8}), target, source, 0, false).to_vector<float>() == first.to_vector<float>());
}

TEST_CASE("scatter_add: gradcheck of base and source, duplicates and an empty index", "[index][gradcheck]") {
  Generator generator(10);
  Tensor base = randn({4, 3}, DType::f64, &generator).requires_grad_();
  Tensor source = randn({5, 3}, DType::f64, &generator).requires_grad_();
  Tensor target = indices({1, 3, 1, 0, 1});
  GradcheckResult both = gradcheck([&](const TensorList& in) { return scatter_add(in[0], target, in[1]); },
                                   {base, source});
  INFO(both.report);
  CHECK(both.passed());

  Tensor source_columns = randn({4, 2}, DType::f64, &generator).requires_grad_();
  CHECK(gradcheck([](const TensorList& in) { return scatter_add(in[0], indices({2, 2}), in[1], 1, true); },
                  {base, source_columns}).passed());
  // Only the source requires grad; only the base.
  auto scatter = [&](const TensorList& in) { return scatter_add(in[0], target, in[1]); };
  CHECK(gradcheck(scatter, {base.detach(), source}).passed());
  CHECK(gradcheck(scatter, {base, source.detach()}).passed());

  Tensor no_source = zeros({0, 3}, DType::f64).requires_grad_();
  GradcheckResult empty = gradcheck([](const TensorList& in) { return scatter_add(in[0], indices({}), in[1]); },
                                    {base, no_source});
  INFO(empty.report);
  CHECK(empty.passed());
}

TEST_CASE("scatter_add: gradients of base and source by hand", "[index]") {
  Tensor base = zeros({3}, DType::f64).requires_grad_();
  Tensor source = zeros({4}, DType::f64).requires_grad_();
  scatter_add(base, indices({2, 0, 2, 1}), source).backward(from_vector(std::vector<double>{1, 2, 3}, {3}));
  CHECK(base.grad().to_vector<double>() == std::vector<double>{1, 2, 3});
  CHECK(source.grad().to_vector<double>() == std::vector<double>{3, 1, 3, 2});
}

TEST_CASE("scatter_add: errors name the op", "[index][errors]") {
  Tensor base = zeros({4, 2});
  CHECK_THROWS_WITH(scatter_add(base, indices({4}), zeros({1, 2})),
                    Catch::Equals("scatter_add: index 4 out of range for dim 0 of size 4"));
  CHECK_THROWS_WITH(scatter_add(base, indices({0, 1}), zeros({3, 2})),
                    Catch::Contains("scatter_add") && Catch::Contains("[2, 2]") && Catch::Contains("[3, 2]"));
  CHECK_THROWS_WITH(scatter_add(base, indices({0}), zeros({1, 2}, DType::f64)),
                    Catch::Contains("scatter_add") && Catch::Contains("one dtype"));
  CHECK_THROWS_WITH(scatter_add(base, zeros({1}), zeros({1, 2})), Catch::Contains("scatter_add") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(scatter_add(base, indices({0}), zeros({1, 2}), -3), Catch::Contains("scatter_add") && Catch::Contains("dim -3"));
  CHECK_THROWS_WITH(scatter_add(base, indices({0}), Tensor()), Catch::Contains("scatter_add"));
}

TEST_CASE("gather: matches a slow loop along every dim, index smaller than x", "[index]") {
  Generator generator(12);
  Tensor x = randn({3, 4, 5}, DType::f64, &generator);
  std::vector<double> in = x.to_vector<double>();
  for (int64_t dim = 0; dim < 3; ++dim) {
    Shape shape = {2, 3, 4};  // smaller than x in every other dim
    shape[dim] = 6;           // and larger along dim: positions repeat
    Tensor index = randint(0, x.size(dim), shape, &generator);
    Tensor out = gather(x, dim, index);
    REQUIRE(out.shape() == shape);
    std::vector<int64_t> at_index = index.to_vector<int64_t>();
    std::vector<double> got = out.to_vector<double>();
    for (int64_t a = 0; a < shape[0]; ++a)
      for (int64_t b = 0; b < shape[1]; ++b)
        for (int64_t c = 0; c < shape[2]; ++c) {
          int64_t p = (a * shape[1] + b) * shape[2] + c;
          int64_t at[3] = {a, b, c};
          at[dim] = at_index[p];
          CHECK(got[p] == in[(at[0] * 4 + at[1]) * 5 + at[2]]);
        }
  }
  Tensor ids = gather(from_vector(std::vector<int64_t>{7, 8, 9, 10}, {2, 2}), 1, from_vector(std::vector<int64_t>{1, 1, 0}, {1, 3}));
  CHECK(ids.to_vector<int64_t>() == std::vector<int64_t>{8, 8, 7});
  CHECK(gather(x, 1, zeros({3, 0, 5}, DType::i64)).shape() == Shape{3, 0, 5});
}

TEST_CASE("gather: gradcheck with repeated positions", "[index][gradcheck]") {
  Generator generator(13);
  Tensor x = randn({3, 4}, DType::f64, &generator).requires_grad_();
  for (int64_t dim : {0, 1}) {
    Tensor index = randint(0, x.size(dim), {2, 3}, &generator);
    GradcheckResult result = gradcheck([&](const TensorList& in) { return gather(in[0], dim, index); }, {x});
    INFO(result.report);
    CHECK(result.passed());
  }
  Tensor repeat = from_vector(std::vector<int64_t>{2, 2, 2, 0, 0, 0}, {2, 3});
  CHECK(gradcheck([&](const TensorList& in) { return gather(in[0], -1, repeat); }, {x}).passed());
  x.zero_grad();
  Tensor leaf = zeros({2, 4}, DType::f64).requires_grad_();
  gather(leaf, -1, repeat).backward(ones({2, 3}, DType::f64));
  CHECK(leaf.grad().to_vector<double>() == std::vector<double>{0, 0, 3, 0, 3, 0, 0, 0});
}

TEST_CASE("gather: errors name the op", "[index][errors]") {
  Tensor x = zeros({3, 4});
  CHECK_THROWS_WITH(gather(x, 1, from_vector(std::vector<int64_t>{4}, {1, 1})),
                    Catch::Equals("gather: index 4 out of range for dim 1 of size 4"));
  CHECK_THROWS_WITH(gather(x, 1, indices({0})), Catch::Contains("gather") && Catch::Contains("as many dimensions"));
  CHECK_THROWS_WITH(gather(x, 1, zeros({4, 1}, DType::i64)), Catch::Contains("gather") && Catch::Contains("exceeds"));
  CHECK_THROWS_WITH(gather(x, 1, zeros({1, 1})), Catch::Contains("gather") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(gather(x, 2, zeros({1, 1}, DType::i64)), Catch::Contains("gather") && Catch::Contains("dim 2"));
}
