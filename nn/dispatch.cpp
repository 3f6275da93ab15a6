#include "nn/dispatch.h"

#include <string>

#include "nn/id_range.h"
#include "ops/counting.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/shape.h"
#include "ops/sort.h"
#include "ops/weighted_scatter_add.h"

namespace tinymoe {
namespace nn {
namespace {

// `pair` must be a defined 1-D tensor of `dtype` (any floating dtype when floating) with P entries.
void check_pair_tensor(const Tensor& pair, const char* name, int64_t pairs, const char* op) {
  TINYMOE_CHECK(pair.defined(), op, "the routing rule returned no ", name);
  TINYMOE_CHECK(pair.dim() == 1 && pair.size(0) == pairs, op, "expected routing ", name, " of shape [", pairs,
                "] (one entry per pair, as pair_token), got ", shape_str(pair.shape()));
}

// The i64 pair tensor's entries must lie in [0, limit), checked on its device (nn/id_range.h).
void check_pair_range(const Tensor& pair, const char* name, int64_t limit, const char* what, const char* op) {
  TINYMOE_CHECK(pair.dtype() == DType::i64, op, "expected routing ", name, " of dtype i64, got ",
                dtype_name(pair.dtype()));
  check_id_range(pair, limit, (std::string("routing ") + name).c_str(), what, op);
}

}  // namespace

void check_routing(const Routing& routing, int64_t num_tokens, int64_t num_experts, DType weight_dtype,
                   const char* op) {
  TINYMOE_CHECK(routing.pair_token.defined(), op, "the routing rule returned no pair_token");
  TINYMOE_CHECK(routing.pair_token.dim() == 1, op, "expected routing pair_token of shape [P], got ",
                shape_str(routing.pair_token.shape()));
  const int64_t pairs = routing.pair_token.size(0);
  check_pair_tensor(routing.pair_expert, "pair_expert", pairs, op);
  check_pair_tensor(routing.pair_weight, "pair_weight", pairs, op);
  const Device device = routing.pair_token.device();
  TINYMOE_CHECK(routing.pair_expert.device() == device && routing.pair_weight.device() == device, op,
                "expected the routing's pairs on one device, got pair_token on ", device.str(), ", pair_expert on ",
                routing.pair_expert.device().str(), " and pair_weight on ", routing.pair_weight.device().str());
  check_pair_range(routing.pair_token, "pair_token", num_tokens, "a token", op);
  check_pair_range(routing.pair_expert, "pair_expert", num_experts, "an expert", op);
  TINYMOE_CHECK(routing.pair_weight.dtype() == weight_dtype, op, "expected routing pair_weight of dtype ",
                dtype_name(weight_dtype), " (the input's), got ", dtype_name(routing.pair_weight.dtype()));
}

DispatchPlan plan_dispatch(const Routing& routing, int64_t num_tokens, int64_t num_experts, DType weight_dtype,
                           const char* op) {
  check_routing(routing, num_tokens, num_experts, weight_dtype, op);
  DispatchPlan plan;
  plan.num_tokens = num_tokens;
  // Megatron's permutation: a stable sort of the pairs by expert (a counting sort on i64 ids)
  // makes each expert's rows one contiguous segment, in the rule's pair order within it.
  plan.pair_order = argsort(routing.pair_expert);
  plan.sorted_token = index_select(routing.pair_token, plan.pair_order);
  plan.sorted_weight = index_select(routing.pair_weight, plan.pair_order).reshape({-1, 1});
  plan.weight_on_expert_input = routing.weight_on_expert_input;
  plan.tokens_per_expert = bincount(routing.pair_expert, num_experts);
  plan.offsets = concat({zeros({1}, DType::i64, plan.tokens_per_expert.device()), cumsum(plan.tokens_per_expert, 0)}, 0);
  return plan;
}

Tensor dispatch_tokens(const Tensor& x, const DispatchPlan& plan) {
  check_defined(x, "dispatch_tokens", "x");
  TINYMOE_CHECK(x.dim() == 2 && x.size(0) == plan.num_tokens, "dispatch_tokens", "expected x of shape [",
                plan.num_tokens, ", d] (the plan's tokens), got ", shape_str(x.shape()));
  Tensor x_perm = index_select(x, plan.sorted_token);
  if (!plan.weight_on_expert_input) return x_perm;
  TINYMOE_CHECK(x.dtype() == plan.sorted_weight.dtype(), "dispatch_tokens", "expected x of the pair weights' dtype ",
                dtype_name(plan.sorted_weight.dtype()), ", got ", dtype_name(x.dtype()));
  return mul(x_perm, plan.sorted_weight);  // Llama 4: expert_e(w x), not w expert_e(x)
}

Tensor combine_outputs(const Tensor& y_perm, const DispatchPlan& plan) {
  const char* op = "combine_outputs";
  check_defined(y_perm, op, "y_perm");
  const int64_t pairs = plan.sorted_token.numel();
  TINYMOE_CHECK(y_perm.dim() == 2 && y_perm.size(0) == pairs, op, "expected y_perm of shape [", pairs,
                ", d] (one row per sorted pair), got ", shape_str(y_perm.shape()));
  TINYMOE_CHECK(y_perm.dtype() == plan.sorted_weight.dtype(), op, "expected y_perm of the pair weights' dtype ",
                dtype_name(plan.sorted_weight.dtype()), ", got ", dtype_name(y_perm.dtype()));
  // The inputs carried the weights: sum the outputs as they are (the same kernel, weight 1, so the
  // summation order and the deterministic mode are those of the weighted combine).
  const Tensor weight = plan.weight_on_expert_input ? ones_like(plan.sorted_weight.detach()) : plan.sorted_weight;
  return weighted_scatter_add(y_perm, plan.sorted_token, weight, plan.num_tokens);
}

}  // namespace nn
}  // namespace tinymoe
