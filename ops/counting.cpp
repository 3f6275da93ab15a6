#include "ops/counting.h"

#include <algorithm>

#include "ops/axis_layout.h"
#include "ops/cuda_dispatch.h"
#include "ops/index.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/counting.h"
#include "cuda/permute.h"
#include "cuda/reduce.h"
#endif

namespace tinymoe {
namespace {

// Inclusive running sum of every row along dim, first to last or (reverse) last to first.
Tensor running_sum(const Tensor& x, int64_t dim, bool reverse) {
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) return cuda::running_sum(x, dim, reverse);
#endif
  AxisLayout split = axis_layout(x.shape(), dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t i = 0; i < split.inner; ++i) {
        T total = 0;
        for (int64_t step = 0; step < split.extent; ++step) {
          int64_t e = reverse ? split.extent - 1 - step : step;
          int64_t at = (o * split.extent + e) * split.inner + i;
          total += in[at];
          result[at] = total;
        }
      }
  });
  return out;
}

#ifdef TINYMOE_WITH_CUDA
// bincount of a cuda index: its largest value (read back) sizes the result; every entry is then
// checked against it on the device before it is counted.
Tensor bincount_on_device(const Tensor& index, int64_t minlength) {
  if (index.numel() == 0) return cuda::device_zeros({minlength}, DType::i64, index.device());
  int64_t largest = cuda::max_dim(index, 0).values.item<int64_t>();
  TINYMOE_CHECK(largest >= 0, "bincount", "expected non-negative values, got only negative ones (the largest is ",
                largest, ")");
  return cuda::bincount(index, std::max(minlength, largest + 1));
}
#endif

}  // namespace

Tensor bincount(const Tensor& index, int64_t minlength) {
  check_dtype(index, DType::i64, "bincount", "index");
  check_dim(index, 1, "bincount", "index");
  check_has_kernel(index, "bincount");
  TINYMOE_CHECK(minlength >= 0, "bincount", "minlength must be non-negative, got ", minlength);
#ifdef TINYMOE_WITH_CUDA
  if (index.device().is_cuda()) return bincount_on_device(index, minlength);
#endif
  const int64_t* values = index.data<int64_t>();
  int64_t length = minlength;
  for (int64_t i = 0, end = index.numel(); i < end; ++i) {
    TINYMOE_CHECK(values[i] >= 0, "bincount", "expected non-negative values, got ", values[i], " at position ", i);
    length = std::max(length, values[i] + 1);
  }
  Tensor counts = zeros({length}, DType::i64, index.device());
  int64_t* count = counts.data<int64_t>();
  for (int64_t i = 0, end = index.numel(); i < end; ++i) ++count[values[i]];
  return counts;
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  check_defined(x, "cumsum", "x");
  check_has_kernel(x, "cumsum");
  dim = normalize_dim(dim, x.dim(), "cumsum");
  Tensor out = running_sum(x, dim, false);
  if (needs_record({&x})) {
    // d out_j / d x_i = 1 for i <= j, so dx_i = sum_{j >= i} g_j.
    record("cumsum", {x}, {out}, [dim](const TensorList& grads) -> TensorList {
      return {running_sum(grads[0], dim, true)};
    });
  }
  return out;
}

Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype) {
  check_dtype(index, DType::i64, "one_hot", "index");
  check_has_kernel(index, "one_hot");
  TINYMOE_CHECK(num_classes >= 1, "one_hot", "num_classes must be at least 1, got ", num_classes);
#ifdef TINYMOE_WITH_CUDA
  if (index.device().is_cuda()) return cuda::one_hot(index, num_classes, dtype);
#endif
  const int64_t* values = index.data<int64_t>();
  for (int64_t i = 0, end = index.numel(); i < end; ++i)
    TINYMOE_CHECK(values[i] >= 0 && values[i] < num_classes, "one_hot", "index ", values[i], " at position ", i,
                  " out of range for ", num_classes, " classes");
  Shape shape = index.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, dtype, index.device());
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* result = out.data<T>();
    for (int64_t i = 0, end = index.numel(); i < end; ++i) result[i * num_classes + values[i]] = T(1);
  });
  return out;
}

}  // namespace tinymoe
