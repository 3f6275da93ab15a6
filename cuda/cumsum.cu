// Inclusive running sums along a dimension: one thread per row of the [outer, extent, inner]
// split walks the row in order (the CPU's summation order), or CUB's scan for a 1-D i64 input.
#include "cuda/counting.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__global__ void running_sum_kernel(const T* x, T* out, DimSplit split, bool reverse) {
  TINYMOE_GRID_STRIDE_LOOP(row, split.outer * split.inner) {
    int64_t first = (row / split.inner) * split.extent * split.inner + row % split.inner;
    T total = T(0);
    for (int64_t step = 0; step < split.extent; ++step) {
      int64_t at = first + (reverse ? split.extent - 1 - step : step) * split.inner;
      total += x[at];
      out[at] = total;
    }
  }
}

}  // namespace

Tensor running_sum(const Tensor& x, int64_t dim, bool reverse) {
  check_cuda_tensor(x, "cumsum", "x");
  dim = normalize_dim(dim, x.dim(), "cumsum");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return out;
  DeviceGuard guard(x.device());
  if (x.dim() == 1 && x.dtype() == DType::i64 && !reverse) {
    // offsets are 0, x0, x0 + x1, ..., total: the inclusive sums start at offsets[1].
    Tensor offsets = segment_offsets(x);
    TINYMOE_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), static_cast<const int64_t*>(offsets.raw_data()) + 1,
                                       out.nbytes(), cudaMemcpyDeviceToDevice));
    return out;
  }
  DimSplit split = split_at(x.shape(), dim);
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    running_sum_kernel<<<grid_for(split.outer * split.inner), kBlockThreads>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), split, reverse);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
