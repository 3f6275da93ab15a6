// The permutation pieces (sort, bincount, scans), topk and scatter_add against slow loops.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cuda/fill.h"
#include "cuda/permute.h"
#include "parity.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

Tensor random_ids(int64_t count, int64_t bound, uint64_t seed) {
  Generator generator(seed);
  return randint(0, bound, {count}, &generator);
}

// Indices of one row sorted by value descending, NaN first, ties by lower index.
template <typename T>
std::vector<int64_t> slow_topk_row(const T* row, int64_t columns, int64_t k) {
  std::vector<int64_t> order(static_cast<size_t>(columns));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    bool nan_a = std::isnan(static_cast<double>(row[a])), nan_b = std::isnan(static_cast<double>(row[b]));
    if (nan_a != nan_b) return nan_a;
    return row[a] > row[b];
  });
  order.resize(static_cast<size_t>(k));
  return order;
}

// out = base; out[index[i]] += src[i] in order i = 0, 1, ... (the sequential definition).
template <typename T>
Tensor slow_scatter_add(const Tensor& base, const Tensor& index, const Tensor& src) {
  Tensor out = base.clone();
  int64_t width = base.numel() / base.size(0);
  const int64_t* rows = index.data<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i)
    for (int64_t j = 0; j < width; ++j) out.data<T>()[rows[i] * width + j] += src.data<T>()[i * width + j];
  return out;
}

}  // namespace

TEST_CASE("cuda permute: sort_pairs is a stable sort by key", "[cuda][permute]") {
  for (int64_t bound : {1, 2, 7, 64, 1000}) {
    for (int64_t count : {0, 1, 100, 5000}) {
      Tensor keys = random_ids(count, bound, static_cast<uint64_t>(bound * 131 + count));
      cuda::SortedPairs sorted = cuda::sort_pairs(keys.to(kGpu), cuda::device_arange(count, kGpu), bound);
      std::vector<int64_t> key_values = keys.to_vector<int64_t>(), order(static_cast<size_t>(count));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key_values[a] < key_values[b]; });
      std::vector<int64_t> expected_keys;
      for (int64_t position : order) expected_keys.push_back(key_values[position]);
      INFO("bound " << bound << " count " << count);
      CHECK(sorted.values.to_vector<int64_t>() == order);
      CHECK(sorted.keys.to_vector<int64_t>() == expected_keys);
    }
  }
  Tensor keys = from_vector(std::vector<int64_t>{3, 1, 3, 0}, {4});
  Tensor payload = from_vector(std::vector<int64_t>{10, 11, 12, 13}, {4});
  CHECK(cuda::sort_pairs(keys.to(kGpu), payload.to(kGpu), 4).values.to_vector<int64_t>() ==
        std::vector<int64_t>{13, 11, 10, 12});
}

TEST_CASE("cuda permute: bincount, exclusive_cumsum and segment_offsets match loops", "[cuda][permute]") {
  for (int64_t bins : {1, 5, 64, 300}) {
    Tensor ids = random_ids(2000, bins, static_cast<uint64_t>(bins));
    std::vector<int64_t> expected(static_cast<size_t>(bins), 0);
    for (int64_t id : ids.to_vector<int64_t>()) ++expected[id];
    Tensor counts = cuda::bincount(ids.to(kGpu), bins);
    CHECK(counts.to_vector<int64_t>() == expected);
    std::vector<int64_t> offsets = {0};
    for (int64_t count : expected) offsets.push_back(offsets.back() + count);
    CHECK(cuda::segment_offsets(counts).to_vector<int64_t>() == offsets);
    offsets.pop_back();
    CHECK(cuda::exclusive_cumsum(counts).to_vector<int64_t>() == offsets);
  }
  CHECK(cuda::bincount(Tensor::empty({0}, DType::i64, kGpu), 3).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});
  CHECK(cuda::segment_offsets(Tensor::empty({0}, DType::i64, kGpu)).to_vector<int64_t>() == std::vector<int64_t>{0});
}

TEST_CASE("cuda permute: ids out of range and bad arguments are Errors", "[cuda][permute][errors]") {
  Tensor ids = from_vector(std::vector<int64_t>{0, 2, 9, 1, 7}, {5}).to(kGpu);
  CHECK_THROWS_WITH(cuda::bincount(ids, 8), Contains("bincount") && Contains("index 9 (position 2)"));
  CHECK_THROWS_WITH(cuda::sort_pairs(ids, cuda::device_arange(5, kGpu), 8), Contains("sort_pairs") && Contains("9"));
  Tensor negative = from_vector(std::vector<int64_t>{0, -1}, {2}).to(kGpu);
  CHECK_THROWS_WITH(cuda::bincount(negative, 8), Contains("bincount") && Contains("index -1"));
  CHECK_THROWS_WITH(cuda::sort_pairs(ids, cuda::device_arange(4, kGpu), 10), Contains("sort_pairs") && Contains("as many"));
  CHECK_THROWS_WITH(cuda::bincount(ids, 0), Contains("bincount") && Contains("bins"));
  CHECK_THROWS_WITH(cuda::bincount(ones({3}).to(kGpu), 4), Contains("bincount") && Contains("i64"));
}

TEST_CASE("cuda topk: values and indices match a stable slow sort, ties to the lower index", "[cuda][topk]") {
  uint64_t seed = 800;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int64_t columns : {1, 8, 31, 64, 200, 256}) {
      for (int64_t k : {1, 2, 8}) {
        if (k > columns) continue;
        for (bool ties : {false, true}) {
          Shape shape = {3, 17, columns};
          Tensor x = ties ? random_ties(shape, dtype, ++seed, 3) : random_input(shape, dtype, ++seed);
          ValuesIndices actual = cuda::topk(x.to(kGpu), k);
          REQUIRE(actual.values.shape() == Shape({3, 17, k}));
          std::vector<int64_t> indices = actual.indices.to_vector<int64_t>();
          std::vector<double> values = host_values(actual.values), input = host_values(x);
          std::vector<int64_t> expected_indices;
          std::vector<double> expected_values;
          for (int64_t row = 0; row < x.numel() / columns; ++row)
            for (int64_t index : slow_topk_row(input.data() + row * columns, columns, k)) {
              expected_indices.push_back(index);
              expected_values.push_back(input[row * columns + index]);
            }
          INFO("columns " << columns << " k " << k << " ties " << ties << " " << dtype);
          CHECK(indices == expected_indices);
          CHECK(values == expected_values);
          Tensor grad_values = random_input(actual.values.shape(), dtype, ++seed);
          Tensor grad_x = cuda::topk_backward(grad_values.to(kGpu), actual.indices, shape);
          std::vector<double> expected_grad(input.size(), 0.0), upstream = host_values(grad_values);
          for (size_t j = 0; j < upstream.size(); ++j)
            expected_grad[(j / k) * columns + expected_indices[j]] = upstream[j];
          CHECK(host_values(grad_x) == expected_grad);
        }
      }
    }
  }
}

TEST_CASE("cuda topk: NaN counts as the largest, limits are Errors", "[cuda][topk][errors]") {
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = from_vector(std::vector<double>{1.0, nan, 3.0, 2.0}, {1, 4}).to(kGpu);
  CHECK(cuda::topk(x, 2).indices.to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK_THROWS_WITH(cuda::topk(ones({2, 10}).to(kGpu), 9), Contains("topk") && Contains("k = 9"));
  CHECK_THROWS_WITH(cuda::topk(ones({2, 4}).to(kGpu), 5), Contains("topk") && Contains("k = 5"));
  CHECK_THROWS_WITH(cuda::topk(ones({2, 4}).to(kGpu), 0), Contains("topk"));
  CHECK_THROWS_WITH(cuda::topk(ones({2, 257}).to(kGpu), 2), Contains("topk") && Contains("257"));
  Tensor bad_indices = from_vector(std::vector<int64_t>{0, 4}, {1, 2}).to(kGpu);
  CHECK_THROWS_WITH(cuda::topk_backward(ones({1, 2}).to(kGpu), bad_indices, {1, 4}), Contains("topk") && Contains("index 4"));
  CHECK_THROWS_WITH(cuda::topk_backward(ones({1, 2}).to(kGpu), bad_indices, {2, 4}), Contains("topk") && Contains("shape"));
}

TEST_CASE("cuda scatter_add: both modes match the sequential loop, deterministic is bit-identical", "[cuda][scatter_add]") {
  Tensor index = random_ids(500, 12, 900);
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor base = random_input({12, 3, 5}, dtype, 901);
    Tensor src = random_input({500, 3, 5}, dtype, 902);
    Tensor expected = dtype == DType::f32 ? slow_scatter_add<float>(base, index, src) : slow_scatter_add<double>(base, index, src);
    Tensor base_gpu = base.to(kGpu), index_gpu = index.to(kGpu), src_gpu = src.to(kGpu);
    Tensor atomic = cuda::scatter_add_rows(base_gpu, index_gpu, src_gpu, cuda::ScatterMode::atomic);
    CHECK(relative_error(atomic, expected) <= tolerance(dtype, kElementwiseF32));
    Tensor first = cuda::scatter_add_rows(base_gpu, index_gpu, src_gpu, cuda::ScatterMode::deterministic);
    Tensor second = cuda::scatter_add_rows(base_gpu, index_gpu, src_gpu, cuda::ScatterMode::deterministic);
    INFO(dtype);
    CHECK(host_values(first) == host_values(second));
    CHECK(host_values(first) == host_values(expected));  // same additions in the same order
    CHECK(host_values(base_gpu) == host_values(base));   // base is not modified
  }
}

TEST_CASE("cuda scatter_add: untouched rows, empty index and bad arguments", "[cuda][scatter_add][errors]") {
  Tensor base = random_input({4, 2}, DType::f32, 1).to(kGpu);
  Tensor index = from_vector(std::vector<int64_t>{2, 2}, {2}).to(kGpu);
  Tensor src = random_input({2, 2}, DType::f32, 2).to(kGpu);
  for (cuda::ScatterMode mode : {cuda::ScatterMode::atomic, cuda::ScatterMode::deterministic}) {
    std::vector<double> out = host_values(cuda::scatter_add_rows(base, index, src, mode));
    std::vector<double> before = host_values(base), added = host_values(src);
    CHECK(out[0] == before[0]);
    CHECK(out[7] == before[7]);
    CHECK(out[4] == Approx(before[4] + added[0] + added[2]));
    CHECK(host_values(cuda::scatter_add_rows(base, Tensor::empty({0}, DType::i64, kGpu),
                                             Tensor::empty({0, 2}, DType::f32, kGpu), mode)) == before);
  }
  Tensor out_of_range = from_vector(std::vector<int64_t>{1, 4}, {2}).to(kGpu);
  CHECK_THROWS_WITH(cuda::scatter_add_rows(base, out_of_range, src), Contains("scatter_add") && Contains("index 4"));
  CHECK_THROWS_WITH(cuda::scatter_add_rows(base, index, random_input({2, 3}, DType::f32, 3).to(kGpu)),
                    Contains("scatter_add") && Contains("[2, 2]"));
  CHECK_THROWS_WITH(cuda::scatter_add_rows(base, index, src.to(DType::f64)), Contains("scatter_add") && Contains("dtype"));
  CHECK_THROWS_WITH(cuda::scatter_add_rows(base, index.to(DType::f32), src), Contains("scatter_add") && Contains("i64"));
}
