// transpose(x, dim0, dim1): one thread per output element, so writes are contiguous. The shape is
// seen as [outer, first, middle, second, inner] around the two dims (ops/axis_layout.h's
// SwapLayout); a 2-D transpose is the case outer = middle = inner = 1.
#include "cuda/launch.cuh"
#include "cuda/layout.h"
#include "ops/axis_layout.h"

#include <utility>

namespace tinymoe {
namespace cuda {
namespace {

// out is [outer, second, middle, first, inner]; x is [outer, first, middle, second, inner].
template <typename T>
__global__ void swap_dims_kernel(const T* x, T* out, SwapLayout l, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(index, count) {
    int64_t r = index % l.inner, rest = index / l.inner;
    int64_t i = rest % l.first;
    rest /= l.first;
    int64_t m = rest % l.middle;
    rest /= l.middle;
    int64_t j = rest % l.second, o = rest / l.second;
    out[index] = x[(((o * l.first + i) * l.middle + m) * l.second + j) * l.inner + r];
  }
}

}  // namespace

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  check_cuda_tensor(x, "transpose", "x");
  TINYMOE_CHECK(0 <= dim0 && dim0 < dim1 && dim1 < x.dim(), "transpose", "expected normalised dims 0 <= dim0 < dim1 < ",
                x.dim(), ", got ", dim0, " and ", dim1);
  Shape shape = x.shape();
  std::swap(shape[dim0], shape[dim1]);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  SwapLayout layout = swap_layout(x.shape(), dim0, dim1);
  DeviceGuard guard(x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    swap_dims_kernel<<<grid_for(out.numel()), kBlockThreads>>>(static_cast<const T*>(x.raw_data()),
                                                                static_cast<T*>(out.raw_data()), layout, out.numel());
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
