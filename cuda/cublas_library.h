// cuBLAS, opened with dlopen on first use instead of linked into tinymoe.
//
// Why: loading libcublas (and with it the 540 MB libcublasLt) runs about 0.5 CPU-seconds of
// static initialisation at the start of every process that links it, whether or not it ever
// multiplies a matrix. Linked, it made every program on tinymoe pay that, CPU-only ones and
// every CTest test process of the CPU suite included (38 one-test processes: 2 s -> 54 s on a
// loaded 2-core machine). Opened lazily, only the first cuBLAS call pays it.
//
// The functions are typed from cublas_v2.h (decltype), so a signature mismatch does not compile.
#pragma once

#include <cublas_v2.h>

namespace tinymoe {
namespace cuda {

struct CublasLibrary {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  decltype(&cublasDgemm_v2) dgemm;
  decltype(&cublasSgeam) sgeam;
  decltype(&cublasDgeam) dgeam;
  // The grouped GEMMs came with cuBLAS 12.5, and every 12.x shares the soname libcublas.so.12:
  // null when the library that opened is older (cuda/gemm.h then loops over plain GEMMs).
  decltype(&cublasGemmGroupedBatchedEx) gemm_grouped_batched_ex;
  decltype(&cublasDgemmGroupedBatched) dgemm_grouped_batched;
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

// Opens libcublas.so.<CUDA major> (then the toolkit's own copy found at configure time) once per
// process; thread-safe. Throws tinymoe::Error naming "cublas" when neither opens or a required
// function is missing (a retry happens on the next call).
const CublasLibrary& cublas_library();

}  // namespace cuda
}  // namespace tinymoe
