// Reductions. sum/mean differentiate their input; max differentiates the values (the gradient
// goes to the first maximal element, the one whose index is returned).
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor sum(const Tensor& x);                                        // all elements -> scalar
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);

struct ValuesIndices {
  Tensor values;
  Tensor indices;  // i64
};
// Maximum along dim; ties go to the lowest index.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // all elements -> scalar

// Sums x down to `shape` (the reverse of broadcasting): the gradient of a broadcast operand.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace tinymoe
