// Finds the first out-of-range entry of an index tensor: atomicMin over the positions of bad
// entries, so the position reported does not depend on thread scheduling.
#include "cuda/allocator.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

constexpr unsigned long long kNoBadPosition = ~0ull;

__global__ void first_out_of_range_kernel(const int64_t* index, int64_t count, int64_t bound,
                                          unsigned long long* first_bad) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    if (index[i] < 0 || index[i] >= bound) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

}  // namespace

void check_index_range(const Tensor& index, int64_t bound, const char* op) {
  check_cuda_tensor(index, op, "index");
  check_dtype(index, DType::i64, op, "index");
  int64_t count = index.numel();
  if (count == 0) return;
  DeviceGuard guard(index.device());
  DeviceBuffer first_bad(sizeof(unsigned long long), index.device());
  TINYMOE_CUDA_CHECK(cudaMemsetAsync(first_bad.data(), 0xff, sizeof(unsigned long long)));  // kNoBadPosition
  const int64_t* values = static_cast<const int64_t*>(index.raw_data());
  first_out_of_range_kernel<<<grid_for(count), kBlockThreads>>>(values, count, bound,
                                                                static_cast<unsigned long long*>(first_bad.data()));
  TINYMOE_CUDA_CHECK_LAUNCH();
  unsigned long long position = kNoBadPosition;
  TINYMOE_CUDA_CHECK(cudaMemcpy(&position, first_bad.data(), sizeof(position), cudaMemcpyDeviceToHost));
  if (position == kNoBadPosition) return;
  int64_t value = 0;
  TINYMOE_CUDA_CHECK(cudaMemcpy(&value, values + position, sizeof(value), cudaMemcpyDeviceToHost));
  fail(op, "index ", value, " (position ", position, ") out of range [0, ", bound, ")");
}

}  // namespace cuda
}  // namespace tinymoe
