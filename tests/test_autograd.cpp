// The tape: recording, backward with and without grad_output, accumulation, no-grad, retained
// and released records, and the errors.
#include <catch2/catch.hpp>

#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {
Tensor vec(std::vector<double> values) {
  int64_t n = static_cast<int64_t>(values.size());
  return from_vector(values, {n});
}
}  // namespace

TEST_CASE("autograd: backward(output, grad_output) is a vector-Jacobian product", "[autograd]") {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = mul(x, x);  // dy/dx = 2x
  y.backward(vec({1, 10, 100}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 40, 600});
  CHECK_THROWS_WITH(mul(x, x).backward(vec({1, 2})), Catch::Contains("backward") && Catch::Contains("[2]"));
}

TEST_CASE("autograd: a tensor used twice gets both contributions", "[autograd]") {
  Tensor x = vec({2}).requires_grad_();
  Tensor y = add(mul(x, x), mul(x, 3.0));  // x^2 + 3x, derivative 2x + 3 = 7
  sum(y).backward();
  CHECK(x.grad().item() == 7.0);
}

TEST_CASE("autograd: only records that lead to the loss run", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor w = vec({3, 4}).requires_grad_();
  Tensor unused = exp(w);  // recorded, but does not lead to the loss
  sum(mul(x, x)).backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  (void)unused;
}

TEST_CASE("autograd: NoGradGuard stops recording and restores the mode", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    Tensor y = mul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(grad_enabled());
  CHECK(mul(x, x).requires_grad());
}

TEST_CASE("autograd: retain_graph allows a second backward, otherwise records are released", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor loss = sum(exp(x));
  loss.backward(true);
  std::vector<double> once = x.grad().to_vector<double>();
  loss.backward();
  std::vector<double> twice = x.grad().to_vector<double>();
  CHECK(twice[0] == Approx(2 * once[0]));
  CHECK(loss.grad_fn()->released);
  CHECK_FALSE(loss.grad_fn()->backward);  // the closure and its saved tensors are gone
  CHECK_THROWS_WITH(loss.backward(), Catch::Contains("retain_graph"));
}

TEST_CASE("autograd: saved tensors are freed after backward", "[autograd]") {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = exp(x);  // saves x and its output
  std::weak_ptr<Storage> saved_output = y.storage();
  Tensor loss = sum(y);
  y = Tensor();  // only the record still holds exp's output
  CHECK_FALSE(saved_output.expired());
  loss.backward();
  CHECK(saved_output.expired());
}

TEST_CASE("autograd: backward of a leaf and of a non-floating result", "[autograd]") {
  Tensor x = vec({4}).requires_grad_();
  x.backward();
  CHECK(x.grad().item() == 1.0);
  Tensor y = mul(x, 2.0);
  CHECK_THROWS_WITH(y.requires_grad_(false), Catch::Contains("leaf"));
}

TEST_CASE("autograd: the tape lists live records in order and forgets dropped ones", "[autograd]") {
  size_t before = tape_size();
  {
    Tensor x = vec({1}).requires_grad_();
    Tensor y = exp(mul(x, 2.0));
    std::vector<std::string> ops = tape_ops();
    REQUIRE(ops.size() >= 2);
    CHECK(ops[ops.size() - 2] == "mul_scalar");
    CHECK(ops.back() == "exp");
  }
  CHECK(tape_size() == before);
}

TEST_CASE("autograd: gradients flow through reshape views and casts", "[autograd]") {
  Tensor x = vec({1, 2, 3, 4}).requires_grad_();
  Tensor y = x.reshape({2, 2}).to(DType::f32);
  sum(mul(y, y)).backward();
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6, 8});
}
