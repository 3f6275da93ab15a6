// nn::MoETransformer: a small decoder-only MoE language model, Mixtral's layout with learned
// absolute positions (GPT-2's wpe) in place of rotary embeddings:
//
//   h = embed_tokens(ids) + embed_positions(0 .. S-1)                     [B, S, d]
//   every layer:  h = h + self_attn(input_layernorm(h))                   (nn/attention.h)
//                 h = h + block_sparse_moe(post_attention_layernorm(h))   (nn/moe_block.h)
//   logits = lm_head(norm(h))                                             [B, S, V]
//
// Parameter names follow HuggingFace's Mixtral without its "model." prefix:
//   embed_tokens.weight [V, d], embed_positions.weight [P, d],
//   layers.N.{input_layernorm, post_attention_layernorm}.weight [d],
//   layers.N.self_attn.{q,k,v,o}_proj.weight [d, d], layers.N.block_sparse_moe.* (nn/moe_block.h),
//   norm.weight [d], lm_head.weight [V, d].
//
// Routing is causal only for rules that route each token on its own (top-k, sigmoid, noisy top-k
// without capacity): capacity limits and expert choice let the tokens of a sequence compete for
// expert slots, so a later token can change an earlier one's output, as in those papers.
//
// The model runs where its parameters are: model.to(Device::cuda(0)) moves it, and ids must then be
// there too. With config.expert_parallel set, every layer's MoE block is an
// ExpertParallelMoEBlock over those ranks (nn/expert_parallel.h): each rank holds its share of
// every layer's experts and a copy of everything else, on any device (cuda rows travel over MPI
// through host memory, or GPU to GPU over NCCL).
// docs/moe_transformer.md walks through training it.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/expert_parallel.h"
#include "nn/linear.h"
#include "nn/moe_block.h"
#include "nn/module.h"
#include "nn/rms_norm.h"

namespace tinymoe {
namespace nn {

struct MoETransformerConfig {
  int64_t vocab_size = 0;           // V
  int64_t max_sequence_length = 0;  // P: positions with a learned embedding; S <= P
  int64_t num_layers = 0;
  int64_t num_heads = 0;            // must divide moe.hidden_size
  double rms_norm_eps = 1e-6;
  // Every layer's MoE block: moe.hidden_size is the model width d, moe.dtype every parameter's.
  SparseMoEConfig moe;
  // Null: every expert in this process. Otherwise the ranks the experts are split over; build the
  // model with the same config and seed on every rank (see MoETransformer::replicated_parameters).
  std::shared_ptr<Communicator> expert_parallel;
};

struct LMOutput {
  Tensor logits;    // [B, S, V]
  Tensor loss;      // 0-d next-token cross-entropy, mean over targets that are not ignored; undefined without targets
  Tensor aux_loss;  // 0-d: sum over layers of the routing's weighted losses (0 when the rule has none)
  std::vector<MoEOutput> layers;  // each layer's block output: routing, loads, diagnostics
  // loss + aux_loss: what training minimises. Needs targets.
  Tensor total_loss() const;
};

// One pre-norm decoder layer: attention, then the MoE block, each around a residual.
class MoEDecoderLayer : public Module {
 public:
  // With a non-null `expert_parallel` the MoE block is an ExpertParallelMoEBlock over its ranks.
  MoEDecoderLayer(int64_t num_heads, const SparseMoEConfig& moe, double rms_norm_eps, Generator* generator = nullptr,
                  std::shared_ptr<Communicator> expert_parallel = nullptr);

  // x [B, S, d] -> (x after the layer, the MoE block's output for its diagnostics).
  std::pair<Tensor, MoEOutput> forward(const Tensor& x) const;

  const std::shared_ptr<CausalSelfAttention>& self_attn() const { return self_attn_; }
  // Exactly one of the two is set: the block of a single process, or the expert-parallel one.
  const std::shared_ptr<SparseMoEBlock>& block_sparse_moe() const { return block_sparse_moe_; }
  const std::shared_ptr<ExpertParallelMoEBlock>& expert_parallel_moe() const { return expert_parallel_moe_; }

 private:
  std::shared_ptr<RMSNorm> input_layernorm_;
  std::shared_ptr<CausalSelfAttention> self_attn_;
  std::shared_ptr<RMSNorm> post_attention_layernorm_;
  std::shared_ptr<SparseMoEBlock> block_sparse_moe_;
  std::shared_ptr<ExpertParallelMoEBlock> expert_parallel_moe_;
};

class MoETransformer : public Module {
 public:
  // Checks the config (an Error names what is wrong) and draws every parameter from `generator`
  // (the global one when null) in the order of the names above.
  explicit MoETransformer(const MoETransformerConfig& config, Generator* generator = nullptr);

  // ids i64 [B, S] with B >= 1, 1 <= S <= max_sequence_length, every id in [0, V), on the model's
  // device. targets, when given: i64 [B, S], targets[b, s] the token that should follow
  // ids[b, s] (the next one in the text) or -100 to skip it; then `loss` is filled in.
  LMOutput forward(const Tensor& ids, const Tensor& targets = Tensor()) const;
  LMOutput operator()(const Tensor& ids, const Tensor& targets = Tensor()) const { return forward(ids, targets); }

  // DeepSeek-V3's auxiliary-loss-free balancing after a step: every layer whose router has a
  // selection bias moves it by that layer's loads in `output` (SparseMoEBlock::update_bias;
  // with expert parallelism, the loads of every rank). Layers without one are left alone.
  void update_router_biases(const LMOutput& output, double rate);
  // ReMoE's L1 controller after a step (Wang et al. 2025, eq. 6), as the paper runs it: one lambda
  // for the model, moved by the mean sparsity of every layer whose router has the l1 loss (with
  // expert parallelism, each layer's sparsity over every rank's tokens: a collective). Each such
  // router keeps its copy of lambda; they start equal and move together. Layers without the l1
  // loss are left alone.
  void update_router_l1_coefficients(const LMOutput& output);

  // The parameters every rank holds a copy of: all but the expert-parallel layers' experts. After
  // backward, all_reduce_gradients(model.replicated_parameters(), *comm) sums their gradients over
  // the ranks, as the experts' already are; then every rank's optimizer takes the same step on
  // its copies. Without expert parallelism, every parameter.
  TensorList replicated_parameters() const;
  // The rest: the expert-parallel layers' experts, this rank's alone (empty without expert
  // parallelism). Clip with clip_grad_norm(replicated_parameters(), local_expert_parameters(),
  // max_norm, *comm) so that every rank scales by the same global norm.
  TensorList local_expert_parameters() const;

  const MoETransformerConfig& config() const { return config_; }
  Device device() const { return embed_tokens_->weight().device(); }
  const MoEDecoderLayer& layer(size_t index) const { return *layers_->at<MoEDecoderLayer>(index); }

 private:
  MoETransformerConfig config_;
  std::shared_ptr<Embedding> embed_tokens_, embed_positions_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<Linear> lm_head_;
};

}  // namespace nn
}  // namespace tinymoe
