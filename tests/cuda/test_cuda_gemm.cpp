// cuBLAS GEMM and grouped GEMM against the CPU GEMM of ops/gemm.h.
#include <catch2/catch.hpp>

#include <limits>
#include <thread>

#include "cuda/gemm.h"
#include "cuda/runtime.h"
#include "parity.h"

using namespace cuda_test;

namespace {

template <typename T>
T* device_pointer(const Tensor& x) {
  return static_cast<T*>(x.raw_data());
}

// Row-major storage [rows, ld] holding a [rows, columns] matrix (padding columns random too).
Tensor padded_matrix(int64_t rows, int64_t ld, DType dtype, uint64_t seed) { return random_input({rows, ld}, dtype, seed); }

template <typename T>
void check_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, double beta, double tol,
                uint64_t seed) {
  DType dtype = dtype_of<T>::value;
  int64_t lda = (trans_a ? m : k) + 3, ldb = (trans_b ? k : n) + 1, ldc = n + 2;
  Tensor a = padded_matrix(trans_a ? k : m, lda, dtype, seed);
  Tensor b = padded_matrix(trans_b ? n : k, ldb, dtype, seed + 1);
  Tensor c = padded_matrix(m, ldc, dtype, seed + 2);
  Tensor expected = c.clone();
  gemm<T>(trans_a, trans_b, m, n, k, T(alpha), a.data<T>(), lda, b.data<T>(), ldb, T(beta), expected.data<T>(), ldc);
  Tensor a_gpu = a.to(kGpu), b_gpu = b.to(kGpu), c_gpu = c.to(kGpu);
  cuda::gemm<T>(trans_a, trans_b, m, n, k, T(alpha), device_pointer<T>(a_gpu), lda, device_pointer<T>(b_gpu), ldb,
                T(beta), device_pointer<T>(c_gpu), ldc);
  INFO("trans_a " << trans_a << " trans_b " << trans_b << " m " << m << " n " << n << " k " << k << " " << dtype);
  CHECK(relative_error(c_gpu, expected) <= tol);
}

// x [rows, k] split into groups by offsets, times w[e] ([k, n], or [n, k] when trans_b).
template <typename T>
void check_grouped(bool trans_b, cuda::GroupedGemmPath path, double tol) {
  DType dtype = dtype_of<T>::value;
  std::vector<int64_t> offsets = {0, 17, 17, 40, 41, 90};  // group 1 is empty, group 3 has one row
  int64_t groups = static_cast<int64_t>(offsets.size()) - 1, rows = offsets.back(), k = 24, n = 19;
  Tensor x = random_input({rows, k}, dtype, 50);
  Tensor w = trans_b ? random_input({groups, n, k}, dtype, 51) : random_input({groups, k, n}, dtype, 51);
  Tensor expected = random_input({rows, n}, dtype, 52);
  Tensor out = expected.to(kGpu);
  Tensor x_gpu = x.to(kGpu), w_gpu = w.to(kGpu);
  int64_t ldb = trans_b ? k : n;
  std::vector<cuda::GemmProblem<T>> problems;
  for (int64_t e = 0; e < groups; ++e) {
    int64_t m = offsets[e + 1] - offsets[e];
    gemm<T>(false, trans_b, m, n, k, T(1), x.data<T>() + offsets[e] * k, k, w.data<T>() + e * n * k, ldb, T(0.5),
            expected.data<T>() + offsets[e] * n, n);
    problems.push_back({m, n, k, device_pointer<T>(x_gpu) + offsets[e] * k, k, device_pointer<T>(w_gpu) + e * n * k,
                        ldb, device_pointer<T>(out) + offsets[e] * n, n});
  }
  cuda::GroupedGemmPath ran = cuda::grouped_gemm(false, trans_b, problems, T(1), T(0.5), path);
  INFO("trans_b " << trans_b << " " << dtype << " ran the " << (ran == cuda::GroupedGemmPath::loop ? "loop" : "grouped call"));
  if (path == cuda::GroupedGemmPath::loop) CHECK(ran == cuda::GroupedGemmPath::loop);
  CHECK(relative_error(out, expected) <= tol);
}

}  // namespace

TEST_CASE("cuda gemm: every transpose, alpha, beta and padded leading dims match the CPU", "[cuda][gemm]") {
  uint64_t seed = 500;
  for (bool trans_a : {false, true})
    for (bool trans_b : {false, true}) {
      check_gemm<float>(trans_a, trans_b, 37, 29, 53, 0.7, 0.3, kGemmF32, seed += 3);
      check_gemm<double>(trans_a, trans_b, 37, 29, 53, 0.7, 0.3, kF64, seed += 3);
      check_gemm<float>(trans_a, trans_b, 1, 130, 257, 1.0, 0.0, kGemmF32, seed += 3);
    }
}

TEST_CASE("cuda gemm: k == 0 scales C, beta == 0 ignores what C held", "[cuda][gemm]") {
  check_gemm<float>(false, false, 5, 6, 0, 1.0, 0.5, 0, 600);
  check_gemm<double>(false, true, 5, 6, 0, 1.0, 0.0, 0, 601);
  Tensor a = random_input({4, 3}, DType::f32, 602).to(kGpu), b = random_input({3, 2}, DType::f32, 603).to(kGpu);
  Tensor c = full({4, 2}, std::numeric_limits<double>::quiet_NaN()).to(kGpu);
  cuda::gemm<float>(false, false, 4, 2, 3, 1.f, device_pointer<float>(a), 3, device_pointer<float>(b), 2, 0.f,
                    device_pointer<float>(c), 2);
  for (double value : host_values(c)) CHECK(std::isfinite(value));
  Tensor zeroed = full({4, 2}, std::numeric_limits<double>::quiet_NaN()).to(kGpu);
  cuda::gemm<float>(false, false, 4, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, device_pointer<float>(zeroed), 2);
  CHECK(host_values(zeroed) == std::vector<double>(8, 0.0));
}

TEST_CASE("cuda gemm: TF32 stays within 1e-3 of f32", "[cuda][gemm][tf32]") {
  cuda::set_tf32_enabled(true);
  CHECK(cuda::tf32_enabled());
  check_gemm<float>(false, false, 128, 96, 256, 1.0, 0.0, kTf32, 700);
  check_gemm<float>(true, true, 64, 64, 64, 0.5, 1.0, kTf32, 710);
  check_grouped<float>(false, cuda::GroupedGemmPath::automatic, kTf32);
  cuda::set_tf32_enabled(false);
  CHECK_FALSE(cuda::tf32_enabled());
}

TEST_CASE("cuda gemm: grouped GEMM (grouped call and per-group loop) matches per-group CPU GEMMs", "[cuda][gemm][grouped]") {
  for (cuda::GroupedGemmPath path : {cuda::GroupedGemmPath::automatic, cuda::GroupedGemmPath::loop}) {
    for (bool trans_b : {false, true}) {
      check_grouped<float>(trans_b, path, kGemmF32);
      check_grouped<double>(trans_b, path, kF64);
    }
  }
}

TEST_CASE("cuda gemm: handles are per thread and device", "[cuda][gemm]") {
  cublasHandle_t mine = cuda::cublas_handle();
  CHECK(mine == cuda::cublas_handle());
  cublasHandle_t other = nullptr;
  std::thread([&] { other = cuda::cublas_handle(); }).join();
  CHECK(other != nullptr);
  CHECK(other != mine);
}
