// Strided copy of runs along a dimension (slice, concat, stack): run r of `runs` (one per outer
// index) copies run_length contiguous elements between rows of different pitches. Elements are
// moved as 4- or 8-byte words, whatever their dtype.
#include "cuda/launch.cuh"
#include "cuda/layout.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename Word>
__global__ void copy_runs_kernel(const Word* source, Word* destination, int64_t runs, int64_t run_length,
                                 int64_t source_pitch, int64_t destination_pitch) {
  TINYMOE_GRID_STRIDE_LOOP(i, runs * run_length) {
    int64_t run = i / run_length, k = i % run_length;
    destination[run * destination_pitch + k] = source[run * source_pitch + k];
  }
}

template <typename Word>
void launch_copy_runs(const void* source, void* destination, int64_t runs, int64_t run_length, int64_t source_pitch,
                      int64_t destination_pitch) {
  copy_runs_kernel<<<grid_for(runs * run_length), kBlockThreads>>>(static_cast<const Word*>(source),
                                                                   static_cast<Word*>(destination), runs, run_length,
                                                                   source_pitch, destination_pitch);
}

}  // namespace

void copy_along(const Tensor& source, int64_t source_start, const Tensor& destination, int64_t destination_start,
                int64_t dim, int64_t count) {
  check_cuda_tensor(source, "copy_along", "source");
  check_cuda_tensor(destination, "copy_along", "destination");
  check_same_device(source, destination, "copy_along");
  check_dtype(destination, source.dtype(), "copy_along", "destination");
  DimSplit from = split_at(source.shape(), dim);
  DimSplit to = split_at(destination.shape(), dim);
  TINYMOE_CHECK(from.outer == to.outer && from.inner == to.inner && 0 <= count && 0 <= source_start &&
                    source_start + count <= from.extent && 0 <= destination_start &&
                    destination_start + count <= to.extent,
                "copy_along", "cannot copy ", count, " positions from ", source_start, " of ",
                shape_str(source.shape()), " to ", destination_start, " of ", shape_str(destination.shape()),
                " along dim ", dim);
  int64_t run_length = count * from.inner;
  if (run_length == 0 || from.outer == 0) return;
  DeviceGuard guard(source.device());
  size_t element = element_size(source.dtype());
  const char* from_first = static_cast<const char*>(source.raw_data()) + source_start * from.inner * element;
  char* to_first = static_cast<char*>(destination.raw_data()) + destination_start * to.inner * element;
  if (element == sizeof(uint32_t))
    launch_copy_runs<uint32_t>(from_first, to_first, from.outer, run_length, from.extent * from.inner,
                               to.extent * to.inner);
  else
    launch_copy_runs<uint64_t>(from_first, to_first, from.outer, run_length, from.extent * from.inner,
                               to.extent * to.inner);
  TINYMOE_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tinymoe
