// The parts routing rules are built from (docs/design.md, "Routing rules as composable parts"):
//
//   logits --(noise)--> score function --> selection --> weight function --> capacity --> pairs
//
// A preset (nn/router_presets.h) or a user's rule chains them; a new rule replaces the part it
// changes and reuses the rest. docs/routing.md has every formula with its source.
//
// Shapes: T tokens, E experts, k experts per token. Scores and weights are f32 or f64; expert and
// token ids are i64. Gradients: score functions, noisy_logits, multiplicative_jitter,
// gather_selected and WeightFunction are differentiable (ordinary ops on the tape); selections,
// capacity decisions and masks are discrete and carry no gradient. Every discrete choice is
// reported through tinymoe::note_choice (by the topk op, or as "capacity", "top_p" or "relu"), so
// gradcheck says `selection_unstable` at a tie instead of a false failure.
//
// Devices: every part returns its tensors on its inputs' device (cpu or cuda:N; mixed devices
// are an Error). Selections run as ops there; on cuda past the topk kernel's limits (k > 8 or
// rows of more than 256) through a stable descending argsort, which chooses the same. What
// decides one candidate at a time runs on the host from one copy of the ids: apply_capacity
// (except dropless without active flags) and GShard's coin flips. Jitter and noise are drawn on
// the host from the generator and copied, so one seed gives the same numbers on every device.
#pragma once

#include <cstdint>

#include "nn/routing.h"
#include "tinymoe/random.h"

namespace tinymoe::nn {

// ---- Score functions: logits [T, E] -> scores [T, E]. Differentiable. ----
enum class ScoreFunction {
  softmax,  // p = softmax(logits) over experts (Shazeer 2017, Switch, Mixtral, Qwen2-MoE)
  sigmoid,  // s = sigmoid(logits), each expert on its own (DeepSeek-V3)
  relu,     // r = relu(logits): zero for every expert a token does not use (ReMoE, Wang et al. 2025)
};
const char* score_function_name(ScoreFunction function);
Tensor apply_score_function(ScoreFunction function, const Tensor& logits);

// ---- Noise (training only: the caller decides when to apply it). ----
// Noisy top-k gating (Shazeer et al. 2017, eq. 4): H = logits + N(0, 1) * softplus(noise_logits),
// with noise_logits = x W_noise. logits and noise_logits get gradients.
Tensor noisy_logits(const Tensor& logits, const Tensor& noise_logits, Generator* generator = nullptr);
// Multiplicative jitter (Switch Transformer, Fedus et al. 2021, sec. 2.4 / HF router_jitter_noise):
// x * U(1 - epsilon, 1 + epsilon) elementwise; 0 <= epsilon < 1. x gets the gradient.
// The Router applies it to its own input (the logits are computed from the jittered x).
Tensor multiplicative_jitter(const Tensor& x, double epsilon, Generator* generator = nullptr);

// ---- Selections: scores [T, E] -> expert ids i64 [T, k], best first. Not differentiable. ----
// Indices i64 [..., k] of the k largest entries along the last dim, best first, ties to the
// lower index: the topk op, or on cuda past its kernel's limits (k <= 8, rows of at most 256) a
// stable descending argsort, which orders the same way.
Tensor largest_indices(const Tensor& keys, int64_t k);
// Top-k of scores + selection_bias (bias [E], any floating dtype, undefined for none). The bias
// moves the choice only: weights are taken from the unbiased scores (DeepSeek-V3, eq. 16).
// Ties go to the lower expert id. 1 <= k <= E.
Tensor select_topk(const Tensor& scores, int64_t k, const Tensor& selection_bias = Tensor());

// Group-limited top-k (DeepSeek-V3; HF DeepseekV3TopkRouter.get_topk_indices): c = scores + bias,
// experts split into n_group contiguous groups of E / n_group; group score = sum of the
// `group_score_experts` largest c in the group (DeepSeek-V3: 2; DeepSeek-V2's
// group_limited_greedy: 1, the group's max); the topk_group best groups are kept; experts of the
// other groups get c = masked_score (HF: 0.0; DeepSeek's reference inference code: -inf); then
// top-k of c. Requires E % n_group == 0, 1 <= group_score_experts <= E / n_group,
// 1 <= topk_group <= n_group, k <= topk_group * E / n_group.
Tensor select_group_limited_topk(const Tensor& scores, int64_t k, int64_t n_group, int64_t topk_group,
                                 const Tensor& selection_bias = Tensor(), double masked_score = 0.0,
                                 int64_t group_score_experts = 2);

// Expert choice (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", eq. 1):
// each expert takes its top-`capacity` tokens by score; returns token ids i64 [E, capacity],
// best first. 0 <= capacity <= T.
Tensor select_expert_choice(const Tensor& scores, int64_t capacity);
// The paper's k = n * c / e tokens per expert: ceil(T * capacity_factor / E), at most T.
// capacity_factor > 0 (c, the average number of experts per token).
int64_t expert_choice_capacity(int64_t tokens, int64_t num_experts, double capacity_factor);

// Sinkhorn balancing (S-BASE: Clark et al. 2022, "Unified Scaling Laws for Routed Language Models",
// sec. 2.2; Megatron-core's moe_utils.sinkhorn, router load balancing type "sinkhorn"): the
// rescaling P = diag(d0) exp(logits) diag(d1) whose rows each sum to 1/T and columns to 1/E (a
// balanced assignment of tokens to experts, relaxed), by alternating the two normalisations
//   d0 = (1/T) / (exp(logits) d1 + eps),   d1 = (1/E) / (exp(logits)^T d0 + eps),   eps = 1e-8,
// from d1 = 1 until the mean |change of d1| is at most `tolerance`, or after max_iterations
// rounds (skewed logits can converge slowly). Each row of logits is first shifted by its finite
// maximum, which d0 absorbs: exp cannot overflow (Megatron's exp of raw f32 logits does past
// 88); a row of -inf keeps cost 0. NaN or +inf logits are an Error. Logits [T, E], E >= 1, f32
// or f64, any device; P has their dtype. Not differentiable (Megatron computes it under no_grad).
Tensor sinkhorn_plan(const Tensor& logits, double tolerance = 1e-4, int64_t max_iterations = 1000);

// ---- Weights ----
// w[t, j] = scores[t, expert_index[t, j]]; [T, k], differentiable w.r.t. scores.
Tensor gather_selected(const Tensor& scores, const Tensor& expert_index);

// What happens to the k gathered scores:
//   renormalize: w = w / (sum_j w + epsilon)   (Mixtral always; Qwen2-MoE with norm_topk_prob;
//                                                DeepSeek-V3 with epsilon 1e-20 as HF)
//   then         w = w * scaling_factor        (DeepSeek-V3 routed_scaling_factor)
// The default (no renormalisation, factor 1) keeps the raw probabilities (Switch, Qwen2-MoE).
struct WeightFunction {
  bool renormalize = false;
  double epsilon = 0.0;
  double scaling_factor = 1.0;
  Tensor operator()(const Tensor& selected) const;  // [T, k] -> [T, k], differentiable
};

// GShard's random second-expert dispatch (Lepikhin et al. 2020, Algorithm 1 lines 16-19): the
// second choice is dispatched only when 2 * w2 > U(0, 1), w2 its (normalised) weight. Returns
// i64 [T, 2] flags: slot 0 always 1, slot 1 1 when dispatched. weights: [T, 2]. As Lingvo's
// top_2_gating, a second choice left out takes no capacity.
Tensor gshard_second_choice_mask(const Tensor& weights, Generator* generator = nullptr);

// Top-p (dynamic) routing (Huang et al. 2024, "Harder Tasks Need More Experts: Dynamic Routing in
// MoE Models"): of a token's experts sorted by probability, the fewest whose
// probabilities sum to at least p. selected [T, k]: the k best probabilities of each token, best
// first (gather_selected of a top-k). Returns i64 [T, k] flags for apply_capacity's `active`: slot
// 0 always, slot j when the j before it sum to less than p. 0 < p <= 1; with k < E a token whose
// k best sum to less than p keeps all k.
Tensor top_p_active(const Tensor& selected, double p);

// ReLU routing (ReMoE: Wang et al. 2025, "ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
// Routing", eq. 3): a token uses every expert whose score relu(logit) is positive. selected [T, k]:
// the logits of each token's k candidate experts (gather_selected of the logits). Returns i64
// [T, k] flags for apply_capacity's `active`: 1 where the logit is > 0. A token may keep none.
// The smallest |logit| is gradcheck's margin (a step across 0 flips a flag).
Tensor positive_active(const Tensor& selected);

// ---- Pairs: what the block computes. ----
struct Pairs {
  Tensor token;   // i64 [P]
  Tensor expert;  // i64 [P]
  Tensor weight;  // [P], differentiable
};
// All T*k pairs of a token-choice selection, token-major: pair t*k + j is (t, expert_index[t, j]).
Pairs token_choice_pairs(const Tensor& expert_index, const Tensor& weights);
// All E*C pairs of an expert-choice selection, expert-major: pair e*C + c is
// (token_index[e, c], e) with weight weights[e, c].
Pairs expert_choice_pairs(const Tensor& token_index, const Tensor& weights);

// ---- Capacity and drops (token choice). ----
// Which pair an expert keeps when it has more candidates than its capacity:
enum class DropPolicy {
  // GShard (Lepikhin et al. 2020, Algorithm 1) / Lingvo top_2_gating / Switch: all first choices
  // in token order, then all second choices in token order, ... (slot-major). For k = 1 this is
  // token order, HF Switch's cumsum priority.
  position,
  // Megatron-LM drop_policy="position" (topk_softmax_with_capacity): token order, a token's slots
  // together. A token has at most one pair per expert, so this differs from `position` only when
  // an earlier token's later choice competes with a later token's earlier choice.
  token_position,
  // Megatron-LM drop_policy="probs": the pairs with the largest weights, ties to token order.
  probability,
};
const char* drop_policy_name(DropPolicy policy);

// Capacity C per expert and per counting group (all T tokens, or each sequence):
//   capacity_factor > 0: C = ceil((tokens_in_group * k / E) * capacity_factor)  (Megatron get_capacity)
//   expert_capacity > 0: C = expert_capacity                                     (HF Switch)
// Neither set: dropless (every pair kept).
struct CapacityConfig {
  double capacity_factor = 0.0;
  int64_t expert_capacity = 0;
  bool per_sequence = false;  // count each sequence separately (HF Switch) instead of all T (Megatron)
  DropPolicy drop_policy = DropPolicy::position;
  // Fill every expert up to C pairs per group with padding pairs (weight 0, token = the group's
  // first token), as Megatron's moe_pad_expert_input_to_capacity, for static expert shapes.
  bool pad_to_capacity = false;

  bool enabled() const { return capacity_factor > 0.0 || expert_capacity > 0; }
  // Factories that check their argument (> 0), naming "CapacityConfig".
  static CapacityConfig factor(double capacity_factor, DropPolicy policy = DropPolicy::position);
  static CapacityConfig per_sequence_count(int64_t expert_capacity, DropPolicy policy = DropPolicy::position);
};
// ceil((tokens * k / E) * capacity_factor), computed in this order in double as Megatron does.
int64_t capacity_from_factor(int64_t tokens, int64_t k, int64_t num_experts, double capacity_factor);

struct CapacityResult {
  Pairs pairs;             // kept pairs in token-major order, then the padding pairs
  Tensor kept;             // i64 [T, k]: 1 where the (token, slot) pair was kept
  int64_t capacity = 0;    // C per group (0 when dropless)
  int64_t routed = 0;      // candidate pairs (T*k less the inactive ones)
  int64_t dropped = 0;     // candidates removed by capacity
  int64_t padded = 0;      // padding pairs appended
};
// Applies `capacity` to a token-choice selection. active (i64 [T, k] flags, undefined = all) marks
// the candidates; inactive pairs take no capacity and are not counted as dropped.
// sequence_length > 0 must divide T (0: one sequence). Reports its choice as "capacity" with the
// smallest gap between a kept and a dropped weight (probability policy; +inf otherwise).
CapacityResult apply_capacity(const Tensor& expert_index, const Tensor& weights, int64_t num_experts,
                              const CapacityConfig& capacity, int64_t sequence_length = 0,
                              const Tensor& active = Tensor());

// ---- Assembling a Routing (losses left empty for the rule to add). ----
// Token choice, dropless: every pair of the [T, k] selection.
Routing token_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& expert_index,
                             const Tensor& weights);
// Token choice after apply_capacity.
Routing token_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& expert_index,
                             const CapacityResult& kept);
// Expert choice: token_index / weights [E, C]; nothing is dropped.
Routing expert_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& token_index,
                              const Tensor& weights);

// Checks that logits is a floating [T, num_experts] tensor, naming op.
void check_router_logits(const Tensor& logits, int64_t num_experts, const char* op);
// Number of sequences in T tokens of sequence_length each (0: one sequence), naming op.
int64_t sequence_count(int64_t tokens, int64_t sequence_length, const char* op);

}  // namespace tinymoe::nn
