// grouped_matmul: the segmented GEMM that runs a Mixture-of-Experts layer's experts in one op.
//
// x [N, k] holds the rows of all experts back to back (tokens sorted by expert); offsets i64
// [E+1] marks where each expert's rows start: rows offsets[e] .. offsets[e+1] of x belong to
// expert e. offsets[0] == 0, offsets is non-decreasing, offsets[E] == N; an expert with no rows
// (an empty group) is allowed and gives no output rows.
//
//   out[offsets[e]:offsets[e+1]] = x[offsets[e]:offsets[e+1]] w[e]
//
// w is [E, k, n], or [E, n, k] with transpose_weight (the HuggingFace nn.Linear layout, where
// w[e] is applied as w[e]^T). The result is [N, n], of x's dtype (f32 or f64).
//
// Gradients: x and w get them, offsets none (it is an index). With dy_e the rows of the output
// gradient of expert e,
//   dx_e = dy_e w[e]^T    (itself a grouped GEMM over the same offsets),
//   dw[e] = x_e^T dy_e    (dy_e^T x_e with transpose_weight); zero for an empty group.
//
// Every expert's GEMM runs through tinymoe::gemm (ops/gemm.h) directly on row-major slices of
// x, w and the output: no rows are copied.
#pragma once

#include <cstdint>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets, bool transpose_weight = false);

// The group boundaries copied to the host, after checking them as above: offsets i64
// [groups + 1] on `device` (x's), offsets[0] == 0, non-decreasing, offsets[groups] == rows.
// Errors name `op`.
std::vector<int64_t> checked_group_offsets(const Tensor& offsets, Device device, int64_t groups, int64_t rows,
                                           const char* op);

}  // namespace tinymoe
