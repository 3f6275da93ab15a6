// Writing a new routing rule from tinymoe's parts (nn/routing_parts.h, docs/routing.md): the rule,
// softmax top-k with a temperature plus the ST-MoE z-loss and the Switch load-balancing loss, is
// the dozen lines of examples/temperature_topk.h. The program routes a batch with it and with the
// Mixtral preset, prints both rules' diagnostics, runs it as the gate of a SparseMoEBlock (a
// Router built from the rule) and prints the block's diagnostics, then gradient-checks the new
// rule in f64 through its pair weights and its weighted loss. compare_routers trains a language
// model with it next to the presets.
#include <cstdio>

#include "examples/temperature_topk.h"
#include "nn/diagnostics.h"
#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "nn/routing_parts.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using tiny_lm::temperature_topk;

Tensor abs_difference(const Tensor& a, const Tensor& b) {
  Tensor difference = sub(a, b);
  return sqrt(mul(difference, difference));
}

int main() {
  const int64_t tokens = 64, d = 16, experts = 8, k = 2;
  Generator generator(2025);
  Tensor x = randn({tokens, d}, DType::f32, &generator);
  Tensor gate = mul(randn({experts, d}, DType::f32, &generator), 0.25);
  Tensor logits = linear(x, gate);  // what nn::Router computes: x W^T
  RoutingContext context;
  context.num_experts = experts;

  std::printf("tinymoe: a custom routing rule from parts (T=%ld tokens, E=%ld experts, top-%ld)\n\n", long(tokens),
              long(experts), long(k));
  for (double temperature : {1.0, 0.5}) {
    Routing routing = temperature_topk(k, temperature, 1e-3)(logits, context);
    std::printf("temperature %.1f: z_loss %.4f, aux_loss %.4f, weighted loss %.6f\n%s\n\n", temperature,
                routing.losses.at("z_loss").item(), routing.losses.at("aux_loss").item(),
                routing.weighted_loss().item(), diagnose(routing).str().c_str());
  }
  // A temperature sharpens the weights (lower entropy) but never changes the choice: softmax is
  // monotone. At temperature 1 the rule is Mixtral's routing.
  Routing preset = make_rule(mixtral(experts, k))(logits, context);
  Routing plain = temperature_topk(k, 1.0, 1e-3)(logits, context);
  bool same_choice = preset.pair_expert.to_vector<int64_t>() == plain.pair_expert.to_vector<int64_t>();
  double weight_gap = max(abs_difference(preset.pair_weight, plain.pair_weight)).item();
  std::printf("the Mixtral preset on the same logits: same experts %s, max |weight difference| %.3g\n\n",
              same_choice ? "yes" : "NO", weight_gap);

  // The rule as the gate of a block: SparseMoEConfig::rule makes a Router(rule, E, d) named "gate".
  SparseMoEConfig config;
  config.num_experts = experts, config.hidden_size = d, config.intermediate_size = 32;
  config.rule = temperature_topk(k, 0.5, 1e-3);
  SparseMoEBlock block(config, &generator);
  MoEOutput out = block.forward(x);
  std::printf("in a SparseMoEBlock (gate.weight %s): output %s, weighted loss %.6f\n%s\n\n",
              shape_str(block.gate()->weight().shape()).c_str(), shape_str(out.output.shape()).c_str(),
              out.routing.weighted_loss().item(), out.diagnostics.str().c_str());

  // Gradient check (f64): pair weights and weighted loss w.r.t. the logits.
  Tensor check_logits = randn({6, 4}, DType::f64, &generator).requires_grad_();
  RoutingRule rule = temperature_topk(2, 0.5, 0.1);
  RoutingContext check_context;
  check_context.num_experts = 4;
  auto fn = [&](const TensorList& in) {
    Routing routing = rule(in[0], check_context);
    return concat({routing.pair_weight, routing.weighted_loss().reshape({1})}, 0);
  };
  GradcheckResult result = gradcheck(fn, {check_logits});
  std::printf("gradcheck (f64) of the rule's pair weights and weighted loss w.r.t. the logits:\n  %s\n",
              result.report.c_str());
  return result.passed() && same_choice ? 0 : 1;
}
