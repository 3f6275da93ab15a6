#include "ops/elementwise.h"

#include <cmath>

#include "cuda/elementwise.h"  // cuda::UnaryOp names the kernel of each unary op in every build
#include "ops/reduce.h"
#include "tinymoe/autograd.h"

namespace tinymoe {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t ndim = std::max(a.size(), b.size());
  Shape out(ndim);
  for (size_t i = 0; i < ndim; ++i) {
    int64_t extent_a = i < ndim - a.size() ? 1 : a[i - (ndim - a.size())];
    int64_t extent_b = i < ndim - b.size() ? 1 : b[i - (ndim - b.size())];
    TINYMOE_CHECK(extent_a == extent_b || extent_a == 1 || extent_b == 1, op, "shapes ", shape_str(a),
                  " and ", shape_str(b), " cannot be broadcast (dim ", i, ": ", extent_a, " vs ", extent_b, ")");
    out[i] = extent_a == 1 ? extent_b : extent_a;
  }
  return out;
}

namespace {

// Strides of `shape` seen through the broadcast `out` shape: 0 along broadcast dimensions.
std::vector<int64_t> broadcast_strides(const Shape& shape, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    size_t j = i + (out.size() - shape.size());
    strides[j] = shape[i] == 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

template <typename T, typename Fn>
void binary_kernel(const Tensor& a, const Tensor& b, Tensor& out, Fn fn) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  int64_t count = out.numel();
  if (a.shape() == b.shape()) {
    for (int64_t i = 0; i < count; ++i) po[i] = fn(pa[i], pb[i]);
    return;
  }
  if (b.numel() == 1) {
    T value = pb[0];
    for (int64_t i = 0; i < count; ++i) po[i] = fn(pa[i], value);
    return;
  }
  // General case: walk the output with an odometer over its dimensions.
  const Shape& shape = out.shape();
  std::vector<int64_t> stride_a = broadcast_strides(a.shape(), shape);
  std::vector<int64_t> stride_b = broadcast_strides(b.shape(), shape);
  std::vector<int64_t> index(shape.size(), 0);
  int64_t offset_a = 0, offset_b = 0;
  int64_t inner = shape.empty() ? 1 : shape.back();
  int64_t inner_a = shape.empty() ? 0 : stride_a.back();
  int64_t inner_b = shape.empty() ? 0 : stride_b.back();
  for (int64_t done = 0; done < count; done += inner) {
    for (int64_t i = 0; i < inner; ++i) po[done + i] = fn(pa[offset_a + i * inner_a], pb[offset_b + i * inner_b]);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
      ++index[d];
      offset_a += stride_a[d];
      offset_b += stride_b[d];
      if (index[d] < shape[d]) break;
      offset_a -= stride_a[d] * shape[d];
      offset_b -= stride_b[d] * shape[d];
      index[d] = 0;
    }
  }
}

enum class BinaryOp { add, sub, mul, div };

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    default: return "div";
  }
}

#ifdef TINYMOE_WITH_CUDA
cuda::BinaryOp cuda_binary_op(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return cuda::BinaryOp::add;
    case BinaryOp::sub: return cuda::BinaryOp::sub;
    case BinaryOp::mul: return cuda::BinaryOp::mul;
    default: return cuda::BinaryOp::div;
  }
}
#endif

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_defined(a, name, "a");
  check_defined(b, name, "b");
  check_same_device(a, b, name);
  TINYMOE_CHECK(a.dtype() == b.dtype(), name, "expected operands of one dtype, got ", dtype_name(a.dtype()),
                " and ", dtype_name(b.dtype()));
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
#ifdef TINYMOE_WITH_CUDA
  if (a.device().is_cuda()) return cuda::binary(cuda_binary_op(op), a, b);
#endif
  check_cpu(a, name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case BinaryOp::add: binary_kernel<T>(a, b, out, [](T x, T y) { return x + y; }); break;
      case BinaryOp::sub: binary_kernel<T>(a, b, out, [](T x, T y) { return x - y; }); break;
      case BinaryOp::mul: binary_kernel<T>(a, b, out, [](T x, T y) { return x * y; }); break;
      case BinaryOp::div: binary_kernel<T>(a, b, out, [](T x, T y) { return x / y; }); break;
    }
  });
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, a, b);
  if (!needs_record({&a, &b})) return out;
  bool grad_a = a.requires_grad(), grad_b = b.requires_grad();
  Shape shape_a = a.shape(), shape_b = b.shape();
  // mul and div need the operands; add and sub need nothing.
  Tensor saved_a = (op == BinaryOp::mul && grad_b) ? a.detach() : Tensor();
  Tensor saved_b = (op == BinaryOp::mul || op == BinaryOp::div) ? b.detach() : Tensor();
  Tensor saved_out = (op == BinaryOp::div && grad_b) ? out.detach() : Tensor();
  // The backward is made of ops (sum_to, neg, mul, div), so it runs on the operands' device.
  record(binary_name(op), {a, b}, {out},
         [=](const TensorList& grads) -> TensorList {
           const Tensor& g = grads[0];
           Tensor da, db;
           switch (op) {
             case BinaryOp::add:
               if (grad_a) da = sum_to(g, shape_a);
               if (grad_b) db = sum_to(g, shape_b);
               break;
             case BinaryOp::sub:
               if (grad_a) da = sum_to(g, shape_a);
               if (grad_b) db = sum_to(neg(g), shape_b);
               break;
             case BinaryOp::mul:
               if (grad_a) da = sum_to(mul(g, saved_b), shape_a);
               if (grad_b) db = sum_to(mul(g, saved_a), shape_b);
               break;
             case BinaryOp::div:  // d(a/b)/db = -(a/b)/b
               if (grad_a) da = sum_to(div(g, saved_b), shape_a);
               if (grad_b) db = sum_to(neg(div(mul(g, saved_out), saved_b)), shape_b);
               break;
           }
           return {da, db};
         });
  return out;
}

// The CPU kernels of a unary op: y = value(x), and dx = g * derivative(x, y).
template <typename Value>
Tensor unary_forward_cpu(const char* op, const Tensor& x, Value value) {
  check_cpu(x, op);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    const int64_t count = x.numel();  // hoisted: numel() is an out-of-line call per iteration otherwise
    for (int64_t i = 0; i < count; ++i) result[i] = static_cast<T>(value(in[i]));
  });
  return out;
}

template <typename Derivative>
Tensor unary_backward_cpu(const char* op, const Tensor& grad_y, const Tensor& x, const Tensor& y,
                          Derivative derivative) {
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    const T* y_values = y.data<T>();
    const T* g = grad_y.data<T>();
    T* result = dx.data<T>();
    const int64_t count = dx.numel();
    for (int64_t i = 0; i < count; ++i) result[i] = static_cast<T>(g[i] * derivative(in[i], y_values[i]));
  });
  return dx;
}

// The CUDA kernel of a unary op (cuda/elementwise.h) and its scalar (add_scalar, mul_scalar, pow).
struct UnaryKernel {
  cuda::UnaryOp op;
  double scalar = 0.0;
};

// Applies value(x) elementwise; the backward multiplies by derivative(x, y) (y = value(x)).
// On a cuda device `kernel` computes both, with the same formulas.
template <typename Value, typename Derivative>
Tensor unary(const char* op, [[maybe_unused]] UnaryKernel kernel, const Tensor& x, Value value,
             Derivative derivative) {
  check_floating(x, op, "x");
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = cuda::unary(kernel.op, x, kernel.scalar);
  else
#endif
    out = unary_forward_cpu(op, x, value);
  if (needs_record({&x})) {
    Tensor saved_x = x.detach(), saved_y = out.detach();
    record(op, {x}, {out}, [=](const TensorList& grads) -> TensorList {
#ifdef TINYMOE_WITH_CUDA
      if (saved_x.device().is_cuda())
        return {cuda::unary_backward(kernel.op, grads[0], saved_x, saved_y, kernel.scalar)};
#endif
      return {unary_backward_cpu(op, grads[0], saved_x, saved_y, derivative)};
    });
  }
  return out;
}

double stable_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

Tensor add(const Tensor& a, double b) {
  return unary("add_scalar", {cuda::UnaryOp::add_scalar, b}, a, [b](auto x) { return x + b; },
               [](auto, auto) { return 1.0; });
}
Tensor mul(const Tensor& a, double b) {
  return unary("mul_scalar", {cuda::UnaryOp::mul_scalar, b}, a, [b](auto x) { return x * b; },
               [b](auto, auto) { return b; });
}
Tensor pow(const Tensor& a, double exponent) {
  return unary("pow", {cuda::UnaryOp::pow, exponent}, a,
               [exponent](auto x) { return std::pow(static_cast<double>(x), exponent); },
               [exponent](auto x, auto) { return exponent * std::pow(static_cast<double>(x), exponent - 1.0); });
}

Tensor neg(const Tensor& x) {
  return unary("neg", {cuda::UnaryOp::neg}, x, [](auto v) { return -v; }, [](auto, auto) { return -1.0; });
}
Tensor exp(const Tensor& x) {
  return unary("exp", {cuda::UnaryOp::exp}, x, [](auto v) { return std::exp(v); }, [](auto, auto y) { return y; });
}
Tensor log(const Tensor& x) {
  return unary("log", {cuda::UnaryOp::log}, x, [](auto v) { return std::log(v); },
               [](auto v, auto) { return 1.0 / v; });
}
Tensor sqrt(const Tensor& x) {
  return unary("sqrt", {cuda::UnaryOp::sqrt}, x, [](auto v) { return std::sqrt(v); },
               [](auto, auto y) { return 0.5 / y; });
}
Tensor tanh(const Tensor& x) {
  return unary("tanh", {cuda::UnaryOp::tanh}, x, [](auto v) { return std::tanh(v); },
               [](auto, auto y) { return 1.0 - y * y; });
}
Tensor sigmoid(const Tensor& x) {
  return unary("sigmoid", {cuda::UnaryOp::sigmoid}, x, [](auto v) { return stable_sigmoid(v); },
               [](auto, auto y) { return y * (1.0 - y); });
}
Tensor silu(const Tensor& x) {
  // d/dx x s(x) = s(x) (1 + x (1 - s(x)))
  return unary("silu", {cuda::UnaryOp::silu}, x, [](auto v) { return v * stable_sigmoid(v); },
               [](auto v, auto) {
                 double s = stable_sigmoid(v);
                 return s * (1.0 + v * (1.0 - s));
               });
}
Tensor relu(const Tensor& x) {
  return unary("relu", {cuda::UnaryOp::relu}, x, [](auto v) { return v > 0 ? v : decltype(v)(0); },
               [](auto v, auto) { return v > 0 ? 1.0 : 0.0; });
}
Tensor gelu(const Tensor& x) {
  // gelu(x) = x Phi(x); d/dx = Phi(x) + x phi(x) (Hendrycks & Gimpel 2016).
  return unary("gelu", {cuda::UnaryOp::gelu}, x, [](auto v) { return 0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)); },
               [](auto v, auto) {
                 double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
                 double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
                 return cdf + v * pdf;
               });
}
Tensor normal_cdf(const Tensor& x) {
  // d/dx Phi(x) = phi(x) = e^(-x^2 / 2) / sqrt(2 pi).
  return unary("normal_cdf", {cuda::UnaryOp::normal_cdf}, x, [](auto v) { return 0.5 * std::erfc(-v * M_SQRT1_2); },
               [](auto v, auto) { return std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI); });
}
Tensor softplus(const Tensor& x) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|); derivative sigmoid(x).
  return unary("softplus", {cuda::UnaryOp::softplus}, x,
               [](auto v) { return std::max<double>(v, 0.0) + std::log1p(std::exp(-std::abs(v))); },
               [](auto v, auto) { return stable_sigmoid(v); });
}

}  // namespace tinymoe
