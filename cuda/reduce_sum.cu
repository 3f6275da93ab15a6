// Sum along one dimension: one block per output element, or per piece of it (ChunkPlan) when
// there are few outputs, then a pass over the pieces.
#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace tinymoe {
namespace cuda {
namespace {

// Block `slot` = row * chunks + piece sums piece `piece` of row `row` into out[slot]; with one
// piece per row that is the row's sum.
template <typename T>
__global__ void sum_dim_kernel(const T* in, T* out, DimSplit split, ChunkPlan plan) {
  for (int64_t slot = blockIdx.x; slot < split.outer * split.inner * plan.chunks; slot += gridDim.x) {
    int64_t row = slot / plan.chunks, begin = (slot % plan.chunks) * plan.length;
    int64_t end = begin + plan.length < split.extent ? begin + plan.length : split.extent;
    const T* first = in + (row / split.inner) * split.extent * split.inner + row % split.inner;
    T partial = T(0);
    for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) partial += first[e * split.inner];
    T total = block_reduce(partial, SumOp());
    if (threadIdx.x == 0) out[slot] = total;
  }
}

template <typename T>
void launch_sum(const T* in, T* out, DimSplit split, ChunkPlan plan) {
  int64_t blocks = split.outer * split.inner * plan.chunks;
  sum_dim_kernel<<<static_cast<unsigned>(std::min(blocks, kMaxGridBlocks)), reduce_threads(plan.length)>>>(
      in, out, split, plan);
  TINYMOE_CUDA_CHECK_LAUNCH();
}

}  // namespace

Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_cuda_tensor(x, "sum", "x");
  dim = normalize_dim(dim, x.dim(), "sum");
  DimSplit split = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype(), x.device());
  int64_t rows = split.outer * split.inner;
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  ChunkPlan plan = chunk_plan(rows, split.extent);
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x.raw_data());
    T* result = static_cast<T*>(out.raw_data());
    if (plan.chunks == 1) return launch_sum(in, result, split, plan);
    Tensor partial = Tensor::empty({rows * plan.chunks}, x.dtype(), x.device());  // [rows, chunks]
    launch_sum(in, static_cast<T*>(partial.raw_data()), split, plan);
    launch_sum(static_cast<const T*>(partial.raw_data()), result, DimSplit{rows, plan.chunks, 1},
               ChunkPlan{1, plan.chunks});
  });
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
