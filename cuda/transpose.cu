// 2-D transpose: one thread per output element, so writes are contiguous.
#include "cuda/launch.cuh"
#include "cuda/layout.h"

namespace tinymoe {
namespace cuda {
namespace {

// x is [rows, cols]; out is [cols, rows].
template <typename T>
__global__ void transpose_kernel(const T* x, T* out, int64_t rows, int64_t cols) {
  TINYMOE_GRID_STRIDE_LOOP(i, rows * cols) out[i] = x[(i % rows) * cols + i / rows];
}

}  // namespace

Tensor transpose(const Tensor& x) {
  check_cuda_tensor(x, "transpose", "x");
  check_dim(x, 2, "transpose", "x");
  int64_t rows = x.size(0), cols = x.size(1);
  Tensor out = Tensor::empty({cols, rows}, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    transpose_kernel<<<grid_for(out.numel()), kBlockThreads>>>(static_cast<const T*>(x.raw_data()),
                                                               static_cast<T*>(out.raw_data()), rows, cols);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
