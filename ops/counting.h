// Counting ops of MoE dispatch: tokens per expert (bincount), segment offsets (cumsum), and dense
// routing masks (one_hot, as the Switch/GShard dispatch tensors and the load-balancing loss's
// f_i = share of assignments per expert).
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

// counts[v] = number of entries equal to v. index: i64, 1-D, non-negative; the result is i64 of
// size max(minlength, max(index) + 1) (minlength for an empty index). minlength >= 0.
// Not differentiable.
Tensor bincount(const Tensor& index, int64_t minlength = 0);

// Inclusive running sum along dim, out[..., j, ...] = sum_{i <= j} x[..., i, ...]. Any dtype.
// Gradient: x, for floating x (the reverse running sum of the gradient, dx_i = sum_{j >= i} g_j).
Tensor cumsum(const Tensor& x, int64_t dim = 0);

// out[..., c] = 1 where c == index[...], else 0: index's shape with num_classes appended, in dtype.
// index: i64, every entry in [0, num_classes); num_classes >= 1. Not differentiable.
Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype = DType::i64);

}  // namespace tinymoe
