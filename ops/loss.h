// Cross-entropy over class logits, as torch.nn.functional.cross_entropy with reduction='mean':
//   loss = (1 / M) * sum over kept rows n of (logsumexp(logits_n) - logits_n[targets_n])
// logits [N, C] floating (C >= 1), targets i64 [N]. A row whose target equals ignore_index is
// skipped; M counts the kept rows. Every other target must lie in [0, C), else an Error.
// Returns a 0-dimensional tensor of logits' dtype. One fused op (stable: logsumexp shifts by the
// row maximum); logits get the gradient g / M * (softmax(logits_n) - onehot(targets_n)) on kept
// rows and 0 on ignored ones; targets get none.
// When every row is ignored (or N == 0) the loss is 0 with an all-zero gradient; torch returns
// NaN there, but a batch of padding should not poison a training run.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace tinymoe
