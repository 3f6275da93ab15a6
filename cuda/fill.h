// Tensors made directly on a cuda device, without staging values on the host.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// All-zero bits (0, 0.0) of any dtype, written by cudaMemset.
Tensor device_zeros(const Shape& shape, DType dtype, Device device);
// 0, 1, ..., count - 1 as i64.
Tensor device_arange(int64_t count, Device device);

}  // namespace cuda
}  // namespace tinymoe
