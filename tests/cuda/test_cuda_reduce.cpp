// Reductions against the CPU ops; softmax and log_softmax against slow loops written here.
#include <catch2/catch.hpp>

#include <cmath>

#include "cuda/reduce.h"
#include "parity.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

struct DimCase {
  Shape shape;
  int64_t dim;
};

const std::vector<DimCase> kDimCases = {
    {{6, 33}, 0}, {{6, 33}, 1}, {{6, 33}, -1}, {{3, 4, 5}, 1}, {{2, 300}, 1},
    {{1000}, 0},  {{4, 2049}, 1}, {{9, 1}, 1}, {{1, 7, 2}, 0},
};

// Calls visit(at) for every row along dim of a [outer, extent, inner] view, where at(e) is the
// flat position of entry e of the row.
template <typename Visit>
void for_each_row(const Shape& shape, int64_t dim, Visit visit) {
  int64_t outer = 1, inner = 1, extent = shape[dim];
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  for (size_t d = dim + 1; d < shape.size(); ++d) inner *= shape[d];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      visit(extent, [=](int64_t e) { return static_cast<size_t>((o * extent + e) * inner + i); });
}

// Row-by-row softmax or log_softmax, in double.
std::vector<double> slow_softmax(const std::vector<double>& x, const Shape& shape, int64_t dim, bool log_space) {
  std::vector<double> y(x.size());
  for_each_row(shape, dim, [&](int64_t extent, auto at) {
    double largest = x[at(0)], total = 0;
    for (int64_t e = 1; e < extent; ++e) largest = std::max(largest, x[at(e)]);
    for (int64_t e = 0; e < extent; ++e) total += std::exp(x[at(e)] - largest);
    for (int64_t e = 0; e < extent; ++e)
      y[at(e)] = log_space ? x[at(e)] - largest - std::log(total) : std::exp(x[at(e)] - largest) / total;
  });
  return y;
}

// dx of softmax (given y) or log_softmax (given y = log p), row by row, in double.
std::vector<double> slow_softmax_backward(const std::vector<double>& dy, const std::vector<double>& y,
                                          const Shape& shape, int64_t dim, bool log_space) {
  std::vector<double> dx(y.size());
  for_each_row(shape, dim, [&](int64_t extent, auto at) {
    double total = 0;
    for (int64_t e = 0; e < extent; ++e) total += log_space ? dy[at(e)] : dy[at(e)] * y[at(e)];
    for (int64_t e = 0; e < extent; ++e)
      dx[at(e)] = log_space ? dy[at(e)] - std::exp(y[at(e)]) * total : y[at(e)] * (dy[at(e)] - total);
  });
  return dx;
}

Tensor as_tensor(const std::vector<double>& values, const Shape& shape) { return from_vector(values, shape); }

}  // namespace

TEST_CASE("cuda reduce: sum along a dim matches the CPU", "[cuda][reduce]") {
  uint64_t seed = 200;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      for (bool keepdim : {false, true}) {
        Tensor x = random_input(c.shape, dtype, ++seed);
        Tensor actual = cuda::sum_dim(x.to(kGpu), c.dim, keepdim);
        Tensor expected = sum(x, c.dim, keepdim);
        INFO(shape_str(c.shape) << " dim " << c.dim << " keepdim " << keepdim << " " << dtype);
        CHECK(actual.shape() == expected.shape());
        CHECK(relative_error(actual, expected) <= tolerance(dtype, kElementwiseF32));
      }
    }
  }
  Generator generator(7);
  Tensor counts = randint(-50, 50, {5, 77}, &generator);
  CHECK(cuda::sum_dim(counts.to(kGpu), 1).to_vector<int64_t>() == sum(counts, 1).to_vector<int64_t>());
  CHECK(host_values(cuda::sum_dim(Tensor::empty({3, 0}, DType::f32, kGpu), 1)) == std::vector<double>(3, 0.0));
}

TEST_CASE("cuda reduce: max values, indices (ties to the lowest) and backward match the CPU", "[cuda][reduce]") {
  uint64_t seed = 300;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      for (bool ties : {false, true}) {
        Tensor x = ties ? random_ties(c.shape, dtype, ++seed) : random_input(c.shape, dtype, ++seed);
        Tensor leaf = x.clone().requires_grad_();
        ValuesIndices expected = max(leaf, c.dim, false);
        Tensor grad_values = random_input(expected.values.shape(), dtype, ++seed);
        expected.values.backward(grad_values);
        ValuesIndices actual = cuda::max_dim(x.to(kGpu), c.dim, false);
        INFO(shape_str(c.shape) << " dim " << c.dim << " ties " << ties << " " << dtype);
        CHECK(host_values(actual.values) == host_values(expected.values));
        CHECK(actual.indices.to_vector<int64_t>() == expected.indices.to_vector<int64_t>());
        Tensor grad_x = cuda::max_dim_backward(grad_values.to(kGpu), actual.indices, c.shape, c.dim);
        CHECK(host_values(grad_x) == host_values(leaf.grad()));
      }
    }
  }
  CHECK(cuda::max_dim(random_input({2, 3}, DType::f32, 1).to(kGpu), 0, true).values.shape() == Shape{1, 3});
  CHECK_THROWS_WITH(cuda::max_dim(Tensor::empty({2, 0}, DType::f32, kGpu), 1), Contains("max") && Contains("empty"));
  CHECK_THROWS_WITH(cuda::sum_dim(Tensor::empty({2, 3}, DType::f32, kGpu), 2), Contains("sum") && Contains("dim 2"));
}

TEST_CASE("cuda reduce: softmax and log_softmax, forward and backward, match slow loops", "[cuda][reduce][softmax]") {
  uint64_t seed = 400;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      int64_t dim = c.dim < 0 ? c.dim + static_cast<int64_t>(c.shape.size()) : c.dim;
      for (bool log_space : {false, true}) {
        Tensor x = mul(random_input(c.shape, dtype, ++seed), 3.0);
        Tensor grad_y = random_input(c.shape, dtype, ++seed);
        Tensor y = log_space ? cuda::log_softmax(x.to(kGpu), c.dim) : cuda::softmax(x.to(kGpu), c.dim);
        std::vector<double> expected_y = slow_softmax(host_values(x), c.shape, dim, log_space);
        INFO(shape_str(c.shape) << " dim " << c.dim << (log_space ? " log_softmax " : " softmax ") << dtype);
        CHECK(relative_error(y, as_tensor(expected_y, c.shape)) <= tolerance(dtype, kElementwiseF32));
        Tensor grad_x = log_space ? cuda::log_softmax_backward(grad_y.to(kGpu), y, c.dim)
                                  : cuda::softmax_backward(grad_y.to(kGpu), y, c.dim);
        std::vector<double> expected_dx = slow_softmax_backward(host_values(grad_y), host_values(y), c.shape, dim, log_space);
        CHECK(relative_error(grad_x, as_tensor(expected_dx, c.shape)) <= tolerance(dtype, kElementwiseF32));
      }
    }
  }
  Tensor y = cuda::softmax(random_input({2, 3}, DType::f32, 1).to(kGpu), 1);
  CHECK_THROWS_WITH(cuda::softmax(arange(4).to(kGpu), 0), Contains("softmax") && Contains("floating"));
  CHECK_THROWS_WITH(cuda::softmax_backward(ones({3, 2}).to(kGpu), y, 1), Contains("softmax") && Contains("grad_y"));
}
