// The elementwise math of SwiGLU (Shazeer 2020), shared by the swiglu op (ops/swiglu.h) and the
// fused MoE experts (ops/moe_swiglu_experts.h), over spans of n values:
//   forward   out    = silu(gate) * up = gate * s * up,        s = sigmoid(gate) = 1 / (1 + e^-gate)
//   backward  d_gate = g * up * s * (1 + gate * (1 - s)),     d_up = g * gate * s
// Vectorised through Eigen arrays (its packet exp): a scalar std::exp per element made these
// loops a tenth of an MoE block's step. For very negative gate, e^-gate overflows to inf and
// s is 0, not NaN.
#pragma once

#include <Eigen/Core>

#include "ops/row_math.h"

#include <algorithm>
#include <cstdint>

namespace tinymoe {

namespace swiglu_detail {
using row_math::ConstRow;
using row_math::Row;

template <typename T>
auto sigmoid(const ConstRow<T>& x) {
  return (T(1) + (-x).exp()).inverse();
}
}  // namespace swiglu_detail

template <typename T>
void swiglu_forward_span(const T* gate, const T* up, T* out, int64_t n) {
  using namespace swiglu_detail;
  ConstRow<T> gate_values(gate, n);
  Row<T>(out, n) = gate_values * sigmoid(gate_values) * ConstRow<T>(up, n);
}

// d_gate or d_up may be null (that gradient is skipped). s is computed once per chunk of values
// and shared by both gradients.
template <typename T>
void swiglu_backward_span(const T* g, const T* gate, const T* up, T* d_gate, T* d_up, int64_t n) {
  using namespace swiglu_detail;
  constexpr int64_t kChunk = 512;
  alignas(64) T sigmoid_buffer[kChunk];
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t count = std::min(kChunk, n - first);
    ConstRow<T> grad(g + first, count), gate_values(gate + first, count), up_values(up + first, count);
    Row<T> s(sigmoid_buffer, count);
    s = sigmoid(gate_values);
    if (d_up) Row<T>(d_up + first, count) = grad * gate_values * s;
    if (d_gate) Row<T>(d_gate + first, count) = grad * up_values * s * (T(1) + gate_values * (T(1) - s));
  }
}

}  // namespace tinymoe
