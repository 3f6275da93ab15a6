#include "nn/routing.h"

#include <limits>

#include "ops/elementwise.h"

namespace tinymoe::nn {

Tensor Routing::weighted_loss() const {
  DType dtype = router_logits.defined() ? router_logits.dtype() : DType::f32;
  Device device = router_logits.defined() ? router_logits.device() : Device::cpu();
  Tensor total;
  for (const auto& [name, loss] : losses) {
    auto coefficient = loss_coefficients.find(name);
    TINYMOE_CHECK(coefficient != loss_coefficients.end(), "Routing::weighted_loss", "loss '", name,
                  "' has no coefficient in loss_coefficients");
    Tensor term = mul(loss, coefficient->second);
    total = total.defined() ? add(total, term) : term;
  }
  return total.defined() ? total : zeros({}, dtype, device);
}

double Routing::sparsity() const {
  check_defined(scores, "Routing::sparsity", "scores");
  check_dim(scores, 2, "Routing::sparsity", "scores");
  const double slots = static_cast<double>(scores.numel());
  return slots > 0.0 ? 1.0 - static_cast<double>(routed_pairs) / slots : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace tinymoe::nn
