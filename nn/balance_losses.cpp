#include "nn/balance_losses.h"

#include <utility>
#include <vector>

#include "nn/id_range.h"
#include "nn/routing_parts.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/topk.h"

namespace tinymoe::nn {
void check_probs_and_index(const Tensor& probs, const Tensor& expert_index, const char* op) {
  check_floating(probs, op, "probs");
  check_dim(probs, 2, op, "probs");
  check_dtype(expert_index, DType::i64, op, "expert_index");
  check_dim(expert_index, 2, op, "expert_index");
  TINYMOE_CHECK(expert_index.size(0) == probs.size(0), op, "expected expert_index with ", probs.size(0),
                " rows like probs ", shape_str(probs.shape()), ", got ", shape_str(expert_index.shape()));
}

namespace {

// A zero that stays on the tape (its gradient is zeros): the loss of an empty batch.
Tensor zero_loss(const Tensor& input) { return mul(sum(input), 0.0); }

// [T, E] of the dtype: 1 where expert e is among token t's chosen ids (chosen i64 [T, k]), else 0.
// Scattered into a flat [T * E] so no [T, k, E] one-hot is made.
Tensor top_k_mask(const Tensor& chosen, int64_t experts, DType dtype) {
  const int64_t tokens = chosen.size(0), k = chosen.size(1);
  Device device = chosen.device();
  std::vector<int64_t> starts(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) starts[t] = t * experts;
  Tensor row_start = from_vector(starts, {tokens, 1}).to(device);
  Tensor flat = add(chosen, row_start).reshape({tokens * k});
  Tensor ones_k = ones({tokens * k}, dtype, device);
  return scatter_add(zeros({tokens * experts}, dtype, device), flat, ones_k, 0).reshape({tokens, experts});
}

// CV(v)^2 = population variance / (mean^2 + 1e-10), as tensor2tensor's cv_squared (Shazeer et
// al. 2017's importance and load losses).
Tensor cv_squared(const Tensor& values) {
  Tensor average = mean(values);
  Tensor variance = mean(pow(sub(values, average), 2.0));
  return div(variance, add(mul(average, average), 1e-10));
}

// count[g * E + i]: pairs of group g (consecutive blocks of T / groups tokens) on expert i. With
// distinct_per_token a token counts once per expert whatever its number of slots there (HF
// Switch takes the max over slots of the one-hot mask). Counted on the host: the [T, k] ids of a
// device tensor are copied there once.
std::vector<double> group_counts(const Tensor& expert_index, int64_t num_experts, int64_t groups,
                                 bool distinct_per_token, const char* op) {
  const int64_t tokens = expert_index.size(0), k = expert_index.size(1);
  std::vector<int64_t> ids = expert_index.to(Device::cpu()).to_vector<int64_t>();
  std::vector<double> counts(groups * num_experts, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    int64_t group = t / (tokens / groups);
    for (int64_t j = 0; j < k; ++j) {
      int64_t e = ids[t * k + j];
      TINYMOE_CHECK(e >= 0 && e < num_experts, op, "expert id ", e, " of token ", t, " out of range for E = ",
                    num_experts);
      bool repeated = false;
      for (int64_t i = 0; i < j && distinct_per_token; ++i) repeated = repeated || ids[t * k + i] == e;
      if (!repeated) counts[group * num_experts + e] += 1.0;
    }
  }
  return counts;
}

// (E / G) * sum_{g, i} f[g, i] * P[g, i], P[g, i] the mean of probs over group g's tokens: the
// shape every load-balancing form shares.
Tensor balance_term(const Tensor& probs, const std::vector<double>& f, int64_t groups) {
  const int64_t tokens = probs.size(0), experts = probs.size(1);
  Tensor mean_probs = mean(probs.reshape({groups, tokens / groups, experts}), 1);
  Tensor f_tensor = from_vector(f, {groups, experts}).to(probs.dtype()).to(probs.device());
  return mul(sum(mul(mean_probs, f_tensor)), static_cast<double>(experts) / static_cast<double>(groups));
}

std::vector<double> scaled(std::vector<double> values, double factor) {
  for (double& v : values) v *= factor;
  return values;
}

}  // namespace

const char* load_balance_form_name(LoadBalanceForm form) {
  switch (form) {
    case LoadBalanceForm::switch_megatron: return "switch_megatron";
    case LoadBalanceForm::hf_mixtral: return "hf_mixtral";
    case LoadBalanceForm::hf_switch: return "hf_switch";
  }
  return "?";
}

Tensor load_balancing_loss(const Tensor& probs, const Tensor& expert_index, LoadBalanceForm form,
                           int64_t sequence_length) {
  const char* op = "load_balancing_loss";
  check_probs_and_index(probs, expert_index, op);
  const int64_t tokens = probs.size(0), experts = probs.size(1), k = expert_index.size(1);
  int64_t sequences = sequence_count(tokens, sequence_length, op);
  if (tokens == 0) return zero_loss(probs);
  switch (form) {
    case LoadBalanceForm::switch_megatron:
    case LoadBalanceForm::hf_mixtral:
      return load_balancing_loss_with_batch(probs, k, form, group_counts(expert_index, experts, 1, false, op), tokens);
    case LoadBalanceForm::hf_switch: {
      std::vector<double> counts = group_counts(expert_index, experts, sequences, true, op);
      return balance_term(probs, scaled(counts, static_cast<double>(sequences) / tokens), sequences);
    }
  }
  fail(op, "unknown load-balance form");
}

std::vector<double> expert_pair_counts(const Tensor& expert_index, int64_t num_experts) {
  const char* op = "expert_pair_counts";
  check_dtype(expert_index, DType::i64, op, "expert_index");
  check_dim(expert_index, 2, op, "expert_index");
  TINYMOE_CHECK(num_experts >= 1, op, "expected E >= 1, got ", num_experts);
  if (expert_index.size(0) == 0) return std::vector<double>(static_cast<size_t>(num_experts), 0.0);
  return group_counts(expert_index, num_experts, 1, false, op);
}

Tensor load_balancing_loss_with_batch(const Tensor& probs, int64_t k, LoadBalanceForm form,
                                      const std::vector<double>& batch_counts, int64_t batch_tokens) {
  const char* op = "load_balancing_loss_with_batch";
  check_floating(probs, op, "probs");
  check_dim(probs, 2, op, "probs");
  const int64_t tokens = probs.size(0), experts = probs.size(1);
  TINYMOE_CHECK(form != LoadBalanceForm::hf_switch, op,
                "hf_switch counts f per sequence, which a larger batch does not change: use load_balancing_loss");
  TINYMOE_CHECK(static_cast<int64_t>(batch_counts.size()) == experts, op, "expected ", experts,
                " batch counts (one per expert), got ", batch_counts.size());
  TINYMOE_CHECK(k >= 1, op, "expected k >= 1 ids counted per token, got ", k);
  TINYMOE_CHECK(batch_tokens >= tokens, op, "the batch of ", batch_tokens, " tokens cannot hold these ", tokens);
  if (tokens == 0) return zero_loss(probs);
  const double pairs_per_token = form == LoadBalanceForm::switch_megatron ? static_cast<double>(k) : 1.0;
  return balance_term(probs, scaled(batch_counts, 1.0 / (static_cast<double>(batch_tokens) * pairs_per_token)), 1);
}

Tensor relu_l1_loss(const Tensor& scores, const Tensor& pair_expert, int64_t target_k) {
  const char* op = "relu_l1_loss";
  check_floating(scores, op, "scores");
  check_dim(scores, 2, op, "scores");
  check_dtype(pair_expert, DType::i64, op, "pair_expert");
  check_dim(pair_expert, 1, op, "pair_expert");
  const int64_t experts = scores.size(1);
  TINYMOE_CHECK(target_k >= 1 && target_k <= experts, op, "expected 1 <= target_k <= E = ", experts, ", got ",
                target_k);
  std::vector<double> counts = expert_pair_counts(pair_expert.reshape({pair_expert.numel(), 1}), experts);
  return load_balancing_loss_with_batch(scores, target_k, LoadBalanceForm::switch_megatron, counts, scores.size(0));
}

Tensor sequence_aux_loss(const Tensor& probs, const Tensor& expert_index, int64_t sequence_length) {
  const char* op = "sequence_aux_loss";
  check_probs_and_index(probs, expert_index, op);
  const int64_t tokens = probs.size(0), experts = probs.size(1), k = expert_index.size(1);
  int64_t sequences = sequence_count(tokens, sequence_length, op);
  if (tokens == 0) return zero_loss(probs);
  std::vector<double> counts = group_counts(expert_index, experts, sequences, false, op);
  double tokens_per_sequence = static_cast<double>(tokens / sequences);
  return balance_term(probs, scaled(counts, 1.0 / (tokens_per_sequence * k)), sequences);
}

Tensor z_loss(const Tensor& logits) {
  check_floating(logits, "z_loss", "logits");
  check_dim(logits, 2, "z_loss", "logits");
  if (logits.size(0) == 0) return zero_loss(logits);
  return mean(pow(logsumexp(logits, -1), 2.0));
}

Tensor entropy_loss(const Tensor& logits) {
  check_floating(logits, "entropy_loss", "logits");
  check_dim(logits, 2, "entropy_loss", "logits");
  if (logits.size(0) == 0) return zero_loss(logits);
  // Both terms on logits shifted by their row maximum (a constant of the row, so the entropy is
  // the same): in f32 large logits would otherwise cancel between the two terms.
  Tensor shifted = sub(logits, max(logits.detach(), 1, /*keepdim=*/true).values);
  return mean(sub(logsumexp(shifted, -1), sum(mul(softmax(shifted, -1), shifted), -1)));
}

Tensor importance_loss(const Tensor& weights, const Tensor& expert_index, int64_t num_experts) {
  const char* op = "importance_loss";
  check_probs_and_index(weights, expert_index, op);
  TINYMOE_CHECK(weights.shape() == expert_index.shape(), op, "expected weights of shape ",
                shape_str(expert_index.shape()), ", got ", shape_str(weights.shape()));
  TINYMOE_CHECK(num_experts >= 1, op, "expected E >= 1, got ", num_experts);
  check_id_range(expert_index, num_experts, "expert_index", "an expert", op);
  if (num_experts == 1 || weights.numel() == 0) return zero_loss(weights);
  // Deterministic: on cuda the sums then come out bit-identical run to run (the cpu always is).
  Tensor importance = scatter_add(zeros({num_experts}, weights.dtype(), weights.device()), expert_index.flatten(),
                                  weights.flatten(), 0, /*deterministic=*/true);
  return cv_squared(importance);
}

Tensor load_loss(const Tensor& clean_logits, const Tensor& noisy_logits, const Tensor& noise_stddev, int64_t k) {
  const char* op = "load_loss";
  check_floating(clean_logits, op, "clean_logits");
  check_dim(clean_logits, 2, op, "clean_logits");
  for (const auto& [tensor, name] : {std::pair{&noisy_logits, "noisy_logits"}, std::pair{&noise_stddev, "noise_stddev"}}) {
    check_defined(*tensor, op, name);
    TINYMOE_CHECK(tensor->shape() == clean_logits.shape() && tensor->dtype() == clean_logits.dtype(), op, "expected ",
                  name, " like clean_logits (", dtype_name(clean_logits.dtype()), " ", shape_str(clean_logits.shape()),
                  "), got ", dtype_name(tensor->dtype()), " ", shape_str(tensor->shape()));
    check_same_device(*tensor, clean_logits, op);
  }
  const int64_t experts = clean_logits.size(1);
  TINYMOE_CHECK(k >= 1 && k <= experts, op, "expected 1 <= k <= E = ", experts, ", got k = ", k);
  if (k == experts || clean_logits.size(0) == 0) return zero_loss(clean_logits);  // every expert always in
  Tensor best = largest_indices(noisy_logits, k + 1);  // [T, k + 1], largest first
  Tensor best_values = gather(noisy_logits, 1, best);  // differentiable: H reaches the loss here
  Tensor threshold_if_in = slice(best_values, 1, k, k + 1);   // (k+1)-th largest of H
  Tensor threshold_if_out = slice(best_values, 1, k - 1, k);  // k-th largest of H
  Tensor in_top_k = top_k_mask(slice(best, 1, 0, k), experts, clean_logits.dtype());
  // A noise scale of exactly 0 (softplus underflows below about -104 in f32) would make 0 / 0 in
  // the forward and a 0 * inf in div's backward; 1e-15 changes no scale above 1e-8 in f32 and
  // none by more than 1e-15 in f64. (tensor2tensor adds 1e-2 to the scale for the same reason,
  // also in the noise itself.)
  Tensor scale = add(noise_stddev, 1e-15);
  Tensor prob_if_in = normal_cdf(div(sub(clean_logits, threshold_if_in), scale));
  Tensor prob_if_out = normal_cdf(div(sub(clean_logits, threshold_if_out), scale));
  Tensor prob = add(mul(in_top_k, sub(prob_if_in, prob_if_out)), prob_if_out);
  return cv_squared(sum(prob, 0));
}

Tensor normalised_scores(const Tensor& scores) {
  check_floating(scores, "normalised_scores", "scores");
  return div(scores, add(sum(scores, -1, /*keepdim=*/true), 1e-20));
}

Tensor hf_switch_loss_expert_index(const Tensor& expert_index, const Tensor& kept) {
  const char* op = "hf_switch_loss_expert_index";
  check_dtype(expert_index, DType::i64, op, "expert_index");
  check_dtype(kept, DType::i64, op, "kept");
  TINYMOE_CHECK(kept.shape() == expert_index.shape(), op, "expected kept flags of shape ",
                shape_str(expert_index.shape()), ", got ", shape_str(kept.shape()));
  // On the host ([T, k] ids and flags copied once from a device), the result back on the ids' device.
  std::vector<int64_t> ids = expert_index.to(Device::cpu()).to_vector<int64_t>();
  std::vector<int64_t> flags = kept.to(Device::cpu()).to_vector<int64_t>();
  for (size_t p = 0; p < ids.size(); ++p)
    if (!flags[p]) ids[p] = 0;
  return from_vector(ids, expert_index.shape()).to(expert_index.device());
}

}  // namespace tinymoe::nn
