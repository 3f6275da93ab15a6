// A routing rule written from tinymoe's parts (nn/routing_parts.h, docs/routing.md): softmax
// top-k with a temperature, plus the ST-MoE z-loss and the Switch load-balancing loss. The rule is
// a plain function logits -> Routing; it reuses the score function, selection, weight function,
// pair assembly and losses, and changes only the temperature. custom_routing_rule runs and
// gradchecks it; compare_routers trains it next to the presets.
#pragma once

#include <cstdint>

#include "nn/balance_losses.h"
#include "nn/routing_parts.h"
#include "tinymoe/tinymoe.h"

namespace tiny_lm {

// p = softmax(logits / temperature), top-k of p, renormalised over the k. At temperature 1 this
// is Mixtral's routing; a lower temperature sharpens the weights but never changes the choice
// (softmax is monotone).
inline tinymoe::nn::RoutingRule temperature_topk(int64_t k, double temperature, double z_loss_coefficient) {
  using namespace tinymoe;
  using namespace tinymoe::nn;
  return [=](const Tensor& logits, const RoutingContext&) {
    Tensor scores = apply_score_function(ScoreFunction::softmax, mul(logits, 1.0 / temperature));
    Tensor expert_index = select_topk(scores, k);
    Tensor weights = WeightFunction{/*renormalize=*/true}(gather_selected(scores, expert_index));
    Routing routing = token_choice_routing(logits, scores, expert_index, weights);
    routing.losses["z_loss"] = z_loss(logits);  // keeps the logits small (ST-MoE)
    routing.loss_coefficients["z_loss"] = z_loss_coefficient;
    routing.losses["aux_loss"] = load_balancing_loss(scores, expert_index);  // E * sum_i f_i P_i
    routing.loss_coefficients["aux_loss"] = 0.01;
    return routing;
  };
}

}  // namespace tiny_lm
