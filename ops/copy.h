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

}  // namespace tinymoe
