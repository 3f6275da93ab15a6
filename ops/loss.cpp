#include "ops/loss.h"

#include <algorithm>
#include <cmath>

#include "ops/cuda_dispatch.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/fused.h"
#endif

namespace tinymoe {
namespace {

void check_arguments(const Tensor& logits, const Tensor& targets) {
  check_floating(logits, "cross_entropy", "logits");
  check_dim(logits, 2, "cross_entropy", "logits");
  check_dtype(targets, DType::i64, "cross_entropy", "targets");
  check_same_device(logits, targets, "cross_entropy");
  check_has_kernel(logits, "cross_entropy");
  TINYMOE_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), "cross_entropy", "expected targets of shape [",
                logits.size(0), "] for logits ", shape_str(logits.shape()), ", got ", shape_str(targets.shape()));
  TINYMOE_CHECK(logits.size(1) >= 1, "cross_entropy", "expected at least one class, got logits ",
                shape_str(logits.shape()));
}

// On the host, for cpu targets (the cuda kernels check theirs on the device).
void check_targets_in_range(const Tensor& targets, int64_t classes, int64_t ignore_index) {
  const int64_t* target = targets.data<int64_t>();
  for (int64_t row = 0, end = targets.numel(); row < end; ++row)
    TINYMOE_CHECK(target[row] == ignore_index || (target[row] >= 0 && target[row] < classes), "cross_entropy",
                  "target ", target[row], " of row ", row, " out of range for ", classes, " classes (ignore_index is ",
                  ignore_index, ")");
}

// logsumexp of one row, shifted by its maximum so no exp overflows.
template <typename T>
double row_logsumexp(const T* row, int64_t classes) {
  double shift = *std::max_element(row, row + classes);
  if (!std::isfinite(shift)) return shift;
  double total = 0;
  for (int64_t c = 0; c < classes; ++c)
    total += std::exp(static_cast<T>(row[c] - shift));  // expf for f32: fast, exact enough
  return shift + std::log(total);
}

// The loss and what the backward needs: each row's logsumexp (f64 [N], kept in double) and the
// number of kept rows (i64 [1]), on the logits' device.
struct Forward {
  Tensor loss;
  Tensor row_lse;
  Tensor kept;
};

Forward forward_on_cpu(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  check_targets_in_range(targets, classes, ignore_index);
  const int64_t* target = targets.data<int64_t>();
  Tensor row_lse = Tensor::empty({rows}, DType::f64, logits.device());
  double total = 0;
  int64_t kept = 0;
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* values = logits.data<T>();
    double* lse = row_lse.data<double>();
    for (int64_t row = 0; row < rows; ++row) {
      if (target[row] == ignore_index) continue;
      lse[row] = row_logsumexp(values + row * classes, classes);
      total += lse[row] - values[row * classes + target[row]];
      ++kept;
    }
  });
  Tensor loss = full({}, kept > 0 ? total / static_cast<double>(kept) : 0.0, logits.dtype(), logits.device());
  return {loss, row_lse, full({1}, static_cast<double>(kept), DType::i64, logits.device())};
}

// g / M * (softmax(logits_n) - onehot(targets_n)) on kept rows, 0 on ignored ones.
Tensor backward_on_cpu(const Tensor& grad, const Tensor& logits, const Tensor& targets, const Forward& forward,
                       int64_t ignore_index) {
  Tensor dlogits = zeros(logits.shape(), logits.dtype(), logits.device());
  int64_t kept = forward.kept.data<int64_t>()[0];
  if (kept == 0) return dlogits;
  int64_t rows = logits.size(0), classes = logits.size(1);
  const int64_t* target = targets.data<int64_t>();
  const double* lse = forward.row_lse.data<double>();
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    double scale = static_cast<double>(grad.data<T>()[0]) / static_cast<double>(kept);
    const T* values = logits.data<T>();
    T* result = dlogits.data<T>();
    for (int64_t row = 0; row < rows; ++row) {
      if (target[row] == ignore_index) continue;
      for (int64_t c = 0; c < classes; ++c)  // softmax(logits_n) - onehot(target_n)
        result[row * classes + c] = static_cast<T>(
            scale * (std::exp(static_cast<T>(values[row * classes + c] - lse[row])) - (c == target[row])));
    }
  });
  return dlogits;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_arguments(logits, targets);
  Forward forward;
#ifdef TINYMOE_WITH_CUDA
  if (logits.device().is_cuda()) {
    cuda::CrossEntropyForward on_device = cuda::cross_entropy(logits, targets, ignore_index);
    forward = {on_device.loss, on_device.row_logsumexp, on_device.kept};
  } else
#endif
    forward = forward_on_cpu(logits, targets, ignore_index);
  if (!needs_record({&logits})) return forward.loss;
  Tensor saved_logits = logits.detach(), saved_targets = targets.detach();
  Forward saved{Tensor(), forward.row_lse, forward.kept};  // the loss itself would hold its own record
  record("cross_entropy", {logits, targets}, {forward.loss},
         [saved_logits, saved_targets, saved, ignore_index](const TensorList& grads) -> TensorList {
#ifdef TINYMOE_WITH_CUDA
           if (saved_logits.device().is_cuda())
             return {cuda::cross_entropy_backward(grads[0], saved_logits, saved_targets,
                                                  {Tensor(), saved.row_lse, saved.kept}, ignore_index),
                     Tensor()};
#endif
           return {backward_on_cpu(grads[0], saved_logits, saved_targets, saved, ignore_index), Tensor()};
         });
  return forward.loss;
}

}  // namespace tinymoe
