#include "nn/moe_transformer.h"

#include <set>

#include "ops/elementwise.h"
#include "ops/loss.h"

namespace tinymoe {
namespace nn {
namespace {

constexpr const char* kOp = "MoETransformer";

const MoETransformerConfig& checked(const MoETransformerConfig& config) {
  TINYMOE_CHECK(config.vocab_size > 0 && config.max_sequence_length > 0 && config.num_layers > 0, kOp,
                "expected positive vocab_size, max_sequence_length and num_layers, got ", config.vocab_size, ", ",
                config.max_sequence_length, " and ", config.num_layers);
  const int64_t d = config.moe.hidden_size;
  TINYMOE_CHECK(config.num_heads > 0 && d > 0 && d % config.num_heads == 0, kOp,
                "expected num_heads to divide moe.hidden_size, got ", config.num_heads, " heads and hidden_size ", d);
  return config;
}

void check_ids(const Tensor& ids, const char* name, const MoETransformerConfig& config, Device device) {
  check_defined(ids, kOp, name);
  TINYMOE_CHECK(ids.dtype() == DType::i64, kOp, "expected ", name, " of dtype i64, got ", dtype_name(ids.dtype()));
  TINYMOE_CHECK(ids.device() == device, kOp, "expected ", name, " on the model's device ", device.str(), ", got ",
                ids.device().str());
  TINYMOE_CHECK(ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0 && ids.size(1) <= config.max_sequence_length, kOp,
                "expected ", name, " of shape [B, S] with B >= 1 and 1 <= S <= max_sequence_length ",
                config.max_sequence_length, ", got ", shape_str(ids.shape()));
}

}  // namespace

Tensor LMOutput::total_loss() const {
  TINYMOE_CHECK(loss.defined(), "LMOutput::total_loss", "no loss: call forward with targets");
  return add(loss, aux_loss);
}

MoEDecoderLayer::MoEDecoderLayer(int64_t num_heads, const SparseMoEConfig& moe, double rms_norm_eps,
                                 Generator* generator, std::shared_ptr<Communicator> expert_parallel)
    : input_layernorm_(register_module("input_layernorm",
                                       std::make_shared<RMSNorm>(moe.hidden_size, rms_norm_eps, moe.dtype))),
      self_attn_(register_module("self_attn",
                                 std::make_shared<CausalSelfAttention>(moe.hidden_size, num_heads, generator, moe.dtype))),
      post_attention_layernorm_(register_module("post_attention_layernorm",
                                                std::make_shared<RMSNorm>(moe.hidden_size, rms_norm_eps, moe.dtype))) {
  if (expert_parallel)
    expert_parallel_moe_ = register_module(
        "block_sparse_moe", std::make_shared<ExpertParallelMoEBlock>(moe, std::move(expert_parallel), generator));
  else
    block_sparse_moe_ = register_module("block_sparse_moe", std::make_shared<SparseMoEBlock>(moe, generator));
}

std::pair<Tensor, MoEOutput> MoEDecoderLayer::forward(const Tensor& x) const {
  Tensor h = add(x, self_attn_->forward(input_layernorm_->forward(x)));
  Tensor normed = post_attention_layernorm_->forward(h);
  MoEOutput moe = block_sparse_moe_ ? block_sparse_moe_->forward(normed) : expert_parallel_moe_->forward(normed);
  Tensor out = add(h, moe.output);
  return {out, std::move(moe)};
}

MoETransformer::MoETransformer(const MoETransformerConfig& config, Generator* generator) : config_(checked(config)) {
  const int64_t d = config.moe.hidden_size;
  const DType dtype = config.moe.dtype;
  embed_tokens_ = register_module("embed_tokens", std::make_shared<Embedding>(config.vocab_size, d, generator, dtype));
  embed_positions_ =
      register_module("embed_positions", std::make_shared<Embedding>(config.max_sequence_length, d, generator, dtype));
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t l = 0; l < config.num_layers; ++l)
    layers_->push_back(std::make_shared<MoEDecoderLayer>(config.num_heads, config.moe, config.rms_norm_eps, generator,
                                                         config.expert_parallel));
  norm_ = register_module("norm", std::make_shared<RMSNorm>(d, config.rms_norm_eps, dtype));
  lm_head_ = register_module("lm_head", std::make_shared<Linear>(d, config.vocab_size, false, generator, dtype));
}

LMOutput MoETransformer::forward(const Tensor& ids, const Tensor& targets) const {
  check_ids(ids, "ids", config_, device());
  if (targets.defined()) {
    check_ids(targets, "targets", config_, device());
    TINYMOE_CHECK(targets.shape() == ids.shape(), kOp, "expected targets of the shape of ids ",
                  shape_str(ids.shape()), ", got ", shape_str(targets.shape()));
  }
  const int64_t batch = ids.size(0), length = ids.size(1);
  Tensor positions = arange(length).to(device());
  Tensor h = add(embed_tokens_->forward(ids), embed_positions_->forward(positions));  // [B, S, d] + [S, d]

  LMOutput out;
  out.aux_loss = zeros({}, config_.moe.dtype, device());
  for (const auto& module : *layers_) {
    auto [next, moe] = static_cast<const MoEDecoderLayer&>(*module).forward(h);
    h = next;
    out.aux_loss = add(out.aux_loss, moe.routing.weighted_loss());
    out.layers.push_back(std::move(moe));
  }
  out.logits = lm_head_->forward(norm_->forward(h));
  if (targets.defined())
    out.loss = cross_entropy(out.logits.reshape({batch * length, config_.vocab_size}), targets.reshape({batch * length}));
  return out;
}

void MoETransformer::update_router_biases(const LMOutput& output, double rate) {
  TINYMOE_CHECK(output.layers.size() == layers_->size(), "MoETransformer::update_router_biases", "expected ",
                layers_->size(), " layer outputs, got ", output.layers.size());
  for (size_t l = 0; l < layers_->size(); ++l) {
    const MoEDecoderLayer& decoder = layer(l);
    if (decoder.block_sparse_moe()) {
      if (decoder.block_sparse_moe()->gate()->e_score_correction_bias().defined())
        decoder.block_sparse_moe()->update_bias(output.layers[l], rate);
    } else if (decoder.expert_parallel_moe()->gate()->e_score_correction_bias().defined()) {
      decoder.expert_parallel_moe()->update_bias(output.layers[l], rate);  // a collective: same on every rank
    }
  }
}

void MoETransformer::update_router_l1_coefficients(const LMOutput& output) {
  const char* op = "MoETransformer::update_router_l1_coefficients";
  TINYMOE_CHECK(output.layers.size() == layers_->size(), op, "expected ", layers_->size(), " layer outputs, got ",
                output.layers.size());
  std::vector<Router*> gates;
  double total_sparsity = 0.0;
  for (size_t l = 0; l < layers_->size(); ++l) {
    const MoEDecoderLayer& decoder = layer(l);
    const auto& local = decoder.block_sparse_moe();
    Router& gate = local ? *local->gate() : *decoder.expert_parallel_moe()->gate();
    if (!gate.config().l1_loss.enabled) continue;
    gates.push_back(&gate);
    total_sparsity += local ? output.layers[l].routing.sparsity()
                            : decoder.expert_parallel_moe()->routing_sparsity(output.layers[l]);  // a collective
  }
  for (Router* gate : gates) gate->update_l1_coefficient(total_sparsity / static_cast<double>(gates.size()));
}

TensorList MoETransformer::local_expert_parameters() const {
  TensorList own;
  for (size_t l = 0; l < layers_->size(); ++l)
    if (layer(l).expert_parallel_moe())
      for (const Tensor& expert : layer(l).expert_parallel_moe()->experts()->parameters()) own.push_back(expert);
  return own;
}

TensorList MoETransformer::replicated_parameters() const {
  std::set<const TensorImpl*> own;
  for (const Tensor& expert : local_expert_parameters()) own.insert(expert.impl());
  TensorList replicated;
  for (const Tensor& parameter : parameters())
    if (own.count(parameter.impl()) == 0) replicated.push_back(parameter);
  return replicated;
}

}  // namespace nn
}  // namespace tinymoe
