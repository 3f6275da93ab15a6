// Writes into the storage of existing tensors, on any device: the in-place updates that keep
// every handle to a tensor valid (Module::load_state_dict, Module::to, the optimizers' steps,
// DeepSeek-V3's bias update, loading one expert from an HF checkpoint). The ops never write in
// place (docs/design.md, "Core": every op allocates); these helpers are the few places that do.
//
// Nothing here records on the autograd tape: write only into tensors whose history does not
// matter (parameters between steps, buffers, gradients), under a NoGradGuard.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/copy.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

// Byte copies between devices are tinymoe::copy_bytes (ops/copy.h).

// Writes source's values into destination's storage, from element `offset` on:
// destination.flatten()[offset .. offset + source.numel()) = source.flatten(). Same dtype;
// the range must lie inside destination; the two may be on any devices. Errors name op.
void write_values(const Tensor& destination, const Tensor& source, const char* op, int64_t offset = 0);

}  // namespace nn
}  // namespace tinymoe
