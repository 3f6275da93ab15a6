// Top-k along the last dimension for routing (k <= 8 of n <= 256 experts): one warp per row.
// Each lane keeps its n / 32 entries in registers; k rounds each pick the warp's best untaken
// entry with a warp reduction, and the owning lane marks it taken.
#include "cuda/fill.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"

namespace tinymoe {
namespace cuda {
namespace {

constexpr int kMaxK = static_cast<int>(kTopkMaxK);
constexpr int kMaxColumns = static_cast<int>(kTopkMaxColumns);
constexpr int kSlotsPerLane = kMaxColumns / kWarpSize;
constexpr int kRowsPerBlock = kBlockThreads / kWarpSize;

template <typename T>
__global__ void topk_kernel(const T* x, T* values, int64_t* indices, int64_t rows, int columns, int k) {
  int lane = threadIdx.x % kWarpSize;
  int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  for (int64_t row = first_row; row < rows; row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const T* entries = x + row * columns;
    T held[kSlotsPerLane];
    bool taken[kSlotsPerLane];
#pragma unroll
    for (int slot = 0; slot < kSlotsPerLane; ++slot) {
      int column = slot * kWarpSize + lane;
      taken[slot] = column >= columns;
      held[slot] = taken[slot] ? T(0) : entries[column];
    }
    for (int round = 0; round < k; ++round) {
      ValueIndex<T> best{T(0), -1};
#pragma unroll
      for (int slot = 0; slot < kSlotsPerLane; ++slot)
        if (!taken[slot]) best = ArgMaxOp()(best, ValueIndex<T>{held[slot], slot * kWarpSize + lane});
      best = warp_reduce(best, ArgMaxOp());
      best.value = __shfl_sync(kFullWarpMask, best.value, 0);
      best.index = __shfl_sync(kFullWarpMask, best.index, 0);
      if (best.index % kWarpSize == lane) {
#pragma unroll
        for (int slot = 0; slot < kSlotsPerLane; ++slot)
          if (slot == best.index / kWarpSize) taken[slot] = true;  // constant slot indices keep held/taken in registers
      }
      if (lane == 0) {
        values[row * k + round] = best.value;
        indices[row * k + round] = best.index;
      }
    }
  }
}

template <typename T>
__global__ void topk_backward_kernel(const T* grad_values, const int64_t* indices, T* grad_x, int64_t count, int k,
                                     int64_t columns) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) grad_x[(i / k) * columns + indices[i]] = grad_values[i];
}

}  // namespace

ValuesIndices topk(const Tensor& x, int64_t k) {
  check_cuda_tensor(x, "topk", "x");
  TINYMOE_CHECK(x.dim() >= 1, "topk", "expected x with at least 1 dimension, got shape ", shape_str(x.shape()));
  int64_t columns = x.size(-1);
  TINYMOE_CHECK(columns >= 1 && columns <= kMaxColumns, "topk", "the cuda kernel takes rows of 1 to ", kMaxColumns,
                " entries, got ", columns);
  TINYMOE_CHECK(k >= 1 && k <= kMaxK && k <= columns, "topk", "expected 1 <= k <= min(", kMaxK, ", ", columns,
                "), got k = ", k);
  Shape shape = x.shape();
  shape.back() = k;
  ValuesIndices out{Tensor::empty(shape, x.dtype(), x.device()), Tensor::empty(shape, DType::i64, x.device())};
  int64_t rows = x.numel() / columns;
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  unsigned blocks = static_cast<unsigned>(std::min((rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxGridBlocks));
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_kernel<<<blocks, kBlockThreads>>>(static_cast<const T*>(x.raw_data()), static_cast<T*>(out.values.raw_data()),
                                           static_cast<int64_t*>(out.indices.raw_data()), rows,
                                           static_cast<int>(columns), static_cast<int>(k));
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

Tensor topk_backward(const Tensor& grad_values, const Tensor& indices, const Shape& input_shape) {
  check_cuda_tensor(grad_values, "topk", "grad_values");
  check_cuda_tensor(indices, "topk", "indices");
  check_same_device(grad_values, indices, "topk");
  check_floating(grad_values, "topk", "grad_values");
  check_dtype(indices, DType::i64, "topk", "indices");
  bool shapes_fit = !input_shape.empty() && grad_values.shape() == indices.shape() &&
                    grad_values.dim() == static_cast<int64_t>(input_shape.size()) &&
                    std::equal(input_shape.begin(), input_shape.end() - 1, grad_values.shape().begin());
  TINYMOE_CHECK(shapes_fit, "topk", "expected grad_values and indices of one shape [..., k] for input shape ",
                shape_str(input_shape), ", got ", shape_str(grad_values.shape()), " and ", shape_str(indices.shape()));
  int64_t k = grad_values.size(-1);
  int64_t columns = input_shape.back();
  check_index_range(indices, columns, "topk");
  Tensor grad_x = device_zeros(input_shape, grad_values.dtype(), grad_values.device());
  if (grad_values.numel() == 0) return grad_x;
  DeviceGuard guard(grad_values.device());
  dispatch_floating(grad_values.dtype(), "topk", [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_backward_kernel<<<grid_for(grad_values.numel()), kBlockThreads>>>(
        static_cast<const T*>(grad_values.raw_data()), static_cast<const int64_t*>(indices.raw_data()),
        static_cast<T*>(grad_x.raw_data()), grad_values.numel(), static_cast<int>(k), columns);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace cuda
}  // namespace tinymoe
