#include "cuda/cublas_library.h"

#include <dlfcn.h>

#include <string>

#include "tinymoe/error.h"

namespace tinymoe {
namespace cuda {
namespace {

void* open_cublas() {
  // The soname of cuBLAS follows the CUDA major version (libcublas.so.13 for CUDA 13.x).
  std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) handle = dlopen(TINYMOE_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr)
    fail("cublas", "cannot open ", soname, " or ", TINYMOE_CUBLAS_LIBRARY, ": ", dlerror());
  return handle;  // never closed: handles and streams of it live until the process ends
}

template <typename Function>
void bind_optional(void* library, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(library, name));
}

template <typename Function>
void bind(void* library, const char* name, Function& function) {
  bind_optional(library, name, function);
  TINYMOE_CHECK(function != nullptr, "cublas", "libcublas has no function ", name);
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
