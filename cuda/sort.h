// Sorting along a dimension on a cuda device (ops/sort.h's order): the stable sorting
// permutation of every row, in torch's stable=True order. Built on cuda::sort_pairs
// (cuda/permute.h), so it adds no CUB translation unit.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// The indices (i64, x's shape) that sort x along dim (already normalised), ascending or
// descending. Any dtype. Equal keys keep their positions in both directions; NaN ranks above
// every number (last ascending, first descending) and -0.0 equals 0.0, as ops/sort.h's
// ranks_before. Each key becomes an unsigned integer of the same order; radix passes of 32 bits
// (one for f32, two for f64 and i64) sort all elements stably by key, and a last stable pass by
// row groups them into their rows: O(n) work per pass.
Tensor sort_indices(const Tensor& x, int64_t dim, bool descending, const char* op);

}  // namespace cuda
}  // namespace tinymoe
