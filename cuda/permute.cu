// CUB wrappers: stable radix sort of pairs, histogram (bincount), exclusive scan. The only
// translation unit that includes CUB.
#include <cub/device/device_histogram.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <climits>

#include "cuda/allocator.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"
#include "cuda/permute.h"

namespace tinymoe {
namespace cuda {
namespace {

// CUB's two-call protocol: ask for the temporary storage size, then run with that much
// scratch memory from the caching allocator.
template <typename Call>
void run_cub(const char* name, Device device, Call call) {
  size_t temporary_bytes = 0;
  cudaError_t status = call(nullptr, temporary_bytes);
  if (status != cudaSuccess) throw_cuda_error(status, name, __FILE__, __LINE__);
  DeviceBuffer temporary(std::max<size_t>(temporary_bytes, 1), device);  // CUB reads null as "size query"
  status = call(temporary.data(), temporary_bytes);
  if (status != cudaSuccess) throw_cuda_error(status, name, __FILE__, __LINE__);
  TINYMOE_CUDA_CHECK_LAUNCH();
}

void check_index_vector(const Tensor& tensor, const char* op, const char* name) {
  check_cuda_tensor(tensor, op, name);
  check_dtype(tensor, DType::i64, op, name);
  check_dim(tensor, 1, op, name);
}

// Bits a radix sort must look at for keys in [0, bound).
int key_bits(int64_t bound) {
  int bits = 1;
  while (bits < 63 && (int64_t(1) << bits) < bound) ++bits;
  return bits;
}

const int64_t* in(const Tensor& tensor) { return static_cast<const int64_t*>(tensor.raw_data()); }
int64_t* out(Tensor& tensor) { return static_cast<int64_t*>(tensor.raw_data()); }

}  // namespace

SortedPairs sort_pairs(const Tensor& keys, const Tensor& values, int64_t key_bound) {
  check_index_vector(keys, "sort_pairs", "keys");
  TINYMOE_CHECK(key_bound >= 1, "sort_pairs", "expected key_bound >= 1, got ", key_bound);
  check_index_range(keys, key_bound, "sort_pairs");
  return sort_pairs_prechecked(keys, values, key_bound, "sort_pairs");
}

SortedPairs sort_pairs_prechecked(const Tensor& keys, const Tensor& values, int64_t key_bound, const char* op) {
  check_index_vector(keys, op, "keys");
  check_index_vector(values, op, "values");
  check_same_device(keys, values, op);
  TINYMOE_CHECK(keys.numel() == values.numel(), op, "expected as many values as keys, got ", values.numel(),
                " values for ", keys.numel(), " keys");
  TINYMOE_CHECK(key_bound >= 1, op, "expected key_bound >= 1, got ", key_bound);
  SortedPairs sorted{Tensor::empty(keys.shape(), DType::i64, keys.device()),
                     Tensor::empty(values.shape(), DType::i64, keys.device())};
  int64_t count = keys.numel();
  if (count == 0) return sorted;
  DeviceGuard guard(keys.device());
  int end_bit = key_bits(key_bound);
  run_cub("cub::DeviceRadixSort::SortPairs", keys.device(), [&](void* temporary, size_t& bytes) {
    return cub::DeviceRadixSort::SortPairs(temporary, bytes, in(keys), out(sorted.keys), in(values),
                                           out(sorted.values), count, 0, end_bit);
  });
  return sorted;
}

Tensor bincount(const Tensor& ids, int64_t bins) {
  check_index_vector(ids, "bincount", "ids");
  TINYMOE_CHECK(bins >= 1 && bins < INT_MAX, "bincount", "expected 1 <= bins < ", INT_MAX, ", got ", bins);
  check_index_range(ids, bins, "bincount");
  Tensor counts = Tensor::empty({bins}, DType::i64, ids.device());
  DeviceGuard guard(ids.device());
  if (ids.numel() == 0) {
    TINYMOE_CUDA_CHECK(cudaMemsetAsync(counts.raw_data(), 0, counts.nbytes()));
    return counts;
  }
  // Bins of width 1 over [0, bins); i64 counters through their unsigned twin (same bits for
  // counts >= 0), which CUB can atomically add.
  auto* counters = static_cast<unsigned long long*>(counts.raw_data());
  int64_t samples = ids.numel();
  run_cub("cub::DeviceHistogram::HistogramEven", ids.device(), [&](void* temporary, size_t& bytes) {
    return cub::DeviceHistogram::HistogramEven(temporary, bytes, in(ids), counters, static_cast<int>(bins + 1),
                                               int64_t(0), bins, samples);
  });
  return counts;
}

Tensor exclusive_cumsum(const Tensor& x) {
  check_index_vector(x, "exclusive_cumsum", "x");
  Tensor result = Tensor::empty(x.shape(), DType::i64, x.device());
  int64_t count = x.numel();
  if (count == 0) return result;
  DeviceGuard guard(x.device());
  run_cub("cub::DeviceScan::ExclusiveSum", x.device(), [&](void* temporary, size_t& bytes) {
    return cub::DeviceScan::ExclusiveSum(temporary, bytes, in(x), out(result), count);
  });
  return result;
}

Tensor segment_offsets(const Tensor& counts) {
  check_index_vector(counts, "segment_offsets", "counts");
  int64_t count = counts.numel();
  // Scan [c0, ..., c_{n-1}, 0]: the exclusive sums are the n + 1 offsets, total last.
  Tensor padded = Tensor::empty({count + 1}, DType::i64, counts.device());
  DeviceGuard guard(counts.device());
  if (count > 0)
    TINYMOE_CUDA_CHECK(cudaMemcpyAsync(padded.raw_data(), counts.raw_data(), counts.nbytes(), cudaMemcpyDeviceToDevice));
  TINYMOE_CUDA_CHECK(cudaMemsetAsync(out(padded) + count, 0, sizeof(int64_t)));
  return exclusive_cumsum(padded);
}

}  // namespace cuda
}  // namespace tinymoe
