#include "nn/hf_expert_layout.h"

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
const std::string kExpertsPrefix = "experts.";

// Switch's experts are DenseActDense modules, never fused.
bool can_be_fused(const HFLayerConfig& config) { return config.block.expert_kind == ExpertKind::swiglu; }

// Llama 4's experts exist only fused, applied as x @ W: the v5 tensors transposed in their last two
// dims, gate_up_proj [E, d, 2f] and down_proj [E, f, d] (Llama4TextExperts).
bool transposed_layout(const HFLayerConfig& config) { return config.model_type == "llama4_text"; }

bool starts_with(const std::string& text, const std::string& start) { return text.compare(0, start.size(), start) == 0; }

// The fused tensor's expected shape: gate_up [E, 2f, d], down [E, d, f]; transposed for Llama 4.
Shape fused_shape(const HFLayerConfig& config, const std::string& name) {
  const int64_t experts = config.block.num_experts, hidden = config.block.hidden_size;
  const int64_t intermediate = config.block.intermediate_size;
  Shape shape = name == kGateUp ? Shape{experts, 2 * intermediate, hidden} : Shape{experts, hidden, intermediate};
  if (transposed_layout(config)) std::swap(shape[1], shape[2]);
  return shape;
}

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

}  // namespace

std::string fused_expert_problems(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  std::ostringstream problems;
  for (const std::string& name : {kGateUp, kDown}) {
    auto found = weights.find(prefix + name);
    const Shape expected = fused_shape(config, name);
    if (found == weights.end())
      problems << " missing " << prefix << name << " " << shape_str(expected) << ";";
    else if (found->second.shape() != expected || !is_floating(found->second.dtype()))
      problems << " " << prefix << name << " expected a floating " << shape_str(expected) << ", got "
               << dtype_name(found->second.dtype()) << " " << shape_str(found->second.shape()) << ";";
  }
  std::vector<std::string> per_expert;
  for (const auto& entry : weights) {
    const std::string& name = entry.first;
    if (starts_with(name, prefix + kExpertsPrefix) && name != prefix + kGateUp && name != prefix + kDown)
      per_expert.push_back(name);
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
  return can_be_fused(config) &&
         (transposed_layout(config) || weights.count(prefix + kGateUp) || weights.count(prefix + kDown));
}

TensorMap split_fused_experts(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  const std::string problems = fused_expert_problems(config, weights, prefix);
  TINYMOE_CHECK(problems.empty(), kOp, "the fused experts do not match the layer:", problems);
  NoGradGuard no_grad;
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
  TensorMap fused = result;
  TensorList gate_up, down;
  NoGradGuard no_grad;
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
