// Mean cross-entropy over class logits, forward and backward, with the CPU's precision: each
// row's logsumexp is shifted by the row maximum and summed in double (one block per row, a
// fixed tree), the mean over kept rows is one block's reduction. The number of kept rows stays
// on the device, so neither direction waits for the host.
#include "cuda/fused.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

// Per row: logsumexp and lse - logits[target] (both 0 on an ignored row).
template <typename T>
__global__ void cross_entropy_rows_kernel(const T* logits, const int64_t* targets, double* row_lse, double* row_loss,
                                          int64_t rows, int64_t classes, int64_t ignore_index) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t target = targets[row];
    if (target == ignore_index) {  // the same for the whole block
      if (threadIdx.x == 0) row_lse[row] = row_loss[row] = 0;
      continue;
    }
    const T* values = logits + row * classes;
    T largest = values[0];
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) largest = MaxOp()(largest, values[c]);
    double shift = static_cast<double>(block_reduce(largest, MaxOp()));
    double lse = shift;  // an infinite maximum is the logsumexp itself
    if (isfinite(shift)) {
      double partial = 0;
      for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) partial += exp(static_cast<T>(values[c] - shift));
      lse = shift + log(block_reduce(partial, SumOp()));
    }
    if (threadIdx.x == 0) {
      row_lse[row] = lse;
      row_loss[row] = lse - static_cast<double>(values[target]);
    }
  }
}

// One block: loss = mean of the kept rows' terms (0 when none is kept), kept = their number.
template <typename T>
__global__ void cross_entropy_mean_kernel(const double* row_loss, const int64_t* targets, T* loss, int64_t* kept,
                                          int64_t rows, int64_t ignore_index) {
  double partial = 0;
  int64_t partial_kept = 0;
  for (int64_t row = threadIdx.x; row < rows; row += blockDim.x) {
    if (targets[row] == ignore_index) continue;
    partial += row_loss[row];
    ++partial_kept;
  }
  double total = block_reduce(partial, SumOp());
  int64_t count = block_reduce(partial_kept, SumOp());
  if (threadIdx.x == 0) {
    loss[0] = static_cast<T>(count > 0 ? total / static_cast<double>(count) : 0.0);
    kept[0] = count;
  }
}

// g / kept * (softmax - onehot), the difference taken in T as the CPU does.
template <typename T>
__global__ void cross_entropy_backward_kernel(const T* grad, const T* logits, const int64_t* targets,
                                              const double* row_lse, const int64_t* kept, T* dlogits, int64_t rows,
                                              int64_t classes, int64_t ignore_index) {
  TINYMOE_GRID_STRIDE_LOOP(i, rows * classes) {
    int64_t row = i / classes, target = targets[row];
    if (target == ignore_index) {
      dlogits[i] = T(0);
      continue;
    }
    double scale = static_cast<double>(grad[0]) / static_cast<double>(kept[0]);
    T probability = exp(static_cast<T>(logits[i] - row_lse[row]));
    dlogits[i] = static_cast<T>(scale * (probability - (i % classes == target ? T(1) : T(0))));
  }
}

void check_arguments(const Tensor& logits, const Tensor& targets) {
  check_cuda_tensor(logits, "cross_entropy", "logits");
  check_floating(logits, "cross_entropy", "logits");
  check_dim(logits, 2, "cross_entropy", "logits");
  check_cuda_tensor(targets, "cross_entropy", "targets");
  check_dtype(targets, DType::i64, "cross_entropy", "targets");
  check_same_device(logits, targets, "cross_entropy");
  TINYMOE_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), "cross_entropy", "expected targets of shape [",
                logits.size(0), "] for logits ", shape_str(logits.shape()), ", got ", shape_str(targets.shape()));
  TINYMOE_CHECK(logits.size(1) >= 1, "cross_entropy", "expected at least one class, got logits ",
                shape_str(logits.shape()));
}

template <typename T>
const T* in(const Tensor& tensor) {
  return static_cast<const T*>(tensor.raw_data());
}

}  // namespace

CrossEntropyForward cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_arguments(logits, targets);
  int64_t rows = logits.size(0), classes = logits.size(1);
  check_index_range_except(targets, classes, ignore_index, "cross_entropy");
  Device device = logits.device();
  CrossEntropyForward forward{Tensor::empty({}, logits.dtype(), device), Tensor::empty({rows}, DType::f64, device),
                              Tensor::empty({1}, DType::i64, device)};
  Tensor row_loss = Tensor::empty({rows}, DType::f64, device);
  DeviceGuard guard(device);
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (rows > 0) {
      unsigned blocks = static_cast<unsigned>(std::min(rows, kMaxGridBlocks));
      cross_entropy_rows_kernel<<<blocks, reduce_threads(classes)>>>(
          in<T>(logits), in<int64_t>(targets), static_cast<double*>(forward.row_logsumexp.raw_data()),
          static_cast<double*>(row_loss.raw_data()), rows, classes, ignore_index);
      TINYMOE_CUDA_CHECK_LAUNCH();
    }
    cross_entropy_mean_kernel<<<1, kBlockThreads>>>(in<double>(row_loss), in<int64_t>(targets),
                                                    static_cast<T*>(forward.loss.raw_data()),
                                                    static_cast<int64_t*>(forward.kept.raw_data()), rows, ignore_index);
    TINYMOE_CUDA_CHECK_LAUNCH();
  });
  return forward;
}

Tensor cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyForward& forward, int64_t ignore_index) {
  check_arguments(logits, targets);
  check_cuda_tensor(grad, "cross_entropy", "grad");
  check_same_device(grad, logits, "cross_entropy");
  check_dtype(grad, logits.dtype(), "cross_entropy", "grad");
  TINYMOE_CHECK(grad.numel() == 1, "cross_entropy", "expected a one-element loss gradient, got shape ",
                shape_str(grad.shape()));
  int64_t rows = logits.size(0), classes = logits.size(1);
  TINYMOE_CHECK(forward.row_logsumexp.defined() && forward.row_logsumexp.numel() == rows && forward.kept.defined(),
                "cross_entropy", "expected the forward's row statistics for ", rows, " rows");
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  if (dlogits.numel() == 0) return dlogits;
  DeviceGuard guard(logits.device());
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_backward_kernel<<<grid_for(dlogits.numel()), kBlockThreads>>>(
        in<T>(grad), in<T>(logits), in<int64_t>(targets), in<double>(forward.row_logsumexp),
        in<int64_t>(forward.kept), static_cast<T*>(dlogits.raw_data()), rows, classes, ignore_index);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return dlogits;
}

}  // namespace cuda
}  // namespace tinymoe
