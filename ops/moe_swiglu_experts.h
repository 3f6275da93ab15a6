// moe_swiglu_experts: a MoE layer's dispatch, SwiGLU experts and weighted combine as one op,
// run expert by expert so each expert's rows stay in cache (the CPU analogue of ScatterMoE,
// Tan et al. 2024, "Scattered Mixture-of-Experts Implementation": gather and scatter fused
// into the grouped GEMMs, no [P, d] copy of the tokens kept).
//
// With P kept (token, expert, weight) pairs sorted by expert (nn/dispatch.h's plan):
//
//   y[t] = sum over pairs i with sorted_token[i] == t of
//          sorted_weight[i] * expert_e(x[t]),     e the expert whose rows contain i,
//   expert_e(v) = (silu(v w1[e]) * (v w3[e])) w2[e]                     (SwiGLU, Mixtral)
//
// x [T, d]; sorted_token i64 [P] in [0, T); sorted_weight [P] or [P, 1] of x's dtype; offsets
// i64 [E+1] (rows offsets[e] .. offsets[e+1] of the sorted pairs belong to expert e, as
// grouped_matmul's); w1, w3 [E, d, f]; w2 [E, f, d]; all floating of one dtype, on the cpu.
// Returns y [T, d]; a token no pair names gets a zero row. Pairs are added in order: the
// result is deterministic.
//
// Equal (up to rounding order) to the composed path
//   weighted_scatter_add(grouped_matmul(swiglu(grouped_matmul(x_perm, w1), grouped_matmul(x_perm, w3)), w2),
//                        sorted_token, sorted_weight),   x_perm = index_select(x, sorted_token)
// but it never materialises x_perm, the expert outputs or their gradients as [P, d] tensors:
// per expert, the rows are gathered into a small buffer, run through the three GEMMs and
// scattered back. It saves [P, 2f] pre-activations and the [P, f] activation for backward.
//
// Gradients: x, sorted_weight, w1, w3 and w2 (sorted_token and offsets are indices). With g the
// output gradient, G_i = g[t_i] w2[e]^T and a_i the activation row of pair i:
//   d sorted_weight[i] = <a_i, G_i>           (= <g[t_i], expert_e(x[t_i])>)
//   d w2[e]            = sum_i a_i^T (w_i g[t_i]),
//   d a_i              = w_i G_i -> SwiGLU backward -> d h1_i, d h3_i,
//   d w1[e] = sum_i x[t_i]^T d h1_i,  d w3[e] likewise,  d x[t_i] += d h1_i w1[e]^T + d h3_i w3[e]^T.
// An expert with no rows gets zero weight gradients.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor moe_swiglu_experts(const Tensor& x, const Tensor& sorted_token, const Tensor& sorted_weight,
                          const Tensor& offsets, const Tensor& w1, const Tensor& w3, const Tensor& w2);

}  // namespace tinymoe
