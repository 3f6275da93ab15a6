// Tensor: factories, dtypes, storage sharing, casting, printing, argument errors.
#include <catch2/catch.hpp>

#include "tinymoe/tinymoe.h"

using namespace tinymoe;

TEST_CASE("tensor: factories give the right shape, dtype and values", "[tensor]") {
  CHECK(zeros({2, 3}).to_vector<float>() == std::vector<float>(6, 0.0f));
  CHECK(ones({4}, DType::f64).to_vector<double>() == std::vector<double>(4, 1.0));
  CHECK(full({2}, 7, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{7, 7});
  CHECK(arange(2, 9, 3).to_vector<int64_t>() == std::vector<int64_t>{2, 5, 8});
  CHECK(arange(5, 0, -2).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(arange(3, DType::f32).to_vector<float>() == std::vector<float>{0, 1, 2});
  Tensor s = scalar(2.5, DType::f64);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
  Tensor like = zeros_like(from_vector(std::vector<double>{1, 2}, {2}));
  CHECK(like.dtype() == DType::f64);
  CHECK(zeros({0, 3}).numel() == 0);
  CHECK(zeros({2, 3}).size(-1) == 3);
}

TEST_CASE("tensor: rand, randn and randint are seeded and in range", "[tensor]") {
  Generator a(1), b(1), c(2);
  std::vector<double> first = randn({1000}, DType::f64, &a).to_vector<double>();
  CHECK(first == randn({1000}, DType::f64, &b).to_vector<double>());
  CHECK(first != randn({1000}, DType::f64, &c).to_vector<double>());
  double mean = 0, square = 0;
  for (double v : first) mean += v / 1000, square += v * v / 1000;
  CHECK(std::abs(mean) < 0.15);
  CHECK(std::abs(square - 1.0) < 0.15);
  for (float v : rand({500}, DType::f32, &a, -2, 3).to_vector<float>()) CHECK((v >= -2 && v < 3));
  for (int64_t v : randint(3, 6, {500}, &a).to_vector<int64_t>()) CHECK((v >= 3 && v < 6));
  manual_seed(5);
  std::vector<float> seeded = randn({8}).to_vector<float>();
  manual_seed(5);
  CHECK(randn({8}).to_vector<float>() == seeded);
}

TEST_CASE("tensor: to(dtype) casts, clone copies, detach shares", "[tensor]") {
  Tensor x = from_vector(std::vector<double>{1.5, -2.25, 3}, {3});
  CHECK(x.to(DType::f32).to_vector<float>() == std::vector<float>{1.5f, -2.25f, 3.0f});
  CHECK(x.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});
  CHECK(x.to(DType::f64).storage() == x.storage());  // same dtype: the same tensor
  Tensor d = x.detach();
  CHECK(d.storage() == x.storage());
  Tensor c = x.clone();
  CHECK(c.storage() != x.storage());
  CHECK(c.to_vector<double>() == x.to_vector<double>());
}

TEST_CASE("tensor: printing shows shape, dtype and truncated values", "[tensor]") {
  std::string small = from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}).str();
  CHECK_THAT(small, Catch::Contains("shape=[2, 2]") && Catch::Contains("f32") && Catch::Contains("[[1, 2],"));
  std::string large = arange(100).str();
  CHECK_THAT(large, Catch::Contains("...") && Catch::Contains("99") && !Catch::Contains("50,"));
  Tensor p = ones({2}, DType::f64).requires_grad_();
  CHECK_THAT(mul(p, p).str(), Catch::Contains("grad_fn=mul"));
  CHECK(Tensor().str() == "Tensor(undefined)");
}

TEST_CASE("tensor: bad arguments throw tinymoe::Error naming the op", "[tensor][errors]") {
  CHECK_THROWS_WITH(zeros({2, -1}), Catch::Contains("empty") && Catch::Contains("negative"));
  CHECK_THROWS_WITH(from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Catch::Contains("from_vector") && Catch::Contains("3 values"));
  CHECK_THROWS_WITH(arange(0, 5, 0), Catch::Contains("arange"));
  CHECK_THROWS_WITH(zeros({2, 2}).item(), Catch::Contains("item"));
  CHECK_THROWS_WITH(zeros({2}).reshape({-1, -1}), Catch::Contains("reshape") && Catch::Contains("-1"));
  CHECK_THROWS_WITH(zeros({2}).size(3), Catch::Contains("dim 3 out of range"));
  CHECK_THROWS_WITH(Tensor().shape(), Catch::Contains("undefined"));
  CHECK_THROWS_WITH(zeros({2}, DType::i64).requires_grad_(), Catch::Contains("floating"));
  CHECK_THROWS_WITH(rand({2}, DType::f32, nullptr, 1, 1), Catch::Contains("rand"));
  CHECK_THROWS_WITH(Device::parse("gpu"), Catch::Contains("Device") && Catch::Contains("gpu"));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
}

TEST_CASE("tensor: a cuda tensor without a CUDA build or device is a clear error", "[tensor][errors]") {
  // In a build without CUDA, or on a machine without a GPU, asking for cuda memory must throw
  // tinymoe::Error, never crash.
  try {
    Tensor t = zeros({2}, DType::f32, Device::cuda(0));
    CHECK(t.device() == Device::cuda(0));  // a GPU is present: the tensor exists
  } catch (const Error& error) {
    CHECK_THAT(std::string(error.what()), Catch::Contains("cuda"));
  }
}
