// The backward of the weighted MoE combine (cuda/scatter_add.cu's weighted_scatter_add):
// each pair p reads back its token's gradient row g[index[p]],
//   d_source[p, :] = weight[p] * g[index[p], :]   (one thread per element)
//   d_weight[p]    = <g[index[p], :], source[p, :]> (one block per pair, a fixed reduction tree)
#include "cuda/index.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__global__ void weighted_rows_kernel(const T* grad, const int64_t* index, const T* weight, T* d_source, int64_t pairs,
                                     int64_t width) {
  TINYMOE_GRID_STRIDE_LOOP(i, pairs * width) {
    int64_t pair = i / width;
    d_source[i] = weight[pair] * grad[index[pair] * width + i % width];
  }
}

template <typename T>
__global__ void row_dot_kernel(const T* grad, const int64_t* index, const T* source, T* d_weight, int64_t pairs,
                               int64_t width) {
  for (int64_t pair = blockIdx.x; pair < pairs; pair += gridDim.x) {
    const T* grad_row = grad + index[pair] * width;
    const T* source_row = source + pair * width;
    T partial = T(0);
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) partial += grad_row[j] * source_row[j];
    T total = block_reduce(partial, SumOp());
    if (threadIdx.x == 0) d_weight[pair] = total;
  }
}

void check_like(const Tensor& tensor, const Tensor& grad, const char* name) {
  check_cuda_tensor(tensor, "weighted_scatter_add", name);
  check_same_device(tensor, grad, "weighted_scatter_add");
  check_dtype(tensor, grad.dtype(), "weighted_scatter_add", name);
}

}  // namespace

WeightedScatterGrads weighted_scatter_add_backward(const Tensor& grad, const Tensor& source, const Tensor& index,
                                                   const Tensor& weight, bool want_source, bool want_weight) {
  const char* op = "weighted_scatter_add";
  check_cuda_tensor(grad, op, "grad");
  check_floating(grad, op, "grad");
  check_dim(grad, 2, op, "grad");
  check_cuda_tensor(index, op, "index");
  check_same_device(grad, index, op);
  check_dtype(index, DType::i64, op, "index");
  check_dim(index, 1, op, "index");
  check_like(weight, grad, "weight");
  int64_t pairs = index.numel(), width = grad.size(1);
  TINYMOE_CHECK(weight.numel() == pairs, op, "expected ", pairs, " weights, got shape ", shape_str(weight.shape()));
  if (want_weight) {
    check_like(source, grad, "source");
    TINYMOE_CHECK(source.shape() == Shape({pairs, width}), op, "expected source of shape [", pairs, ", ", width,
                  "], got ", shape_str(source.shape()));
  }
  WeightedScatterGrads grads;
  if (want_source) grads.d_source = Tensor::empty({pairs, width}, grad.dtype(), grad.device());
  if (want_weight) grads.d_weight = Tensor::empty({pairs}, grad.dtype(), grad.device());
  if (pairs == 0) return grads;
  DeviceGuard guard(grad.device());
  dispatch_floating(grad.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(grad.raw_data());
    const int64_t* rows = static_cast<const int64_t*>(index.raw_data());
    if (want_source && width > 0) {
      weighted_rows_kernel<<<grid_for(pairs * width), kBlockThreads>>>(
          g, rows, static_cast<const T*>(weight.raw_data()), static_cast<T*>(grads.d_source.raw_data()), pairs, width);
      TINYMOE_CUDA_CHECK_LAUNCH();
    }
    if (want_weight) {
      unsigned blocks = static_cast<unsigned>(std::min(pairs, kMaxGridBlocks));
      row_dot_kernel<<<blocks, reduce_threads(width)>>>(g, rows, static_cast<const T*>(source.raw_data()),
                                                        static_cast<T*>(grads.d_weight.raw_data()), pairs, width);
      TINYMOE_CUDA_CHECK_LAUNCH();
    }
  });
  return grads;
}

}  // namespace cuda
}  // namespace tinymoe
