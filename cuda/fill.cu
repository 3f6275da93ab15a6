// Device-side factories: zeros by cudaMemset, arange by a kernel.
#include "cuda/fill.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

__global__ void arange_kernel(int64_t* out, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) out[i] = i;
}

}  // namespace

Tensor device_zeros(const Shape& shape, DType dtype, Device device) {
  check_device(device, "device_zeros");
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.nbytes() == 0) return out;
  DeviceGuard guard(device);
  TINYMOE_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes()));
  return out;
}

Tensor device_arange(int64_t count, Device device) {
  check_device(device, "device_arange");
  TINYMOE_CHECK(count >= 0, "device_arange", "expected a count >= 0, got ", count);
  Tensor out = Tensor::empty({count}, DType::i64, device);
  if (count == 0) return out;
  DeviceGuard guard(device);
  arange_kernel<<<grid_for(count), kBlockThreads>>>(static_cast<int64_t*>(out.raw_data()), count);
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
