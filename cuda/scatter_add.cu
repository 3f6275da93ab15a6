// scatter_add of rows, the combine step of a MoE layer: out[index[i]] += src[i].
// atomic mode: one atomicAdd per element. deterministic mode: the (index, position) pairs are
// sorted stably, and each output element adds its sources in input order (a segmented sum),
// which reproduces a sequential loop bit for bit.
#include "cuda/fill.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__global__ void scatter_add_atomic_kernel(const int64_t* index, const T* src, T* out, int64_t count, int64_t width) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) atomicAdd(out + index[i / width] * width + i % width, src[i]);
}

// First position p in sorted_keys[0, count) with sorted_keys[p] >= key.
__device__ int64_t lower_bound(const int64_t* sorted_keys, int64_t count, int64_t key) {
  int64_t low = 0, high = count;
  while (low < high) {
    int64_t middle = low + (high - low) / 2;
    if (sorted_keys[middle] < key) low = middle + 1;
    else high = middle;
  }
  return low;
}

// One thread per output element (row, column): base plus the row's sources in input order.
template <typename T>
__global__ void scatter_add_sorted_kernel(const T* base, const int64_t* sorted_keys, const int64_t* source_rows,
                                          int64_t sources, const T* src, T* out, int64_t count, int64_t width) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    int64_t row = i / width, column = i % width;
    int64_t end = lower_bound(sorted_keys, sources, row + 1);
    T total = base[i];
    for (int64_t p = lower_bound(sorted_keys, sources, row); p < end; ++p) total += src[source_rows[p] * width + column];
    out[i] = total;
  }
}

void check_arguments(const Tensor& base, const Tensor& index, const Tensor& src) {
  check_cuda_tensor(base, "scatter_add", "base");
  check_cuda_tensor(index, "scatter_add", "index");
  check_cuda_tensor(src, "scatter_add", "src");
  check_same_device(base, index, "scatter_add");
  check_same_device(base, src, "scatter_add");
  check_floating(base, "scatter_add", "base");
  check_dtype(index, DType::i64, "scatter_add", "index");
  check_dim(index, 1, "scatter_add", "index");
  TINYMOE_CHECK(src.dtype() == base.dtype(), "scatter_add", "expected src of dtype ", dtype_name(base.dtype()),
                " like base, got ", dtype_name(src.dtype()));
  TINYMOE_CHECK(base.dim() >= 1, "scatter_add", "expected base with at least 1 dimension, got shape ",
                shape_str(base.shape()));
  Shape expected = base.shape();
  expected[0] = index.numel();
  TINYMOE_CHECK(src.shape() == expected, "scatter_add", "expected src of shape ", shape_str(expected),
                " (one row per index, base's trailing shape), got ", shape_str(src.shape()));
}

}  // namespace

Tensor scatter_add_rows(const Tensor& base, const Tensor& index, const Tensor& src, ScatterMode mode) {
  check_arguments(base, index, src);
  int64_t rows = base.size(0);
  check_index_range(index, rows, "scatter_add");
  int64_t width = rows == 0 ? 0 : base.numel() / rows;
  int64_t sources = index.numel();
  Tensor out = Tensor::empty(base.shape(), base.dtype(), base.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(base.device());
  if (mode == ScatterMode::atomic) {
    TINYMOE_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), base.raw_data(), base.nbytes(), cudaMemcpyDeviceToDevice));
    if (src.numel() == 0) return out;
    dispatch_floating(base.dtype(), "scatter_add", [&](auto tag) {
      using T = typename decltype(tag)::type;
      scatter_add_atomic_kernel<<<grid_for(src.numel()), kBlockThreads>>>(
          static_cast<const int64_t*>(index.raw_data()), static_cast<const T*>(src.raw_data()),
          static_cast<T*>(out.raw_data()), src.numel(), width);
    });
    TINYMOE_CUDA_CHECK_LAUNCH();
    return out;
  }
  SortedPairs sorted = sort_pairs_prechecked(index, device_arange(sources, base.device()), rows, "scatter_add");
  dispatch_floating(base.dtype(), "scatter_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_add_sorted_kernel<<<grid_for(out.numel()), kBlockThreads>>>(
        static_cast<const T*>(base.raw_data()), static_cast<const int64_t*>(sorted.keys.raw_data()),
        static_cast<const int64_t*>(sorted.values.raw_data()), sources, static_cast<const T*>(src.raw_data()),
        static_cast<T*>(out.raw_data()), out.numel(), width);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
