// nn/dispatch.h: the token permutation of a sparse MoE block (Megatron-LM's
// permute / unpermute, dropless), as reusable functions over a Routing's pairs.
//
// A routing rule gives P kept (token, expert, weight) pairs (nn/routing.h). With T tokens of
// width d and E experts:
//
//   plan_dispatch:   pair_order        = argsort(pair_expert)             i64 [P]  (stable: within an
//                                                                                  expert, pair order)
//                    sorted_token      = pair_token[pair_order]          i64 [P]
//                    sorted_weight     = pair_weight[pair_order]             [P, 1] (differentiable)
//                    tokens_per_expert = bincount(pair_expert, minlength E)  i64 [E]
//                    offsets           = [0, cumsum(tokens_per_expert)]  i64 [E+1]
//   dispatch_tokens: x_perm = index_select(x, sorted_token)                  [P, d]
//   (experts:        y_perm = expert_e(x_perm rows offsets[e]..offsets[e+1]) [P, d])
//   combine_outputs: y = scatter_add(zeros [T, d], sorted_token, y_perm * sorted_weight)
//
// Llama 4 weighs the expert's input instead (Routing::weight_on_expert_input): dispatch_tokens
// returns x_perm * sorted_weight and combine_outputs sums y_perm unweighted, so
// y_t = sum_e expert_e(w_te x_t) rather than sum_e w_te expert_e(x_t); the two differ because the
// experts are nonlinear.
//
// A token no kept pair names gets a zero row (capacity drops contribute nothing). Gradients:
// x gets them through dispatch_tokens (backward: scatter_add), y_perm and pair_weight through
// combine_outputs (backward: index_select, and the row dot product y_perm . g for the weights).
// The index math is O(P) (a counting sort on the expert ids) and copies only what the GEMMs need.
#pragma once

#include <cstdint>

#include "nn/routing.h"

namespace tinymoe {
namespace nn {

struct DispatchPlan {
  int64_t num_tokens = 0;    // T: rows of the combined output
  Tensor pair_order;         // i64 [P]: pair indices sorted by expert, stable
  Tensor sorted_token;       // i64 [P]: token of each sorted pair, the row x_perm takes
  Tensor sorted_weight;      // [P, 1]: combine weight of each sorted pair (pair_weight's history)
  Tensor tokens_per_expert;  // i64 [E]: kept pairs per expert
  Tensor offsets;            // i64 [E+1]: rows offsets[e] .. offsets[e+1] of x_perm belong to expert e
  // Routing::weight_on_expert_input: the pair weight scales the expert's input at dispatch (Llama 4)
  // instead of its output at combine.
  bool weight_on_expert_input = false;
};

// Checks that routing's pairs are consistent for T = num_tokens tokens and E = num_experts
// experts: pair_token and pair_expert defined i64 [P], pair_weight defined [P] of weight_dtype,
// every expert in [0, E), every token in [0, T). Throws an Error naming `op` otherwise.
void check_routing(const Routing& routing, int64_t num_tokens, int64_t num_experts, DType weight_dtype,
                   const char* op = "moe_dispatch");

// Checks the routing (as check_routing, naming op) and builds the plan. Not differentiable
// itself: sorted_weight carries pair_weight's gradient path.
DispatchPlan plan_dispatch(const Routing& routing, int64_t num_tokens, int64_t num_experts, DType weight_dtype,
                           const char* op = "moe_dispatch");

// x [T, d] -> x_perm [P, d], row i = x[sorted_token[i]] (times sorted_weight[i] when the plan
// weighs expert inputs). x (and then the pair weights) get gradients.
Tensor dispatch_tokens(const Tensor& x, const DispatchPlan& plan);

// y_perm [P, d] -> y [T, d], y[t] = sum of sorted_weight[i] * y_perm[i] over the pairs i of
// token t (zero for a token without pairs); unweighted when the plan weighs expert inputs. y_perm
// gets a gradient, and so do the pair weights unless the plan weighs expert inputs (then they get
// theirs through dispatch_tokens).
Tensor combine_outputs(const Tensor& y_perm, const DispatchPlan& plan);

}  // namespace nn
}  // namespace tinymoe
