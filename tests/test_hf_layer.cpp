// nn/hf_layer: whole HF MoE layers against the fixtures of tests/data/hf (made by
// tools/hf_fixtures/generate.py from a PyTorch reimplementation of the HF layers; the contract is
// docs/hf_check.md), plus every class of bad config, weights and inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "nn/hf_layer.h"
#include "nn/safetensors.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

const std::string kHfData = std::string(TINYMOE_TEST_DATA_DIR) + "/hf/";

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

struct FixtureCase {
  std::string name, prefix;
  HFLayerConfig config;
  TensorMap weights, input, grad_output, expected;
};

FixtureCase load_case(const std::string& name, const std::string& prefix) {
  const std::string dir = kHfData + name + "/";
  return {name,
          prefix,
          parse_hf_layer_config(read_text(dir + "config.json")),
          load_safetensors(dir + "layer.safetensors"),
          load_safetensors(dir + "input.safetensors"),
          load_safetensors(dir + "grad_output.safetensors"),
          load_safetensors(dir + "expected.safetensors")};
}

// The independent check of the contract: ||a - b|| <= 1e-5 max(1, ||b||) per tensor, in double.
double relative_error(const Tensor& actual, const Tensor& expected) {
  std::vector<float> a = actual.to_vector<float>(), b = expected.to_vector<float>();
  double difference = 0.0, reference = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    reference += double(b[i]) * b[i];
  }
  return std::sqrt(difference) / std::max(1.0, std::sqrt(reference));
}

FixtureCase mixtral_case() { return load_case("mixtral_basic", ""); }

TensorMap without(TensorMap tensors, const std::string& name) {
  tensors.erase(name);
  return tensors;
}


// The test's own spelling of HF's per-expert names: Mixtral's w1/w3/w2, the others' projections.
std::string per_expert_name(const std::string& model_type, int64_t expert, int part) {
  static const char* mixtral[] = {"w1", "w3", "w2"};
  static const char* others[] = {"gate_proj", "up_proj", "down_proj"};
  return "experts." + std::to_string(expert) + "." + (model_type == "mixtral" ? mixtral : others)[part] + ".weight";
}

// transformers v5's fused tensors built element by element from per-expert ones (`source` holds
// them under `lead` + per_expert_name, e.g. "grad."): gate_up_proj[e] = [gate; up] (rows 0..f-1
// the gate weight), down_proj[e] = down.
std::pair<Tensor, Tensor> fuse_by_hand(const TensorMap& source, const std::string& lead, const HFLayerConfig& config) {
  const int64_t experts = config.block.num_experts, d = config.block.hidden_size, f = config.block.intermediate_size;
  std::vector<float> gate_up(experts * 2 * f * d), down(experts * d * f);
  for (int64_t e = 0; e < experts; ++e) {
    for (int part = 0; part < 2; ++part) {
      std::vector<float> w = source.at(lead + per_expert_name(config.model_type, e, part)).to_vector<float>();
      std::copy(w.begin(), w.end(), gate_up.begin() + (e * 2 + part) * f * d);
    }
    std::vector<float> w = source.at(lead + per_expert_name(config.model_type, e, 2)).to_vector<float>();
    std::copy(w.begin(), w.end(), down.begin() + e * d * f);
  }
  return {from_vector(gate_up, {experts, 2 * f, d}), from_vector(down, {experts, d, f})};
}

// The case's weights with the experts fused (and the prefix kept).
TensorMap fused_weights(const FixtureCase& c) {
  TensorMap stripped, fused;
  for (const auto& [name, tensor] : c.weights) {
    const std::string bare = name.substr(c.prefix.size());
    if (bare.rfind("experts.", 0) == 0) stripped[bare] = tensor;
    else fused[name] = tensor;
  }
  auto [gate_up, down] = fuse_by_hand(stripped, "", c.config);
  fused[c.prefix + "experts.gate_up_proj"] = gate_up;
  fused[c.prefix + "experts.down_proj"] = down;
  return fused;
}
}  // namespace

TEST_CASE("hf_layer: every fixture case matches HuggingFace, forward and backward", "[hf_layer][hf]") {
  nlohmann::json manifest = nlohmann::json::parse(read_text(kHfData + "manifest.json"));
  REQUIRE(manifest.at("cases").size() == 14);
  for (const nlohmann::json& entry : manifest.at("cases")) {
    FixtureCase c = load_case(entry.at("name"), entry.at("prefix"));
    INFO(c.name);
    CHECK(c.config.model_type == entry.at("model_type").get<std::string>());
    TensorMap result = run_hf_layer(c.config, c.weights, c.input, c.grad_output, c.prefix);
    // Exactly the expected names: output, router_logits, the case's losses, grad.* of every weight.
    std::set<std::string> names, want;
    for (const auto& item : result) names.insert(item.first);
    for (const auto& item : c.expected) want.insert(item.first);
    CHECK(names == want);
    for (const nlohmann::json& loss : entry.at("losses")) CHECK(result.count(loss.get<std::string>()) == 1);
    for (const auto& [name, expected] : c.expected) {
      INFO(name);
      REQUIRE(result.count(name) == 1);
      REQUIRE(result.at(name).shape() == expected.shape());
      CHECK(relative_error(result.at(name), expected) <= 1e-5);
    }
  }
}

TEST_CASE("hf_layer: the fused expert layout of transformers v5 gives the per-expert results", "[hf_layer][hf]") {
  nlohmann::json manifest = nlohmann::json::parse(read_text(kHfData + "manifest.json"));
  int fused_cases = 0;
  for (const nlohmann::json& entry : manifest.at("cases")) {
    if (entry.at("model_type") == "switch_transformers") continue;  // DenseActDense experts, never fused
    if (entry.at("model_type") == "llama4_text") continue;          // fused (transposed) in its fixture
    if (entry.at("model_type") == "gpt_oss") continue;              // fused (interleaved) in its fixture
    FixtureCase c = load_case(entry.at("name"), entry.at("prefix"));
    INFO(c.name);
    ++fused_cases;
    TensorMap result = run_hf_layer(c.config, fused_weights(c), c.input, c.grad_output, c.prefix);
    // The expected tensors, with the per-expert gradients fused the same way.
    TensorMap expected;
    for (const auto& [name, tensor] : c.expected)
      if (name.rfind("grad.experts.", 0) != 0) expected[name] = tensor;
    auto [gate_up_grad, down_grad] = fuse_by_hand(c.expected, "grad.", c.config);
    expected["grad.experts.gate_up_proj"] = gate_up_grad;
    expected["grad.experts.down_proj"] = down_grad;
    std::set<std::string> names, want;
    for (const auto& item : result) names.insert(item.first);
    for (const auto& item : expected) want.insert(item.first);
    CHECK(names == want);
    for (const auto& [name, tensor] : expected) {
      INFO(name);
      REQUIRE(result.count(name) == 1);
      REQUIRE(result.at(name).shape() == tensor.shape());
      CHECK(relative_error(result.at(name), tensor) <= 1e-5);
    }
  }
  CHECK(fused_cases == 10);
}

TEST_CASE("hf_layer: a fused expert layout that does not match is refused whole", "[hf_layer][errors]") {
  FixtureCase c = mixtral_case();  // E 4, d 8, f 16
  TensorMap fused = fused_weights(c);
  CHECK_NOTHROW(load_hf_layer(c.config, fused));
  CHECK_THROWS_WITH(load_hf_layer(c.config, without(fused, "experts.down_proj")),
                    Catch::Contains("hf_layer") && Catch::Contains("missing experts.down_proj [4, 8, 16]"));
  TensorMap transposed = fused;
  transposed["experts.gate_up_proj"] = zeros({4, 8, 32});
  CHECK_THROWS_WITH(load_hf_layer(c.config, transposed),
                    Catch::Contains("experts.gate_up_proj expected a floating [4, 32, 8], got f32 [4, 8, 32]"));
  TensorMap integer = fused;
  integer["experts.down_proj"] = zeros({4, 8, 16}, DType::i64);
  CHECK_THROWS_WITH(load_hf_layer(c.config, integer), Catch::Contains("got i64 [4, 8, 16]"));
  // Both layouts at once would hold two copies of an expert.
  TensorMap mixed = fused;
  mixed["experts.1.w2.weight"] = c.weights.at("experts.1.w2.weight");
  CHECK_THROWS_WITH(load_hf_layer(c.config, mixed),
                    Catch::Contains("per-expert tensors beside the fused ones: experts.1.w2.weight"));
  // The prefix applies to the fused names too.
  FixtureCase prefixed = load_case("mixtral_prefixed", "model.layers.0.block_sparse_moe.");
  CHECK_NOTHROW(load_hf_layer(prefixed.config, fused_weights(prefixed), prefixed.prefix));
  // Llama 4 has no other layout, transposed (x @ W): its v5-style transpose is a wrong shape, and
  // per-expert names are refused.
  FixtureCase llama = load_case("llama4_text_top1", "model.layers.0.feed_forward.");  // E 4, d 8, f 6
  CHECK_NOTHROW(load_hf_layer(llama.config, llama.weights, llama.prefix));
  TensorMap v5_style = llama.weights;
  v5_style[llama.prefix + "experts.gate_up_proj"] = zeros({4, 12, 8});
  CHECK_THROWS_WITH(load_hf_layer(llama.config, v5_style, llama.prefix),
                    Catch::Contains("experts.gate_up_proj expected a floating [4, 8, 12], got f32 [4, 12, 8]"));
  TensorMap per_expert = without(llama.weights, llama.prefix + "experts.down_proj");
  per_expert[llama.prefix + "experts.0.down_proj.weight"] = zeros({8, 6});
  CHECK_THROWS_WITH(load_hf_layer(llama.config, per_expert, llama.prefix),
                    Catch::Contains("missing model.layers.0.feed_forward.experts.down_proj [4, 6, 8]") &&
                        Catch::Contains("per-expert tensors beside the fused ones"));
  // Without its prefix the Llama 4 file gets the hint, and the fused shapes are Llama 4's.
  CHECK_THROWS_WITH(load_hf_layer(llama.config, llama.weights),
                    Catch::Contains("missing experts.gate_up_proj [4, 8, 12]") &&
                        Catch::Contains("every name starts with 'model.layers.0.feed_forward.': is that the prefix?"));
  // A fused problem does not hide the others: one Error lists them all.
  TensorMap two_problems = without(transposed, "gate.weight");
  CHECK_THROWS_WITH(load_hf_layer(c.config, two_problems),
                    Catch::Contains("experts.gate_up_proj expected a floating [4, 32, 8]") &&
                        Catch::Contains("missing: gate.weight"));
  // GPT-OSS's four fused tensors are checked together: a missing bias and a transposed down_proj.
  FixtureCase gpt = load_case("gpt_oss_clamped", "model.layers.0.mlp.");  // E 4, d 8, f 6
  CHECK_NOTHROW(load_hf_layer(gpt.config, gpt.weights, gpt.prefix));
  TensorMap gpt_broken = without(gpt.weights, gpt.prefix + "experts.gate_up_proj_bias");
  gpt_broken[gpt.prefix + "experts.down_proj"] = zeros({4, 8, 6});
  CHECK_THROWS_WITH(load_hf_layer(gpt.config, gpt_broken, gpt.prefix),
                    Catch::Contains("missing model.layers.0.mlp.experts.gate_up_proj_bias [4, 12]") &&
                        Catch::Contains("experts.down_proj expected a floating [4, 6, 8], got f32 [4, 8, 6]") &&
                        !Catch::Contains("experts.w1"));  // tinymoe's own names stay out of it
  // Switch's experts are never fused: the names are unknown to it.
  FixtureCase switch_case = load_case("switch_capacity", "");
  TensorMap switch_fused = switch_case.weights;
  switch_fused["experts.gate_up_proj"] = zeros({4, 8, 8});
  CHECK_THROWS_WITH(load_hf_layer(switch_case.config, switch_fused),
                    Catch::Contains("unexpected") && Catch::Contains("experts.gate_up_proj"));
}

TEST_CASE("hf_layer: without a grad_output only the forward tensors come back", "[hf_layer][hf]") {
  FixtureCase c = load_case("switch_capacity", "");
  RoutingDiagnostics diagnostics;
  TensorMap result = run_hf_layer(c.config, c.weights, c.input, {}, "", &diagnostics);
  // The routing's diagnostics come along: 16 tokens, top-1, 4 dropped by capacity (docs/hf_check.md).
  int64_t kept = 0;
  for (int64_t load : diagnostics.tokens_per_expert) kept += load;
  CHECK(kept == 12);
  CHECK(diagnostics.dropped_fraction == Approx(4.0 / 16.0));
  std::set<std::string> names;
  for (const auto& item : result) names.insert(item.first);
  CHECK(names == std::set<std::string>{"aux_loss", "output", "router_logits", "z_loss"});
  CHECK(relative_error(result.at("output"), c.expected.at("output")) <= 1e-5);
}

TEST_CASE("hf_layer: config.json parsing follows the HF config classes", "[hf_layer]") {
  HFLayerConfig switch_layer = parse_hf_layer_config(read_text(kHfData + "switch_capacity/config.json"));
  CHECK(switch_layer.block.hidden_size == 8);
  CHECK(switch_layer.block.expert_kind == ExpertKind::relu);
  CHECK(switch_layer.router.capacity.expert_capacity == 2);
  CHECK(switch_layer.router.capacity.per_sequence);
  CHECK(switch_layer.router.aux_loss_form == LoadBalanceForm::hf_switch);
  CHECK(switch_layer.router.z_loss.enabled);
  CHECK_FALSE(switch_layer.router.gate_bias);
  CHECK(parse_hf_layer_config(read_text(kHfData + "switch_router_bias/config.json")).router.gate_bias);

  // Absent flags take the HF defaults: Qwen2-MoE does not renormalise, k = 4, coefficient 0.001.
  HFLayerConfig qwen = parse_hf_layer_config(
      R"({"model_type": "qwen2_moe", "hidden_size": 8, "moe_intermediate_size": 4,
          "shared_expert_intermediate_size": 6, "num_experts": 6})");
  CHECK_FALSE(qwen.router.weights.renormalize);
  CHECK(qwen.router.top_k == 4);
  CHECK(qwen.router.aux_loss.coefficient == 0.001);
  CHECK(qwen.block.shared.kind == SharedExpertKind::sigmoid_gated);
  CHECK(qwen.block.shared.intermediate_size == 6);

  HFLayerConfig deepseek = parse_hf_layer_config(read_text(kHfData + "deepseek_v3_grouped/config.json"));
  CHECK(deepseek.router.selection == SelectionKind::group_limited_topk);
  CHECK(deepseek.router.weights.scaling_factor == 2.5);
  CHECK(deepseek.router.n_group == 4);
  CHECK(deepseek.router.topk_group == 2);
  CHECK_FALSE(deepseek.router.aux_loss.enabled);
  CHECK(deepseek.block.shared.kind == SharedExpertKind::ungated);

  // Qwen3-MoE and OLMoE: Qwen2-MoE's router without the shared expert; k 8 and no renormalisation
  // by default; Qwen3 sizes experts by moe_intermediate_size, OLMoE by intermediate_size.
  HFLayerConfig qwen3 = parse_hf_layer_config(
      R"({"model_type": "qwen3_moe", "hidden_size": 8, "intermediate_size": 30, "moe_intermediate_size": 4,
          "num_experts": 10})");
  CHECK(qwen3.router.top_k == 8);
  CHECK_FALSE(qwen3.router.weights.renormalize);
  CHECK(qwen3.router.aux_loss.coefficient == 0.001);
  CHECK(qwen3.block.intermediate_size == 4);
  CHECK(qwen3.block.shared.kind == SharedExpertKind::none);
  HFLayerConfig olmoe = parse_hf_layer_config(
      R"({"model_type": "olmoe", "hidden_size": 8, "intermediate_size": 6, "num_experts": 9,
          "norm_topk_prob": true})");
  CHECK(olmoe.router.top_k == 8);
  CHECK(olmoe.router.weights.renormalize);
  CHECK(olmoe.router.aux_loss.coefficient == 0.01);
  CHECK(olmoe.block.intermediate_size == 6);
  CHECK(olmoe.block.shared.kind == SharedExpertKind::none);
  HFLayerConfig olmoe_alias = parse_hf_layer_config(
      R"({"model_type": "olmoe", "hidden_size": 8, "intermediate_size": 6, "num_local_experts": 9})");
  CHECK(olmoe_alias.block.num_experts == 9);
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "olmoe", "hidden_size": 8, "intermediate_size": 6})"),
                    Catch::Contains("lacks the key 'num_experts'"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "qwen3_moe", "hidden_size": 8, "num_experts": 4,
                                             "intermediate_size": 8})"),
                    Catch::Contains("lacks the key 'moe_intermediate_size'"));

  // DeepSeek-V2: greedy top-k by default; group_limited_greedy scores a group by its max; never
  // renormalised; two shared experts by default; k is required (HF's default is None).
  HFLayerConfig v2 = parse_hf_layer_config(R"({"model_type": "deepseek_v2", "hidden_size": 8,
      "moe_intermediate_size": 4, "n_routed_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": true})");
  CHECK(v2.router.selection == SelectionKind::topk);
  CHECK(v2.router.score_function == ScoreFunction::softmax);
  CHECK_FALSE(v2.router.weights.renormalize);  // HF ignores norm_topk_prob
  CHECK(v2.router.weights.scaling_factor == 1.0);
  CHECK(v2.block.shared.count == 2);
  HFLayerConfig v2_grouped = parse_hf_layer_config(read_text(kHfData + "deepseek_v2_grouped/config.json"));
  CHECK(v2_grouped.router.selection == SelectionKind::group_limited_topk);
  CHECK(v2_grouped.router.group_score_experts == 1);
  CHECK(v2_grouped.router.weights.scaling_factor == 2.0);
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "deepseek_v2", "hidden_size": 8,
      "moe_intermediate_size": 4, "n_routed_experts": 8, "num_experts_per_tok": 2, "topk_method": "noaux_tc"})"),
                    Catch::Contains("topk_method 'greedy' or 'group_limited_greedy'"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "deepseek_v2", "hidden_size": 8,
      "moe_intermediate_size": 4, "n_routed_experts": 8})"),
                    Catch::Contains("lacks the key 'num_experts_per_tok'"));

  // GLM-4.5: DeepSeek-V3's router with one group and no scaling by default.
  HFLayerConfig glm = parse_hf_layer_config(
      R"({"model_type": "glm4_moe", "hidden_size": 8, "moe_intermediate_size": 4, "n_routed_experts": 10})");
  CHECK(glm.router.selection == SelectionKind::group_limited_topk);
  CHECK(glm.router.n_group == 1);
  CHECK(glm.router.topk_group == 1);
  CHECK(glm.router.top_k == 8);
  CHECK(glm.router.weights.renormalize);
  CHECK(glm.router.weights.scaling_factor == 1.0);
  CHECK(glm.router.selection_bias);
  CHECK_FALSE(glm.router.aux_loss.enabled);
  CHECK(glm.block.shared.kind == SharedExpertKind::ungated);
  CHECK(glm.block.shared.count == 1);

  // Llama 4: top-1 by default, weights on the expert input, one ungated shared expert of the
  // experts' size; the multimodal Llama4Config's text_config gives the same layer.
  const char* llama4_text = R"({"model_type": "llama4_text", "hidden_size": 8, "intermediate_size": 4,
                                "intermediate_size_mlp": 16, "num_local_experts": 6})";
  HFLayerConfig llama = parse_hf_layer_config(llama4_text);
  CHECK(llama.model_type == "llama4_text");
  CHECK(llama.router.top_k == 1);
  CHECK(llama.router.weight_on_expert_input);
  CHECK(llama.router.score_function == ScoreFunction::sigmoid);
  CHECK_FALSE(llama.router.weights.renormalize);
  CHECK_FALSE(llama.router.aux_loss.enabled);
  CHECK(llama.block.shared.kind == SharedExpertKind::ungated);
  CHECK(llama.block.shared.intermediate_size == 4);
  HFLayerConfig multimodal = parse_hf_layer_config(std::string(R"({"model_type": "llama4", "text_config": )") +
                                                   llama4_text + "}");
  CHECK(multimodal.model_type == "llama4_text");
  CHECK(multimodal.block.num_experts == 6);
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "llama4"})"), Catch::Contains("'text_config' object"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "llama4", "text_config": {"model_type": "mixtral"}})"),
                    Catch::Contains("text_config.model_type 'llama4_text'"));

  // GPT-OSS: k 4, a router bias, its experts, coefficient 0.9; a limit other than HF's 7 is refused.
  HFLayerConfig gpt = parse_hf_layer_config(
      R"({"model_type": "gpt_oss", "hidden_size": 8, "intermediate_size": 4, "num_local_experts": 6})");
  CHECK(gpt.router.top_k == 4);
  CHECK(gpt.router.gate_bias);
  CHECK(gpt.router.select_on_logits);
  CHECK(gpt.router.weights.renormalize);
  CHECK(gpt.router.aux_loss.coefficient == 0.9);
  CHECK(gpt.block.expert_kind == ExpertKind::gpt_oss);
  CHECK(gpt.block.shared.kind == SharedExpertKind::none);
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "gpt_oss", "hidden_size": 8, "intermediate_size": 4,
                                             "num_local_experts": 6, "swiglu_limit": 10.0})"),
                    Catch::Contains("swiglu_limit 7.0"));

  // Mixtral's attribute_map alias num_experts for num_local_experts.
  HFLayerConfig alias = parse_hf_layer_config(
      R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 4, "num_experts": 3})");
  CHECK(alias.block.num_experts == 3);
  CHECK(alias.router.top_k == 2);
}

TEST_CASE("hf_layer: bad configs are rejected with the reason", "[hf_layer][errors]") {
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "llama", "hidden_size": 8})"),
                    Catch::Contains("hf_layer") && Catch::Contains("unknown model_type 'llama'"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"hidden_size": 8})"), Catch::Contains("unknown model_type"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "mixtral", "hidden_size": 8,)"),
                    Catch::Contains("hf_layer") && Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(parse_hf_layer_config("[1, 2]"), Catch::Contains("JSON object"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "mixtral", "hidden_size": 8, "num_local_experts": 4})"),
                    Catch::Contains("lacks the key 'intermediate_size'"));
  CHECK_THROWS_WITH(parse_hf_layer_config(
                        R"({"model_type": "mixtral", "hidden_size": "8", "intermediate_size": 4, "num_local_experts": 4})"),
                    Catch::Contains("'hidden_size' to be an integer"));
  CHECK_THROWS_WITH(parse_hf_layer_config(
                        R"({"model_type": "mixtral", "hidden_size": 0, "intermediate_size": 4, "num_local_experts": 4})"),
                    Catch::Contains("'hidden_size' >= 1"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 4,
                                             "num_local_experts": 4, "hidden_act": "gelu"})"),
                    Catch::Contains("hidden_act 'silu'"));
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "switch_transformers", "d_model": 8, "d_ff": 4,
                                             "router_dtype": "bfloat16"})"),
                    Catch::Contains("router_dtype 'float32'"));
  // k > E reaches the preset's validation.
  CHECK_THROWS_WITH(parse_hf_layer_config(R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 4,
                                             "num_local_experts": 4, "num_experts_per_tok": 5})"),
                    Catch::Contains("RouterConfig"));
}

TEST_CASE("hf_layer: weights that do not match the model type are listed by name", "[hf_layer][errors]") {
  FixtureCase c = mixtral_case();
  CHECK_THROWS_WITH(load_hf_layer(c.config, without(c.weights, "experts.2.w3.weight")),
                    Catch::Contains("hf_layer") && Catch::Contains("missing: experts.2.w3.weight"));
  TensorMap extra = c.weights;
  extra["experts.4.w1.weight"] = c.weights.at("experts.0.w1.weight");
  CHECK_THROWS_WITH(load_hf_layer(c.config, extra), Catch::Contains("unexpected") &&
                                                         Catch::Contains("experts.4.w1.weight"));
  TensorMap reshaped = c.weights;
  reshaped["gate.weight"] = zeros({8, 4});
  CHECK_THROWS_WITH(load_hf_layer(c.config, reshaped),
                    Catch::Contains("wrong shape") && Catch::Contains("gate.weight") && Catch::Contains("[4, 8]"));
  // The transposed (stacked) layout of an expert weight is a wrong shape, not silently accepted.
  reshaped = c.weights;
  reshaped["experts.1.w2.weight"] = zeros({16, 8});
  CHECK_THROWS_WITH(load_hf_layer(c.config, reshaped), Catch::Contains("experts.1.w2.weight (expected"));
  TensorMap integer = c.weights;
  integer["gate.weight"] = zeros({4, 8}, DType::i64);
  CHECK_THROWS_WITH(load_hf_layer(c.config, integer), Catch::Contains("wrong shape or dtype"));
  // Every problem at once.
  CHECK_THROWS_WITH(load_hf_layer(c.config, without(extra, "gate.weight")),
                    Catch::Contains("missing: gate.weight") && Catch::Contains("experts.4.w1.weight"));
  // A prefix that the names lack makes them all unexpected; the prefixed case needs its prefix.
  CHECK_THROWS_WITH(load_hf_layer(c.config, c.weights, "model."), Catch::Contains("without the prefix 'model.'"));
  FixtureCase prefixed = load_case("mixtral_prefixed", "model.layers.0.block_sparse_moe.");
  CHECK_THROWS_WITH(load_hf_layer(prefixed.config, prefixed.weights),
                    Catch::Contains("missing: gate.weight") &&
                        Catch::Contains("every name starts with 'model.layers.0.block_sparse_moe.': is that the prefix?"));
  // Names with nothing in common get no hint.
  CHECK_THROWS_WITH(load_hf_layer(c.config, c.weights, "model."), !Catch::Contains("is that the prefix"));
  CHECK_NOTHROW(load_hf_layer(prefixed.config, prefixed.weights, prefixed.prefix));
}

TEST_CASE("hf_layer: bad inputs name what was expected", "[hf_layer][errors]") {
  FixtureCase c = mixtral_case();
  TensorMap renamed{{"x", c.input.at("hidden_states")}};
  CHECK_THROWS_WITH(run_hf_layer(c.config, c.weights, renamed),
                    Catch::Contains("hf_layer") && Catch::Contains("'hidden_states'") && Catch::Contains("[x]"));
  CHECK_THROWS_WITH(run_hf_layer(c.config, c.weights, c.input, TensorMap{{"grad_output", zeros({2, 6, 4})}}),
                    Catch::Contains("grad_output of hidden_states' shape [2, 6, 8]"));
  CHECK_THROWS_WITH(run_hf_layer(c.config, c.weights, c.input, TensorMap{{"g", zeros({2, 6, 8})}}),
                    Catch::Contains("'grad_output'"));
  CHECK_THROWS_WITH(run_hf_layer(c.config, c.weights, TensorMap{{"hidden_states", zeros({2, 6, 8}, DType::f64)}}),
                    Catch::Contains("hf_layer") && Catch::Contains("f32"));
  CHECK_THROWS_WITH(run_hf_layer(c.config, c.weights, TensorMap{{"hidden_states", zeros({2, 6, 5})}}),
                    Catch::Contains("SparseMoEBlock"));
}

TEST_CASE("hf_layer: hf_layer_prefixes finds the MoE layers among a checkpoint's names", "[hf_layer]") {
  CHECK(hf_layer_prefixes({"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.mlp.gate_proj.weight",  // a dense MLP: no layer part
                           "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.experts.0.gate_proj.weight",
                           "model.layers.2.mlp.experts.gate_up_proj", "model.layers.2.mlp.shared_expert_gate.weight",
                           "model.layers.3.feed_forward.router.weight"}) ==
        std::set<std::string>{"model.layers.1.mlp.", "model.layers.2.mlp.", "model.layers.3.feed_forward."});
  CHECK(hf_layer_prefixes({"gate.weight", "experts.0.w1.weight"}) == std::set<std::string>{""});
  CHECK(hf_layer_prefixes({"encoder.block.1.layer.1.mlp.router.classifier.weight"}) ==
        std::set<std::string>{"encoder.block.1.layer.1.mlp."});
  CHECK(hf_layer_prefixes({"lm_head.weight"}).empty());
}

TEST_CASE("hf_layer: compare_tensor_maps reports relative errors and mismatched names", "[hf_layer]") {
  TensorMap expected{{"a", from_vector(std::vector<float>{3, 4}, {2})}, {"b", scalar(0.5)}, {"c", zeros({2})}};
  // ||(3, 4) - (3, 4.0001)|| / 5 = 2e-5; b: |0.5 - 0.5| / max(1, 0.5) = 0.
  TensorMap actual{{"a", from_vector(std::vector<float>{3, 4.0001f}, {2})}, {"b", scalar(0.5)}, {"d", zeros({2})}};
  std::vector<TensorComparison> comparisons = compare_tensor_maps(actual, expected);
  REQUIRE(comparisons.size() == 4);
  CHECK(comparisons[0].name == "a");
  CHECK(comparisons[0].relative_error == Approx(2e-5).epsilon(1e-2));
  CHECK_FALSE(comparisons[0].passed);
  CHECK(compare_tensor_maps(actual, expected, 1e-4)[0].passed);
  CHECK(comparisons[1].passed);
  CHECK(comparisons[2].name == "c");
  CHECK(comparisons[2].problem == "missing from the result");
  CHECK(comparisons[3].problem == "not in the expected file");
  TensorMap reshaped{{"a", zeros({1, 2})}};
  CHECK(compare_tensor_maps(reshaped, {{"a", zeros({2})}})[0].problem == "shape [1, 2], expected [2]");
  CHECK_THROWS_WITH(compare_tensor_maps({{"a", zeros({2}, DType::i64)}}, {{"a", zeros({2})}}),
                    Catch::Contains("hf_compare"));
}
