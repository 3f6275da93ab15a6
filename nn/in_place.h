// Writes into the storage of existing tensors, on any device: the in-place updates that keep
// every handle to a tensor valid (Module::load_state_dict, Module::to, the optimizers' steps,
// DeepSeek-V3's bias update, loading one expert from an HF checkpoint). The ops never write in
// place (DESIGN.md: every op allocates); these helpers are the few places that do.
//
// Nothing here records on the autograd tape: write only into tensors whose history does not
// matter (parameters between steps, buffers, gradients), under a NoGradGuard.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

// Copies nbytes from `source` on source_device to `destination` on destination_device: memmove
// between cpu buffers (they may overlap), the CUDA backend's copy when either side is a cuda
// device (it waits for the kernels queued before it). The same buffer on the same device is left
// as it is. An Error naming op when a side is on cuda and tinymoe was built without CUDA.
void copy_bytes(void* destination, Device destination_device, const void* source, Device source_device,
                size_t nbytes, const char* op);

// Writes source's values into destination's storage, from element `offset` on:
// destination.flatten()[offset .. offset + source.numel()) = source.flatten(). Same dtype;
// the range must lie inside destination; the two may be on any devices. Errors name op.
void write_values(const Tensor& destination, const Tensor& source, const char* op, int64_t offset = 0);

}  // namespace nn
}  // namespace tinymoe
