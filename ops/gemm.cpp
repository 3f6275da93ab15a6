#include "ops/gemm.h"

#include <Eigen/Core>

#include "tinymoe/error.h"

#ifdef TINYMOE_HAVE_CBLAS
#include <cblas.h>
#endif

namespace tinymoe {
namespace {

#ifdef TINYMOE_HAVE_CBLAS
GemmBackend active_backend = GemmBackend::cblas;
#else
GemmBackend active_backend = GemmBackend::eigen;
#endif

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using MutableMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;

template <typename T>
void eigen_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  ConstMap<T> A(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  ConstMap<T> B(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  MutableMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) C.setZero();
  else if (beta != T(1)) C *= beta;
  // Four spellings so Eigen sees the transposes as expressions (no copies).
  if (!trans_a && !trans_b) C.noalias() += alpha * A * B;
  else if (!trans_a && trans_b) C.noalias() += alpha * A * B.transpose();
  else if (trans_a && !trans_b) C.noalias() += alpha * A.transpose() * B;
  else C.noalias() += alpha * A.transpose() * B.transpose();
}

#ifdef TINYMOE_HAVE_CBLAS
void cblas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}
void cblas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

}  // namespace

bool cblas_available() {
#ifdef TINYMOE_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

GemmBackend gemm_backend() { return active_backend; }

void set_gemm_backend(GemmBackend backend) {
  TINYMOE_CHECK(backend == GemmBackend::eigen || cblas_available(), "set_gemm_backend",
                "cblas requested but this build has no CBLAS (configure with TINYMOE_BLAS=ON and OpenBLAS)");
  active_backend = backend;
}

const char* gemm_backend_name(GemmBackend backend) { return backend == GemmBackend::cblas ? "cblas" : "eigen"; }

std::string blas_core_name() {
#ifdef TINYMOE_HAVE_CBLAS
  const char* name = openblas_get_corename();
  return name ? std::string("openblas/") + name : "openblas";
#else
  return "none";
#endif
}

void set_blas_threads(int threads) {
  TINYMOE_CHECK(threads >= 1, "set_blas_threads", "expected at least 1 thread, got ", threads);
#ifdef TINYMOE_HAVE_CBLAS
  openblas_set_num_threads(threads);
#endif
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // empty inner dimension: C = beta * C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
#ifdef TINYMOE_HAVE_CBLAS
  if (active_backend == GemmBackend::cblas) {
    cblas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  eigen_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

}  // namespace tinymoe
