// The indexing, sorting and counting ops on cuda tensors against their CPU paths, forward and
// backward through the tape: index_select, scatter_add, gather, sort/argsort, bincount, cumsum,
// one_hot. Moves of values, indices, counts and the deterministic scatter sums match exactly.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "cuda/counting.h"
#include "cuda/index.h"
#include "cuda/sort.h"
#include "graph_parity.h"
#include "ops/counting.h"
#include "ops/index.h"
#include "ops/sort.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

Tensor ids(const std::vector<int64_t>& values) { return from_vector(values, {static_cast<int64_t>(values.size())}); }

struct SelectCase {
  Shape shape;
  int64_t dim;
  int64_t count;  // indices drawn from the dim's extent: count > extent repeats some
};

const std::vector<SelectCase> kSelectCases = {
    {{6, 5}, 0, 13}, {{6, 5}, 1, 9}, {{3, 4, 5}, 1, 7}, {{3, 4, 5}, -1, 12},
    {{40, 3}, 0, 300}, {{4, 3}, 0, 0}, {{2, 300}, 1, 70}, {{1, 1}, 0, 5},
};

int64_t extent_of(const Shape& shape, int64_t dim) {
  return shape[normalize_dim(dim, static_cast<int64_t>(shape.size()), "test")];
}

Shape with_extent(Shape shape, int64_t dim, int64_t extent) {
  shape[normalize_dim(dim, static_cast<int64_t>(shape.size()), "test")] = extent;
  return shape;
}

struct SortCase {
  Shape shape;
  int64_t dim;
};

const std::vector<SortCase> kSortCases = {{{1000}, 0},    {{7, 33}, 1},   {{7, 33}, 0},
                                          {{3, 4, 5}, 1}, {{2, 1, 9}, -1}, {{0, 4}, 1}};

}  // namespace

TEST_CASE("cuda ops index_select: forward and backward match the CPU, repeated indices, every dim", "[cuda][index]") {
  uint64_t seed = 1000;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (const SelectCase& c : kSelectCases) {
      Tensor x = dtype == DType::i64 ? random_ids(c.shape, 1000, ++seed) : random_input(c.shape, dtype, ++seed);
      Tensor index = random_ids({c.count}, extent_of(c.shape, c.dim), ++seed);
      INFO(shape_str(c.shape) << " dim " << c.dim << " count " << c.count << " " << dtype);
      // Backward: scatter_add of the gradient rows, deterministic, so equal to the CPU's loop bit for bit.
      check_graph([&](const TensorList& in) { return index_select(in[0], in[1], c.dim); }, {x, index}, kExact, kExact,
                  ++seed);
    }
  }
}

TEST_CASE("cuda ops scatter_add: both modes match the CPU forward and backward, every dim", "[cuda][index]") {
  uint64_t seed = 1100;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (bool deterministic : {true, false}) {
      for (const SelectCase& c : kSelectCases) {
        auto draw = [&](const Shape& shape) {
          return dtype == DType::i64 ? random_ids(shape, 1000, ++seed) : random_input(shape, dtype, ++seed);
        };
        Tensor base = draw(c.shape);
        Tensor index = random_ids({c.count}, extent_of(c.shape, c.dim), ++seed);
        Tensor source = draw(with_extent(c.shape, c.dim, c.count));
        INFO(shape_str(c.shape) << " dim " << c.dim << " count " << c.count << " " << dtype << " deterministic "
                                << deterministic);
        // The atomic mode adds in any order: f32 sums agree to rounding only.
        Compare forward = deterministic ? kExact : kElementwise;
        check_graph([&](const TensorList& in) { return scatter_add(in[0], in[1], in[2], c.dim, deterministic); },
                    {base, index, source}, forward, kExact, ++seed);
      }
    }
  }
}

TEST_CASE("cuda ops scatter_add: the deterministic sums and the index_select backward are bit-identical run to run",
          "[cuda][index][determinism]") {
  Tensor index = random_ids({5000}, 37, 1200).to(kGpu);  // about 135 sources per row
  Tensor base = random_input({37, 24}, DType::f32, 1201).to(kGpu);
  Tensor source = random_input({5000, 24}, DType::f32, 1202).to(kGpu);
  Tensor first = scatter_add(base, index, source, 0, true);
  Tensor second = scatter_add(base, index, source, 0, true);
  CHECK(host_values(first) == host_values(second));
  Tensor grad_rows = random_input({5000, 24}, DType::f32, 1203).to(kGpu);
  auto index_select_gradient = [&]() {
    Tensor x = random_input({37, 24}, DType::f32, 1204).to(kGpu).requires_grad_();
    index_select(x, index).backward(grad_rows);
    return host_values(x.grad());
  };
  std::vector<double> gradient = index_select_gradient();
  CHECK(index_select_gradient() == gradient);
}

TEST_CASE("cuda ops gather: forward and backward match the CPU, repeated positions, index smaller than x",
          "[cuda][index]") {
  struct GatherCase {
    Shape x_shape;
    int64_t dim;
    Shape index_shape;
  };
  const std::vector<GatherCase> cases = {
      {{5, 7}, 1, {5, 12}}, {{5, 7}, 0, {9, 7}},        {{3, 4, 5}, 2, {2, 3, 8}},
      {{3, 4, 5}, 0, {6, 4, 1}}, {{6, 4}, -1, {3, 0}}, {{4, 300}, 1, {4, 2}},
  };
  uint64_t seed = 1300;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (const GatherCase& c : cases) {
      Tensor x = dtype == DType::i64 ? random_ids(c.x_shape, 1000, ++seed) : random_input(c.x_shape, dtype, ++seed);
      Tensor index = random_ids(c.index_shape, extent_of(c.x_shape, c.dim), ++seed);
      INFO(shape_str(c.x_shape) << " dim " << c.dim << " index " << shape_str(c.index_shape) << " " << dtype);
      check_graph([&](const TensorList& in) { return gather(in[0], c.dim, in[1]); }, {x, index}, kExact, kExact,
                  ++seed);
    }
  }
}

TEST_CASE("cuda ops sort: values, gradient and argsort match the CPU, stable both ways", "[cuda][sort]") {
  uint64_t seed = 1400;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (const SortCase& c : kSortCases) {
      for (bool descending : {false, true}) {
        for (bool ties : {false, true}) {
          Tensor x = ties                    ? random_ties(c.shape, dtype, ++seed, 3)
                     : dtype == DType::i64 ? random_ids(c.shape, 1000, ++seed)
                                           : random_input(c.shape, dtype, ++seed);
          INFO(shape_str(c.shape) << " dim " << c.dim << " " << dtype << " descending " << descending << " ties "
                                  << ties);
          check_graph([&](const TensorList& in) { return sort(in[0], c.dim, descending).values; }, {x}, kExact, kExact,
                      ++seed);
          check_graph([&](const TensorList& in) { return argsort(in[0], c.dim, descending); }, {x}, kExact, kExact,
                      ++seed);
        }
      }
    }
  }
}

TEST_CASE("cuda ops sort: NaN, infinities, signed zeros and i64 keys of any range order as on the CPU",
          "[cuda][sort]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<double> special = {nan, 1.0, -0.0, inf, 0.0, -inf, -nan, -1.5, 0.0, 2.0, -0.0, 1.0, -inf, 1e-30};
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = from_vector(special, {static_cast<int64_t>(special.size())}).to(dtype);
    for (bool descending : {false, true}) {
      INFO(dtype << " descending " << descending);
      CHECK(argsort(x.to(kGpu), 0, descending).to_vector<int64_t>() == argsort(x, 0, descending).to_vector<int64_t>());
    }
  }
  // Keys beyond 32 bits and of both signs take both radix halves.
  const int64_t lowest = std::numeric_limits<int64_t>::min(), highest = std::numeric_limits<int64_t>::max();
  Tensor wide = ids({int64_t(1) << 40, -3, highest, 7, lowest, -(int64_t(1) << 33), 7, 0, (int64_t(1) << 32) + 1,
                     int64_t(1) << 32, -3, lowest, highest - 1});
  for (bool descending : {false, true}) {
    INFO("i64 descending " << descending);
    CHECK(argsort(wide.to(kGpu), 0, descending).to_vector<int64_t>() ==
          argsort(wide, 0, descending).to_vector<int64_t>());
    CHECK(sort(wide.to(kGpu), 0, descending).values.to_vector<int64_t>() ==
          sort(wide, 0, descending).values.to_vector<int64_t>());
  }
}

TEST_CASE("cuda ops bincount: counts match the CPU, minlength, empty input", "[cuda][counting]") {
  uint64_t seed = 1500;
  for (int64_t bins : {1, 5, 300}) {
    Tensor index = random_ids({2000}, bins, ++seed);
    for (int64_t minlength : {int64_t(0), bins + 3}) {
      INFO("bins " << bins << " minlength " << minlength);
      Tensor counts = bincount(index.to(kGpu), minlength);
      CHECK(counts.device() == kGpu);
      CHECK(counts.to_vector<int64_t>() == bincount(index, minlength).to_vector<int64_t>());
    }
  }
  Tensor empty = Tensor::empty({0}, DType::i64, kGpu);
  CHECK(bincount(empty, 4).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(bincount(empty).shape() == Shape{0});
}

TEST_CASE("cuda ops cumsum: forward and backward match the CPU bit for bit along every dim", "[cuda][counting]") {
  uint64_t seed = 1600;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (const SortCase& c : kSortCases) {
      Tensor x = dtype == DType::i64 ? random_ids(c.shape, 1000, ++seed) : random_input(c.shape, dtype, ++seed);
      INFO(shape_str(c.shape) << " dim " << c.dim << " " << dtype);
      // One thread per row adds in the CPU's order (a 1-D i64 input takes CUB's exact scan).
      check_graph([&](const TensorList& in) { return cumsum(in[0], c.dim); }, {x}, kExact, kExact, ++seed);
    }
  }
}

TEST_CASE("cuda ops one_hot: matches the CPU in every dtype and index shape", "[cuda][counting]") {
  uint64_t seed = 1700;
  for (DType dtype : {DType::i64, DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{}, Shape{40}, Shape{3, 5}, Shape{0}}) {
      Tensor index = random_ids(shape, 7, ++seed);
      INFO(shape_str(shape) << " " << dtype);
      check_graph([&](const TensorList& in) { return one_hot(in[0], 7, dtype); }, {index}, kExact, kExact, ++seed);
    }
  }
}

TEST_CASE("cuda ops index: out-of-range indices and mixed devices are Errors naming the op", "[cuda][index][errors]") {
  Tensor x = random_input({4, 3}, DType::f32, 1800).to(kGpu);
  Tensor past_end = ids({0, 4}).to(kGpu), negative = ids({-1, 2}).to(kGpu);
  CHECK_THROWS_WITH(index_select(x, past_end), Contains("index_select") && Contains("index 4"));
  CHECK_THROWS_WITH(index_select(x, negative), Contains("index_select") && Contains("index -1"));
  CHECK_THROWS_WITH(index_select(x, ids({3}).to(kGpu), 1), Contains("index_select") && Contains("index 3"));
  Tensor rows = random_input({2, 3}, DType::f32, 1801).to(kGpu);
  for (bool deterministic : {true, false}) {
    CHECK_THROWS_WITH(scatter_add(x, past_end, rows, 0, deterministic), Contains("scatter_add") && Contains("index 4"));
    CHECK_THROWS_WITH(scatter_add(x, negative, rows, 0, deterministic),
                      Contains("scatter_add") && Contains("index -1"));
  }
  Tensor columns = from_vector(std::vector<int64_t>{0, 3}, {1, 2}).to(kGpu);
  CHECK_THROWS_WITH(gather(x, 1, columns), Contains("gather") && Contains("index 3"));
  CHECK_THROWS_WITH(one_hot(ids({0, 5}).to(kGpu), 5), Contains("one_hot") && Contains("index 5"));
  CHECK_THROWS_WITH(bincount(ids({2, -1, 0}).to(kGpu)), Contains("bincount") && Contains("index -1"));
  CHECK_THROWS_WITH(bincount(ids({-2, -1}).to(kGpu)), Contains("bincount") && Contains("non-negative"));
  CHECK_THROWS_WITH(index_select(x, ids({0})), Contains("index_select") && Contains("mixed devices"));
  CHECK_THROWS_WITH(scatter_add(x, ids({0, 1}).to(kGpu), random_input({2, 3}, DType::f32, 1802)),
                    Contains("scatter_add") && Contains("mixed devices"));
  CHECK_THROWS_WITH(gather(x, 1, from_vector(std::vector<int64_t>{0}, {1, 1})),
                    Contains("gather") && Contains("mixed devices"));
}

TEST_CASE("cuda ops index: the kernels refuse cpu tensors, naming the op", "[cuda][index][errors][nodevice]") {
  Tensor x = ones({3, 2});
  Tensor index = ids({0, 1});
  CHECK_THROWS_WITH(cuda::index_select(x, index, 0, "index_select"),
                    Contains("index_select") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::scatter_add(x, index, ones({2, 2}), 0, cuda::ScatterMode::deterministic, "scatter_add"),
                    Contains("scatter_add") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::gather_offsets({3, 2}, from_vector(std::vector<int64_t>{0}, {1, 1}), 0, "gather"),
                    Contains("gather") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::weighted_scatter_add(ones({2, 2}), index, ones({2}), 3),
                    Contains("weighted_scatter_add") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::weighted_scatter_add_backward(ones({3, 2}), ones({2, 2}), index, ones({2}), true, true),
                    Contains("weighted_scatter_add") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::sort_indices(x, 0, false, "argsort"), Contains("argsort") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::running_sum(x, 0, false), Contains("cumsum") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::one_hot(index, 3, DType::f32), Contains("one_hot") && Contains("cuda device"));
}
