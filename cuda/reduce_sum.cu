// Sum along one dimension: one block per output element.
#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__global__ void sum_dim_kernel(const T* in, T* out, DimSplit split) {
  for (int64_t row = blockIdx.x; row < split.outer * split.inner; row += gridDim.x) {
    const T* first = in + (row / split.inner) * split.extent * split.inner + row % split.inner;
    T partial = T(0);
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x) partial += first[e * split.inner];
    T total = block_reduce(partial, SumOp());
    if (threadIdx.x == 0) out[row] = total;
  }
}

}  // namespace

Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_cuda_tensor(x, "sum", "x");
  dim = normalize_dim(dim, x.dim(), "sum");
  DimSplit split = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype(), x.device());
  int64_t rows = split.outer * split.inner;
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    sum_dim_kernel<<<static_cast<unsigned>(std::min(rows, kMaxGridBlocks)), reduce_threads(split.extent)>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
