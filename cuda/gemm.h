// cuBLAS matrix products with the row-major semantics of ops/gemm.h, on device pointers of the
// current device (use DeviceGuard from cuda/runtime.h to pick one). Each thread has its own
// cuBLAS handle per device, bound to the legacy default stream.
//
// Row-major to column-major: a row-major [m, n] matrix is the column-major [n, m] matrix
// transposed, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: cuBLAS gets B before A
// and n before m, with the same leading dimensions and transpose flags.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <vector>

namespace tinymoe {
namespace cuda {

// Row-major C[m,n] = alpha * op(A) op(B) + beta * C on the current device, op(X) = X or X^T;
// A is [m,k] (or [k,m] when trans_a), B is [k,n] (or [n,k] when trans_b); ld* are row strides.
// beta == 0 overwrites C without reading it; k == 0 gives C = beta * C. Sizes must fit in int
// (cuBLAS's 32-bit interface); otherwise, and for bad leading dimensions, tinymoe::Error.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// TF32 tensor cores for f32 products (about 10 mantissa bits per input, f32 accumulation):
// several times faster on A100/H100; results match f32 to about 1e-3 relative. Off by default.
// Applies to every thread's later calls. f64 is never affected.
void set_tf32_enabled(bool enabled);
bool tf32_enabled();

// This thread's cuBLAS handle for the current device (created on first use).
cublasHandle_t cublas_handle();

// One product of a grouped GEMM, same meaning as gemm's arguments (device pointers).
template <typename T>
struct GemmProblem {
  int64_t m, n, k;
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  T* c;
  int64_t ldc;
};

enum class GroupedGemmPath {
  automatic,  // cublasGemmGroupedBatchedEx (f32) / cublasDgemmGroupedBatched (f64); loop if unsupported
  grouped,    // the grouped cuBLAS call only; tinymoe::Error if cuBLAS does not support it here
  loop,       // one gemm call per problem
};

// C_g = alpha * op(A_g) op(B_g) + beta * C_g for every problem g, all with the same transposes:
// the expert GEMMs of a MoE layer, one problem per expert (rows offsets[e]..offsets[e+1] of the
// permuted tokens times w[e]). Problems with m == 0 or n == 0 are skipped, k == 0 scales C.
// Returns the path that ran (grouped or loop).
template <typename T>
GroupedGemmPath grouped_gemm(bool trans_a, bool trans_b, const std::vector<GemmProblem<T>>& problems, T alpha,
                             T beta, GroupedGemmPath path = GroupedGemmPath::automatic);

}  // namespace cuda
}  // namespace tinymoe
