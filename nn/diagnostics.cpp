#include "nn/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "nn/id_range.h"
#include "ops/counting.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "tinymoe/autograd.h"

namespace tinymoe::nn {
namespace {

// The router entropy: the mean over rows of -sum_i q_i log q_i, q the row's entries > 0
// normalised to sum 1 (softmax rows already do; sigmoid rows do not); entries <= 0 (and NaN) and
// all-zero rows add nothing. On the host for cpu scores, in the scores' own precision through
// Eigen's packet log; the mean accumulates in double. (A scalar double log per entry was 1 % of a
// fine-grained block step: diagnostics run after every forward.)
template <typename T>
double mean_entropy_of_rows(const T* scores, int64_t tokens, int64_t experts) {
  using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
  Row q(experts);
  double total = 0.0;
  for (int64_t t = 0; t < tokens; ++t) {
    Eigen::Map<const Row> row(scores + t * experts, experts);
    q = (row > T(0)).select(row, T(0));
    const T row_sum = q.sum();
    if (!(row_sum > T(0))) continue;
    q /= row_sum;
    total -= static_cast<double>((q > T(0)).select(q * q.log(), T(0)).sum());
  }
  return total / static_cast<double>(tokens);
}

double mean_entropy_on_host(const Tensor& scores) {
  const int64_t tokens = scores.size(0), experts = scores.size(1);
  if (tokens == 0) return 0.0;
  return dispatch_floating(scores.dtype(), "diagnose", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return mean_entropy_of_rows(scores.data<T>(), tokens, experts);
  });
}

// ... and by ops on a device, in f64, so that only one number comes back: relu drops the entries
// <= 0, and kTiny keeps 0 log 0 and 0 / 0 at 0 while changing no q that matters (q + 1e-300 == q
// for every q > 1e-284).
double mean_entropy_on_device(const Tensor& scores) {
  const int64_t tokens = scores.size(0);
  if (tokens == 0) return 0.0;
  constexpr double kTiny = 1e-300;
  NoGradGuard no_grad;
  Tensor positive = relu(scores.detach().to(DType::f64));
  Tensor q = div(positive, add(sum(positive, -1, /*keepdim=*/true), kTiny));
  Tensor total = sum(mul(q, log(add(q, kTiny))));
  return -total.to(Device::cpu()).item<double>() / static_cast<double>(tokens);
}

void fill_load_statistics(RoutingDiagnostics& d, int64_t tokens) {
  const auto& load = d.tokens_per_expert;
  double experts = static_cast<double>(load.size()), total = 0.0, squares = 0.0;
  for (int64_t n : load) {
    total += static_cast<double>(n);
    d.max_load = std::max(d.max_load, static_cast<double>(n));
    d.dead_experts += n == 0 ? 1 : 0;
  }
  d.mean_load = total / experts;
  for (int64_t n : load) squares += (n - d.mean_load) * (n - d.mean_load);
  d.coefficient_of_variation = d.mean_load > 0.0 ? std::sqrt(squares / experts) / d.mean_load : 0.0;
  d.collapsed = d.max_load > 0.5 * static_cast<double>(tokens);
  d.experts_per_token = tokens > 0 ? total / static_cast<double>(tokens) : 0.0;
}

}  // namespace

RoutingDiagnostics diagnose(const Routing& routing, const Tensor& selection_bias) {
  const char* op = "diagnose";
  check_floating(routing.scores, op, "routing.scores");
  check_dim(routing.scores, 2, op, "routing.scores");
  check_dtype(routing.pair_expert, DType::i64, op, "routing.pair_expert");
  const int64_t tokens = routing.scores.size(0), experts = routing.scores.size(1);
  TINYMOE_CHECK(experts >= 1, op, "expected at least one expert, got scores ", shape_str(routing.scores.shape()));
  const int64_t real_pairs = routing.pair_expert.numel() - routing.padded_pairs;
  TINYMOE_CHECK(routing.padded_pairs >= 0 && real_pairs >= 0, op, "padded_pairs = ", routing.padded_pairs,
                " does not fit in ", routing.pair_expert.numel(), " pairs");

  RoutingDiagnostics d;
  // Counted on the pairs' device; only the [E] counts come to the host.
  Tensor real = slice(routing.pair_expert.flatten(), 0, 0, real_pairs);
  check_id_range(real, experts, "routing.pair_expert", "an expert", op);
  d.tokens_per_expert = bincount(real, experts).to(Device::cpu()).to_vector<int64_t>();
  fill_load_statistics(d, tokens);
  d.dropped_fraction = routing.routed_pairs > 0
                           ? static_cast<double>(routing.dropped_pairs) / static_cast<double>(routing.routed_pairs)
                           : 0.0;
  d.router_entropy = routing.scores.device().is_cpu() ? mean_entropy_on_host(routing.scores)
                                                      : mean_entropy_on_device(routing.scores);
  if (selection_bias.defined()) {
    check_floating(selection_bias, op, "selection_bias");
    TINYMOE_CHECK(selection_bias.shape() == Shape{experts}, op, "expected selection_bias of shape [", experts,
                  "], got ", shape_str(selection_bias.shape()));
    d.selection_bias = selection_bias.detach().to(Device::cpu()).to(DType::f64).to_vector<double>();  // [E] to the host
  }
  return d;
}

namespace {

nlohmann::json diagnostics_object(const RoutingDiagnostics& d) {
  return {{"tokens_per_expert", d.tokens_per_expert},
          {"max_load", d.max_load},
          {"mean_load", d.mean_load},
          {"coefficient_of_variation", d.coefficient_of_variation},
          {"dropped_fraction", d.dropped_fraction},
          {"experts_per_token", d.experts_per_token},
          {"router_entropy", d.router_entropy},
          {"dead_experts", d.dead_experts},
          {"collapsed", d.collapsed},
          {"selection_bias", d.selection_bias}};
}

}  // namespace

std::string RoutingDiagnostics::json() const { return diagnostics_object(*this).dump(); }

std::string routing_json(const Routing& routing, const RoutingDiagnostics& diagnostics) {
  nlohmann::json object = diagnostics_object(diagnostics);
  nlohmann::json losses = nlohmann::json::object();
  for (const auto& [name, loss] : routing.losses) losses[name] = loss.item<double>();
  object["losses"] = losses;
  object["loss_coefficients"] = routing.loss_coefficients;
  object["routed_pairs"] = routing.routed_pairs;
  object["dropped_pairs"] = routing.dropped_pairs;
  object["padded_pairs"] = routing.padded_pairs;
  object["capacity"] = routing.capacity;
  object["sparsity"] = routing.sparsity();  // NaN is written as null
  return object.dump();
}

std::string RoutingDiagnostics::str() const {
  std::ostringstream out;
  out << std::setprecision(4);
  out << "tokens per expert:";
  for (int64_t n : tokens_per_expert) out << ' ' << n;
  out << "\nmax load " << max_load << ", mean load " << mean_load << ", max/mean "
      << (mean_load > 0 ? max_load / mean_load : 0.0) << ", CV " << coefficient_of_variation;
  out << "\nexperts per token " << experts_per_token << ", dropped " << 100.0 * dropped_fraction << "%, router entropy " << router_entropy << " nats (uniform "
      << std::log(static_cast<double>(std::max<size_t>(tokens_per_expert.size(), 1))) << ")";
  out << "\ndead experts " << dead_experts << (collapsed ? ", COLLAPSED (one expert has > 50% of tokens)" : "");
  if (!selection_bias.empty()) {
    out << "\nselection bias:";
    for (double b : selection_bias) out << ' ' << b;
  }
  return out.str();
}

}  // namespace tinymoe::nn
