// The elementwise math of SwiGLU (Shazeer 2020), shared by the swiglu op (ops/swiglu.h) and the
// fused MoE experts (ops/moe_swiglu_experts.h), over spans of n values:
//   forward   out    = silu(gate) * up = gate * s * up,        s = sigmoid(gate)
//   backward  d_gate = g * up * s * (1 + gate * (1 - s)),     d_up = g * gate * s
#pragma once

#include <cmath>
#include <cstdint>

namespace tinymoe {

// 1 / (1 + e^-v): for very negative v, e^-v overflows to inf and the result is 0, not NaN.
template <typename T>
T sigmoid_of(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <typename T>
void swiglu_forward_span(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] * sigmoid_of(gate[i]) * up[i];
}

// d_gate or d_up may be null (that gradient is skipped).
template <typename T>
void swiglu_backward_span(const T* g, const T* gate, const T* up, T* d_gate, T* d_up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T s = sigmoid_of(gate[i]);
    if (d_up) d_up[i] = g[i] * gate[i] * s;
    if (d_gate) d_gate[i] = g[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
  }
}

}  // namespace tinymoe
