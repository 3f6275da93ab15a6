// The counting ops of ops/counting.h on a cuda device: running sums along a dimension (cumsum
// and its backward) and one_hot. bincount is cuda::bincount (cuda/permute.h). They compute
// without recording on the tape: the autograd stays in ops/counting.cpp.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// Inclusive running sum of every row along dim (already normalised), first to last, or last to
// first when reverse (dx_i = sum_{j >= i} g_j, the backward of cumsum). Any dtype. One thread
// per row adds in the CPU's order, so results equal the CPU's bit for bit; a 1-D i64 input
// (counts to offsets) takes CUB's parallel scan instead (integer sums are exact in any order).
Tensor running_sum(const Tensor& x, int64_t dim, bool reverse);

// out[..., c] = 1 where c == index[...], else 0: index's shape with num_classes appended, in
// dtype. Entries of index are checked against [0, num_classes) on the device.
Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype);

}  // namespace cuda
}  // namespace tinymoe
