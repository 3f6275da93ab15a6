// sort/argsort (stability, NaN, the i64 permutation path, gradients, ties), bincount, cumsum,
// one_hot: forward against hand values and slow loops, gradients, bad arguments.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/counting.h"
#include "ops/sort.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {

// Stable insertion sort of positions: a position moves left only past strictly worse keys.
template <typename T>
std::vector<int64_t> slow_argsort(const std::vector<T>& keys, bool descending) {
  std::vector<int64_t> order;
  for (int64_t position = 0; position < static_cast<int64_t>(keys.size()); ++position) {
    size_t slot = order.size();
    while (slot > 0 && (descending ? keys[order[slot - 1]] < keys[position] : keys[order[slot - 1]] > keys[position]))
      --slot;
    order.insert(order.begin() + slot, position);
  }
  return order;
}

}  // namespace

TEST_CASE("sort: hand values, stable in both directions", "[sort]") {
  Tensor x = from_vector(std::vector<float>{3, 1, 2, 1}, {4});
  SortResult up = sort(x);
  CHECK(up.values.to_vector<float>() == std::vector<float>{1, 1, 2, 3});
  CHECK(up.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2, 0});
  SortResult down = sort(x, 0, true);
  CHECK(down.values.to_vector<float>() == std::vector<float>{3, 2, 1, 1});
  CHECK(down.indices.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 1, 3});
  CHECK(argsort(x, -1, true).to_vector<int64_t>() == std::vector<int64_t>{0, 2, 1, 3});

  // Along dim 0 of a matrix: each column sorted on its own.
  Tensor m = from_vector(std::vector<int64_t>{5, 0, 1, 0, 5, 2}, {3, 2});
  SortResult columns = sort(m, 0);
  CHECK(columns.values.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 5, 0, 5, 2});
  CHECK(columns.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1, 2, 2});
}

TEST_CASE("sort: NaN last ascending, first descending, infinities", "[sort]") {
  double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Tensor x = from_vector(std::vector<double>{nan, 2, -inf, nan, inf}, {5});
  CHECK(argsort(x).to_vector<int64_t>() == std::vector<int64_t>{2, 1, 4, 0, 3});
  CHECK(argsort(x, 0, true).to_vector<int64_t>() == std::vector<int64_t>{0, 3, 4, 1, 2});
}

TEST_CASE("sort: matches a stable slow sort, floating and i64, many ties", "[sort]") {
  Generator generator(21);
  Tensor ids = randint(-3, 4, {6, 40}, &generator);
  Tensor floats = ids.to(DType::f32);
  for (bool descending : {false, true}) {
    Tensor got_ids = argsort(ids, 1, descending), got_floats = argsort(floats, -1, descending);
    std::vector<int64_t> all = ids.to_vector<int64_t>();
    for (int64_t r = 0; r < 6; ++r) {
      std::vector<int64_t> row(all.begin() + r * 40, all.begin() + (r + 1) * 40);
      std::vector<int64_t> want = slow_argsort(row, descending);
      std::vector<int64_t> got = got_ids.to_vector<int64_t>(), got_f = got_floats.to_vector<int64_t>();
      CHECK(std::vector<int64_t>(got.begin() + r * 40, got.begin() + (r + 1) * 40) == want);
      CHECK(std::vector<int64_t>(got_f.begin() + r * 40, got_f.begin() + (r + 1) * 40) == want);
    }
  }
}

TEST_CASE("sort: i64 keys of any range (counting and comparison paths)", "[sort]") {
  int64_t lowest = std::numeric_limits<int64_t>::min(), highest = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> wide = {highest, -5, lowest, 7, -5, highest, 0, lowest};
  for (bool descending : {false, true})
    CHECK(argsort(from_vector(wide, {8}), 0, descending).to_vector<int64_t>() == slow_argsort(wide, descending));
  std::vector<int64_t> sparse = {1000000, 3, 1000000, -2000000, 3};
  CHECK(argsort(from_vector(sparse, {5})).to_vector<int64_t>() == slow_argsort(sparse, false));
  CHECK(sort(zeros({0}, DType::i64)).values.shape() == Shape{0});
  CHECK(sort(zeros({3, 0})).indices.shape() == Shape{3, 0});
}

TEST_CASE("sort: expert ids of a router batch (T*k = 32768) sort stably", "[sort]") {
  Generator generator(22);
  int64_t pairs = 32768, experts = 64;
  Tensor expert_of_pair = randint(0, experts, {pairs}, &generator);
  SortResult sorted = sort(expert_of_pair);
  // Reference: deal positions into per-expert lists in position order.
  std::vector<std::vector<int64_t>> per_expert(experts);
  std::vector<int64_t> ids = expert_of_pair.to_vector<int64_t>();
  for (int64_t p = 0; p < pairs; ++p) per_expert[ids[p]].push_back(p);
  std::vector<int64_t> want;
  for (const auto& positions : per_expert) want.insert(want.end(), positions.begin(), positions.end());
  CHECK(sorted.indices.to_vector<int64_t>() == want);
}

TEST_CASE("sort: gradcheck of the values, selection unstable at a tie", "[sort][gradcheck]") {
  Generator generator(23);
  struct Case {
    Shape shape;
    int64_t dim;
    bool descending;
  };
  for (const Case& c : std::vector<Case>{{{5}, 0, false}, {{3, 4}, -1, true}, {{3, 4, 2}, 1, false}, {{4, 1}, 0, true}}) {
    Tensor x = randn(c.shape, DType::f64, &generator).requires_grad_();
    GradcheckResult result = gradcheck([&](const TensorList& in) { return sort(in[0], c.dim, c.descending).values; }, {x});
    INFO(shape_str(c.shape) << ": " << result.report);
    CHECK(result.passed());
  }
  Tensor tied = from_vector(std::vector<double>{0.5, 2, 0.5}, {3}).requires_grad_();
  GradcheckResult at_tie = gradcheck([](const TensorList& in) { return sort(in[0]).values; }, {tied});
  CHECK(at_tie.status == GradcheckStatus::selection_unstable);
  CHECK_THAT(at_tie.report, Catch::Contains("sort"));
  Tensor apart = from_vector(std::vector<double>{0.5, 2, 0.25}, {3}).requires_grad_();
  GradcheckResult away = gradcheck([](const TensorList& in) { return sort(in[0]).values; }, {apart});
  CHECK(away.passed());
  CHECK(away.smallest_choice_margin == 0.25);
}

TEST_CASE("sort: backward sends each gradient to the value's origin", "[sort]") {
  Tensor x = from_vector(std::vector<double>{3, 1, 2}, {3}).requires_grad_();
  sort(x).values.backward(from_vector(std::vector<double>{10, 20, 30}, {3}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{30, 10, 20});
}

TEST_CASE("sort: errors name the op", "[sort][errors]") {
  CHECK_THROWS_WITH(sort(zeros({2, 2}), 2), Catch::Contains("sort") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(argsort(zeros({2}), -2), Catch::Contains("argsort") && Catch::Contains("dim -2"));
  CHECK_THROWS_WITH(sort(Tensor()), Catch::Contains("sort"));
  CHECK_THROWS_WITH(argsort(scalar(1.0)), Catch::Contains("argsort"));
}

TEST_CASE("bincount: hand values, minlength, empty input", "[counting]") {
  Tensor expert_of_pair = from_vector(std::vector<int64_t>{2, 0, 2, 5, 2}, {5});
  CHECK(bincount(expert_of_pair).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 3, 0, 0, 1});
  CHECK(bincount(expert_of_pair, 8).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 3, 0, 0, 1, 0, 0});
  CHECK(bincount(expert_of_pair, 3).shape() == Shape{6});
  CHECK(bincount(zeros({0}, DType::i64), 4).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(bincount(zeros({0}, DType::i64)).shape() == Shape{0});
}

TEST_CASE("bincount: errors name the op", "[counting][errors]") {
  CHECK_THROWS_WITH(bincount(from_vector(std::vector<int64_t>{1, -1}, {2})),
                    Catch::Contains("bincount") && Catch::Contains("non-negative") && Catch::Contains("-1"));
  CHECK_THROWS_WITH(bincount(zeros({3})), Catch::Contains("bincount") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(bincount(zeros({3, 1}, DType::i64)), Catch::Contains("bincount") && Catch::Contains("1 dimensions"));
  CHECK_THROWS_WITH(bincount(zeros({3}, DType::i64), -1), Catch::Contains("bincount") && Catch::Contains("minlength"));
}

TEST_CASE("cumsum: hand values along each dim, i64 offsets", "[counting]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(cumsum(x, 1).to_vector<double>() == std::vector<double>{1, 3, 6, 4, 9, 15});
  CHECK(cumsum(x, 0).to_vector<double>() == std::vector<double>{1, 2, 3, 5, 7, 9});
  CHECK(cumsum(x, -1).to_vector<double>() == cumsum(x, 1).to_vector<double>());
  // Segment ends of expert groups from tokens per expert.
  Tensor tokens_per_expert = from_vector(std::vector<int64_t>{3, 0, 2, 1}, {4});
  Tensor ends = cumsum(tokens_per_expert);
  CHECK(ends.dtype() == DType::i64);
  CHECK(ends.to_vector<int64_t>() == std::vector<int64_t>{3, 3, 5, 6});
  CHECK(cumsum(zeros({2, 0}), 1).shape() == Shape{2, 0});
}

TEST_CASE("cumsum: gradcheck, backward is the reverse running sum", "[counting][gradcheck]") {
  Generator generator(24);
  for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{{{5}, 0}, {{3, 4}, 1}, {{3, 4}, 0}, {{2, 3, 2}, 1}}) {
    Tensor x = randn(shape, DType::f64, &generator).requires_grad_();
    GradcheckResult result = gradcheck([dim = dim](const TensorList& in) { return cumsum(in[0], dim); }, {x});
    INFO(shape_str(shape) << ": " << result.report);
    CHECK(result.passed());
  }
  Tensor x = zeros({4}, DType::f64).requires_grad_();
  cumsum(x).backward(from_vector(std::vector<double>{1, 2, 3, 4}, {4}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{10, 9, 7, 4});
}

TEST_CASE("cumsum: errors name the op", "[counting][errors]") {
  CHECK_THROWS_WITH(cumsum(zeros({2, 2}), 2), Catch::Contains("cumsum") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(cumsum(Tensor()), Catch::Contains("cumsum"));
}

TEST_CASE("one_hot: hand values, appended dim, dtype", "[counting]") {
  Tensor index = from_vector(std::vector<int64_t>{2, 0, 1, 2}, {2, 2});
  Tensor hot = one_hot(index, 3);
  CHECK(hot.shape() == Shape{2, 2, 3});
  CHECK(hot.dtype() == DType::i64);
  CHECK(hot.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1});
  Tensor mask = one_hot(from_vector(std::vector<int64_t>{1}, {1}), 2, DType::f32);
  CHECK(mask.to_vector<float>() == std::vector<float>{0, 1});
  CHECK(one_hot(zeros({0}, DType::i64), 4).shape() == Shape{0, 4});
}

TEST_CASE("one_hot: errors name the op", "[counting][errors]") {
  Tensor index = from_vector(std::vector<int64_t>{0, 3}, {2});
  CHECK_THROWS_WITH(one_hot(index, 3), Catch::Contains("one_hot") && Catch::Contains("index 3") && Catch::Contains("3 classes"));
  CHECK_THROWS_WITH(one_hot(from_vector(std::vector<int64_t>{-1}, {1}), 3), Catch::Contains("one_hot") && Catch::Contains("-1"));
  CHECK_THROWS_WITH(one_hot(index, 0), Catch::Contains("one_hot") && Catch::Contains("num_classes"));
  CHECK_THROWS_WITH(one_hot(zeros({2}), 3), Catch::Contains("one_hot") && Catch::Contains("i64"));
}
