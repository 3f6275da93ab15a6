// nn/hf_layer.h: one HuggingFace MoE layer in tinymoe, for checking tinymoe against HF
// (`tinymoe moe`, docs/hf_check.md is the contract: semantics per model type, names, shapes).
//
//   config.json --parse_hf_layer_config--> HFLayerConfig (block sizes + RouterConfig preset)
//   HF weights  --load_hf_layer----------> SparseMoEBlock in eval mode, HF tensors copied in
//   hidden_states [, grad_output] --run_hf_layer--> output, router_logits, losses, gradients
//
// Supported model_type values: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3,
// glm4_moe, llama4_text (or llama4, through its text_config), gpt_oss, switch_transformers. The
// SwiGLU types accept their experts per expert (hub checkpoints) or fused as transformers v5 holds
// them; Llama 4's and GPT-OSS's are fused only (nn/hf_expert_layout.h). Every problem is a tinymoe::Error naming
// "hf_layer" (or "hf_compare") that says what was expected and what came, listing every offending
// tensor name at once.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "nn/safetensors.h"

namespace tinymoe::nn {

// What a config.json says about one MoE layer.
struct HFLayerConfig {
  std::string model_type;
  SparseMoEConfig block;  // sizes, expert kind and shared expert (load_hf_layer sets block.router)
  // The preset of the model type with the config's k, flags and loss coefficients: mixtral,
  // qwen2_moe (norm_topk_prob), deepseek_v3 (n_group, topk_group, routed_scaling_factor,
  // norm_topk_prob) or switch_transformer (per-sequence expert_capacity, hf_switch aux loss).
  RouterConfig router;
};

// Parses the text of an HF config.json. Keys the layer does not use are ignored; size keys are
// required; flags and coefficients take the HF config class defaults when absent. Rejects bad
// JSON, an unknown model_type, a missing or ill-typed key, an activation other than the model's
// (silu for the SwiGLU types, relu or gelu for Switch), a router_dtype other than float32 and a
// GPT-OSS swiglu_limit other than 7.
HFLayerConfig parse_hf_layer_config(const std::string& json_text);

// Builds the layer of `config` in eval mode and copies `weights` in. Every weight name must start
// with `prefix` (stripped); the stripped names must be exactly the HF names of the model type
// (docs/hf_check.md section 3) with their HF shapes: per-expert Linear weights [out, in] are
// transposed into the block's stacked [E, in, out] experts (load_expert_weight_from_hf); the rest
// map one to one (Switch's router.classifier.weight is the block's gate.weight). A file with the
// fused experts.gate_up_proj / experts.down_proj is split into the per-expert names first
// (split_fused_experts). Unknown, missing and mis-shaped names are all listed in one Error.
std::shared_ptr<SparseMoEBlock> load_hf_layer(const HFLayerConfig& config, const TensorMap& weights,
                                              const std::string& prefix = "");

// Runs the layer as `tinymoe moe` does. input must hold "hidden_states" (f32, [B, S, d], or
// [T, d] meaning one sequence); grad_output, when not empty, must hold "grad_output" of the same
// shape. Returns (docs/hf_check.md section 1.3):
//   "output"            hidden_states' shape, no residual
//   "router_logits"     [B*S, E] f32, before softmax / sigmoid
//   "aux_loss", "z_loss" raw scalars, where the model type has them (no coefficient applied)
// and with a grad_output the derivatives of L = sum(output * grad_output) (losses excluded):
//   "grad.hidden_states" and "grad.<name>" for every weight name (without the prefix) in its HF
//   layout (fused weights get fused gradients); buffers (gate.e_score_correction_bias) and experts
//   no token reached get zeros.
// `diagnostics`, when given, receives the routing's load-balance diagnostics on this input (tokens
// per expert, CV, entropy, dead experts; nn/diagnostics.h), which `tinymoe moe` prints.
TensorMap run_hf_layer(const HFLayerConfig& config, const TensorMap& weights, const TensorMap& input,
                       const TensorMap& grad_output = {}, const std::string& prefix = "",
                       RoutingDiagnostics* diagnostics = nullptr);

// The distinct prefixes of HF MoE layers among tensor names: each name's part before its first
// segment that a MoE layer's own names start with (experts., gate., router., shared_expert.,
// shared_experts., shared_expert_gate.); names with none are left out. What `--prefix` can be:
// {"model.layers.0.mlp.", "model.layers.1.mlp."} for a two-layer checkpoint, {""} for a bare layer.
std::set<std::string> hf_layer_prefixes(const std::vector<std::string>& names);

// One tensor of a comparison: relative error ||actual - expected||_2 / max(1, ||expected||_2)
// (computed in double), and a problem text when a tensor is missing, extra or mis-shaped.
struct TensorComparison {
  std::string name;
  double relative_error = 0.0;
  bool passed = false;
  std::string problem;  // empty when both tensors exist with the same shape
};
// Compares every tensor of `expected` (and flags every extra tensor of `actual`), sorted by name;
// a tensor passes when relative_error <= tolerance. Floating tensors only ("hf_compare" errors).
std::vector<TensorComparison> compare_tensor_maps(const TensorMap& actual, const TensorMap& expected,
                                                  double tolerance = 1e-5);

}  // namespace tinymoe::nn
