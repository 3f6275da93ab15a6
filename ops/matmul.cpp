#include "ops/matmul.h"

#include <algorithm>

#include "ops/elementwise.h"
#include "ops/cuda_dispatch.h"
#include "ops/gemm.h"
#include "ops/reduce.h"
#include "tinymoe/autograd.h"
#ifdef TINYMOE_WITH_CUDA
#include "cuda/gemm.h"
#include "cuda/runtime.h"
#endif

namespace tinymoe {
namespace {

// Row-major c[m, n] = op(a) op(b) (ops/gemm.h's contract, alpha 1, beta 0) on the device the
// tensors live on: tinymoe::gemm on the CPU, cuBLAS (cuda::gemm) on a cuda device.
template <typename T>
void gemm_on_device(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Tensor& a, int64_t lda,
                    const Tensor& b, int64_t ldb, const Tensor& c, int64_t ldc) {
#ifdef TINYMOE_WITH_CUDA
  if (c.device().is_cuda()) {
    if (m == 0 || n == 0) return;  // c is empty
    // A leading dimension is a row stride: 0 only for a matrix with no columns, which is never read
    // (k == 0 writes zeros), but cuBLAS wants at least 1.
    auto stride = [](int64_t ld) { return std::max<int64_t>(ld, 1); };
    cuda::DeviceGuard guard(c.device());
    cuda::gemm<T>(trans_a, trans_b, m, n, k, T(1), static_cast<const T*>(a.raw_data()), stride(lda),
                  static_cast<const T*>(b.raw_data()), stride(ldb), T(0), static_cast<T*>(c.raw_data()), ldc);
    return;
  }
#endif
  gemm<T>(trans_a, trans_b, m, n, k, T(1), a.data<T>(), lda, b.data<T>(), ldb, T(0), c.data<T>(), ldc);
}

// out[rows, n] = x[rows, k] op(w), with op(w) = w [k, n] or w^T (w [n, k]).
Tensor product(const Tensor& x, const Tensor& w, bool trans_w, const char* op) {
  int64_t k = x.shape().back();
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  int64_t n = trans_w ? w.size(0) : w.size(1);
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gemm_on_device<T>(false, trans_w, rows, n, k, x, k, w, w.size(1), out, n);
  });
  return out;
}

// dw = x^T g ([k, n]) or g^T x ([n, k] when trans_w).
Tensor weight_gradient(const Tensor& x, const Tensor& g, bool trans_w, const char* op) {
  int64_t k = x.shape().back();
  int64_t n = g.shape().back();
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Tensor dw = Tensor::empty(trans_w ? Shape{n, k} : Shape{k, n}, x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (trans_w) gemm_on_device<T>(true, false, n, k, rows, g, n, x, k, dw, k);
    else gemm_on_device<T>(true, false, k, n, rows, x, k, g, n, dw, n);
  });
  return dw;
}

// dx = g op(w)^T.
Tensor input_gradient(const Tensor& g, const Tensor& w, bool trans_w, const char* op) {
  int64_t n = g.shape().back();
  int64_t k = trans_w ? w.size(1) : w.size(0);
  int64_t rows = shape_numel(Shape(g.shape().begin(), g.shape().end() - 1));
  Shape shape = g.shape();
  shape.back() = k;
  Tensor dx = Tensor::empty(shape, g.dtype(), g.device());
  dispatch_floating(g.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gemm_on_device<T>(false, !trans_w, rows, k, n, g, n, w, w.size(1), dx, k);
  });
  return dx;
}

Tensor recorded_product(const Tensor& x, const Tensor& w, bool trans_w, const char* op) {
  Tensor out = product(x, w, trans_w, op);
  if (needs_record({&x, &w})) {
    bool grad_x = x.requires_grad(), grad_w = w.requires_grad();
    Tensor saved_x = grad_w ? x.detach() : Tensor();
    Tensor saved_w = grad_x ? w.detach() : Tensor();
    record(op, {x, w}, {out}, [=](const TensorList& grads) -> TensorList {
      return {grad_x ? input_gradient(grads[0], saved_w, trans_w, op) : Tensor(),
              grad_w ? weight_gradient(saved_x, grads[0], trans_w, op) : Tensor()};
    });
  }
  return out;
}

void check_operands(const Tensor& x, const Tensor& w, const char* op, const char* w_name) {
  check_floating(x, op, "x");
  check_floating(w, op, w_name);
  check_same_device(x, w, op);
  check_has_kernel(x, op);
  TINYMOE_CHECK(x.dtype() == w.dtype(), op, "expected operands of one dtype, got ", dtype_name(x.dtype()),
                " and ", dtype_name(w.dtype()));
  TINYMOE_CHECK(x.dim() >= 1, op, "expected x with at least 1 dimension, got a scalar");
  check_dim(w, 2, op, w_name);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_operands(a, b, "matmul", "b");
  TINYMOE_CHECK(a.shape().back() == b.size(0), "matmul", "inner dimensions differ: a ", shape_str(a.shape()),
                " times b ", shape_str(b.shape()));
  return recorded_product(a, b, false, "matmul");
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_operands(x, weight, "linear", "weight");
  TINYMOE_CHECK(x.shape().back() == weight.size(1), "linear", "x has ", x.shape().back(),
                " features but weight ", shape_str(weight.shape()), " expects ", weight.size(1));
  if (bias.defined()) {  // checked before the product, so the error names linear, not add
    check_floating(bias, "linear", "bias");
    check_same_device(x, bias, "linear");
    TINYMOE_CHECK(bias.dtype() == x.dtype(), "linear", "expected bias of x's dtype ", dtype_name(x.dtype()),
                  ", got ", dtype_name(bias.dtype()));
    TINYMOE_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear", "expected bias of shape [",
                  weight.size(0), "], got ", shape_str(bias.shape()));
  }
  Tensor out = recorded_product(x, weight, true, "linear");
  return bias.defined() ? add(out, bias) : out;
}

}  // namespace tinymoe
