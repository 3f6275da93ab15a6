// The CUDA runtime as tinymoe sees it: is there a device, which one is current, and how a failed
// CUDA or cuBLAS call becomes a tinymoe::Error.
//
// Streams: every kernel, cuBLAS call, CUB call and copy of the backend runs on the legacy default
// stream of its device. That keeps the caching allocator simple and safe (a block freed by one op
// and reused by the next is ordered by the stream) and makes cudaMemcpy a synchronisation point.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "tinymoe/tensor.h"

namespace tinymoe {

// Number of CUDA devices. 0, without throwing, when there is no driver
// (cudaErrorInsufficientDriver) or no device (cudaErrorNoDevice): "no GPU here". Any other
// failure of cudaGetDeviceCount throws tinymoe::Error. The answer is probed once per process.
int cuda_device_count();
// True when at least one device can be used. Never throws.
bool cuda_available();
// Why cuda_available() is false, e.g. "no CUDA driver (cudaErrorInsufficientDriver: ...)";
// empty when a device is available. Never throws.
std::string cuda_unavailable_reason();
// Waits for all work queued on `device`.
void cuda_synchronize(Device device = Device::cuda(0));

namespace cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);

// Throws an Error naming `op` unless device is cuda:N with 0 <= N < cuda_device_count().
void check_device(Device device, const char* op);
// Throws an Error naming `op` unless `tensor` is defined and lives on a cuda device.
void check_cuda_tensor(const Tensor& tensor, const char* op, const char* name);

// Makes `device` current for its lifetime and restores the previous device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace cuda
}  // namespace tinymoe

// TINYMOE_CUDA_CHECK(cudaMalloc(&p, n)) throws tinymoe::Error
//   "cuda: cudaMalloc(&p, n) failed: cudaErrorMemoryAllocation (2): out of memory [file:line]".
#define TINYMOE_CUDA_CHECK(call)                                                      \
  do {                                                                                \
    cudaError_t tinymoe_cuda_status_ = (call);                                        \
    if (tinymoe_cuda_status_ != cudaSuccess)                                          \
      ::tinymoe::cuda::throw_cuda_error(tinymoe_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)

// The same for cuBLAS: "cublas: cublasSgemm(...) failed: CUBLAS_STATUS_INVALID_VALUE (7) [file:line]".
#define TINYMOE_CUBLAS_CHECK(call)                                                        \
  do {                                                                                    \
    cublasStatus_t tinymoe_cublas_status_ = (call);                                       \
    if (tinymoe_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::tinymoe::cuda::throw_cublas_error(tinymoe_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad launch configuration surfaces here, not at the next call.
#define TINYMOE_CUDA_CHECK_LAUNCH() TINYMOE_CUDA_CHECK(cudaGetLastError())
