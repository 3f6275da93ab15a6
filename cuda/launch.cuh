// Internal to the CUDA backend's .cu files: launch shapes, grid-stride loops, warp and block
// reductions, and the [outer, extent, inner] view of a tensor around one dimension.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/runtime.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

constexpr int kBlockThreads = 256;
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;
constexpr int64_t kMaxGridBlocks = 65536;  // grid-stride loops cover the rest

// Blocks for a grid-stride loop over `count` items.
inline unsigned grid_for(int64_t count, int threads = kBlockThreads) {
  return static_cast<unsigned>(std::clamp<int64_t>((count + threads - 1) / threads, 1, kMaxGridBlocks));
}

// Threads of a block that reduces `extent` values: whole warps, at most kBlockThreads.
inline int reduce_threads(int64_t extent) {
  int64_t warps = (extent + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(std::clamp<int64_t>(warps, 1, kBlockThreads / kWarpSize) * kWarpSize);
}

// A tensor seen as [outer, extent, inner] around one dimension: element (o, e, i) is at
// (o * extent + e) * inner + i, and the result of reducing over e is at o * inner + i.
struct DimSplit {
  int64_t outer;
  int64_t extent;
  int64_t inner;
};

// How a reduction with few output rows but a long extent is spread over the GPU. One block
// per row would leave all but a few SMs idle: sum(x) is a single row. Each row's extent is cut
// into `chunks` pieces of `length` values, one block per (row, piece), and a second pass
// reduces the [rows, chunks] partial results. The cut depends on the shape only, so the order
// of the additions, and with it the result, is the same on every run.
struct ChunkPlan {
  int64_t chunks;  // 1: a single pass, one block per row
  int64_t length;
};

inline ChunkPlan chunk_plan(int64_t rows, int64_t extent) {
  if (extent <= 0) return {1, 0};  // an empty extent: one pass that writes the empty result
  constexpr int64_t kTargetBlocks = 1024;  // a few waves on an A100 or H100 (108 or 132 SMs)
  constexpr int64_t kMinLength = 4096;     // below this a block has too little to read
  int64_t wanted = std::clamp<int64_t>((kTargetBlocks + rows - 1) / std::max<int64_t>(rows, 1), 1,
                                       std::max<int64_t>((extent + kMinLength - 1) / kMinLength, 1));
  int64_t length = std::max<int64_t>((extent + wanted - 1) / wanted, 1);
  return {(extent + length - 1) / length, length};  // no empty piece
}

inline DimSplit split_at(const Shape& shape, int64_t dim) {
  DimSplit split{1, shape[dim], 1};
  for (int64_t d = 0; d < dim; ++d) split.outer *= shape[d];
  for (size_t d = dim + 1; d < shape.size(); ++d) split.inner *= shape[d];
  return split;
}

inline Shape reduced_shape(const Shape& shape, int64_t dim, bool keepdim) {
  Shape out = shape;
  if (keepdim) out[dim] = 1;
  else out.erase(out.begin() + dim);
  return out;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};

template <typename T>
__device__ T shuffle_down(T value, int offset) {
  return __shfl_down_sync(kFullWarpMask, value, offset);
}

// Lane 0 gets the combination of the warp's 32 values.
template <typename T, typename Combine>
__device__ T warp_reduce(T value, Combine combine) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value = combine(value, shuffle_down(value, offset));
  return value;
}

// Every thread gets the combination of one value per thread of the block. blockDim.x must be
// a multiple of the warp size and every thread must call it. It ends with a barrier, so it can
// be called again straight away (softmax reduces twice per row).
template <typename T, typename Combine>
__device__ T block_reduce(T value, Combine combine) {
  __shared__ T warp_results[kWarpSize];
  __shared__ T block_result;
  int lane = threadIdx.x % kWarpSize;
  int warp = threadIdx.x / kWarpSize;
  value = warp_reduce(value, combine);
  if (lane == 0) warp_results[warp] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    T total = warp_results[0];
    for (int w = 1; w < static_cast<int>(blockDim.x) / kWarpSize; ++w) total = combine(total, warp_results[w]);
    block_result = total;
  }
  __syncthreads();
  T result = block_result;
  __syncthreads();
  return result;
}

// A candidate maximum; index < 0 marks "no candidate" (threads past the end of the row).
template <typename T>
struct ValueIndex {
  T value;
  int64_t index;
};

template <typename T>
__device__ ValueIndex<T> shuffle_down(ValueIndex<T> candidate, int offset) {
  return {__shfl_down_sync(kFullWarpMask, candidate.value, offset),
          __shfl_down_sync(kFullWarpMask, candidate.index, offset)};
}

template <typename T>
__device__ bool is_nan(T value) {
  return value != value;  // false for every integer
}

// The larger of two candidates: NaN beats numbers, then the larger value, then the lower index.
// Commutative and associative, so the order of a tree reduction cannot change the answer.
struct ArgMaxOp {
  template <typename T>
  __device__ ValueIndex<T> operator()(ValueIndex<T> a, ValueIndex<T> b) const {
    if (a.index < 0) return b;
    if (b.index < 0) return a;
    if (is_nan(a.value) != is_nan(b.value)) return is_nan(a.value) ? a : b;
    if (a.value > b.value) return a;
    if (b.value > a.value) return b;
    return a.index < b.index ? a : b;
  }
};

}  // namespace cuda
}  // namespace tinymoe

// for (int64_t i = global thread index; i < count; i += all threads of the grid)
#define TINYMOE_GRID_STRIDE_LOOP(i, count)                                                     \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (count); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
