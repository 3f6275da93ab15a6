#include "ops/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cuda_dispatch.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/fused.h"
#endif

namespace tinymoe {
namespace {

// r = 1 / sqrt(mean(x^2) + eps) of one row.
template <typename T>
double inverse_rms(const T* row, int64_t width, double eps) {
  double squares = 0;
  for (int64_t j = 0; j < width; ++j) squares += static_cast<double>(row[j]) * row[j];
  return 1.0 / std::sqrt(squares / static_cast<double>(width) + eps);
}

void check_arguments(const Tensor& x, const Tensor& weight, double eps) {
  check_floating(x, "rms_norm", "x");
  check_has_kernel(x, "rms_norm");
  TINYMOE_CHECK(x.dim() >= 1 && x.shape().back() >= 1, "rms_norm", "expected x of shape [..., d] with d >= 1, got ",
                shape_str(x.shape()));
  TINYMOE_CHECK(eps >= 0, "rms_norm", "expected eps >= 0, got ", eps);
  if (!weight.defined()) return;
  check_same_device(x, weight, "rms_norm");
  TINYMOE_CHECK(weight.dtype() == x.dtype(), "rms_norm", "expected weight of x's dtype ", dtype_name(x.dtype()),
                ", got ", dtype_name(weight.dtype()));
  TINYMOE_CHECK(weight.dim() == 1 && weight.size(0) == x.shape().back(), "rms_norm", "expected weight of shape [",
                x.shape().back(), "] for x ", shape_str(x.shape()), ", got ", shape_str(weight.shape()));
}

// The analytic backward for one row: writes dx, adds the row's g * n to dweight (kept in double
// so a long sum over rows loses nothing in f32).
template <typename T>
void backward_row(const T* x, const T* weight, const T* g, double eps, int64_t width, T* dx, double* dweight) {
  double r = inverse_rms(x, width, eps);
  double dn_dot_n = 0;
  for (int64_t j = 0; j < width; ++j) {
    double dn = weight ? static_cast<double>(g[j]) * weight[j] : g[j];
    dn_dot_n += dn * x[j] * r;
    if (dweight) dweight[j] += static_cast<double>(g[j]) * x[j] * r;
  }
  double mean_dn_n = dn_dot_n / static_cast<double>(width);
  for (int64_t j = 0; j < width; ++j) {
    double dn = weight ? static_cast<double>(g[j]) * weight[j] : g[j];
    dx[j] = static_cast<T>(r * (dn - x[j] * r * mean_dn_n));
  }
}

template <typename T>
void forward_rows(const Tensor& x, const Tensor& weight, double eps, const Tensor& out) {
  int64_t width = x.shape().back(), rows = x.numel() / width;
  const T* scale = weight.defined() ? weight.data<T>() : nullptr;
  const T* x_values = x.data<T>();
  T* out_values = out.data<T>();
  for (int64_t row = 0; row < rows; ++row) {
    const T* in = x_values + row * width;
    T* result = out_values + row * width;
    double r = inverse_rms(in, width, eps);
    for (int64_t j = 0; j < width; ++j) result[j] = static_cast<T>(in[j] * r * (scale ? scale[j] : 1.0));
  }
}

// {dx, dweight} on the CPU; dweight only when grad_weight.
template <typename T>
TensorList backward_rows(const Tensor& g, const Tensor& x, const Tensor& weight, double eps, bool grad_weight) {
  int64_t width = x.shape().back(), rows = x.numel() / width;
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor dweight = grad_weight ? Tensor::empty(weight.shape(), weight.dtype(), weight.device()) : Tensor();
  const T* scale = weight.defined() ? weight.data<T>() : nullptr;
  const T *x_values = x.data<T>(), *g_values = g.data<T>();
  T* dx_values = dx.data<T>();
  std::vector<double> weight_gradient(grad_weight ? width : 0, 0.0);
  for (int64_t row = 0; row < rows; ++row)
    backward_row(x_values + row * width, scale, g_values + row * width, eps, width, dx_values + row * width,
                 grad_weight ? weight_gradient.data() : nullptr);
  if (grad_weight) std::copy(weight_gradient.begin(), weight_gradient.end(), dweight.data<T>());
  return {dx, dweight};
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_arguments(x, weight, eps);
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = cuda::rms_norm(x, weight, eps);
  else
#endif
  {
    out = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating(x.dtype(), "rms_norm",
                      [&](auto tag) { forward_rows<typename decltype(tag)::type>(x, weight, eps, out); });
  }
  if (!needs_record({&x, &weight})) return out;
  bool grad_weight = weight.defined() && weight.requires_grad();
  Tensor saved_x = x.detach();
  Tensor saved_weight = weight.defined() ? weight.detach() : Tensor();
  record("rms_norm", {x, weight}, {out}, [=](const TensorList& grads) -> TensorList {
#ifdef TINYMOE_WITH_CUDA
    if (saved_x.device().is_cuda()) {
      cuda::RmsNormGrads cuda_grads = cuda::rms_norm_backward(grads[0], saved_x, saved_weight, eps, grad_weight);
      return {cuda_grads.dx, cuda_grads.dweight};
    }
#endif
    return dispatch_floating(saved_x.dtype(), "rms_norm", [&](auto tag) {
      return backward_rows<typename decltype(tag)::type>(grads[0], saved_x, saved_weight, eps, grad_weight);
    });
  });
  return out;
}

}  // namespace tinymoe
