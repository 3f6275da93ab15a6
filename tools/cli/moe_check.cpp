// `tinymoe moe`: runs one HuggingFace MoE layer (config.json + its weights) on given hidden states
// and writes what docs/hf_check.md lists (output, router_logits, raw losses, and with a
// grad-output every gradient); --compare checks the result against an expected file.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "nn/hf_checkpoint.h"
#include "nn/hf_layer.h"
#include "nn/safetensors.h"
#include "tinymoe/error.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

struct MoeCheckOptions {
  std::string config, weights, input, grad_output, prefix, out, compare;
  double tolerance = 1e-5;
};

std::string read_text_file(const std::string& path) {
  std::ifstream file(path);
  TINYMOE_CHECK(file.good(), "moe", "cannot read the config file '", path, "'");
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Prints one line per tensor and fails (exit 1) when any tensor differs by more than tolerance.
void compare_with_expected(const nn::TensorMap& result, const MoeCheckOptions& options) {
  std::vector<nn::TensorComparison> comparisons =
      nn::compare_tensor_maps(result, nn::load_safetensors(options.compare), options.tolerance);
  int failures = 0;
  for (const nn::TensorComparison& comparison : comparisons) {
    failures += comparison.passed ? 0 : 1;
    std::cout << (comparison.passed ? "ok    " : "FAIL  ") << std::left << std::setw(40) << comparison.name
              << " relative error " << std::scientific << std::setprecision(3) << comparison.relative_error;
    if (!comparison.problem.empty()) std::cout << " (" << comparison.problem << ")";
    std::cout << "\n";
  }
  TINYMOE_CHECK(failures == 0, "moe", failures, " of ", comparisons.size(), " tensors differ from '",
                options.compare, "' by more than ", options.tolerance, " (||a - b|| / max(1, ||b||))");
  std::cout << "all " << comparisons.size() << " tensors within " << options.tolerance << "\n";
}

void run_moe_check(const MoeCheckOptions& options) {
  nn::HFLayerConfig config = nn::parse_hf_layer_config(read_text_file(options.config));
  nn::TensorMap grad_output;
  if (!options.grad_output.empty()) grad_output = nn::load_safetensors(options.grad_output);
  // Only the tensors under the prefix are read: --weights may be a whole (sharded) checkpoint.
  nn::RoutingDiagnostics diagnostics;
  nn::TensorMap result = nn::run_hf_layer(config, nn::load_hf_weights(options.weights, options.prefix),
                                          nn::load_safetensors(options.input), grad_output, options.prefix,
                                          &diagnostics);
  nn::save_safetensors(options.out, result, {{"format", "pt"}});
  std::cout << "the " << config.model_type << " layer's routing of this input:\n" << diagnostics.str() << "\n";
  if (!options.compare.empty()) compare_with_expected(result, options);
}

}  // namespace

void add_moe_check(CLI::App& app) {
  auto options = std::make_shared<MoeCheckOptions>();
  CLI::App* command = app.add_subcommand(
      "moe", "Run one HuggingFace MoE layer (mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, glm4_moe, llama4_text, gpt_oss, switch_transformers) in eval mode "
             "and write output, router_logits, losses and gradients (docs/hf_check.md)");
  command->add_option("--config", options->config, "The HF config.json of the model")->required()->check(CLI::ExistingFile);
  command->add_option("--weights", options->weights,
                      "The layer's tensors under their HF names: a safetensors file, a sharded checkpoint's "
                      "model.safetensors.index.json, or a directory holding either; only the tensors under "
                      "--prefix are read")
      ->required()
      ->check(CLI::ExistingPath);
  command->add_option("--input", options->input, "safetensors with hidden_states [B, S, d] or [T, d]")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--grad-output", options->grad_output,
                      "safetensors with grad_output (hidden_states' shape): also write grad.* of sum(output * grad_output)")
      ->check(CLI::ExistingFile);
  command->add_option("--prefix", options->prefix, "Prefix every weight name carries, stripped (e.g. "
                                                   "model.layers.0.block_sparse_moe.)");
  command->add_option("--out", options->out, "Where to write the result (safetensors)")->required();
  command->add_option("--compare", options->compare,
                      "An expected safetensors file: print each tensor's relative error, exit 1 on a mismatch")
      ->check(CLI::ExistingFile);
  command->add_option("--tolerance", options->tolerance, "Largest relative error --compare accepts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->callback([options] { run_moe_check(*options); });
}

}  // namespace tinymoe::cli
