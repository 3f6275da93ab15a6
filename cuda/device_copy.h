// The byte copy between devices that ops/copy.cpp (Tensor::to, clone) uses when the CUDA
// backend is compiled in: host -> cuda, cuda -> host, cuda -> cuda (same card or peer).
#pragma once

#include <cstddef>

#include "tinymoe/dtype.h"

namespace tinymoe {
namespace cuda {

// Copies nbytes; returns when the destination holds them (cudaMemcpy on the legacy default
// stream, so it also waits for the kernels that produced the source). Errors throw tinymoe::Error.
// Matches ops/copy.h DeviceCopyFn.
void device_copy(void* destination, Device destination_device, const void* source, Device source_device,
                 size_t nbytes);

}  // namespace cuda
}  // namespace tinymoe
