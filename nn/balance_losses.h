// Router losses that keep a sparse MoE balanced and its logits small. Each returns a 0-dim tensor
// of the input's dtype, differentiable w.r.t. the floating input (probs, logits or weights); the
// expert ids are constants (the counts f_i carry no gradient, as in every reference).
// T = 0 tokens gives a loss of 0 (a batch of nothing should not poison a training run).
// Notation: T tokens, E experts, k slots per token, count_i = number of (token, slot) pairs whose
// expert is i, P_i = mean over tokens of probs[t, i]. docs/routing.md has the derivations.
#pragma once

#include <cstdint>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe::nn {

enum class LoadBalanceForm {
  // Switch Transformer (Fedus et al. 2021, eq. 4) generalised to k as Megatron-LM
  // switch_load_balancing_loss_func: L = E * sum_i f_i P_i, f_i = count_i / (T k).
  // Uniform routing gives 1 (its minimum).
  switch_megatron,
  // HF transformers load_balancing_loss_func of Mixtral / Qwen2-MoE: L = E * sum_i (count_i / T) P_i,
  // no division by k, so uniform routing gives k.
  hf_mixtral,
  // HF SwitchTransformers load_balancing_loss_func: per sequence b (B sequences of S tokens),
  // f_bi = share of the sequence's tokens whose expert_index includes i, P_bi = mean over the
  // sequence of probs; L = (E / B) sum_b sum_i f_bi P_bi. HF feeds it the expert index AFTER
  // capacity with dropped tokens as expert 0 (see hf_switch_loss_expert_index). Uniform gives 1.
  hf_switch,
};
const char* load_balance_form_name(LoadBalanceForm form);

// probs [T, E] floating (router probabilities: softmax, or normalised sigmoid scores), expert_index
// i64 [T, k] with ids in [0, E). sequence_length (0: one sequence) matters for hf_switch only.
// Gradient: probs.
Tensor load_balancing_loss(const Tensor& probs, const Tensor& expert_index,
                           LoadBalanceForm form = LoadBalanceForm::switch_megatron, int64_t sequence_length = 0);

// The arguments every loss over (probs, expert ids) takes: probs floating [T, E], expert_index
// i64 [T, k] with T rows; errors name `op`.
void check_probs_and_index(const Tensor& probs, const Tensor& expert_index, const char* op);

// Pairs per expert in expert_index (i64 [T, k], ids in [0, E)), as load_balancing_loss counts
// them: counts[i] = number of (t, j) with expert_index[t, j] == i.
std::vector<double> expert_pair_counts(const Tensor& expert_index, int64_t num_experts);

// The whole-batch forms of load_balancing_loss with f_i taken from a larger batch than probs holds
// (global-batch balancing, Qiu et al. 2025: every rank's tokens under expert or data parallelism):
//   L = E * sum_i f_i P_i,  f_i = batch_counts[i] / (batch_tokens k) (switch_megatron) or
//   batch_counts[i] / batch_tokens (hf_mixtral),  P_i = mean over probs' own T tokens.
// batch_counts [E] and batch_tokens count the pairs and tokens of the whole batch (these T tokens
// included); k is the ids per token that were counted. With probs' own counts and T it is
// load_balancing_loss. Each rank's L weighs its own tokens' probabilities by the whole batch's
// load, so for ranks of equal T the mean over the ranks is the whole batch's loss (for unequal T,
// scale each by N T_r / T, as ExpertParallelMoEBlock does). Gradient:
// probs. hf_switch counts per sequence and is refused.
Tensor load_balancing_loss_with_batch(const Tensor& probs, int64_t k, LoadBalanceForm form,
                                      const std::vector<double>& batch_counts, int64_t batch_tokens);

// Sequence-wise auxiliary loss (DeepSeek-V3, Liu et al. 2024, eqs. 17-20; Megatron-LM
// sequence_load_balancing_loss_func): the switch_megatron form per sequence, averaged:
//   L = (1 / B) sum_b E * sum_i (count_bi / (S k)) P_bi.
// For sigmoid routers pass normalised_scores(s) as probs (DeepSeek-V3 eq. 19). Tokens are in
// row-major [B, S] order (HF's layout; Megatron's is [S, B]). Gradient: probs.
Tensor sequence_aux_loss(const Tensor& probs, const Tensor& expert_index, int64_t sequence_length = 0);

// Router z-loss (ST-MoE, Zoph et al. 2022, eq. 5; HF router_z_loss_func):
//   L = (1 / T) sum_t logsumexp_i(logits[t, i])^2.       logits [T, E]. Gradient: logits.
Tensor z_loss(const Tensor& logits);

// Router entropy loss (the "dynamic loss" of Huang et al. 2024, "Harder Tasks Need More Experts:
// Dynamic Routing in MoE Models"): the mean over tokens of the entropy of p = softmax(logits),
//   L = (1 / T) sum_t H(p_t),   H(p) = -sum_i p_i log p_i = logsumexp(l) - sum_i p_i l_i,
// computed in the second form on logits shifted by their row maximum, which stays finite where a
// probability underflows to 0 (for finite logits; a -inf logit gives NaN). Minimising
// it sharpens the routing, which keeps top-p routing from spreading each token over many experts.
// logits [T, E]. Gradient: logits.
Tensor entropy_loss(const Tensor& logits);

// ReMoE's load-balanced L1 regularisation of ReLU routing (Wang et al. 2025, eq. 7; their Megatron
// ReLURouter applies switch_load_balancing_loss_func to the relu scores):
//   L = E * sum_i f_i R_i,   f_i = count_i / (T k),   R_i = mean over tokens of scores[t, i],
// count_i = the tokens that use expert i (pair_expert counts them), k = target_k, the experts a
// token should use on average, whatever number the tokens took. Read per token it is the L1 norm
// of the token's scores with expert i's entry weighed by its load E count_i / (k T), which is 1 for
// every expert at the target load: the L1 pushes scores to zero (sparsity), hardest on the busiest
// experts (balance). scores [T, E] floating (relu(logits)), pair_expert i64 [P] with ids in [0, E),
// 1 <= target_k <= E. Gradient: scores.
Tensor relu_l1_loss(const Tensor& scores, const Tensor& pair_expert, int64_t target_k);

// Importance loss (Shazeer et al. 2017, eq. 6): CV(Importance)^2, Importance_i = sum of the gate
// weights sent to expert i, CV^2 = population variance / (mean^2 + 1e-10) as in the authors'
// tensor2tensor cv_squared; 0 for E = 1. weights [T, k] floating, expert_index i64 [T, k].
// Gradient: weights.
Tensor importance_loss(const Tensor& weights, const Tensor& expert_index, int64_t num_experts);

// Load loss of noisy top-k gating (Shazeer et al. 2017, eqs. 8-10; the authors' tensor2tensor
// _prob_in_top_k and cv_squared):
//   P(t, i) = Phi((clean[t, i] - kth_excluding(H[t], k, i)) / noise_stddev[t, i]),
//   Load_i = sum_t P(t, i),   L = CV(Load)^2 (as the importance loss).
// P(t, i) is the probability that expert i is in token t's top k of H = clean + N(0, 1) stddev
// when only expert i's noise is drawn again: a smooth estimate of the load, which the count of
// tokens is not. kth_excluding(H, k, i), the k-th largest of H without expert i, is the (k+1)-th
// largest of H for an expert in the top k and the k-th largest for one outside. clean_logits
// (x W_g), noisy_logits (H, the values the top k was taken from) and noise_stddev
// (softplus(x W_noise)) are [T, E] floating; 1 <= k <= E; 0 for k == E (every expert always in).
// Gradient: all three (H through the two thresholds).
Tensor load_loss(const Tensor& clean_logits, const Tensor& noisy_logits, const Tensor& noise_stddev, int64_t k);

// s / (sum_i s_i + 1e-20) per token: the probabilities DeepSeek-V3's sequence-wise loss uses for
// sigmoid scores (eq. 19; Megatron adds the same 1e-20). Differentiable.
Tensor normalised_scores(const Tensor& scores);

// The expert index HF Switch's aux loss sees: expert_index where kept (i64 [T, k] flags) is 1, and
// expert 0 where the pair was dropped by capacity (argmax of an all-zero one-hot row).
Tensor hf_switch_loss_expert_index(const Tensor& expert_index, const Tensor& kept);

}  // namespace tinymoe::nn
