// RMSNorm (Zhang & Sennrich 2019) over the last dimension, forward and backward: one block per
// row reduces the row's statistics in double with a fixed tree (deterministic), as the CPU
// keeps them in double. The weight gradient sums over rows, one block per column.
#include "cuda/allocator.h"
#include "cuda/fused.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

// r = 1 / sqrt(mean(x^2) + eps) of one row, for every thread of the block.
template <typename T>
__device__ double inverse_rms(const T* row, int64_t width, double eps) {
  double squares = 0;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) squares += static_cast<double>(row[j]) * row[j];
  return 1.0 / sqrt(block_reduce(squares, SumOp()) / static_cast<double>(width) + eps);
}

template <typename T>
__global__ void rms_norm_kernel(const T* x, const T* weight, T* out, int64_t rows, int64_t width, double eps) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* in = x + row * width;
    double r = inverse_rms(in, width, eps);
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x)
      out[row * width + j] = static_cast<T>(in[j] * r * (weight ? static_cast<double>(weight[j]) : 1.0));
  }
}

// dx of each row; row_scale[row] = r when the weight gradient needs it (row_scale not null).
template <typename T>
__global__ void rms_norm_backward_kernel(const T* x, const T* weight, const T* grad, T* dx, double* row_scale,
                                         int64_t rows, int64_t width, double eps) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* in = x + row * width;
    const T* g = grad + row * width;
    double r = inverse_rms(in, width, eps);
    double partial = 0;
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
      double dn = weight ? static_cast<double>(g[j]) * weight[j] : g[j];
      partial += dn * in[j] * r;
    }
    double mean_dn_n = block_reduce(partial, SumOp()) / static_cast<double>(width);
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
      double dn = weight ? static_cast<double>(g[j]) * weight[j] : g[j];
      dx[row * width + j] = static_cast<T>(r * (dn - in[j] * r * mean_dn_n));
    }
    if (row_scale && threadIdx.x == 0) row_scale[row] = r;
  }
}

// dweight[j] = sum over rows of g * x * r, one block per column.
template <typename T>
__global__ void rms_norm_weight_grad_kernel(const T* x, const T* grad, const double* row_scale, T* dweight,
                                            int64_t rows, int64_t width) {
  for (int64_t column = blockIdx.x; column < width; column += gridDim.x) {
    double partial = 0;
    for (int64_t row = threadIdx.x; row < rows; row += blockDim.x) {
      int64_t at = row * width + column;
      partial += static_cast<double>(grad[at]) * x[at] * row_scale[row];
    }
    double total = block_reduce(partial, SumOp());
    if (threadIdx.x == 0) dweight[column] = static_cast<T>(total);
  }
}

unsigned blocks_for(int64_t count) { return static_cast<unsigned>(std::clamp<int64_t>(count, 1, kMaxGridBlocks)); }

void check_arguments(const Tensor& x, const Tensor& weight, double eps) {
  check_cuda_tensor(x, "rms_norm", "x");
  check_floating(x, "rms_norm", "x");
  TINYMOE_CHECK(x.dim() >= 1 && x.shape().back() >= 1, "rms_norm", "expected x of shape [..., d] with d >= 1, got ",
                shape_str(x.shape()));
  TINYMOE_CHECK(eps >= 0, "rms_norm", "expected eps >= 0, got ", eps);
  if (!weight.defined()) return;
  check_same_device(x, weight, "rms_norm");
  check_dtype(weight, x.dtype(), "rms_norm", "weight");
  TINYMOE_CHECK(weight.dim() == 1 && weight.size(0) == x.shape().back(), "rms_norm", "expected weight of shape [",
                x.shape().back(), "] for x ", shape_str(x.shape()), ", got ", shape_str(weight.shape()));
}

template <typename T>
const T* optional_data(const Tensor& tensor) {
  return tensor.defined() ? static_cast<const T*>(tensor.raw_data()) : nullptr;
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_arguments(x, weight, eps);
  int64_t width = x.shape().back(), rows = x.numel() / width;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rms_norm_kernel<<<blocks_for(rows), reduce_threads(width)>>>(static_cast<const T*>(x.raw_data()),
                                                                 optional_data<T>(weight),
                                                                 static_cast<T*>(out.raw_data()), rows, width, eps);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

RmsNormGrads rms_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, double eps,
                               bool want_weight) {
  check_arguments(x, weight, eps);
  check_cuda_tensor(grad, "rms_norm", "grad");
  check_same_device(grad, x, "rms_norm");
  check_dtype(grad, x.dtype(), "rms_norm", "grad");
  TINYMOE_CHECK(grad.shape() == x.shape(), "rms_norm", "expected grad of shape ", shape_str(x.shape()), ", got ",
                shape_str(grad.shape()));
  TINYMOE_CHECK(!want_weight || weight.defined(), "rms_norm", "a weight gradient needs a weight");
  int64_t width = x.shape().back(), rows = x.numel() / width;
  RmsNormGrads grads{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor()};
  if (want_weight) grads.dweight = Tensor::empty(weight.shape(), weight.dtype(), weight.device());
  DeviceGuard guard(x.device());
  DeviceBuffer row_scale(static_cast<size_t>(want_weight ? std::max<int64_t>(rows, 1) : 1) * sizeof(double),
                         x.device());
  dispatch_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x_values = static_cast<const T*>(x.raw_data());
    const T* g = static_cast<const T*>(grad.raw_data());
    double* scales = want_weight ? static_cast<double*>(row_scale.data()) : nullptr;
    if (rows > 0) {
      rms_norm_backward_kernel<<<blocks_for(rows), reduce_threads(width)>>>(
          x_values, optional_data<T>(weight), g, static_cast<T*>(grads.dx.raw_data()), scales, rows, width, eps);
      TINYMOE_CUDA_CHECK_LAUNCH();
    }
    if (want_weight) {
      rms_norm_weight_grad_kernel<<<blocks_for(width), reduce_threads(rows)>>>(
          x_values, g, scales, static_cast<T*>(grads.dweight.raw_data()), rows, width);
      TINYMOE_CUDA_CHECK_LAUNCH();
    }
  });
  return grads;
}

}  // namespace cuda
}  // namespace tinymoe
