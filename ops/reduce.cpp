#include "ops/reduce.h"

#include "ops/axis_layout.h"
#include "ops/elementwise.h"
#include "ops/shape.h"
#include "tinymoe/autograd.h"
#ifdef TINYMOE_WITH_CUDA
#include "cuda/elementwise.h"
#include "cuda/reduce.h"
#endif

namespace tinymoe {
namespace {

Shape reduced_shape(const Shape& shape, int64_t dim, bool keepdim) {
  Shape out = shape;
  if (keepdim) out[dim] = 1;
  else out.erase(out.begin() + dim);
  return out;
}

// Repeats g (reduced over dim with keepdim) along dim to `shape`: the backward of sum.
Tensor expand_along(const Tensor& g, const Shape& shape, int64_t dim) {
#ifdef TINYMOE_WITH_CUDA
  if (g.device().is_cuda()) return cuda::broadcast_to(g, shape);
#endif
  AxisLayout split = axis_layout(shape, dim);
  Tensor out = Tensor::empty(shape, g.dtype(), g.device());
  dispatch_floating(g.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = g.data<T>();
    T* result = out.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t e = 0; e < split.extent; ++e)
        for (int64_t i = 0; i < split.inner; ++i)
          result[(o * split.extent + e) * split.inner + i] = in[o * split.inner + i];
  });
  return out;
}

Tensor sum_cpu(const Tensor& x, int64_t dim, bool keepdim) {
  check_cpu(x, "sum");
  AxisLayout split = axis_layout(x.shape(), dim);
  Tensor out = zeros(reduced_shape(x.shape(), dim, keepdim), x.dtype(), x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t e = 0; e < split.extent; ++e)
        for (int64_t i = 0; i < split.inner; ++i) result[o * split.inner + i] += in[(o * split.extent + e) * split.inner + i];
  });
  return out;
}

ValuesIndices max_cpu(const Tensor& x, int64_t dim, bool keepdim) {
  check_cpu(x, "max");
  AxisLayout split = axis_layout(x.shape(), dim);
  Shape shape = reduced_shape(x.shape(), dim, keepdim);
  Tensor values = Tensor::empty(shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(shape, DType::i64, x.device());
  int64_t* index_out = indices.data<int64_t>();
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* value_out = values.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t i = 0; i < split.inner; ++i) {
        int64_t best = 0;
        T best_value = in[o * split.extent * split.inner + i];
        for (int64_t e = 1; e < split.extent; ++e) {
          T candidate = in[(o * split.extent + e) * split.inner + i];
          if (candidate > best_value) best_value = candidate, best = e;
        }
        value_out[o * split.inner + i] = best_value;
        index_out[o * split.inner + i] = best;
      }
  });
  return {values, indices};
}

// The gradient of max: zeros of input_shape with g at the position each maximum came from.
Tensor max_backward(const Tensor& g, const Tensor& indices, const Shape& input_shape, int64_t dim) {
#ifdef TINYMOE_WITH_CUDA
  if (g.device().is_cuda()) return cuda::max_dim_backward(g, indices, input_shape, dim);
#endif
  AxisLayout split = axis_layout(input_shape, dim);
  Tensor dx = zeros(input_shape, g.dtype(), g.device());
  const int64_t* chosen = indices.data<int64_t>();
  dispatch_floating(dx.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* grad = g.data<T>();
    T* result = dx.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t i = 0; i < split.inner; ++i)
        result[(o * split.extent + chosen[o * split.inner + i]) * split.inner + i] = grad[o * split.inner + i];
  });
  return dx;
}

}  // namespace

Tensor sum(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined(x, "sum", "x");
  dim = normalize_dim(dim, x.dim(), "sum");
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = cuda::sum_dim(x, dim, keepdim);
  else
#endif
    out = sum_cpu(x, dim, keepdim);
  if (needs_record({&x})) {
    Shape shape = x.shape();
    record("sum", {x}, {out}, [shape, dim](const TensorList& grads) -> TensorList {
      Tensor g = grads[0].reshape(reduced_shape(shape, dim, true));
      return {expand_along(g, shape, dim)};
    });
  }
  return out;
}

Tensor sum(const Tensor& x) {
  check_defined(x, "sum", "x");
  return sum(x.reshape({x.numel()}), 0, false);
}

Tensor mean(const Tensor& x, int64_t dim, bool keepdim) {
  check_floating(x, "mean", "x");
  int64_t extent = x.shape()[normalize_dim(dim, x.dim(), "mean")];
  TINYMOE_CHECK(extent > 0, "mean", "mean over an empty dimension ", dim, " of shape ", shape_str(x.shape()));
  return mul(sum(x, dim, keepdim), 1.0 / static_cast<double>(extent));
}

Tensor mean(const Tensor& x) {
  check_floating(x, "mean", "x");
  TINYMOE_CHECK(x.numel() > 0, "mean", "mean of an empty tensor");
  return mul(sum(x), 1.0 / static_cast<double>(x.numel()));
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined(x, "max", "x");
  dim = normalize_dim(dim, x.dim(), "max");
  TINYMOE_CHECK(x.shape()[dim] > 0, "max", "max over an empty dimension ", dim, " of shape ", shape_str(x.shape()));
  ValuesIndices out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = cuda::max_dim(x, dim, keepdim);
  else
#endif
    out = max_cpu(x, dim, keepdim);
  if (needs_record({&x})) {
    Shape input_shape = x.shape();
    Tensor saved_indices = out.indices.detach();
    record("max", {x}, {out.values}, [input_shape, dim, saved_indices](const TensorList& grads) -> TensorList {
      return {max_backward(grads[0], saved_indices, input_shape, dim)};
    });
  }
  return out;
}

Tensor max(const Tensor& x) {
  check_defined(x, "max", "x");
  return max(x.reshape({x.numel()}), 0, false).values;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  TINYMOE_CHECK(shape.size() <= x.shape().size(), "sum_to", "cannot reduce shape ", shape_str(x.shape()),
                " to ", shape_str(shape));
  Tensor result = x;
  size_t leading = x.shape().size() - shape.size();
  for (size_t i = 0; i < leading; ++i) result = sum(result, 0, false);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && result.shape()[d] != 1) result = sum(result, static_cast<int64_t>(d), true);
    else TINYMOE_CHECK(shape[d] == result.shape()[d], "sum_to", "cannot reduce shape ", shape_str(x.shape()),
                       " to ", shape_str(shape));
  }
  return result;
}

}  // namespace tinymoe
