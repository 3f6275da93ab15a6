// The CPU matrix-product kernel every GEMM in tinymoe goes through (matmul, linear,
// grouped_matmul). Two paths: Eigen's own GEMM, and CBLAS (OpenBLAS) when the build found it
// (TINYMOE_BLAS). The path is chosen at run time, so one build can test and benchmark both.
#pragma once

#include <cstdint>
#include <string>

namespace tinymoe {

enum class GemmBackend { eigen, cblas };

bool cblas_available();
GemmBackend gemm_backend();
// Throws tinymoe::Error when cblas is requested in a build without it.
void set_gemm_backend(GemmBackend backend);
const char* gemm_backend_name(GemmBackend backend);
// OpenBLAS's kernel name (openblas_get_corename), or "eigen" / "none".
std::string blas_core_name();
// Threads the BLAS may use (OpenBLAS only; Eigen runs single-threaded in this build).
void set_blas_threads(int threads);

// Row-major C[m,n] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T.
// A is [m,k] (or [k,m] when trans_a), B is [k,n] (or [n,k] when trans_b); ld* are row strides.
// beta == 0 overwrites C without reading it.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace tinymoe
