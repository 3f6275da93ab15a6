// Tensor basics, autograd semantics and gradcheck itself.
#include <catch2/catch.hpp>

#include "tinymoe/tinymoe.h"

using namespace tinymoe;

TEST_CASE("tensor: factories, reshape shares storage, clone does not", "[tensor]") {
  Tensor x = arange(6, DType::f32).reshape({2, 3});
  CHECK(x.shape() == Shape{2, 3});
  CHECK(x.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  Tensor v = x.view({3, 2});
  v.data<float>()[0] = 42;
  CHECK(x.data<float>()[0] == 42);
  Tensor c = x.clone();
  c.data<float>()[1] = -1;
  CHECK(x.data<float>()[1] == 1);
  CHECK(x.reshape({-1}).shape() == Shape{6});
  CHECK_THROWS_WITH(x.reshape({4, 2}), Catch::Contains("reshape") && Catch::Contains("[4, 2]"));
  CHECK_THROWS_AS(x.data<double>(), Error);
}

TEST_CASE("tensor: seeded randn reproduces exactly", "[tensor]") {
  Generator a(7), b(7);
  CHECK(randn({100}, DType::f64, &a).to_vector<double>() == randn({100}, DType::f64, &b).to_vector<double>());
}

TEST_CASE("autograd: chain, accumulation across backward calls", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  Tensor y = sum(mul(x, x));
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  sum(mul(x, x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 8, 12});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: errors", "[autograd][errors]") {
  Tensor x = from_vector(std::vector<double>{1, 2}, {2});
  CHECK_THROWS_WITH(sum(x).backward(), Catch::Contains("backward") && Catch::Contains("does not require grad"));
  x.requires_grad_();
  CHECK_THROWS_WITH(mul(x, x).backward(), Catch::Contains("grad_output"));
  Tensor loss = sum(mul(x, x));
  loss.backward();
  CHECK_THROWS_WITH(loss.backward(), Catch::Contains("retain_graph"));
}
