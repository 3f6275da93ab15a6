#include "nn/hf_expert_layout.h"

#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "ops/shape.h"
#include "tinymoe/autograd.h"

namespace tinymoe::nn {
namespace {

constexpr const char* kOp = "hf_layer";
const std::string kGateUp = "experts.gate_up_proj";
const std::string kDown = "experts.down_proj";
const std::string kGateUpBias = "experts.gate_up_proj_bias";
const std::string kDownBias = "experts.down_proj_bias";
const std::string kExpertsPrefix = "experts.";

// Switch's experts are DenseActDense modules, never fused.
bool can_be_fused(const HFLayerConfig& config) {
  return config.block.expert_kind == ExpertKind::swiglu || config.block.expert_kind == ExpertKind::gpt_oss;
}

// GPT-OSS: x @ W layout, gate and up interleaved, with biases (GptOssExperts).
bool gpt_oss_layout(const HFLayerConfig& config) { return config.block.expert_kind == ExpertKind::gpt_oss; }

// Llama 4's experts exist only fused, applied as x @ W: the v5 tensors transposed in their last two
// dims, gate_up_proj [E, d, 2f] and down_proj [E, f, d] (Llama4TextExperts).
bool transposed_layout(const HFLayerConfig& config) { return config.model_type == "llama4_text"; }

// The fused tensors of the layer's layout and their shapes.
std::vector<std::pair<std::string, Shape>> fused_tensors(const HFLayerConfig& config) {
  const int64_t experts = config.block.num_experts, d = config.block.hidden_size, f = config.block.intermediate_size;
  if (gpt_oss_layout(config))
    return {{kGateUp, {experts, d, 2 * f}}, {kGateUpBias, {experts, 2 * f}}, {kDown, {experts, f, d}},
            {kDownBias, {experts, d}}};
  if (transposed_layout(config)) return {{kGateUp, {experts, d, 2 * f}}, {kDown, {experts, f, d}}};
  return {{kGateUp, {experts, 2 * f, d}}, {kDown, {experts, d, f}}};
}

// GPT-OSS keeps gate and up interleaved along the last dim (gate_up[..., ::2] is the gate): the
// pairs are adjacent, so a [..., 2f] tensor viewed as [..., f, 2] holds gate at 0 and up at 1.
Tensor interleaved_half(const Tensor& fused, int64_t which) {
  Shape pairs = fused.shape();
  pairs.back() /= 2;
  Shape half = pairs;
  pairs.push_back(2);
  return slice(fused.reshape(pairs), static_cast<int64_t>(pairs.size()) - 1, which, which + 1).reshape(half);
}
Tensor interleave(const Tensor& gate, const Tensor& up) {
  Shape fused = gate.shape();
  fused.back() *= 2;
  return stack({gate, up}, gate.dim()).reshape(fused);
}

bool starts_with(const std::string& text, const std::string& start) { return text.compare(0, start.size(), start) == 0; }

// A fused tensor in the v5 layout ([E, 2f, d] / [E, d, f]) from the file's, and back.
Tensor to_v5_layout(const HFLayerConfig& config, const Tensor& fused) {
  return transposed_layout(config) ? transpose(fused, 1, 2) : fused;
}

// Expert e's rows [start, end) of a fused tensor [E, rows, cols], as an HF Linear weight [rows', cols].
Tensor expert_rows(const Tensor& fused, int64_t expert, int64_t start, int64_t end) {
  Tensor one_expert = slice(fused, 0, expert, expert + 1);
  return slice(one_expert, 1, start, end).reshape({end - start, fused.size(2)});
}

// A gradient [rows, cols] as one expert's slab [1, rows, cols] of a fused gradient.
Tensor as_slab(const Tensor& gradient) { return gradient.reshape({1, gradient.size(0), gradient.size(1)}); }

// GPT-OSS's four tensors as the GptOssExperts parameters, under the block's names (whole-tensor
// slots: the stacked layout is already x @ W).
TensorMap split_gpt_oss(const TensorMap& weights, const std::string& prefix) {
  TensorMap split = weights;
  const auto take = [&](const std::string& name) {
    Tensor tensor = weights.at(prefix + name);
    split.erase(prefix + name);
    return tensor;
  };
  const Tensor gate_up = take(kGateUp), gate_up_bias = take(kGateUpBias);
  split[prefix + "experts.w1"] = interleaved_half(gate_up, 0);
  split[prefix + "experts.w3"] = interleaved_half(gate_up, 1);
  split[prefix + "experts.b1"] = interleaved_half(gate_up_bias, 0);
  split[prefix + "experts.b3"] = interleaved_half(gate_up_bias, 1);
  split[prefix + "experts.w2"] = take(kDown);
  split[prefix + "experts.b2"] = take(kDownBias);
  return split;
}

TensorMap fuse_gpt_oss_gradients(const TensorMap& result) {
  TensorMap fused = result;
  const auto take = [&](const char* name) {
    const std::string key = std::string("grad.experts.") + name;
    Tensor gradient = result.at(key);
    fused.erase(key);
    return gradient;
  };
  fused["grad." + kGateUp] = interleave(take("w1"), take("w3"));
  fused["grad." + kGateUpBias] = interleave(take("b1"), take("b3"));
  fused["grad." + kDown] = take("w2");
  fused["grad." + kDownBias] = take("b2");
  return fused;
}

}  // namespace

std::string fused_expert_problems(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  std::ostringstream problems;
  const auto tensors = fused_tensors(config);
  std::set<std::string> fused_names;
  for (const auto& [name, expected] : tensors) {
    fused_names.insert(prefix + name);
    auto found = weights.find(prefix + name);
    if (found == weights.end())
      problems << " missing " << prefix << name << " " << shape_str(expected) << ";";
    else if (found->second.shape() != expected || !is_floating(found->second.dtype()))
      problems << " " << prefix << name << " expected a floating " << shape_str(expected) << ", got "
               << dtype_name(found->second.dtype()) << " " << shape_str(found->second.shape()) << ";";
  }
  std::vector<std::string> per_expert;
  for (const auto& entry : weights) {
    const std::string& name = entry.first;
    if (starts_with(name, prefix + kExpertsPrefix) && !fused_names.count(name)) per_expert.push_back(name);
  }
  if (!per_expert.empty()) {
    problems << " per-expert tensors beside the fused ones:";
    for (const std::string& name : per_expert) problems << " " << name;
    problems << ";";
  }
  return problems.str();
}


std::string hf_expert_weight_name(const std::string& model_type, const std::string& stacked, int64_t expert) {
  const std::string index = std::to_string(expert);
  if (model_type == "switch_transformers") return "experts.expert_" + index + "." + stacked + ".weight";
  if (model_type == "mixtral") return "experts." + index + "." + stacked + ".weight";
  // Qwen2-MoE, Qwen3-MoE, OLMoE and DeepSeek-V3 name Mixtral's w1, w3, w2 gate_proj, up_proj, down_proj.
  const std::string projection = stacked == "w1" ? "gate_proj" : stacked == "w3" ? "up_proj" : "down_proj";
  return "experts." + index + "." + projection + ".weight";
}

bool holds_fused_experts(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  return can_be_fused(config) && (transposed_layout(config) || gpt_oss_layout(config) ||
                                  weights.count(prefix + kGateUp) || weights.count(prefix + kDown));
}

TensorMap split_fused_experts(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  const std::string problems = fused_expert_problems(config, weights, prefix);
  TINYMOE_CHECK(problems.empty(), kOp, "the fused experts do not match the layer:", problems);
  NoGradGuard no_grad;
  if (gpt_oss_layout(config)) return split_gpt_oss(weights, prefix);
  const Tensor gate_up = to_v5_layout(config, weights.at(prefix + kGateUp));
  const Tensor down = to_v5_layout(config, weights.at(prefix + kDown));
  const int64_t intermediate = config.block.intermediate_size;
  TensorMap split = weights;
  split.erase(prefix + kGateUp);
  split.erase(prefix + kDown);
  for (int64_t expert = 0; expert < config.block.num_experts; ++expert) {
    const auto name = [&](const char* stacked) { return prefix + hf_expert_weight_name(config.model_type, stacked, expert); };
    split[name("w1")] = expert_rows(gate_up, expert, 0, intermediate);
    split[name("w3")] = expert_rows(gate_up, expert, intermediate, 2 * intermediate);
    split[name("w2")] = expert_rows(down, expert, 0, down.size(1));
  }
  return split;
}

TensorMap fuse_expert_gradients(const HFLayerConfig& config, const TensorMap& result) {
  NoGradGuard no_grad;
  if (gpt_oss_layout(config)) return fuse_gpt_oss_gradients(result);
  TensorMap fused = result;
  TensorList gate_up, down;
  for (int64_t expert = 0; expert < config.block.num_experts; ++expert) {
    const auto take = [&](const char* stacked) {
      const std::string name = "grad." + hf_expert_weight_name(config.model_type, stacked, expert);
      Tensor gradient = result.at(name);
      fused.erase(name);
      return as_slab(gradient);
    };
    gate_up.push_back(concat({take("w1"), take("w3")}, 1));
    down.push_back(take("w2"));
  }
  // The v5 layout's transpose is its own inverse: to_v5_layout maps back to Llama 4's too.
  fused["grad." + kGateUp] = to_v5_layout(config, concat(gate_up, 0));
  fused["grad." + kDown] = to_v5_layout(config, concat(down, 0));
  return fused;
}

}  // namespace tinymoe::nn
