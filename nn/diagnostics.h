// Load-balance diagnostics of one Routing (docs/design.md, "Routing rules as composable parts": the diagnostics every rule reports).
// Plain numbers computed outside autograd; nothing here records on the tape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/routing.h"

namespace tinymoe::nn {

struct RoutingDiagnostics {
  // Kept pairs per expert (after capacity; padding pairs excluded): the work each expert does.
  std::vector<int64_t> tokens_per_expert;
  double max_load = 0;                  // max_i tokens_per_expert[i]
  double mean_load = 0;                 // mean_i tokens_per_expert[i]
  double coefficient_of_variation = 0;  // population std / mean of tokens_per_expert (0 when the mean is 0)
  double dropped_fraction = 0;          // dropped_pairs / routed_pairs (0 when nothing was routed)
  // Kept pairs per token: k for a dropless top-k, less with drops, varying per token with top-p
  // and ReLU routing (the number to watch there) and expert choice. 0 for no tokens.
  double experts_per_token = 0;
  // Mean over tokens of the entropy (nats) of the token's score distribution: softmax scores as
  // they are, other scores (sigmoid) normalised to sum to 1 first (entries <= 0 count as 0).
  // log(E) is uniform, 0 one-hot.
  double router_entropy = 0;
  int64_t dead_experts = 0;  // experts with no kept pair
  // One expert takes more than half of the tokens (tokens_per_expert[i] > T / 2). With k = 1 that
  // is more than half of the pairs; with E < 2k even uniform routing crosses the line.
  bool collapsed = false;
  std::vector<double> selection_bias;  // the selection bias given to diagnose (DeepSeek-V3), or empty

  // A few lines: loads, max/mean, CV, dropped, entropy (and its maximum log E), dead, collapse, bias.
  std::string str() const;
  // One JSON object with every field above under its name (for logs a plotting script reads);
  // numbers in the shortest form that reads back exactly.
  std::string json() const;
};

// Reads routing.pair_expert (less the padded_pairs at its end), routed/dropped counts and
// routing.scores ([T, E], defined). selection_bias: undefined, or floating [E]. The tensors may
// live on any device: the counts and the entropy are computed there, and only [E] counts, the
// bias and one number come to the host. Errors name "diagnose".
RoutingDiagnostics diagnose(const Routing& routing, const Tensor& selection_bias = Tensor());

// One routing step as one JSON object: the fields of diagnostics.json(), then "losses" (each raw
// loss by name), "loss_coefficients", "routed_pairs", "dropped_pairs", "padded_pairs",
// "capacity" and "sparsity" (Routing::sparsity; null for an empty batch, as any non-finite
// number). The losses come to the host (one copy each from a device).
std::string routing_json(const Routing& routing, const RoutingDiagnostics& diagnostics);

}  // namespace tinymoe::nn
