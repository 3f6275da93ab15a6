// Unary activations and their derivatives, forward and backward kernels. The formulas match
// ops/elementwise.cpp; each derivative cites the rule it uses.
#include "cuda/elementwise.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

constexpr double kSqrtHalf = 0.70710678118654752440;        // 1 / sqrt(2)
constexpr double kInvSqrtTwoPi = 0.39894228040143267794;    // 1 / sqrt(2 pi)

// 1 / (1 + e^-x) without overflow: e^x / (1 + e^x) for negative x.
template <typename T>
__device__ T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + ::exp(-x));
  T e = ::exp(x);
  return e / (T(1) + e);
}

template <typename T>
__device__ T unary_value(UnaryOp op, T x, T scalar) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return ::exp(x);
    case UnaryOp::log: return ::log(x);
    case UnaryOp::sqrt: return ::sqrt(x);
    case UnaryOp::tanh: return ::tanh(x);
    case UnaryOp::sigmoid: return stable_sigmoid(x);
    case UnaryOp::silu: return x * stable_sigmoid(x);
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::gelu: return T(0.5) * x * (T(1) + ::erf(x * T(kSqrtHalf)));  // x Phi(x)
    case UnaryOp::softplus: return (x > T(0) ? x : T(0)) + ::log1p(::exp(-::fabs(x)));
    case UnaryOp::normal_cdf: return T(0.5) * ::erfc(-x * T(kSqrtHalf));  // Phi(x), no cancellation in the left tail
    case UnaryOp::add_scalar: return x + scalar;
    case UnaryOp::mul_scalar: return x * scalar;
    default: return ::pow(x, scalar);
  }
}

// d op(x) / dx, given x and y = op(x).
template <typename T>
__device__ T unary_derivative(UnaryOp op, T x, T y, T scalar) {
  switch (op) {
    case UnaryOp::neg: return T(-1);
    case UnaryOp::exp: return y;
    case UnaryOp::log: return T(1) / x;
    case UnaryOp::sqrt: return T(0.5) / y;
    case UnaryOp::tanh: return T(1) - y * y;
    case UnaryOp::sigmoid: return y * (T(1) - y);
    case UnaryOp::silu: {  // d/dx x s(x) = s(x) (1 + x (1 - s(x)))
      T s = stable_sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryOp::relu: return x > T(0) ? T(1) : T(0);  // 0 at x == 0, as torch
    case UnaryOp::gelu: {  // Phi(x) + x phi(x) (Hendrycks & Gimpel 2016)
      T cdf = T(0.5) * (T(1) + ::erf(x * T(kSqrtHalf)));
      T pdf = ::exp(T(-0.5) * x * x) * T(kInvSqrtTwoPi);
      return cdf + x * pdf;
    }
    case UnaryOp::softplus: return stable_sigmoid(x);
    case UnaryOp::normal_cdf: return ::exp(T(-0.5) * x * x) * T(kInvSqrtTwoPi);  // phi(x)
    case UnaryOp::add_scalar: return T(1);
    case UnaryOp::mul_scalar: return scalar;
    default: return scalar * ::pow(x, scalar - T(1));
  }
}

template <typename T>
__global__ void unary_forward_kernel(UnaryOp op, const T* x, T* y, int64_t count, T scalar) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) y[i] = unary_value(op, x[i], scalar);
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, const T* grad_y, const T* x, const T* y, T* grad_x, int64_t count,
                                      T scalar) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) grad_x[i] = grad_y[i] * unary_derivative(op, x[i], y[i], scalar);
}

void check_like(const Tensor& tensor, const Tensor& x, const char* op, const char* name) {
  check_cuda_tensor(tensor, op, name);
  check_same_device(tensor, x, op);
  TINYMOE_CHECK(tensor.shape() == x.shape() && tensor.dtype() == x.dtype(), op, "expected '", name, "' of ",
                dtype_name(x.dtype()), " ", shape_str(x.shape()), " like x, got ", dtype_name(tensor.dtype()), " ",
                shape_str(tensor.shape()));
}

}  // namespace

const char* unary_name(UnaryOp op) {
  static const char* const names[] = {"neg",      "exp",        "log",        "sqrt",       "tanh",
                                      "sigmoid",  "silu",       "relu",       "gelu",       "softplus",
                                      "normal_cdf", "add_scalar", "mul_scalar", "pow"};
  return names[static_cast<int>(op)];
}

Tensor unary(UnaryOp op, const Tensor& x, double scalar) {
  const char* name = unary_name(op);
  check_cuda_tensor(x, name, "x");
  check_floating(x, name, "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_forward_kernel<<<grid_for(x.numel()), kBlockThreads>>>(
        op, static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), x.numel(), static_cast<T>(scalar));
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return y;
}

Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y, double scalar) {
  const char* name = unary_name(op);
  check_cuda_tensor(x, name, "x");
  check_floating(x, name, "x");
  check_like(grad_y, x, name, "grad_y");
  check_like(y, x, name, "y");
  Tensor grad_x = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return grad_x;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_backward_kernel<<<grid_for(x.numel()), kBlockThreads>>>(
        op, static_cast<const T*>(grad_y.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const T*>(y.raw_data()), static_cast<T*>(grad_x.raw_data()), x.numel(), static_cast<T>(scalar));
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace cuda
}  // namespace tinymoe
