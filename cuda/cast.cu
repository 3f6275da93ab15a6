// dtype conversion on the device: one thread per element, static_cast as on the CPU.
#include "cuda/launch.cuh"
#include "cuda/layout.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename To, typename From>
__global__ void cast_kernel(const From* x, To* out, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) out[i] = static_cast<To>(x[i]);
}

}  // namespace

Tensor cast(const Tensor& x, DType dtype) {
  check_cuda_tensor(x, "cast", "x");
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  if (x.numel() == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_all(x.dtype(), [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    dispatch_all(dtype, [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      cast_kernel<<<grid_for(x.numel()), kBlockThreads>>>(static_cast<const From*>(x.raw_data()),
                                                          static_cast<To*>(out.raw_data()), x.numel());
    });
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
