// nn/hf_expert_layout.h: the two ways HuggingFace stores the routed experts of a SwiGLU MoE layer,
// and the conversion between them, for `tinymoe moe` (docs/hf_check.md section 3.1).
//
//   per expert (hub checkpoints, transformers v4):  experts.<e>.<gate>.weight [f, d]
//                                                   experts.<e>.<up>.weight   [f, d]
//                                                   experts.<e>.<down>.weight [d, f]
//     with <gate>, <up>, <down> = w1, w3, w2 (Mixtral) or gate_proj, up_proj, down_proj (others);
//   fused (transformers v5 modules, e.g. MixtralExperts): experts.gate_up_proj [E, 2f, d]
//                                                          experts.down_proj    [E, d, f]
//     where forward computes `gate, up = linear(x, gate_up_proj[e]).chunk(2, dim=-1)`, so rows
//     0..f-1 of gate_up_proj[e] are expert e's gate weight and rows f..2f-1 its up weight;
//   fused and transposed (Llama 4, its only layout, checkpoints included): experts.gate_up_proj
//     [E, d, 2f] and experts.down_proj [E, f, d], applied as x @ W (Llama4TextExperts);
//   GPT-OSS's (its only layout): gate_up_proj [E, d, 2f] with gate and up interleaved (even and
//     odd columns), gate_up_proj_bias [E, 2f] likewise, down_proj [E, f, d], down_proj_bias [E, d];
//     split into the GptOssExperts parameters under the block's names (experts.w1, ..., b2).
//
// The layer loads the per-expert names; a fused file is split into them first, and the gradients
// of a fused file are fused back, so `--out` speaks the layout the weights came in.
#pragma once

#include <string>

#include "nn/hf_layer.h"

namespace tinymoe::nn {

// HF's per-expert name of the block's stacked expert weight `stacked` (w1, w3, w2; Switch: wi, wo)
// for the model type: experts.<e>.w1.weight (mixtral), experts.expert_<e>.wi.weight
// (switch_transformers), experts.<e>.gate_proj.weight (the others).
std::string hf_expert_weight_name(const std::string& model_type, const std::string& stacked, int64_t expert);

// Whether the layer's experts come fused: the model type can have them fused (the SwiGLU types)
// and `weights` holds prefix + experts.gate_up_proj or experts.down_proj, or it has no other
// layout (llama4_text).
bool holds_fused_experts(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix);

// What is wrong with the fused experts of `weights` (empty when nothing), every problem at once,
// each as " <problem>;": one of the two missing, a wrong shape or a non-floating dtype (with the
// expected shape), per-expert names beside them (two copies of the same experts).
std::string fused_expert_problems(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix);

// `weights` with the two fused tensors replaced by every expert's per-expert tensors (same
// prefix, same dtype). An Error ("hf_layer") lists the fused_expert_problems, if any.
TensorMap split_fused_experts(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix);

// `result` of run_hf_layer with the per-expert gradients grad.experts.<e>.* replaced by
// grad.experts.gate_up_proj and grad.experts.down_proj in the weights' fused layout.
TensorMap fuse_expert_gradients(const HFLayerConfig& config, const TensorMap& result);

}  // namespace tinymoe::nn
