// Stable sorting along a dimension: MoE permutation sorts the T*k (token, slot) pairs by expert id
// so each expert's tokens become one contiguous segment (Megatron's token permutation).
//
// The order is torch's with stable=True: equal keys keep their original positions in both
// directions, NaN ranks above every number (last ascending, first descending).
// Sorting is a discrete choice: floating input reports it (tinymoe::note_choice) with the
// smallest gap between neighbours in the sorted order as margin, so gradcheck can tell a tie.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tinymoe/tensor.h"

namespace tinymoe {

struct SortResult {
  Tensor values;   // x's dtype and shape
  Tensor indices;  // i64: values = gather(x, dim, indices)
};

// Sorts x along dim. Any dtype. Gradient: values, for floating x (the gradient goes back to the
// position each value came from); indices get none. i64 keys with a small range (expert ids)
// take an O(n) counting sort.
SortResult sort(const Tensor& x, int64_t dim = -1, bool descending = false);

// The indices of sort(x, dim, descending), without the values. Not differentiable.
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);

// The order sort and topk share. Whether key a at position i comes before key b at position j.
template <typename T>
bool ranks_before(T a, int64_t i, T b, int64_t j, bool descending) {
  if (a == b) return i < j;
  if constexpr (std::is_floating_point_v<T>) {
    bool a_nan = std::isnan(a), b_nan = std::isnan(b);
    if (a_nan && b_nan) return i < j;
    if (a_nan || b_nan) return a_nan == descending;  // the NaN is the greater key
  }
  return (a > b) == descending;
}

// How far two neighbours in that order are from swapping: |a - b|, or +inf when a NaN or two
// equal infinities are involved (no perturbation moves a NaN past a number, or separates them).
template <typename T>
double ordering_gap(T a, T b) {
  double gap = std::abs(static_cast<double>(a) - static_cast<double>(b));
  return std::isnan(gap) ? std::numeric_limits<double>::infinity() : gap;
}

}  // namespace tinymoe
