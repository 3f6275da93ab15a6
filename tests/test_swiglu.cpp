// swiglu: the fused silu(gate) * up of SwiGLU MLPs. Forward against the formula evaluated here in
// double, f64 gradchecks at several shapes (large magnitudes included), the gradient of one input
// only, and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ops/swiglu.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;

namespace {

double silu_times(double gate, double up) { return gate / (1.0 + std::exp(-gate)) * up; }

}  // namespace

TEST_CASE("swiglu: forward is gate * sigmoid(gate) * up, in f32 and f64", "[swiglu]") {
  std::vector<double> gate = {-3.0, -0.5, 0.0, 0.25, 2.0, 7.5}, up = {1.5, -2.0, 4.0, 0.5, -1.0, 0.1};
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor out = swiglu(from_vector(gate, {2, 3}).to(dtype), from_vector(up, {2, 3}).to(dtype));
    CHECK(out.dtype() == dtype);
    CHECK(out.shape() == Shape{2, 3});
    std::vector<double> values = out.to(DType::f64).to_vector<double>();
    for (size_t i = 0; i < gate.size(); ++i) CHECK(values[i] == Approx(silu_times(gate[i], up[i])).epsilon(1e-6));
  }
}

TEST_CASE("swiglu: large |gate| saturates without NaN", "[swiglu]") {
  Tensor gate = from_vector(std::vector<float>{-200.0f, 200.0f, -90.0f}, {3}).requires_grad_();
  Tensor up = from_vector(std::vector<float>{2.0f, 2.0f, 3.0f}, {3}).requires_grad_();
  Tensor out = swiglu(gate, up);
  std::vector<float> values = out.to_vector<float>();
  CHECK(values[0] == 0.0f);
  CHECK(values[1] == 400.0f);
  CHECK(std::abs(values[2]) < 1e-30f);
  sum(out).backward();
  for (float g : gate.grad().to_vector<float>()) CHECK(std::isfinite(g));
  for (float g : up.grad().to_vector<float>()) CHECK(std::isfinite(g));
  CHECK(gate.grad().to_vector<float>()[1] == Approx(2.0f));  // s -> 1: d gate -> up
}

TEST_CASE("swiglu: gradcheck of both inputs at several shapes", "[swiglu][gradcheck]") {
  Generator generator(11);
  for (const Shape& shape : {Shape{4, 6}, Shape{1}, Shape{}, Shape{2, 3, 5}}) {
    Tensor gate = mul(randn(shape, DType::f64, &generator), 3.0).requires_grad_();
    Tensor up = randn(shape, DType::f64, &generator).requires_grad_();
    check_gradients("swiglu " + shape_str(shape), [](const TensorList& in) { return swiglu(in[0], in[1]); },
                    {gate, up});
  }
}

TEST_CASE("swiglu: only the input that requires grad gets one", "[swiglu][gradcheck]") {
  Generator generator(12);
  Tensor gate = randn({3, 4}, DType::f64, &generator), up = randn({3, 4}, DType::f64, &generator);
  check_gradients("swiglu, gate only", [&up](const TensorList& in) { return swiglu(in[0], up); },
                  {gate.detach().requires_grad_()});
  check_gradients("swiglu, up only", [&gate](const TensorList& in) { return swiglu(gate, in[0]); },
                  {up.detach().requires_grad_()});
  Tensor leaf_gate = gate.detach().requires_grad_();
  sum(swiglu(leaf_gate, up)).backward();
  CHECK(leaf_gate.grad().defined());
  CHECK_FALSE(up.grad().defined());
}

TEST_CASE("swiglu: bad input names the op", "[swiglu]") {
  Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH(swiglu(a, zeros({3, 2})), Catch::Contains("swiglu") && Catch::Contains("[3, 2]"));
  CHECK_THROWS_WITH(swiglu(a, zeros({2, 3}, DType::f64)), Catch::Contains("swiglu") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(swiglu(zeros({2, 3}, DType::i64), a), Catch::Contains("swiglu") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(swiglu(Tensor(), a), Catch::Contains("swiglu"));
}
