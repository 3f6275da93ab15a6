// Embedding lookup: out[..., :] = weight[ids[...], :].
//   weight [V, d] floating, ids i64 of any shape (a scalar id included) -> ids.shape + [d].
// Every id must lie in [0, V); otherwise an Error names the id and its position.
// Only weight gets a gradient: row v receives the sum of the output gradients of every position
// whose id is v (repeated ids accumulate), every other row zero. ids gets none.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace tinymoe
