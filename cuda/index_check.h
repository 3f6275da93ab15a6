// Validates index tensors on a cuda device before a kernel uses them to address memory.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// Throws tinymoe::Error "op: index 9 (position 3) out of range [0, 8)" for the first entry of
// the i64 tensor `index` outside [0, bound). Reads one flag back from the device, so it waits
// for the work queued before it.
void check_index_range(const Tensor& index, int64_t bound, const char* op);
// The same, where entries equal to `ignored` are allowed too (cross_entropy's ignore_index).
void check_index_range_except(const Tensor& index, int64_t bound, int64_t ignored, const char* op);

}  // namespace cuda
}  // namespace tinymoe
