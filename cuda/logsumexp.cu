// logsumexp along one dimension (one block per output element) and its backward (elementwise):
//   logsumexp(x) = m + log sum_e exp(x_e - m), m the row maximum;
//   dx_e = g * exp(x_e - logsumexp(x)) = g * softmax(x)_e.
#include <cmath>

#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace tinymoe {
namespace cuda {
namespace {

// A non-finite row maximum is the answer itself, as on the CPU (ops/softmax.cpp): -inf for an
// empty or all -inf row, +inf when the row holds +inf. NaN entries never win MaxOp, so they
// reach the answer through the sum of exponentials (NaN).
template <typename T>
__global__ void logsumexp_kernel(const T* in, T* out, DimSplit split) {
  const T negative_infinity = -static_cast<T>(INFINITY);
  for (int64_t row = blockIdx.x; row < split.outer * split.inner; row += gridDim.x) {
    const T* x = in + (row / split.inner) * split.extent * split.inner + row % split.inner;
    T partial_max = negative_infinity;
    for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x)
      partial_max = MaxOp()(partial_max, x[e * split.inner]);
    T row_max = block_reduce(partial_max, MaxOp());
    bool finite = isfinite(row_max);  // the same for every thread of the block
    T partial_sum = T(0);
    if (finite)
      for (int64_t e = threadIdx.x; e < split.extent; e += blockDim.x)
        partial_sum += ::exp(x[e * split.inner] - row_max);
    T row_sum = block_reduce(partial_sum, SumOp());  // called by every thread, as block_reduce requires
    if (threadIdx.x == 0) out[row] = finite ? row_max + ::log(row_sum) : row_max;
  }
}

// Element p = (o * extent + e) * inner + i belongs to row o * inner + i of grad_out and out.
template <typename T>
__global__ void logsumexp_backward_kernel(const T* grad_out, const T* x, const T* out, T* grad_x, int64_t count,
                                          DimSplit split) {
  TINYMOE_GRID_STRIDE_LOOP(p, count) {
    int64_t row = (p / (split.extent * split.inner)) * split.inner + p % split.inner;
    grad_x[p] = grad_out[row] * ::exp(x[p] - out[row]);
  }
}

}  // namespace

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  check_cuda_tensor(x, "logsumexp", "x");
  check_floating(x, "logsumexp", "x");
  dim = normalize_dim(dim, x.dim(), "logsumexp");
  DimSplit split = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype(), x.device());
  int64_t rows = split.outer * split.inner;
  if (rows == 0) return out;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    logsumexp_kernel<<<static_cast<unsigned>(std::min(rows, kMaxGridBlocks)), reduce_threads(split.extent)>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

Tensor logsumexp_backward(const Tensor& grad_out, const Tensor& x, const Tensor& out, int64_t dim) {
  check_cuda_tensor(grad_out, "logsumexp", "grad_out");
  check_cuda_tensor(x, "logsumexp", "x");
  check_cuda_tensor(out, "logsumexp", "out");
  check_same_device(grad_out, x, "logsumexp");
  check_same_device(out, x, "logsumexp");
  check_floating(x, "logsumexp", "x");
  TINYMOE_CHECK(grad_out.dtype() == x.dtype() && out.dtype() == x.dtype(), "logsumexp",
                "expected grad_out and out of x's dtype ", dtype_name(x.dtype()), ", got ",
                dtype_name(grad_out.dtype()), " and ", dtype_name(out.dtype()));
  dim = normalize_dim(dim, x.dim(), "logsumexp");
  DimSplit split = split_at(x.shape(), dim);
  TINYMOE_CHECK(grad_out.shape() == out.shape() && out.numel() == split.outer * split.inner, "logsumexp",
                "expected grad_out and out of one shape with ", split.outer * split.inner, " elements for x ",
                shape_str(x.shape()), " reduced along dim ", dim, ", got ", shape_str(grad_out.shape()), " and ",
                shape_str(out.shape()));
  Tensor grad_x = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return grad_x;
  DeviceGuard guard(x.device());
  dispatch_floating(x.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    logsumexp_backward_kernel<<<grid_for(x.numel()), kBlockThreads>>>(
        static_cast<const T*>(grad_out.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const T*>(out.raw_data()), static_cast<T*>(grad_x.raw_data()), x.numel(), split);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace cuda
}  // namespace tinymoe
