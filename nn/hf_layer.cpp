#include "nn/hf_layer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "nn/gpt_oss_experts.h"
#include "nn/hf_expert_layout.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tinymoe/autograd.h"
#include "tinymoe/random.h"

namespace tinymoe::nn {
namespace {

using nlohmann::json;

constexpr const char* kOp = "hf_layer";
constexpr const char* kModelTypes =
    "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, glm4_moe, llama4_text (or llama4), gpt_oss, "
    "switch_transformers";

// ---- config.json ----

const json* find_key(const json& config, const char* key) {
  auto it = config.find(key);
  return it == config.end() || it->is_null() ? nullptr : &*it;
}

// An integer key; a missing key takes `fallback` (the HF config class default) or is an error.
int64_t get_int(const json& config, const char* key, std::optional<int64_t> fallback = std::nullopt) {
  const json* value = find_key(config, key);
  if (!value) {
    TINYMOE_CHECK(fallback.has_value(), kOp, "config.json lacks the key '", key, "'");
    return *fallback;
  }
  TINYMOE_CHECK(value->is_number_integer(), kOp, "expected '", key, "' to be an integer, got ", value->dump());
  return value->get<int64_t>();
}

// A size: an integer >= 1.
int64_t get_size(const json& config, const char* key, std::optional<int64_t> fallback = std::nullopt) {
  const int64_t size = get_int(config, key, fallback);
  TINYMOE_CHECK(size >= 1, kOp, "expected '", key, "' >= 1, got ", size);
  return size;
}

// A size under `key` or, when the file lacks it, under the config class's attribute_map `alias`.
int64_t get_size_or_alias(const json& config, const char* key, const char* alias) {
  return get_size(config, !find_key(config, key) && find_key(config, alias) ? alias : key);
}

double get_double(const json& config, const char* key, double fallback) {
  const json* value = find_key(config, key);
  if (!value) return fallback;
  TINYMOE_CHECK(value->is_number(), kOp, "expected '", key, "' to be a number, got ", value->dump());
  return value->get<double>();
}

bool get_bool(const json& config, const char* key, bool fallback) {
  const json* value = find_key(config, key);
  if (!value) return fallback;
  TINYMOE_CHECK(value->is_boolean(), kOp, "expected '", key, "' to be true or false, got ", value->dump());
  return value->get<bool>();
}

std::string get_string(const json& config, const char* key, const std::string& fallback) {
  const json* value = find_key(config, key);
  if (!value) return fallback;
  TINYMOE_CHECK(value->is_string(), kOp, "expected '", key, "' to be a string, got ", value->dump());
  return value->get<std::string>();
}

// The SwiGLU model types compute silu(gate_proj x) * up_proj x; another act would be another layer.
void require_silu(const json& config) {
  const std::string act = get_string(config, "hidden_act", "silu");
  TINYMOE_CHECK(act == "silu", kOp, "expected hidden_act 'silu' (the SwiGLU experts), got '", act, "'");
}

// The sizes of a SwiGLU type's layer: E (read by the caller, some types have aliases), d from
// hidden_size and the routed experts' f from intermediate_key; the activation must be silu.
HFLayerConfig swiglu_layer(const json& config, int64_t num_experts, const char* intermediate_key) {
  require_silu(config);
  HFLayerConfig layer;
  layer.block.num_experts = num_experts;
  layer.block.hidden_size = get_size(config, "hidden_size");
  layer.block.intermediate_size = get_size(config, intermediate_key);
  return layer;
}

// MixtralConfig: num_local_experts (attribute_map alias num_experts), k default 2.
HFLayerConfig parse_mixtral(const json& config) {
  HFLayerConfig layer =
      swiglu_layer(config, get_size_or_alias(config, "num_local_experts", "num_experts"), "intermediate_size");
  layer.router = mixtral(layer.block.num_experts, get_size(config, "num_experts_per_tok", 2));
  layer.router.aux_loss.coefficient = get_double(config, "router_aux_loss_coef", 0.001);
  return layer;
}

// Qwen2MoeConfig: moe_intermediate_size for the routed experts, a sigmoid-gated shared expert,
// norm_topk_prob default false, k default 4.
HFLayerConfig parse_qwen2_moe(const json& config) {
  HFLayerConfig layer = swiglu_layer(config, get_size(config, "num_experts"), "moe_intermediate_size");
  layer.block.shared = {SharedExpertKind::sigmoid_gated, 1, get_size(config, "shared_expert_intermediate_size")};
  layer.router = qwen2_moe(layer.block.num_experts, get_size(config, "num_experts_per_tok", 4),
                           get_bool(config, "norm_topk_prob", false));
  layer.router.aux_loss.coefficient = get_double(config, "router_aux_loss_coef", 0.001);
  return layer;
}

// Qwen3MoeConfig and OlmoeConfig: Qwen2-MoE's router (softmax, top-k, renormalised iff
// norm_topk_prob, default false) without a shared expert; k default 8. Qwen3-MoE sizes its experts
// with moe_intermediate_size (aux coefficient 0.001), OLMoE with intermediate_size (0.01, the v5
// class default and the released checkpoint's value; v4's class said 0.001). OLMoE's v5
// attribute_map also calls num_experts num_local_experts.
HFLayerConfig parse_softmax_topk_without_shared(const json& config, const char* intermediate_key,
                                                double default_aux_coefficient) {
  HFLayerConfig layer =
      swiglu_layer(config, get_size_or_alias(config, "num_experts", "num_local_experts"), intermediate_key);
  layer.router = qwen2_moe(layer.block.num_experts, get_size(config, "num_experts_per_tok", 8),
                           get_bool(config, "norm_topk_prob", false));
  layer.router.aux_loss.coefficient = get_double(config, "router_aux_loss_coef", default_aux_coefficient);
  return layer;
}

// The config class defaults of DeepSeek-V3's router keys, which GLM-4.5 shares with other values.
struct GroupedRouterDefaults {
  int64_t n_group, topk_group;
  double routed_scaling_factor;
};

// DeepseekV3Config: sigmoid + bias-corrected group top-k (scoring_func / topk_method are ignored
// by the HF class), n_shared_experts ungated shared experts; defaults k 8, n_group 8, topk_group 4,
// norm_topk_prob true, routed_scaling_factor 2.5. HF computes no loss for this layer.
// Glm4MoeConfig: HF's Glm4MoeMoE / Glm4MoeTopkRouter are DeepSeek-V3's code line for line; only
// the defaults differ (n_group 1, topk_group 1, routed_scaling_factor 1.0). No loss either.
HFLayerConfig parse_sigmoid_grouped(const json& config, GroupedRouterDefaults defaults) {
  HFLayerConfig layer = swiglu_layer(config, get_size(config, "n_routed_experts"), "moe_intermediate_size");
  layer.block.shared = {SharedExpertKind::ungated, get_size(config, "n_shared_experts", 1),
                        layer.block.intermediate_size};
  layer.router = deepseek_v3(layer.block.num_experts, get_size(config, "num_experts_per_tok", 8),
                             get_size(config, "n_group", defaults.n_group),
                             get_size(config, "topk_group", defaults.topk_group),
                             get_double(config, "routed_scaling_factor", defaults.routed_scaling_factor),
                             get_bool(config, "norm_topk_prob", true));
  return layer;
}

// SwitchTransformersConfig: d_model / d_ff, top-1 with expert_capacity tokens per expert and per
// sequence (default 64), DenseActDense experts (dense_act_fn relu or exact gelu), the router in
// float32, with a bias when router_bias (default false); z-loss and the hf_switch aux loss.
HFLayerConfig parse_switch(const json& config) {
  const std::string router_dtype = get_string(config, "router_dtype", "float32");
  TINYMOE_CHECK(router_dtype == "float32", kOp, "expected router_dtype 'float32', got '", router_dtype, "'");
  const std::string act = get_string(config, "dense_act_fn", "relu");
  TINYMOE_CHECK(act == "relu" || act == "gelu", kOp, "expected dense_act_fn 'relu' or 'gelu', got '", act, "'");
  HFLayerConfig layer;
  layer.block.num_experts = get_size(config, "num_experts", 8);
  layer.block.hidden_size = get_size(config, "d_model");
  layer.block.intermediate_size = get_size(config, "d_ff");
  layer.block.expert_kind = act == "relu" ? ExpertKind::relu : ExpertKind::gelu;
  layer.router = switch_transformer(layer.block.num_experts,
                                    CapacityConfig::per_sequence_count(get_size(config, "expert_capacity", 64)));
  layer.router.aux_loss.coefficient = get_double(config, "router_aux_loss_coef", 0.001);
  layer.router.z_loss.coefficient = get_double(config, "router_z_loss_coef", 0.001);
  layer.router.gate_bias = get_bool(config, "router_bias", false);  // router.classifier.bias
  return layer;
}

// DeepseekV2Config: softmax scores; topk_method "greedy" (top-k) or "group_limited_greedy"
// (n_group groups scored by their max, topk_group kept); weights times routed_scaling_factor
// (default 1.0), never renormalised (HF's gate stores norm_topk_prob and never reads it);
// n_shared_experts (default 2) ungated shared experts of moe_intermediate_size each. No loss.
HFLayerConfig parse_deepseek_v2(const json& config) {
  HFLayerConfig layer = swiglu_layer(config, get_size(config, "n_routed_experts"), "moe_intermediate_size");
  layer.block.shared = {SharedExpertKind::ungated, get_size(config, "n_shared_experts", 2),
                        layer.block.intermediate_size};
  const std::string method = get_string(config, "topk_method", "greedy");
  TINYMOE_CHECK(method == "greedy" || method == "group_limited_greedy", kOp,
                "expected topk_method 'greedy' or 'group_limited_greedy', got '", method, "'");
  const bool grouped = method == "group_limited_greedy";
  layer.router = deepseek_v2(layer.block.num_experts, get_size(config, "num_experts_per_tok"),
                             grouped ? get_size(config, "n_group") : 1, grouped ? get_size(config, "topk_group") : 1,
                             get_double(config, "routed_scaling_factor", 1.0));
  return layer;
}

// Llama4TextConfig: num_local_experts routed experts and one ungated shared expert, all of
// intermediate_size (intermediate_size_mlp sizes the dense layers: unused), k default 1. HF's
// Llama4ForCausalLM computes no loss (router_aux_loss_coef is stored, never used).
HFLayerConfig parse_llama4_text(const json& config) {
  HFLayerConfig layer = swiglu_layer(config, get_size(config, "num_local_experts"), "intermediate_size");
  layer.block.shared = {SharedExpertKind::ungated, 1, layer.block.intermediate_size};
  layer.router = llama4(layer.block.num_experts, get_size(config, "num_experts_per_tok", 1));
  return layer;
}

// GptOssConfig: num_local_experts GptOssExperts of intermediate_size, k default 4, a router with
// a bias, aux coefficient 0.9. HF's bf16 experts hard-code limit 7.0 and alpha 1.702 (only its
// MXFP4 kernel reads swiglu_limit), so a config asking for another limit is refused rather than
// silently run with 7.0. hidden_act is not read by these experts.
HFLayerConfig parse_gpt_oss(const json& config) {
  HFLayerConfig layer;
  layer.block.num_experts = get_size(config, "num_local_experts");
  layer.block.hidden_size = get_size(config, "hidden_size");
  layer.block.intermediate_size = get_size(config, "intermediate_size");
  layer.block.expert_kind = ExpertKind::gpt_oss;
  const double limit = get_double(config, "swiglu_limit", GptOssExperts::kDefaultLimit);
  TINYMOE_CHECK(limit == GptOssExperts::kDefaultLimit, kOp, "expected swiglu_limit 7.0 (HF's GptOssExperts hard-codes it), got ",
                limit);
  layer.router = gpt_oss(layer.block.num_experts, get_size(config, "num_experts_per_tok", 4));
  layer.router.aux_loss.coefficient = get_double(config, "router_aux_loss_coef", 0.9);
  return layer;
}

// A Llama4Config (model_type "llama4", the multimodal checkpoints) holds the language model's
// settings in text_config: its MoE layers are those of llama4_text.
const json& text_config_of_llama4(const json& config) {
  const json* text = find_key(config, "text_config");
  TINYMOE_CHECK(text && text->is_object(), kOp, "a model_type 'llama4' config.json needs a 'text_config' object");
  const std::string inner = get_string(*text, "model_type", "llama4_text");
  TINYMOE_CHECK(inner == "llama4_text", kOp, "expected text_config.model_type 'llama4_text', got '", inner, "'");
  return *text;
}

json parse_json_object(const std::string& json_text) {
  json config;
  try {
    config = json::parse(json_text);
  } catch (const json::exception& error) {
    fail(kOp, "config.json is not valid JSON: ", error.what());
  }
  TINYMOE_CHECK(config.is_object(), kOp, "expected config.json to hold a JSON object, got ", config.type_name());
  return config;
}

// ---- weights: HF names <-> the block's tensors ----

// One tensor of the HF weights file and where it lives in the block.
struct WeightSlot {
  std::string hf_name;
  Shape hf_shape;
  Tensor target;        // the block's parameter or buffer
  int64_t expert = -1;  // >= 0: HF expert `expert`'s [out, in] = target[expert]^T (stacked experts)
  bool buffer = false;  // no gradient: grad.<name> is zeros
};

struct LoadedLayer {
  std::shared_ptr<SparseMoEBlock> block;
  std::vector<WeightSlot> slots;
};

// The HF name of the block's tensor `name` (not a routed expert's): the block calls every router
// `gate` and an ungated shared MLP `shared_experts` (DeepSeek-V3's name).
std::string hf_tensor_name(const std::string& model_type, const std::string& name) {
  if (model_type == "switch_transformers" && name.compare(0, 5, "gate.") == 0)
    return "router.classifier." + name.substr(5);  // weight, and bias with router_bias
  const std::string shared = "shared_experts.";
  if (model_type == "llama4_text" && name == "gate.weight") return "router.weight";
  if (model_type == "gpt_oss" && name.compare(0, 5, "gate.") == 0) return "router." + name.substr(5);  // weight, bias
  if (model_type == "llama4_text" && name.compare(0, shared.size(), shared) == 0)
    return "shared_expert." + name.substr(shared.size());
  return name;
}

void add_slots(const std::string& model_type, const NamedTensors& tensors, bool buffer,
               std::vector<WeightSlot>* slots) {
  const std::string experts_prefix = "experts.";
  for (const auto& [name, tensor] : tensors) {
    // GPT-OSS's experts arrive whole, already in the stacked x @ W layout (split_fused_experts).
    if (name.compare(0, experts_prefix.size(), experts_prefix) != 0 || model_type == "gpt_oss") {
      slots->push_back({hf_tensor_name(model_type, name), tensor.shape(), tensor, -1, buffer});
      continue;
    }
    const std::string stacked = name.substr(experts_prefix.size());
    for (int64_t expert = 0; expert < tensor.size(0); ++expert)
      slots->push_back({hf_expert_weight_name(model_type, stacked, expert), {tensor.size(2), tensor.size(1)}, tensor, expert,
                        buffer});
  }
}

// The block in eval mode (HF's layers are checked in eval: no jitter, no dropout) and its slots.
LoadedLayer build_block(const HFLayerConfig& config) {
  SparseMoEConfig block_config = config.block;
  block_config.router = config.router;  // the gate is a Router; its bias is gate.e_score_correction_bias
  Generator init_generator(0);          // every value is overwritten by the weights file
  LoadedLayer layer{std::make_shared<SparseMoEBlock>(block_config, &init_generator), {}};
  layer.block->eval();
  add_slots(config.model_type, layer.block->named_parameters(), false, &layer.slots);
  add_slots(config.model_type, layer.block->named_buffers(), true, &layer.slots);
  return layer;
}

std::string join(const std::vector<std::string>& names) {
  std::ostringstream text;
  for (size_t i = 0; i < names.size(); ++i) text << (i ? ", " : "") << names[i];
  return text.str();
}

// When no name matched: the layer prefix the file's names carry, if it is not the one given, is
// most likely the --prefix the user meant (model.layers.3.mlp. of a checkpoint).
std::string prefix_hint(const TensorMap& weights, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& entry : weights) names.push_back(entry.first);
  const std::set<std::string> layers = hf_layer_prefixes(names);
  if (layers.size() == 1 && *layers.begin() != prefix && !layers.begin()->empty())
    return " every name starts with '" + *layers.begin() + "': is that the prefix?";
  if (layers.size() > 1) return " the names hold " + std::to_string(layers.size()) + " layers: pass one's prefix";
  return "";
}

// What is wrong with `weights` against `slots` (empty when nothing), every problem at once; the
// tensors that fit go to `matched`, by stripped name.
std::string weight_problems(const std::vector<WeightSlot>& slots, const TensorMap& weights, const std::string& prefix,
                            std::map<std::string, Tensor>* matched) {
  std::map<std::string, const WeightSlot*> by_name;
  for (const WeightSlot& slot : slots) by_name[slot.hf_name] = &slot;
  std::vector<std::string> unexpected, mis_shaped, missing;
  for (const auto& [full_name, tensor] : weights) {
    const bool has_prefix = full_name.compare(0, prefix.size(), prefix) == 0;
    auto slot = has_prefix ? by_name.find(full_name.substr(prefix.size())) : by_name.end();
    if (slot == by_name.end()) {
      unexpected.push_back(full_name);
    } else if (tensor.shape() != slot->second->hf_shape || !is_floating(tensor.dtype())) {
      mis_shaped.push_back(full_name + " (expected a floating " + shape_str(slot->second->hf_shape) + ", got " +
                           dtype_name(tensor.dtype()) + " " + shape_str(tensor.shape()) + ")");
    } else {
      (*matched)[slot->first] = tensor;
    }
  }
  for (const WeightSlot& slot : slots)
    if (!weights.count(prefix + slot.hf_name)) missing.push_back(prefix + slot.hf_name);
  std::ostringstream problems;
  if (!missing.empty()) problems << " missing: " << join(missing) << ";";
  if (!unexpected.empty()) problems << " unexpected (unknown to this model type or without the prefix '" << prefix
                                    << "'): " << join(unexpected) << ";";
  if (!mis_shaped.empty()) problems << " wrong shape or dtype: " << join(mis_shaped) << ";";
  return problems.str();
}

// `weights` without the layer's expert tensors (prefix + experts.*), and the slots without the
// routed experts': what is left to check when the fused experts are already known to be wrong.
TensorMap without_experts(const TensorMap& weights, const std::string& prefix) {
  TensorMap rest;
  for (const auto& [name, tensor] : weights)
    if (name.compare(0, prefix.size() + 8, prefix + "experts.") != 0) rest[name] = tensor;
  return rest;
}
std::vector<WeightSlot> non_expert_slots(const std::vector<WeightSlot>& slots) {
  std::vector<WeightSlot> rest;
  for (const WeightSlot& slot : slots)  // GPT-OSS's whole-tensor expert slots are experts too
    if (slot.expert < 0 && slot.hf_name.compare(0, 8, "experts.") != 0) rest.push_back(slot);
  return rest;
}

// The file's tensors by stripped name, after checking every name, shape and dtype (the fused
// experts' too); one Error lists every problem.
std::map<std::string, Tensor> match_weights(const HFLayerConfig& config, const std::vector<WeightSlot>& slots,
                                            const TensorMap& weights, const std::string& prefix) {
  std::string problems;
  TensorMap usable = weights;
  std::vector<WeightSlot> checked = slots;
  if (holds_fused_experts(config, weights, prefix)) {
    problems = fused_expert_problems(config, weights, prefix);
    usable = problems.empty() ? split_fused_experts(config, weights, prefix) : without_experts(weights, prefix);
    if (!problems.empty()) checked = non_expert_slots(slots);
  }
  std::map<std::string, Tensor> matched;
  problems += weight_problems(checked, usable, prefix, &matched);
  if (matched.empty() && !weights.empty()) problems += prefix_hint(weights, prefix);
  TINYMOE_CHECK(problems.empty(), kOp, "the weights do not match the layer's HF names and shapes:", problems);
  return matched;
}

// Copies `source` (any floating dtype, the destination's shape) into the destination's storage.
void copy_into(const Tensor& destination, const Tensor& source) {
  Tensor converted = source.detach().to(destination.dtype());
  std::memcpy(destination.raw_data(), converted.raw_data(), destination.nbytes());
}

LoadedLayer load_layer(const HFLayerConfig& config, const TensorMap& weights, const std::string& prefix) {
  LoadedLayer layer = build_block(config);
  std::map<std::string, Tensor> matched = match_weights(config, layer.slots, weights, prefix);
  NoGradGuard no_grad;
  for (const WeightSlot& slot : layer.slots) {
    const Tensor& source = matched.at(slot.hf_name);
    if (slot.expert >= 0)
      load_expert_weight_from_hf(slot.target, slot.expert, source.to(slot.target.dtype()), slot.hf_name.c_str());
    else
      copy_into(slot.target, source);
  }
  return layer;
}

const Tensor& required_tensor(const TensorMap& tensors, const std::string& name, const char* file) {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  std::vector<std::string> present;
  for (const auto& entry : tensors) present.push_back(entry.first);
  fail(kOp, "expected a tensor '", name, "' in the ", file, " file, got [", join(present), "]");
}

// grad.<name> in HF layout: the expert's slice transposed, zeros for buffers and untouched tensors.
Tensor slot_gradient(const WeightSlot& slot) {
  Tensor grad = slot.buffer ? Tensor() : slot.target.grad();
  if (!grad.defined()) return zeros(slot.hf_shape, slot.target.dtype());
  return slot.expert >= 0 ? expert_weight_to_hf(grad, slot.expert) : grad.detach();
}

double squared_norm(const std::vector<double>& values) {
  double total = 0.0;
  for (double value : values) total += value * value;
  return total;
}

TensorComparison compare_tensors(const std::string& name, const Tensor& actual, const Tensor& expected,
                                 double tolerance) {
  TensorComparison comparison{name, 0.0, false, ""};
  check_floating(actual, "hf_compare", name.c_str());
  check_floating(expected, "hf_compare", name.c_str());
  if (actual.shape() != expected.shape()) {
    comparison.relative_error = INFINITY;
    comparison.problem = "shape " + shape_str(actual.shape()) + ", expected " + shape_str(expected.shape());
    return comparison;
  }
  std::vector<double> a = actual.detach().to(DType::f64).to_vector<double>();
  std::vector<double> b = expected.detach().to(DType::f64).to_vector<double>();
  std::vector<double> difference(a.size());
  for (size_t i = 0; i < a.size(); ++i) difference[i] = a[i] - b[i];
  comparison.relative_error = std::sqrt(squared_norm(difference)) / std::max(1.0, std::sqrt(squared_norm(b)));
  comparison.passed = comparison.relative_error <= tolerance;  // false for NaN
  return comparison;
}

}  // namespace

std::set<std::string> hf_layer_prefixes(const std::vector<std::string>& names) {
  // The first name segment that belongs to the MoE layer itself (its router, experts, shared MLP).
  static const char* const kLayerParts[] = {"experts.", "gate.", "router.", "shared_expert.", "shared_experts.",
                                            "shared_expert_gate."};
  std::set<std::string> prefixes;
  for (const std::string& name : names) {
    size_t best = std::string::npos;
    for (const char* part : kLayerParts)
      for (size_t at = name.find(part); at != std::string::npos; at = name.find(part, at + 1))
        if (at == 0 || name[at - 1] == '.') {
          best = std::min(best, at);
          break;
        }
    if (best != std::string::npos) prefixes.insert(name.substr(0, best));
  }
  return prefixes;
}

HFLayerConfig parse_hf_layer_config(const std::string& json_text) {
  json config = parse_json_object(json_text);
  std::string model_type = get_string(config, "model_type", "");
  if (model_type == "llama4") {
    config = json(text_config_of_llama4(config));
    model_type = "llama4_text";
  }
  HFLayerConfig layer;
  if (model_type == "mixtral") layer = parse_mixtral(config);
  else if (model_type == "qwen2_moe") layer = parse_qwen2_moe(config);
  else if (model_type == "qwen3_moe") layer = parse_softmax_topk_without_shared(config, "moe_intermediate_size", 0.001);
  else if (model_type == "olmoe") layer = parse_softmax_topk_without_shared(config, "intermediate_size", 0.01);
  else if (model_type == "deepseek_v2") layer = parse_deepseek_v2(config);
  else if (model_type == "deepseek_v3") layer = parse_sigmoid_grouped(config, {8, 4, 2.5});
  else if (model_type == "glm4_moe") layer = parse_sigmoid_grouped(config, {1, 1, 1.0});
  else if (model_type == "llama4_text") layer = parse_llama4_text(config);
  else if (model_type == "gpt_oss") layer = parse_gpt_oss(config);
  else if (model_type == "switch_transformers") layer = parse_switch(config);
  else
    fail(kOp, "unknown model_type '", model_type,
         "'; expected one of ", kModelTypes);
  layer.model_type = model_type;
  layer.router.validate();
  return layer;
}

std::shared_ptr<SparseMoEBlock> load_hf_layer(const HFLayerConfig& config, const TensorMap& weights,
                                              const std::string& prefix) {
  return load_layer(config, weights, prefix).block;
}

TensorMap run_hf_layer(const HFLayerConfig& config, const TensorMap& weights, const TensorMap& input,
                       const TensorMap& grad_output, const std::string& prefix, RoutingDiagnostics* diagnostics) {
  const Tensor& hidden_states = required_tensor(input, "hidden_states", "input");
  check_dtype(hidden_states, DType::f32, kOp, "hidden_states");
  const bool with_grad = !grad_output.empty();
  Tensor output_grad = with_grad ? required_tensor(grad_output, "grad_output", "grad-output") : Tensor();
  TINYMOE_CHECK(!with_grad || output_grad.shape() == hidden_states.shape(), kOp,
                "expected grad_output of hidden_states' shape ", shape_str(hidden_states.shape()), ", got ",
                shape_str(output_grad.shape()));

  LoadedLayer layer = load_layer(config, weights, prefix);
  Tensor x = hidden_states.detach().clone();
  if (with_grad) x.requires_grad_();
  std::optional<NoGradGuard> forward_only;
  if (!with_grad) forward_only.emplace();
  MoEOutput result = layer.block->forward(x);
  if (diagnostics) *diagnostics = result.diagnostics;

  TensorMap out{{"output", result.output.detach()}, {"router_logits", result.routing.router_logits.detach()}};
  for (const auto& [name, loss] : result.routing.losses) out[name] = loss.detach();
  if (!with_grad) return out;
  // L = sum(output * grad_output): its gradient is grad_output pulled back through the layer.
  sum(mul(result.output, output_grad.to(result.output.dtype()))).backward();
  out["grad.hidden_states"] = x.grad().defined() ? x.grad().detach() : zeros_like(hidden_states);
  for (const WeightSlot& slot : layer.slots) out["grad." + slot.hf_name] = slot_gradient(slot);
  return holds_fused_experts(config, weights, prefix) ? fuse_expert_gradients(config, out) : out;
}

std::vector<TensorComparison> compare_tensor_maps(const TensorMap& actual, const TensorMap& expected,
                                                  double tolerance) {
  std::vector<TensorComparison> comparisons;
  for (const auto& [name, tensor] : expected) {
    auto found = actual.find(name);
    if (found == actual.end())
      comparisons.push_back({name, INFINITY, false, "missing from the result"});
    else
      comparisons.push_back(compare_tensors(name, found->second, tensor, tolerance));
  }
  for (const auto& [name, tensor] : actual)
    if (!expected.count(name)) comparisons.push_back({name, INFINITY, false, "not in the expected file"});
  std::sort(comparisons.begin(), comparisons.end(),
            [](const TensorComparison& a, const TensorComparison& b) { return a.name < b.name; });
  return comparisons;
}

}  // namespace tinymoe::nn
