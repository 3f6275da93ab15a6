// scatter_add along a dimension, the combine step of a MoE layer and the backward of every
// selection: out block (o, index[j]) += (weight[j] *) source block (o, j).
// atomic mode: one atomicAdd per source element. deterministic mode: the (index, position)
// pairs are sorted stably, and each output element adds its sources in input order (a
// segmented sum), which reproduces a sequential loop bit for bit.
#include "cuda/fill.h"
#include "cuda/index.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"

namespace tinymoe {
namespace cuda {
namespace {

// out is [outer, extent, inner] (its split around dim); source is [outer, count, inner].
struct ScatterShape {
  DimSplit out;
  int64_t count;
};

// A source value times its row's weight; weight is null for a plain scatter_add.
template <typename T>
__device__ T weighted(const T* weight, int64_t position, T value) {
  return weight ? weight[position] * value : value;
}

template <typename T>
__global__ void scatter_add_atomic_kernel(const int64_t* index, const T* source, const T* weight, T* out,
                                          ScatterShape shape) {
  const DimSplit& split = shape.out;
  TINYMOE_GRID_STRIDE_LOOP(i, split.outer * shape.count * split.inner) {
    int64_t inner = i % split.inner;
    int64_t position = (i / split.inner) % shape.count;
    int64_t outer = i / (split.inner * shape.count);
    atomicAdd(out + (outer * split.extent + index[position]) * split.inner + inner,
              weighted(weight, position, source[i]));
  }
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

// One thread per output element: base (or 0) plus its sources in input order. sorted_keys are
// the indices sorted stably, source_positions the position j each came from.
template <typename T>
__global__ void scatter_add_sorted_kernel(const T* base, const int64_t* sorted_keys, const int64_t* source_positions,
                                          const T* source, const T* weight, T* out, ScatterShape shape) {
  const DimSplit& split = shape.out;
  TINYMOE_GRID_STRIDE_LOOP(i, split.outer * split.extent * split.inner) {
    int64_t inner = i % split.inner;
    int64_t row = (i / split.inner) % split.extent;
    int64_t outer = i / (split.inner * split.extent);
    int64_t end = lower_bound(sorted_keys, shape.count, row + 1);
    T total = base ? base[i] : T(0);
    for (int64_t p = lower_bound(sorted_keys, shape.count, row); p < end; ++p) {
      int64_t position = source_positions[p];
      total += weighted(weight, position, source[(outer * shape.count + position) * split.inner + inner]);
    }
    out[i] = total;
  }
}

// out of out_shape (base's shape when base is defined, else zeros) plus the scatter of source
// along dim, with index already checked. weight, when defined, holds one value per index entry.
Tensor scatter_checked(const Tensor& base, const Shape& out_shape, const Tensor& index, const Tensor& source,
                       const Tensor& weight, int64_t dim, ScatterMode mode, const char* op) {
  Tensor out = Tensor::empty(out_shape, source.dtype(), source.device());
  if (out.numel() == 0) return out;
  ScatterShape shape{split_at(out_shape, dim), index.numel()};
  DeviceGuard guard(source.device());
  bool atomic = mode == ScatterMode::atomic && is_floating(source.dtype());
  if (atomic || source.numel() == 0) {
    if (base.defined())
      TINYMOE_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), base.raw_data(), base.nbytes(), cudaMemcpyDeviceToDevice));
    else
      TINYMOE_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes()));
    if (source.numel() == 0) return out;
    dispatch_floating(source.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      scatter_add_atomic_kernel<<<grid_for(source.numel()), kBlockThreads>>>(
          static_cast<const int64_t*>(index.raw_data()), static_cast<const T*>(source.raw_data()),
          weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr, static_cast<T*>(out.raw_data()),
          shape);
    });
    TINYMOE_CUDA_CHECK_LAUNCH();
    return out;
  }
  SortedPairs sorted =
      sort_pairs_prechecked(index, device_arange(shape.count, source.device()), shape.out.extent, op);
  dispatch_all(source.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_add_sorted_kernel<<<grid_for(out.numel()), kBlockThreads>>>(
        base.defined() ? static_cast<const T*>(base.raw_data()) : nullptr,
        static_cast<const int64_t*>(sorted.keys.raw_data()), static_cast<const int64_t*>(sorted.values.raw_data()),
        static_cast<const T*>(source.raw_data()), weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr,
        static_cast<T*>(out.raw_data()), shape);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

void check_rows_arguments(const Tensor& base, const Tensor& index, const Tensor& src) {
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
  check_rows_arguments(base, index, src);
  check_index_range(index, base.size(0), "scatter_add");
  return scatter_checked(base, base.shape(), index, src, Tensor(), 0, mode, "scatter_add");
}

Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim, ScatterMode mode,
                   const char* op, IndexValidation validation) {
  check_cuda_tensor(base, op, "base");
  check_cuda_tensor(index, op, "index");
  check_cuda_tensor(source, op, "source");
  check_same_device(base, index, op);
  check_same_device(base, source, op);
  check_dtype(index, DType::i64, op, "index");
  check_dim(index, 1, op, "index");
  TINYMOE_CHECK(source.dtype() == base.dtype(), op, "expected 'base' and 'source' of one dtype, got ",
                dtype_name(base.dtype()), " and ", dtype_name(source.dtype()));
  dim = normalize_dim(dim, base.dim(), op);
  Shape expected = base.shape();
  expected[dim] = index.numel();
  TINYMOE_CHECK(source.shape() == expected, op, "expected 'source' of shape ", shape_str(expected), " (base ",
                shape_str(base.shape()), " with ", index.numel(), " indices at dim ", dim, "), got ",
                shape_str(source.shape()));
  if (validation == IndexValidation::check) check_index_range(index, base.size(dim), op);
  return scatter_checked(base, base.shape(), index, source, Tensor(), dim, mode, op);
}

Tensor weighted_scatter_add(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows,
                            IndexValidation validation) {
  const char* op = "weighted_scatter_add";
  check_cuda_tensor(source, op, "source");
  check_cuda_tensor(index, op, "index");
  check_cuda_tensor(weight, op, "weight");
  check_same_device(source, index, op);
  check_same_device(source, weight, op);
  check_floating(source, op, "source");
  check_dim(source, 2, op, "source");
  check_dtype(index, DType::i64, op, "index");
  check_dtype(weight, source.dtype(), op, "weight");
  int64_t pairs = source.size(0);
  TINYMOE_CHECK(index.dim() == 1 && index.numel() == pairs, op, "expected index of shape [", pairs, "], got ",
                shape_str(index.shape()));
  TINYMOE_CHECK(weight.numel() == pairs, op, "expected ", pairs, " weights, got shape ", shape_str(weight.shape()));
  TINYMOE_CHECK(num_rows >= 0, op, "num_rows must be non-negative, got ", num_rows);
  if (validation == IndexValidation::check) check_index_range(index, num_rows, op);
  return scatter_checked(Tensor(), {num_rows, source.size(1)}, index, source, weight, 0, ScatterMode::deterministic,
                         op);
}

}  // namespace cuda
}  // namespace tinymoe
