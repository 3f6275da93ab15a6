#include "cuda/cublas_library.h"

#include <string>

#include "cuda/shared_library.h"

namespace tinymoe {
namespace cuda {
namespace {

void* open_cublas() {
  // The soname of cuBLAS follows the CUDA major version (libcublas.so.13 for CUDA 13.x); the
  // toolkit's own copy found at configure time is the fallback.
  return open_shared_library("cublas", {"libcublas.so." + std::to_string(CUBLAS_VER_MAJOR), TINYMOE_CUBLAS_LIBRARY});
}

template <typename Function>
void bind(void* library, const char* name, Function& function) {
  bind_required(library, "cublas", name, function);
}

CublasLibrary load() {
  void* library = open_cublas();
  CublasLibrary functions{};
  bind(library, "cublasCreate_v2", functions.create);
  bind(library, "cublasSetStream_v2", functions.set_stream);
  bind(library, "cublasSetMathMode", functions.set_math_mode);
  bind(library, "cublasSgemm_v2", functions.sgemm);
  bind(library, "cublasDgemm_v2", functions.dgemm);
  bind(library, "cublasSgeam", functions.sgeam);
  bind(library, "cublasDgeam", functions.dgeam);
  bind_optional(library, "cublasGemmGroupedBatchedEx", functions.gemm_grouped_batched_ex);  // cuBLAS >= 12.5
  bind_optional(library, "cublasDgemmGroupedBatched", functions.dgemm_grouped_batched);
  bind(library, "cublasGetStatusName", functions.status_name);
  bind(library, "cublasGetStatusString", functions.status_string);
  return functions;
}

}  // namespace

const CublasLibrary& cublas_library() {
  static const CublasLibrary functions = load();
  return functions;
}

}  // namespace cuda
}  // namespace tinymoe
