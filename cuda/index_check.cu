// Finds the first out-of-range entry of an index tensor: atomicMin over the positions of bad
// entries, so the position reported does not depend on thread scheduling.
#include "cuda/allocator.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

constexpr unsigned long long kNoBadPosition = ~0ull;

// has_ignored: entries equal to `ignored` count as in range.
__global__ void first_out_of_range_kernel(const int64_t* index, int64_t count, int64_t bound, bool has_ignored,
                                          int64_t ignored, unsigned long long* first_bad) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    bool in_range = (index[i] >= 0 && index[i] < bound) || (has_ignored && index[i] == ignored);
    if (!in_range) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

void check_range(const Tensor& index, int64_t bound, bool has_ignored, int64_t ignored, const char* op) {
  check_cuda_tensor(index, op, "index");
  check_dtype(index, DType::i64, op, "index");
  int64_t count = index.numel();
  if (count == 0) return;
  DeviceGuard guard(index.device());
  DeviceBuffer first_bad(sizeof(unsigned long long), index.device());
  TINYMOE_CUDA_CHECK(cudaMemsetAsync(first_bad.data(), 0xff, sizeof(unsigned long long)));  // kNoBadPosition
  const int64_t* values = static_cast<const int64_t*>(index.raw_data());
  first_out_of_range_kernel<<<grid_for(count), kBlockThreads>>>(
      values, count, bound, has_ignored, ignored, static_cast<unsigned long long*>(first_bad.data()));
  TINYMOE_CUDA_CHECK_LAUNCH();
  unsigned long long position = kNoBadPosition;
  TINYMOE_CUDA_CHECK(cudaMemcpy(&position, first_bad.data(), sizeof(position), cudaMemcpyDeviceToHost));
  if (position == kNoBadPosition) return;
  int64_t value = 0;
  TINYMOE_CUDA_CHECK(cudaMemcpy(&value, values + position, sizeof(value), cudaMemcpyDeviceToHost));
  if (has_ignored)
    fail(op, "index ", value, " (position ", position, ") out of range [0, ", bound, ") and not the ignored value ",
         ignored);
  fail(op, "index ", value, " (position ", position, ") out of range [0, ", bound, ")");
}

}  // namespace

void check_index_range(const Tensor& index, int64_t bound, const char* op) { check_range(index, bound, false, 0, op); }

void check_index_range_except(const Tensor& index, int64_t bound, int64_t ignored, const char* op) {
  check_range(index, bound, true, ignored, op);
}

}  // namespace cuda
}  // namespace tinymoe
