// Copies that move values between layouts or dtypes on one cuda device: the dtype cast behind
// Tensor::to(dtype) and clone() (ops/copy.cpp), and the strided copies behind slice, concat,
// stack and transpose (ops/shape.cpp). They compute without recording on the tape.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// x's values converted to dtype element by element (static_cast, as the CPU: floating to i64
// truncates toward zero, f64 to f32 rounds to nearest), on x's device.
Tensor cast(const Tensor& x, DType dtype);

// Copies `count` positions along dim (already normalised), from source_start in source to
// destination_start in destination. Both tensors live on one cuda device, have one dtype and
// agree on every dimension but dim; the ranges must lie inside both (the caller checks them).
// Each outer index moves one contiguous run of count * inner elements.
void copy_along(const Tensor& source, int64_t source_start, const Tensor& destination, int64_t destination_start,
                int64_t dim, int64_t count);

// x with dims dim0 < dim1 (normalised) swapped, into a new contiguous tensor; any dtype.
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);

}  // namespace cuda
}  // namespace tinymoe
