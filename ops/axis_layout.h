// A contiguous row-major shape seen as [outer, extent, inner] around one dimension: element
// (o, e, i) sits at (o * extent + e) * inner + i. Every kernel that works along a dimension
// (reductions, softmax, sort, topk, index_select, cumsum, slice) walks this layout.
#pragma once

#include <cstdint>

#include "tinymoe/tensor.h"

namespace tinymoe {

struct AxisLayout {
  int64_t outer = 1, extent = 1, inner = 1;
  int64_t lanes() const { return outer * inner; }
  // Flat index of element 0 of lane `lane` (lanes numbered o * inner + i); elements of a lane are
  // `inner` apart.
  int64_t lane_start(int64_t lane) const { return (lane / inner) * extent * inner + lane % inner; }
};

// dim must already be normalised (0 <= dim < shape.size()).
inline AxisLayout axis_layout(const Shape& shape, int64_t dim) {
  AxisLayout layout;
  for (int64_t d = 0; d < dim; ++d) layout.outer *= shape[d];
  layout.extent = shape[dim];
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) layout.inner *= shape[d];
  return layout;
}

// A contiguous row-major shape seen as [outer, first, middle, second, inner] around two
// dimensions dim0 < dim1: what transpose(x, dim0, dim1) swaps. Element (o, i, m, j, r) sits at
// (((o * first + i) * middle + m) * second + j) * inner + r.
struct SwapLayout {
  int64_t outer = 1, first = 1, middle = 1, second = 1, inner = 1;
};

// dim0 < dim1, both normalised (equal dims would count one dim twice).
inline SwapLayout swap_layout(const Shape& shape, int64_t dim0, int64_t dim1) {
  SwapLayout layout;
  for (int64_t d = 0; d < dim0; ++d) layout.outer *= shape[d];
  layout.first = shape[dim0];
  for (int64_t d = dim0 + 1; d < dim1; ++d) layout.middle *= shape[d];
  layout.second = shape[dim1];
  for (size_t d = static_cast<size_t>(dim1) + 1; d < shape.size(); ++d) layout.inner *= shape[d];
  return layout;
}

}  // namespace tinymoe
