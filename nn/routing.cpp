#include "nn/routing.h"

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

}  // namespace tinymoe::nn
