// The fused layer ops of ops/norm.h, ops/loss.h and ops/swiglu.h on a cuda device, forward and
// backward, with the CPU's formulas and precision (row statistics in double where the CPU keeps
// them in double). They compute without recording on the tape: the autograd stays in ops/*.cpp.
// Arguments are checked as the ops check them; errors are tinymoe::Error naming the op.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace cuda {

// RMSNorm over the last dim: y = x / sqrt(mean(x^2) + eps) * weight (weight may be undefined:
// no scale). One block per row.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
struct RmsNormGrads {
  Tensor dx;       // r * (dn - n * mean(dn * n)) with n = x r, dn = g * weight
  Tensor dweight;  // sum over rows of g * n (summed in double); undefined unless wanted
};
RmsNormGrads rms_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, double eps,
                               bool want_weight);

// Mean cross-entropy of logits [N, C] against targets [N] (i64, each in [0, C) or equal to
// ignore_index, checked on the device), over the kept rows; 0 when none is kept. Returns the
// 0-dimensional loss, the per-row logsumexp (f64 [N]) and the number of kept rows (i64 [1]),
// which stay on the device for the backward.
struct CrossEntropyForward {
  Tensor loss;
  Tensor row_logsumexp;
  Tensor kept;
};
CrossEntropyForward cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index);
// d logits = g / kept * (softmax(logits_n) - onehot(targets_n)) on kept rows, 0 on ignored ones;
// grad is the loss's 0-dimensional gradient.
Tensor cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyForward& forward, int64_t ignore_index);

// swiglu(gate, up) = gate * sigmoid(gate) * up, elementwise.
Tensor swiglu(const Tensor& gate, const Tensor& up);
// d gate = g * up * s * (1 + gate * (1 - s)) and d up = g * gate * s with s = sigmoid(gate);
// an output that is not wanted stays undefined. Returns {d gate, d up}.
TensorList swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up, bool want_gate, bool want_up);

}  // namespace cuda
}  // namespace tinymoe
