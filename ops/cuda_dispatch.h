// Small helpers of the ops that dispatch to the CUDA backend (docs/cuda.md, "Dispatch"): an op
// checks its arguments once, then picks the cuda:: kernel for a cuda tensor inside
// `#ifdef TINYMOE_WITH_CUDA`, or its CPU loop.
#pragma once

#include "tinymoe/tensor.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/fill.h"
#endif

namespace tinymoe {

// Throws "op: has no kernel for device cuda:0 in this build" for a tensor off the CPU when
// tinymoe is built without the CUDA backend; with the backend every device has kernels.
inline void check_has_kernel(const Tensor& tensor, const char* op) {
#ifdef TINYMOE_WITH_CUDA
  static_cast<void>(tensor);
  static_cast<void>(op);
#else
  check_cpu(tensor, op);
#endif
}

// zeros(shape, dtype, device), made on a cuda device by a memset rather than staged on the host.
inline Tensor zeros_on(const Shape& shape, DType dtype, Device device) {
#ifdef TINYMOE_WITH_CUDA
  if (device.is_cuda()) return cuda::device_zeros(shape, dtype, device);
#endif
  return zeros(shape, dtype, device);
}

}  // namespace tinymoe
