// Stable sort along a dimension as least-significant-first radix passes over whole-tensor
// (key, position) pairs: the low 32 bits of an order-preserving unsigned key, then the high 32
// bits (64-bit keys), then the row. Each pass is a stable cuda::sort_pairs, so the result is
// ordered by row, then key, then position: every row's stable sort.
#include <cstdint>

#include "cuda/fill.h"
#include "cuda/index.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"
#include "cuda/sort.h"

namespace tinymoe {
namespace cuda {
namespace {

constexpr int64_t kHalfKeyBound = int64_t(1) << 32;  // each radix pass sorts 32 bits
constexpr uint64_t kLowHalf = 0xffffffffull;

// Unsigned keys in ranks_before's ascending order: key(a) < key(b) when a ranks before b, equal
// keys for ties. Negative floats reverse their bits, others set the sign bit; NaN is the
// largest key and -0.0 is 0.0.
__device__ uint64_t ordered_key(float value) {
  if (value != value) return kLowHalf;
  uint32_t bits = value == 0.0f ? 0u : __float_as_uint(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ uint64_t ordered_key(double value) {
  if (value != value) return ~0ull;
  uint64_t bits = value == 0.0 ? 0ull : static_cast<uint64_t>(__double_as_longlong(value));
  return (bits >> 63) ? ~bits : (bits | (1ull << 63));
}

__device__ uint64_t ordered_key(int64_t value) { return static_cast<uint64_t>(value) ^ (1ull << 63); }

// Splits each key into its low and (for 64-bit keys, high != null) high 32 bits; descending
// order is the ascending order of the complemented key.
template <typename T>
__global__ void key_halves_kernel(const T* x, int64_t* low, int64_t* high, int64_t count, bool descending) {
  uint64_t all_bits = high ? ~0ull : kLowHalf;
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    uint64_t key = ordered_key(x[i]);
    if (descending) key = all_bits ^ key;
    low[i] = static_cast<int64_t>(key & kLowHalf);
    if (high) high[i] = static_cast<int64_t>(key >> 32);
  }
}

// The row (lane o * inner + i of the [outer, extent, inner] split) of each flat position.
__global__ void row_of_kernel(const int64_t* positions, int64_t* rows, int64_t count, DimSplit split) {
  TINYMOE_GRID_STRIDE_LOOP(k, count) {
    int64_t position = positions[k];
    rows[k] = (position / (split.extent * split.inner)) * split.inner + position % split.inner;
  }
}

// positions holds every row's elements in sorted order, row after row: entry k is rank
// k % extent of row k / extent. Writes each element's position along dim at its rank.
__global__ void write_ranks_kernel(const int64_t* positions, int64_t* indices, int64_t count, DimSplit split) {
  TINYMOE_GRID_STRIDE_LOOP(k, count) {
    int64_t row = k / split.extent, rank = k % split.extent;
    int64_t outer = row / split.inner, inner = row % split.inner;
    indices[(outer * split.extent + rank) * split.inner + inner] = (positions[k] / split.inner) % split.extent;
  }
}

// The positions of x's elements in order of (high half, low half) of their keys, stably.
Tensor positions_by_key(const Tensor& x, bool descending, const char* op) {
  int64_t count = x.numel();
  bool wide_keys = x.dtype() != DType::f32;
  Tensor low = Tensor::empty({count}, DType::i64, x.device());
  Tensor high = wide_keys ? Tensor::empty({count}, DType::i64, x.device()) : Tensor();
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    key_halves_kernel<<<grid_for(count), kBlockThreads>>>(static_cast<const T*>(x.raw_data()),
                                                          static_cast<int64_t*>(low.raw_data()),
                                                          wide_keys ? static_cast<int64_t*>(high.raw_data()) : nullptr,
                                                          count, descending);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  Tensor positions = sort_pairs_prechecked(low, device_arange(count, x.device()), kHalfKeyBound, op).values;
  if (!wide_keys) return positions;
  Tensor high_in_order = index_select(high, positions, 0, op, IndexValidation::done);
  return sort_pairs_prechecked(high_in_order, positions, kHalfKeyBound, op).values;
}

}  // namespace

Tensor sort_indices(const Tensor& x, int64_t dim, bool descending, const char* op) {
  check_cuda_tensor(x, op, "x");
  dim = normalize_dim(dim, x.dim(), op);
  Tensor indices = Tensor::empty(x.shape(), DType::i64, x.device());
  int64_t count = x.numel();
  if (count == 0) return indices;
  DeviceGuard guard(x.device());
  DimSplit split = split_at(x.shape(), dim);
  Tensor positions = positions_by_key(x, descending, op);
  int64_t rows = split.outer * split.inner;
  if (rows > 1) {
    Tensor row_in_order = Tensor::empty({count}, DType::i64, x.device());
    row_of_kernel<<<grid_for(count), kBlockThreads>>>(static_cast<const int64_t*>(positions.raw_data()),
                                                      static_cast<int64_t*>(row_in_order.raw_data()), count, split);
    TINYMOE_CUDA_CHECK_LAUNCH();
    positions = sort_pairs_prechecked(row_in_order, positions, rows, op).values;
  }
  write_ranks_kernel<<<grid_for(count), kBlockThreads>>>(static_cast<const int64_t*>(positions.raw_data()),
                                                         static_cast<int64_t*>(indices.raw_data()), count, split);
  TINYMOE_CUDA_CHECK_LAUNCH();
  return indices;
}

}  // namespace cuda
}  // namespace tinymoe
