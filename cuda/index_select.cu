// index_select along a dimension: one thread per output element copies it from the block its
// index names. Its backward is scatter_add (cuda/scatter_add.cu).
#include "cuda/index.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

// out is [outer, count, inner]; x is [outer, extent, inner].
template <typename T>
__global__ void index_select_kernel(const T* x, const int64_t* index, T* out, DimSplit x_split, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(i, x_split.outer * count * x_split.inner) {
    int64_t inner = i % x_split.inner;
    int64_t position = (i / x_split.inner) % count;
    int64_t outer = i / (x_split.inner * count);
    out[i] = x[(outer * x_split.extent + index[position]) * x_split.inner + inner];
  }
}

}  // namespace

Tensor index_select(const Tensor& x, const Tensor& index, int64_t dim, const char* op, IndexValidation validation) {
  check_cuda_tensor(x, op, "x");
  check_cuda_tensor(index, op, "index");
  check_same_device(x, index, op);
  check_dtype(index, DType::i64, op, "index");
  check_dim(index, 1, op, "index");
  dim = normalize_dim(dim, x.dim(), op);
  DimSplit split = split_at(x.shape(), dim);
  if (validation == IndexValidation::check) check_index_range(index, split.extent, op);
  Shape shape = x.shape();
  shape[dim] = index.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    index_select_kernel<<<grid_for(out.numel()), kBlockThreads>>>(
        static_cast<const T*>(x.raw_data()), static_cast<const int64_t*>(index.raw_data()),
        static_cast<T*>(out.raw_data()), split, index.numel());
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
