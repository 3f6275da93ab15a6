// The runtime answers, errors and argument checks; the [nodevice] ones also run without a GPU.
#include <catch2/catch.hpp>

#include "cuda/allocator.h"
#include "cuda/elementwise.h"
#include "cuda/gemm.h"
#include "cuda/permute.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "parity.h"

using namespace cuda_test;
using Catch::Contains;

TEST_CASE("cuda runtime: device count, availability and reason agree", "[cuda][runtime][nodevice]") {
  int count = -1;
  REQUIRE_NOTHROW(count = cuda_device_count());
  CHECK(count >= 0);
  CHECK(cuda_available() == (count > 0));
  CHECK(cuda_unavailable_reason().empty() == cuda_available());
  if (!cuda_available()) CHECK_THAT(cuda_unavailable_reason(), Contains("cudaError"));
}

TEST_CASE("cuda runtime: a bad device index is an Error", "[cuda][runtime][errors][nodevice]") {
  CHECK_THROWS_AS(Tensor::empty({4}, DType::f32, Device::cuda(99)), Error);
  CHECK_THROWS_WITH(Tensor::empty({4}, DType::f32, Device::cuda(99)), Contains("allocate") && Contains("cuda:99"));
  CHECK_THROWS_WITH(zeros({2}, DType::f32, Device::cuda(99)), Contains("cuda:99"));
  CHECK_THROWS_WITH(cuda_synchronize(Device::cuda(99)), Contains("cuda_synchronize") && Contains("cuda:99"));
  CHECK_THROWS_WITH(cuda_synchronize(Device::cuda(-1)), Contains("cuda_synchronize"));
}

TEST_CASE("cuda runtime: without a device a cuda tensor is an Error, not a crash", "[cuda][runtime][nodevice]") {
  if (cuda_available()) return;  // only meaningful on a machine without a GPU
  CHECK_THROWS_WITH(Tensor::empty({2}, DType::f32, kGpu), Contains("allocate") && Contains("cuda:0"));
  CHECK_THROWS_WITH(ones({2}).to(kGpu), Contains("cuda:0"));
  CHECK_THROWS_WITH(Tensor::empty({0}, DType::f32, kGpu), Contains("allocate"));  // even with nothing to allocate
}

TEST_CASE("cuda runtime: failed calls name the call, the code and its name", "[cuda][runtime][errors][nodevice]") {
  // -1 is never a device: cudaErrorInvalidDevice with a GPU, the no-driver code without one.
  auto bad_device = [] { TINYMOE_CUDA_CHECK(cudaSetDevice(-1)); };
  CHECK_THROWS_WITH(bad_device(),
                    Contains("cuda: cudaSetDevice(-1) failed") && Contains("cudaError") && Contains("test_cuda_runtime"));
  auto bad_value = [] { TINYMOE_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); };
  CHECK_THROWS_WITH(bad_value(),
                    Contains("cublas: CUBLAS_STATUS_INVALID_VALUE failed") && Contains("CUBLAS_STATUS_INVALID_VALUE (7)"));
  auto success = [] { TINYMOE_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS); };
  CHECK_NOTHROW(success());
}

TEST_CASE("cuda runtime: kernels refuse cpu tensors, naming the op", "[cuda][runtime][errors][nodevice]") {
  Tensor x = ones({2, 3});
  Tensor index = zeros({2}, DType::i64);
  CHECK_THROWS_WITH(cuda::binary(cuda::BinaryOp::mul, x, x), Contains("mul") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::broadcast_to(x, {4, 2, 3}), Contains("broadcast_to"));
  CHECK_THROWS_WITH(cuda::unary(cuda::UnaryOp::silu, x), Contains("silu") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::unary_backward(cuda::UnaryOp::gelu, x, x, x), Contains("gelu"));
  CHECK_THROWS_WITH(cuda::sum_dim(x, 0), Contains("sum"));
  CHECK_THROWS_WITH(cuda::max_dim(x, 1), Contains("max"));
  CHECK_THROWS_WITH(cuda::softmax(x, 1), Contains("softmax"));
  CHECK_THROWS_WITH(cuda::log_softmax_backward(x, x, 1), Contains("log_softmax"));
  CHECK_THROWS_WITH(cuda::topk(x, 1), Contains("topk"));
  CHECK_THROWS_WITH(cuda::sort_pairs(index, index, 4), Contains("sort_pairs"));
  CHECK_THROWS_WITH(cuda::bincount(index, 4), Contains("bincount"));
  CHECK_THROWS_WITH(cuda::segment_offsets(index), Contains("segment_offsets"));
  CHECK_THROWS_WITH(cuda::scatter_add_rows(x, index, x), Contains("scatter_add"));
}

TEST_CASE("cuda gemm: bad sizes and leading dimensions are Errors before any CUDA call", "[cuda][gemm][errors][nodevice]") {
  float* none = nullptr;
  // A is [m, k] = [4, 3] row-major: lda must be at least 3.
  CHECK_THROWS_WITH(cuda::gemm<float>(false, false, 4, 5, 3, 1.f, none, 2, none, 5, 0.f, none, 5),
                    Contains("gemm") && Contains("lda"));
  CHECK_THROWS_WITH(cuda::gemm<float>(false, true, 4, 5, 3, 1.f, none, 3, none, 2, 0.f, none, 5), Contains("ldb"));
  CHECK_THROWS_WITH(cuda::gemm<float>(false, false, 4, 5, 3, 1.f, none, 3, none, 5, 0.f, none, 4), Contains("ldc"));
  CHECK_THROWS_WITH(cuda::gemm<float>(false, false, -1, 5, 3, 1.f, none, 3, none, 5, 0.f, none, 5), Contains("m = -1"));
  CHECK_THROWS_WITH(cuda::gemm<double>(false, false, 1, 1, int64_t(1) << 32, 1.0, nullptr, int64_t(1) << 32, nullptr,
                                       1, 0.0, nullptr, 1),
                    Contains("32-bit"));
  std::vector<cuda::GemmProblem<float>> problems = {{2, 2, 2, none, 1, none, 2, none, 2}};
  CHECK_THROWS_WITH(cuda::grouped_gemm(false, false, problems, 1.f, 0.f), Contains("grouped_gemm") && Contains("lda"));
}

TEST_CASE("cuda allocator: size classes are quarter steps of powers of two", "[cuda][allocator][nodevice]") {
  CHECK(cuda::allocation_size_class(0) == 0);
  CHECK(cuda::allocation_size_class(1) == 512);
  CHECK(cuda::allocation_size_class(512) == 512);
  CHECK(cuda::allocation_size_class(513) == 640);
  CHECK(cuda::allocation_size_class(1000) == 1024);
  CHECK(cuda::allocation_size_class(1025) == 1280);
  CHECK(cuda::allocation_size_class(4096) == 4096);
  CHECK(cuda::allocation_size_class(5000) == 5120);
  for (size_t bytes = 1; bytes < (size_t(1) << 30); bytes = bytes * 3 + 7) {
    size_t size = cuda::allocation_size_class(bytes);
    CHECK(size >= bytes);
    CHECK(size <= std::max<size_t>(512, bytes + bytes / 4));  // at most 25% waste
  }
}
