// Elementwise arithmetic with numpy/torch broadcasting, and the unary activations.
// Gradients: every floating input of add/sub/mul/div gets one (summed over broadcast dims);
// every unary op differentiates its input. Both inputs of a binary op must share dtype and device.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

// The broadcast shape of a and b, or an Error naming op.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// With a scalar (kept in the tensor's dtype).
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);      // x * sigmoid(x)
Tensor relu(const Tensor& x);      // gradient 0 at x == 0, as torch
Tensor gelu(const Tensor& x);      // exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as torch's default
Tensor softplus(const Tensor& x);  // log(1 + exp(x)), computed stably
Tensor normal_cdf(const Tensor& x);  // Phi(x) = 0.5 (1 + erf(x / sqrt 2)), the standard normal CDF

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace tinymoe
