// copy_tensor: the one place that copies a tensor into new storage, casting dtype and moving
// between devices. clone() and to() are built on it. Differentiable for floating dtypes: the
// gradient is cast and copied back.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor copy_tensor(const Tensor& source, DType dtype, Device device, const char* op);

// Hook the CUDA backend installs: copies nbytes between devices (either side may be cuda).
using DeviceCopyFn = void (*)(void* destination, Device destination_device, const void* source,
                              Device source_device, size_t nbytes);
void register_device_copy(DeviceCopyFn copy);

// Copies nbytes from `source` on source_device to `destination` on destination_device: memmove
// between cpu buffers (they may overlap), the registered device copy when either side is a cuda
// device (the CUDA backend's waits for the kernels queued before it). The same buffer on the same
// device is left as it is. An Error naming op when a side is on cuda and no device copy exists
// (tinymoe built without CUDA). For the few writes into existing storage (nn/in_place.h).
void copy_bytes(void* destination, Device destination_device, const void* source, Device source_device,
                size_t nbytes, const char* op);

}  // namespace tinymoe
