// Elementwise kernels against the CPU ops: forward values, and unary backward against the CPU
// autograd.
#include <catch2/catch.hpp>

#include <functional>

#include "cuda/elementwise.h"
#include "parity.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

struct ShapePair {
  Shape a, b;
};

const std::vector<ShapePair> kShapePairs = {
    {{3, 5}, {3, 5}},       {{4, 1, 6}, {5, 1}}, {{2, 3, 4}, {}},  {{7}, {3, 1}},
    {{1, 300}, {257, 1}},   {{2, 1, 3, 1}, {1, 4, 1, 5}},        {{0, 3}, {3}},
};

std::function<Tensor(const Tensor&, const Tensor&)> cpu_binary(cuda::BinaryOp op) {
  switch (op) {
    case cuda::BinaryOp::add: return [](const Tensor& a, const Tensor& b) { return add(a, b); };
    case cuda::BinaryOp::sub: return [](const Tensor& a, const Tensor& b) { return sub(a, b); };
    case cuda::BinaryOp::mul: return [](const Tensor& a, const Tensor& b) { return mul(a, b); };
    default: return [](const Tensor& a, const Tensor& b) { return div(a, b); };
  }
}

struct UnaryCase {
  cuda::UnaryOp op;
  double scalar;
  bool positive_domain;
  std::function<Tensor(const Tensor&)> cpu;
};

const std::vector<UnaryCase> kUnaryCases = {
    {cuda::UnaryOp::neg, 0, false, [](const Tensor& x) { return neg(x); }},
    {cuda::UnaryOp::exp, 0, false, [](const Tensor& x) { return exp(x); }},
    {cuda::UnaryOp::log, 0, true, [](const Tensor& x) { return log(x); }},
    {cuda::UnaryOp::sqrt, 0, true, [](const Tensor& x) { return sqrt(x); }},
    {cuda::UnaryOp::tanh, 0, false, [](const Tensor& x) { return tanh(x); }},
    {cuda::UnaryOp::sigmoid, 0, false, [](const Tensor& x) { return sigmoid(x); }},
    {cuda::UnaryOp::silu, 0, false, [](const Tensor& x) { return silu(x); }},
    {cuda::UnaryOp::relu, 0, false, [](const Tensor& x) { return relu(x); }},
    {cuda::UnaryOp::gelu, 0, false, [](const Tensor& x) { return gelu(x); }},
    {cuda::UnaryOp::softplus, 0, false, [](const Tensor& x) { return softplus(x); }},
    {cuda::UnaryOp::normal_cdf, 0, false, [](const Tensor& x) { return normal_cdf(x); }},
    {cuda::UnaryOp::add_scalar, 0.75, false, [](const Tensor& x) { return add(x, 0.75); }},
    {cuda::UnaryOp::mul_scalar, -1.5, false, [](const Tensor& x) { return mul(x, -1.5); }},
    {cuda::UnaryOp::pow, 2.5, true, [](const Tensor& x) { return pow(x, 2.5); }},
    {cuda::UnaryOp::pow, -1.0, true, [](const Tensor& x) { return pow(x, -1.0); }},
};

}  // namespace

TEST_CASE("cuda elementwise: binary ops match the CPU, same shape and broadcast", "[cuda][elementwise]") {
  uint64_t seed = 10;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (cuda::BinaryOp op : {cuda::BinaryOp::add, cuda::BinaryOp::sub, cuda::BinaryOp::mul, cuda::BinaryOp::div}) {
      for (const ShapePair& shapes : kShapePairs) {
        Tensor a = random_input(shapes.a, dtype, ++seed);
        Tensor b = op == cuda::BinaryOp::div ? random_positive(shapes.b, dtype, ++seed) : random_input(shapes.b, dtype, ++seed);
        Tensor expected = cpu_binary(op)(a, b);
        Tensor actual = cuda::binary(op, a.to(kGpu), b.to(kGpu));
        INFO(cuda::binary_name(op) << " " << shape_str(shapes.a) << " " << shape_str(shapes.b) << " " << dtype);
        CHECK(actual.device() == kGpu);
        CHECK(actual.dtype() == dtype);
        CHECK(relative_error(actual, expected) <= tolerance(dtype, kElementwiseF32));
        Tensor swapped = cuda::binary(op, b.to(kGpu), a.to(kGpu));  // broadcast on the other side
        CHECK(relative_error(swapped, cpu_binary(op)(b, a)) <= tolerance(dtype, kElementwiseF32));
      }
    }
  }
}

TEST_CASE("cuda elementwise: i64 arithmetic is exact", "[cuda][elementwise]") {
  Generator generator(5);
  Tensor a = randint(-1000, 1000, {6, 7}, &generator);
  Tensor b = randint(1, 50, {7}, &generator);
  for (cuda::BinaryOp op : {cuda::BinaryOp::add, cuda::BinaryOp::sub, cuda::BinaryOp::mul, cuda::BinaryOp::div}) {
    Tensor actual = cuda::binary(op, a.to(kGpu), b.to(kGpu));
    CHECK(actual.to_vector<int64_t>() == cpu_binary(op)(a, b).to_vector<int64_t>());
  }
}

TEST_CASE("cuda elementwise: broadcast_to repeats like broadcasting", "[cuda][elementwise]") {
  Tensor x = random_input({3, 1, 5}, DType::f32, 20);
  Shape shape = {2, 3, 4, 5};
  Tensor expected = add(x, zeros(shape));
  CHECK(relative_error(cuda::broadcast_to(x.to(kGpu), shape), expected) == 0);
  CHECK_THROWS_WITH(cuda::broadcast_to(x.to(kGpu), {3, 2, 5}), Contains("broadcast_to"));
}

TEST_CASE("cuda elementwise: unary forward and backward match the CPU ops and autograd", "[cuda][elementwise]") {
  uint64_t seed = 100;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const UnaryCase& unary : kUnaryCases) {
      for (const Shape& shape : {Shape{1}, Shape{5, 7}, Shape{3, 1000}}) {
        Tensor x = unary.positive_domain ? random_positive(shape, dtype, ++seed) : random_input(shape, dtype, ++seed);
        Tensor grad_y = random_input(shape, dtype, ++seed);
        Tensor leaf = x.clone().requires_grad_();
        Tensor expected = unary.cpu(leaf);
        expected.backward(grad_y);
        INFO(cuda::unary_name(unary.op) << " " << shape_str(shape) << " " << dtype);
        Tensor x_gpu = x.to(kGpu);
        Tensor y_gpu = cuda::unary(unary.op, x_gpu, unary.scalar);
        CHECK(relative_error(y_gpu, expected.detach()) <= tolerance(dtype, kElementwiseF32));
        Tensor grad_x = cuda::unary_backward(unary.op, grad_y.to(kGpu), x_gpu, y_gpu, unary.scalar);
        CHECK(relative_error(grad_x, leaf.grad()) <= tolerance(dtype, kElementwiseF32));
      }
    }
  }
}

TEST_CASE("cuda elementwise: empty tensors and bad arguments", "[cuda][elementwise][errors]") {
  Tensor empty = Tensor::empty({0, 4}, DType::f32, kGpu);
  CHECK(cuda::unary(cuda::UnaryOp::exp, empty).shape() == Shape{0, 4});
  Tensor a = random_input({2, 3}, DType::f32, 1).to(kGpu);
  CHECK_THROWS_WITH(cuda::binary(cuda::BinaryOp::add, a, random_input({4}, DType::f32, 2).to(kGpu)),
                    Contains("add") && Contains("broadcast"));
  CHECK_THROWS_WITH(cuda::binary(cuda::BinaryOp::sub, a, random_input({2, 3}, DType::f64, 3).to(kGpu)),
                    Contains("sub") && Contains("one dtype"));
  CHECK_THROWS_WITH(cuda::binary(cuda::BinaryOp::mul, a, random_input({2, 3}, DType::f32, 4)),
                    Contains("mul") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::binary(cuda::BinaryOp::add, ones(Shape(9, 1)).to(kGpu), ones({1}).to(kGpu)),
                    Contains("add") && Contains("at most 8 dimensions"));
  CHECK_THROWS_WITH(cuda::unary(cuda::UnaryOp::exp, arange(4).to(kGpu)), Contains("exp") && Contains("floating"));
  CHECK_THROWS_WITH(cuda::unary_backward(cuda::UnaryOp::tanh, ones({3}).to(kGpu), a, a), Contains("tanh") && Contains("grad_y"));
  CHECK_THROWS_WITH(cuda::unary_backward(cuda::UnaryOp::tanh, a, a, a.to(DType::f64)), Contains("tanh") && Contains("'y'"));
}
