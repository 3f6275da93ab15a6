// Maximum along one dimension with its index (one block per output element, or per piece of it:
// ChunkPlan in cuda/launch.cuh), and its backward.
#include "cuda/fill.h"
#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace tinymoe {
namespace cuda {
namespace {

// Block `slot` = row * chunks + piece writes the best (value, index along the dim) of that piece
// of row `row` to values[slot] and indices[slot].
template <typename T>
__global__ void max_dim_kernel(const T* in, T* values, int64_t* indices, DimSplit split, ChunkPlan plan) {
  for (int64_t slot = blockIdx.x; slot < split.outer * split.inner * plan.chunks; slot += gridDim.x) {
    int64_t row = slot / plan.chunks, begin = (slot % plan.chunks) * plan.length;
    int64_t end = begin + plan.length < split.extent ? begin + plan.length : split.extent;
    const T* first = in + (row / split.inner) * split.extent * split.inner + row % split.inner;
    ValueIndex<T> best{T(0), -1};
    for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x)
      best = ArgMaxOp()(best, ValueIndex<T>{first[e * split.inner], e});
    best = block_reduce(best, ArgMaxOp());
    if (threadIdx.x == 0) {
      values[slot] = best.value;
      indices[slot] = best.index;
    }
  }
}

// The second pass of a cut reduction: the best of each row's `chunks` candidates. ArgMaxOp is
// associative and commutative, so the answer is the single pass's, ties included.
template <typename T>
__global__ void max_of_pieces_kernel(const T* piece_values, const int64_t* piece_indices, T* values,
                                     int64_t* indices, int64_t rows, int64_t chunks) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    ValueIndex<T> best{T(0), -1};
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x)
      best = ArgMaxOp()(best, ValueIndex<T>{piece_values[row * chunks + c], piece_indices[row * chunks + c]});
    best = block_reduce(best, ArgMaxOp());
    if (threadIdx.x == 0) {
      values[row] = best.value;
      indices[row] = best.index;
    }
  }
}

template <typename T>
void launch_max(const T* in, T* values, int64_t* indices, DimSplit split, ChunkPlan plan) {
  int64_t blocks = split.outer * split.inner * plan.chunks;
  max_dim_kernel<<<static_cast<unsigned>(std::min(blocks, kMaxGridBlocks)), reduce_threads(plan.length)>>>(
      in, values, indices, split, plan);
  TINYMOE_CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void max_dim_backward_kernel(const T* grad_values, const int64_t* indices, T* grad_x, DimSplit split) {
  TINYMOE_GRID_STRIDE_LOOP(row, split.outer * split.inner) {
    int64_t outer = row / split.inner, inner = row % split.inner;
    grad_x[(outer * split.extent + indices[row]) * split.inner + inner] = grad_values[row];
  }
}

}  // namespace

ValuesIndices max_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_cuda_tensor(x, "max", "x");
  dim = normalize_dim(dim, x.dim(), "max");
  DimSplit split = split_at(x.shape(), dim);
  TINYMOE_CHECK(split.extent > 0, "max", "max over an empty dimension ", dim, " of shape ", shape_str(x.shape()));
  Shape shape = reduced_shape(x.shape(), dim, keepdim);
  ValuesIndices out{Tensor::empty(shape, x.dtype(), x.device()), Tensor::empty(shape, DType::i64, x.device())};
  int64_t rows = split.outer * split.inner;
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  ChunkPlan plan = chunk_plan(rows, split.extent);
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x.raw_data());
    T* values = static_cast<T*>(out.values.raw_data());
    int64_t* indices = static_cast<int64_t*>(out.indices.raw_data());
    if (plan.chunks == 1) return launch_max(in, values, indices, split, plan);
    ValuesIndices pieces{Tensor::empty({rows * plan.chunks}, x.dtype(), x.device()),
                         Tensor::empty({rows * plan.chunks}, DType::i64, x.device())};  // [rows, chunks]
    T* piece_values = static_cast<T*>(pieces.values.raw_data());
    int64_t* piece_indices = static_cast<int64_t*>(pieces.indices.raw_data());
    launch_max(in, piece_values, piece_indices, split, plan);
    max_of_pieces_kernel<<<static_cast<unsigned>(std::min(rows, kMaxGridBlocks)), reduce_threads(plan.chunks)>>>(
        piece_values, piece_indices, values, indices, rows, plan.chunks);
    TINYMOE_CUDA_CHECK_LAUNCH();
  });
  return out;
}

Tensor max_dim_backward(const Tensor& grad_values, const Tensor& indices, const Shape& input_shape, int64_t dim) {
  check_cuda_tensor(grad_values, "max", "grad_values");
  check_cuda_tensor(indices, "max", "indices");
  check_same_device(grad_values, indices, "max");
  check_floating(grad_values, "max", "grad_values");
  check_dtype(indices, DType::i64, "max", "indices");
  dim = normalize_dim(dim, static_cast<int64_t>(input_shape.size()), "max");
  DimSplit split = split_at(input_shape, dim);
  TINYMOE_CHECK(grad_values.numel() == split.outer * split.inner && indices.numel() == grad_values.numel(), "max",
                "expected grad_values and indices of ", split.outer * split.inner, " elements for input shape ",
                shape_str(input_shape), " reduced along dim ", dim, ", got ", shape_str(grad_values.shape()), " and ",
                shape_str(indices.shape()));
  Tensor grad_x = device_zeros(input_shape, grad_values.dtype(), grad_values.device());
  if (grad_values.numel() == 0) return grad_x;
  DeviceGuard guard(grad_values.device());
  dispatch_floating(grad_values.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_dim_backward_kernel<<<grid_for(grad_values.numel()), kBlockThreads>>>(
        static_cast<const T*>(grad_values.raw_data()), static_cast<const int64_t*>(indices.raw_data()),
        static_cast<T*>(grad_x.raw_data()), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace cuda
}  // namespace tinymoe
