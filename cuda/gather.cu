// The flat offsets gather reads (torch.gather along dim), one thread per index element: its
// coordinates in index's shape, with the index value at dim, as a position of x.
#include "cuda/index.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

constexpr int kMaxGatherDims = 8;

struct GatherGeometry {
  int dims;
  int dim;
  int64_t index_shape[kMaxGatherDims];
  int64_t x_stride[kMaxGatherDims];  // row-major strides of x, in elements
};

__global__ void gather_offsets_kernel(const int64_t* index, int64_t* offsets, int64_t count, GatherGeometry geometry) {
  TINYMOE_GRID_STRIDE_LOOP(p, count) {
    int64_t rest = p, offset = 0;
    for (int d = geometry.dims - 1; d >= 0; --d) {
      int64_t coordinate = rest % geometry.index_shape[d];
      rest /= geometry.index_shape[d];
      offset += (d == geometry.dim ? index[p] : coordinate) * geometry.x_stride[d];
    }
    offsets[p] = offset;
  }
}

}  // namespace

Tensor gather_offsets(const Shape& x_shape, const Tensor& index, int64_t dim, const char* op) {
  check_cuda_tensor(index, op, "index");
  check_dtype(index, DType::i64, op, "index");
  int64_t dims = static_cast<int64_t>(x_shape.size());
  dim = normalize_dim(dim, dims, op);
  TINYMOE_CHECK(dims <= kMaxGatherDims, op, "the cuda gather takes at most ", kMaxGatherDims,
                " dimensions, got shape ", shape_str(x_shape));
  TINYMOE_CHECK(index.dim() == dims, op, "expected 'index' with as many dimensions as 'x' (", shape_str(x_shape),
                "), got shape ", shape_str(index.shape()));
  GatherGeometry geometry{static_cast<int>(dims), static_cast<int>(dim), {}, {}};
  int64_t stride = 1;
  for (int64_t d = dims - 1; d >= 0; --d) {
    TINYMOE_CHECK(d == dim || index.size(d) <= x_shape[d], op, "index shape ", shape_str(index.shape()),
                  " exceeds x shape ", shape_str(x_shape), " at dim ", d, " (only dim ", dim, " may differ)");
    geometry.index_shape[d] = index.size(d);
    geometry.x_stride[d] = stride;
    stride *= x_shape[d];
  }
  check_index_range(index, x_shape[dim], op);
  Tensor offsets = Tensor::empty(index.shape(), DType::i64, index.device());
  if (index.numel() == 0) return offsets;
  DeviceGuard guard(index.device());
  gather_offsets_kernel<<<grid_for(index.numel()), kBlockThreads>>>(
      static_cast<const int64_t*>(index.raw_data()), static_cast<int64_t*>(offsets.raw_data()), index.numel(),
      geometry);
  TINYMOE_CUDA_CHECK_LAUNCH();
  return offsets;
}

}  // namespace cuda
}  // namespace tinymoe
