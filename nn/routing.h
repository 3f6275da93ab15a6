// nn/routing.h: the contract between routing rules and the SparseMoEBlock.
// A routing rule turns router logits [T, E] into the (token, expert, weight) pairs the block
// computes, plus named losses. Token choice (Mixtral, Switch, DeepSeek-V3, ...) gives each token
// k pairs (top-p: between 1 and k, its own number; ReLU routing: between 0 and k); expert choice
// gives each expert `capacity` pairs. Capacity drops remove pairs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "tinymoe/tensor.h"

namespace tinymoe::nn {

// What a rule sees besides the logits.
struct RoutingContext {
  int64_t num_experts = 0;
  int64_t sequence_length = 0;  // tokens per sequence (T = batch * sequence_length); 0 = one sequence
  bool training = false;        // jitter / noise only in training
  Generator* generator = nullptr;  // for jitter / noise (null: the default generator)
  Tensor noise_logits;  // [T, E] x W_noise for noisy top-k (Shazeer et al. 2017); undefined otherwise
};

struct Routing {
  Tensor router_logits;  // [T, E] the gate output before the score function (HF router_logits)
  Tensor scores;         // [T, E] after the score function (softmax probabilities, sigmoid or relu)
  Tensor expert_index;   // i64 [T, k]: the selection before capacity (token choice; top-p: all k slots,
                         // the ones past p included); [E, C] token ids (expert choice)
  Tensor pair_token;     // i64 [P]: token of each kept pair
  Tensor pair_expert;    // i64 [P]: expert of each kept pair
  Tensor pair_weight;    // [P]: the pair's combine weight, differentiable w.r.t. the logits
  int64_t routed_pairs = 0;   // pairs before capacity drops (T * k for token choice; top-p: the kept ones)
  int64_t dropped_pairs = 0;  // pairs removed by capacity
  int64_t padded_pairs = 0;   // padding pairs (weight 0) at the end of pair_*: pad_to_capacity
  int64_t capacity = 0;       // pairs per expert and counting group when capacity applies, else 0
  std::map<std::string, Tensor> losses;  // raw scalar losses by name: "aux_loss", "z_loss", "entropy_loss", ...
  std::map<std::string, double> loss_coefficients;  // coefficient for each loss name
  // Where the block applies pair_weight: false (Mixtral, Megatron, ...): to the expert's output,
  // y_t = sum w expert(x_t); true (Llama 4): to its input, y_t = sum expert(w x_t) (nn/dispatch.h).
  bool weight_on_expert_input = false;
  // sum over losses of coefficient * loss (a scalar; zero when there are no losses)
  Tensor weighted_loss() const;
  // The fraction of the T * E (token, expert) slots that carry no routed pair, before capacity:
  // 1 - routed_pairs / (T E), with T E from scores. ReMoE's sparsity (its L1 controller's input;
  // with a cap below E, positive scores past the cap count as zeros). NaN for T = 0: an empty
  // batch has no sparsity, and the controllers leave lambda alone on NaN.
  double sparsity() const;
};

// A routing rule: logits -> Routing. Presets and user rules are RoutingRules built from the parts in
// nn/routing_parts.h.
using RoutingRule = std::function<Routing(const Tensor& logits, const RoutingContext& context)>;

}  // namespace tinymoe::nn
