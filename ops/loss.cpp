#include "ops/loss.h"

#include <algorithm>
#include <cmath>

#include "tinymoe/autograd.h"

namespace tinymoe {
namespace {

void check_arguments(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_floating(logits, "cross_entropy", "logits");
  check_dim(logits, 2, "cross_entropy", "logits");
  check_dtype(targets, DType::i64, "cross_entropy", "targets");
  check_same_device(logits, targets, "cross_entropy");
  check_cpu(logits, "cross_entropy");
  TINYMOE_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), "cross_entropy", "expected targets of shape [",
                logits.size(0), "] for logits ", shape_str(logits.shape()), ", got ", shape_str(targets.shape()));
  int64_t classes = logits.size(1);
  TINYMOE_CHECK(classes >= 1, "cross_entropy", "expected at least one class, got logits ", shape_str(logits.shape()));
  const int64_t* target = targets.data<int64_t>();
  for (int64_t row = 0; row < targets.numel(); ++row)
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

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_arguments(logits, targets, ignore_index);
  int64_t rows = logits.size(0), classes = logits.size(1);
  const int64_t* target = targets.data<int64_t>();
  // Per-row logsumexp, kept in double for the backward.
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
  if (!needs_record({&logits})) return loss;
  Tensor saved_logits = logits.detach(), saved_targets = targets.detach();
  record("cross_entropy", {logits, targets}, {loss},
         [saved_logits, saved_targets, row_lse, ignore_index, kept](const TensorList& grads) -> TensorList {
           Tensor dlogits = zeros(saved_logits.shape(), saved_logits.dtype(), saved_logits.device());
           if (kept == 0) return {dlogits, Tensor()};
           int64_t rows = saved_logits.size(0), classes = saved_logits.size(1);
           const int64_t* target = saved_targets.data<int64_t>();
           const double* lse = row_lse.data<double>();
           dispatch_floating(saved_logits.dtype(), "cross_entropy", [&](auto tag) {
             using T = typename decltype(tag)::type;
             double scale = static_cast<double>(grads[0].data<T>()[0]) / static_cast<double>(kept);
             const T* values = saved_logits.data<T>();
             T* result = dlogits.data<T>();
             for (int64_t row = 0; row < rows; ++row) {
               if (target[row] == ignore_index) continue;
               for (int64_t c = 0; c < classes; ++c)  // softmax(logits_n) - onehot(target_n)
                 result[row * classes + c] = static_cast<T>(
                     scale * (std::exp(static_cast<T>(values[row * classes + c] - lse[row])) - (c == target[row])));
             }
           });
           return {dlogits, Tensor()};
         });
  return loss;
}

}  // namespace tinymoe
