// softmax and log_softmax along one dimension, forward and backward: one block per row, two
// block reductions per row (max then sum forward; one dot product backward).
#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace tinymoe {
namespace cuda {
namespace {

enum class Kind { softmax, log_softmax };

template <typename T>
__global__ void softmax_forward_kernel(Kind kind, const T* in, T* out, DimSplit split) {
  for (int64_t row = blockIdx.x; row < split.outer * split.inner; row += gridDim.x) {
    int64_t first = (row / split.inner) * split.extent * split.inner + row % split.inner;
    const T* x = in + first;
    T* y = out + first;
    T partial_max = x[0];
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x) partial_max = MaxOp()(partial_max, x[e * split.inner]);
    T row_max = block_reduce(partial_max, MaxOp());
    T partial_sum = T(0);
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x) partial_sum += ::exp(x[e * split.inner] - row_max);
    T row_sum = block_reduce(partial_sum, SumOp());
    T log_sum = ::log(row_sum);
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x) {
      T shifted = x[e * split.inner] - row_max;
      y[e * split.inner] = kind == Kind::softmax ? ::exp(shifted) / row_sum : shifted - log_sum;
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy).
template <typename T>
__global__ void softmax_backward_kernel(Kind kind, const T* grad_out, const T* out, T* grad_in, DimSplit split) {
  for (int64_t row = blockIdx.x; row < split.outer * split.inner; row += gridDim.x) {
    int64_t first = (row / split.inner) * split.extent * split.inner + row % split.inner;
    const T* dy = grad_out + first;
    const T* y = out + first;
    T* dx = grad_in + first;
    T partial = T(0);
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x)
      partial += kind == Kind::softmax ? dy[e * split.inner] * y[e * split.inner] : dy[e * split.inner];
    T total = block_reduce(partial, SumOp());
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x) {
      int64_t at = e * split.inner;
      dx[at] = kind == Kind::softmax ? y[at] * (dy[at] - total) : dy[at] - ::exp(y[at]) * total;
    }
  }
}

const char* kind_name(Kind kind) { return kind == Kind::softmax ? "softmax" : "log_softmax"; }

unsigned row_blocks(const DimSplit& split) {
  return static_cast<unsigned>(std::min(split.outer * split.inner, kMaxGridBlocks));
}

Tensor forward(Kind kind, const Tensor& x, int64_t dim) {
  const char* name = kind_name(kind);
  check_cuda_tensor(x, name, "x");
  check_floating(x, name, "x");
  dim = normalize_dim(dim, x.dim(), name);
  DimSplit split = split_at(x.shape(), dim);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_forward_kernel<<<row_blocks(split), reduce_threads(split.extent)>>>(
        kind, static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return y;
}

Tensor backward(Kind kind, const Tensor& grad_y, const Tensor& y, int64_t dim) {
  const char* name = kind_name(kind);
  check_cuda_tensor(grad_y, name, "grad_y");
  check_cuda_tensor(y, name, "y");
  check_same_device(grad_y, y, name);
  check_floating(y, name, "y");
  TINYMOE_CHECK(grad_y.shape() == y.shape() && grad_y.dtype() == y.dtype(), name, "expected grad_y like y (",
                dtype_name(y.dtype()), " ", shape_str(y.shape()), "), got ", dtype_name(grad_y.dtype()), " ",
                shape_str(grad_y.shape()));
  dim = normalize_dim(dim, y.dim(), name);
  DimSplit split = split_at(y.shape(), dim);
  Tensor grad_x = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (y.numel() == 0) return grad_x;
  DeviceGuard guard(y.device());
  dispatch_floating(y.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward_kernel<<<row_blocks(split), reduce_threads(split.extent)>>>(
        kind, static_cast<const T*>(grad_y.raw_data()), static_cast<const T*>(y.raw_data()),
        static_cast<T*>(grad_x.raw_data()), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return forward(Kind::softmax, x, dim); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return forward(Kind::log_softmax, x, dim); }
Tensor softmax_backward(const Tensor& grad_y, const Tensor& y, int64_t dim) {
  return backward(Kind::softmax, grad_y, y, dim);
}
Tensor log_softmax_backward(const Tensor& grad_y, const Tensor& y, int64_t dim) {
  return backward(Kind::log_softmax, grad_y, y, dim);
}

}  // namespace cuda
}  // namespace tinymoe
