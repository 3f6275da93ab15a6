#include "cuda/device_copy.h"

#include "cuda/runtime.h"

namespace tinymoe {
namespace cuda {

void device_copy(void* destination, Device destination_device, const void* source, Device source_device,
                 size_t nbytes) {
  if (nbytes == 0) return;
  if (source_device.is_cpu()) {
    check_device(destination_device, "copy");
    DeviceGuard guard(destination_device);
    TINYMOE_CUDA_CHECK(cudaMemcpy(destination, source, nbytes, cudaMemcpyHostToDevice));
    return;
  }
  check_device(source_device, "copy");
  DeviceGuard guard(source_device);
  if (destination_device.is_cpu()) {
    TINYMOE_CUDA_CHECK(cudaMemcpy(destination, source, nbytes, cudaMemcpyDeviceToHost));
  } else if (destination_device == source_device) {
    TINYMOE_CUDA_CHECK(cudaMemcpy(destination, source, nbytes, cudaMemcpyDeviceToDevice));
  } else {
    check_device(destination_device, "copy");
    TINYMOE_CUDA_CHECK(cudaMemcpyPeer(destination, destination_device.index, source, source_device.index, nbytes));
  }
}

}  // namespace cuda
}  // namespace tinymoe
