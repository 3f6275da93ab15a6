// nn/device_balance_losses.h: DeepSeek-V2's device-level and communication balance losses against
// hand-computed values, 1 under balanced routing, gradchecks, errors, and the RouterConfig switches.
#include <catch2/catch.hpp>

#include <vector>

#include "nn/device_balance_losses.h"
#include "nn/router_presets.h"
#include "test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

// 4 tokens, 4 experts on 2 devices ({0, 1}, {2, 3}), k = 2.
const std::vector<int64_t> kChoices = {0, 1, 0, 2, 1, 3, 2, 0};
const std::vector<double> kProbs = {0.4, 0.3, 0.2, 0.1,  //
                                    0.5, 0.1, 0.3, 0.1,  //
                                    0.1, 0.4, 0.1, 0.4,  //
                                    0.3, 0.1, 0.5, 0.1};

Tensor choices() { return from_vector(kChoices, {4, 2}); }

// P'_d: the device's summed mean probabilities.
std::vector<double> device_probs() {
  std::vector<double> p(2, 0.0);
  for (int t = 0; t < 4; ++t)
    for (int e = 0; e < 4; ++e) p[e / 2] += kProbs[t * 4 + e] / 4.0;
  return p;
}

}  // namespace

TEST_CASE("device_balance_losses: DeepSeek-V2 eqs. 15-19 by hand", "[device_balance_losses]") {
  Tensor probs = from_vector(kProbs, {4, 4});
  const std::vector<double> p = device_probs();
  // counts 3, 2, 2, 1 over kT = 8: f_i = E count_i / (k T) = 1.5, 1, 1, 0.5; f'_d = 1.25, 0.75.
  CHECK(device_balance_loss(probs, choices(), 2).item() == Approx(1.25 * p[0] + 0.75 * p[1]).epsilon(1e-12));
  // Every token reaches device 0, three reach device 1; M = 2: f''_d = D / (M T) * reached = 1, 0.75.
  CHECK(communication_balance_loss(probs, choices(), 2, 2).item() == Approx(1.0 * p[0] + 0.75 * p[1]).epsilon(1e-12));
  // One device holding every expert: f'_0 = mean f_i = 1, P'_0 = 1.
  CHECK(device_balance_loss(probs, choices(), 1).item() == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("device_balance_losses: balanced routing gives 1", "[device_balance_losses]") {
  Tensor uniform = full({4, 4}, 0.25, DType::f64);
  Tensor balanced = from_vector(std::vector<int64_t>{0, 2, 1, 3, 0, 3, 1, 2}, {4, 2});  // one expert per device
  CHECK(device_balance_loss(uniform, balanced, 2).item() == Approx(1.0).epsilon(1e-12));
  CHECK(communication_balance_loss(uniform, balanced, 2, 2).item() == Approx(1.0).epsilon(1e-12));
  // All on device 0: L_dev = f'_0 P'_0 = 2 * 0.5.
  Tensor skewed = from_vector(std::vector<int64_t>{0, 1, 0, 1, 0, 1, 0, 1}, {4, 2});
  CHECK(device_balance_loss(uniform, skewed, 2).item() == Approx(1.0).epsilon(1e-12));
  CHECK(device_balance_loss(from_vector(std::vector<double>(16, 0.0), {4, 4}), skewed, 2).item() == 0.0);
  // No tokens, no loss.
  CHECK(device_balance_loss(zeros({0, 4}, DType::f64), zeros({0, 2}, DType::i64), 2).item() == 0.0);
}

TEST_CASE("device_balance_losses: per sequence, as the paper's T", "[device_balance_losses]") {
  // Two sequences of 2 tokens, E = D = 2, k = 1: the first all on expert 0, the second all on 1.
  // Over the whole batch it looks balanced (1); per sequence each gives 2 * 0.9 = 1.8.
  Tensor probs = from_vector(std::vector<double>{0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9}, {4, 2});
  Tensor chosen = from_vector(std::vector<int64_t>{0, 0, 1, 1}, {4, 1});
  CHECK(device_balance_loss(probs, chosen, 2).item() == Approx(1.0).epsilon(1e-12));
  CHECK(device_balance_loss(probs, chosen, 2, 2).item() == Approx(1.8).epsilon(1e-12));
  CHECK(communication_balance_loss(probs, chosen, 2, 1, 2).item() == Approx(1.8).epsilon(1e-12));
  CHECK_THROWS_WITH(device_balance_loss(probs, chosen, 2, 3), Catch::Contains("device_balance_loss"));
}

TEST_CASE("device_balance_losses: gradcheck through probs", "[device_balance_losses][gradcheck]") {
  Generator generator(5);
  Tensor logits = randn({6, 8}, DType::f64, &generator).requires_grad_();
  Tensor chosen = from_vector(std::vector<int64_t>{0, 5, 1, 2, 7, 6, 3, 4, 0, 1, 2, 7}, {6, 2});
  testing::check_gradients("device_balance_loss",
                           [&](const TensorList& in) { return device_balance_loss(softmax(in[0], -1), chosen, 4); },
                           {logits});
  testing::check_gradients(
      "communication_balance_loss",
      [&](const TensorList& in) { return communication_balance_loss(softmax(in[0], -1), chosen, 4, 2); }, {logits});
  testing::check_gradients(
      "per-sequence device_balance_loss",
      [&](const TensorList& in) { return device_balance_loss(softmax(in[0], -1), chosen, 4, 3); }, {logits});
}

TEST_CASE("device_balance_losses: bad arguments name the loss", "[device_balance_losses][errors]") {
  Tensor probs = from_vector(kProbs, {4, 4});
  CHECK_THROWS_WITH(device_balance_loss(probs, choices(), 3),
                    Catch::Contains("device_balance_loss") && Catch::Contains("dividing E = 4"));
  CHECK_THROWS_WITH(communication_balance_loss(probs, choices(), 2, 3),
                    Catch::Contains("communication_balance_loss") && Catch::Contains("<= 2"));
  CHECK_THROWS_WITH(device_balance_loss(probs, from_vector(std::vector<int64_t>{0, 4, 0, 1, 0, 1, 0, 1}, {4, 2}), 2),
                    Catch::Contains("out of range"));
  CHECK_THROWS_WITH(device_balance_loss(probs, zeros({3, 2}, DType::i64), 2), Catch::Contains("4 rows"));
}

TEST_CASE("device_balance_losses: RouterConfig adds them with the devices of its groups", "[device_balance_losses]") {
  RouterConfig config = deepseek_v2(8, 3, 4, 2, 1.0);  // device-limited: 4 devices, at most 2 per token
  config.device_balance_loss = {true, 0.05};
  config.communication_balance_loss = {true, 0.02};
  Generator generator(9);
  Tensor logits = randn({10, 8}, DType::f64, &generator);
  RoutingContext context;
  context.num_experts = 8;
  Routing routing = make_rule(config)(logits, context);
  Tensor probs = softmax(logits, -1);
  CHECK(routing.losses.at("device_balance_loss").item() ==
        Approx(device_balance_loss(probs, routing.expert_index, 4).item()).epsilon(1e-12));
  CHECK(routing.losses.at("communication_balance_loss").item() ==
        Approx(communication_balance_loss(probs, routing.expert_index, 4, 2).item()).epsilon(1e-12));
  CHECK(routing.loss_coefficients.at("communication_balance_loss") == 0.02);
  // balance_devices overrides the groups; without group limits a token reaches min(k, D) devices.
  RouterConfig plain = mixtral(8, 2);
  plain.communication_balance_loss = {true, 0.02};
  plain.balance_devices = 2;
  Routing plain_routing = make_rule(plain)(logits, context);
  CHECK(plain_routing.losses.at("communication_balance_loss").item() ==
        Approx(communication_balance_loss(probs, plain_routing.expert_index, 2, 2).item()).epsilon(1e-12));
  // Top-1 under device-limited routing reaches one device, not topk_group = 2: M = min(k, topk_group).
  RouterConfig top1 = deepseek_v2(8, 1, 4, 2, 1.0);
  top1.communication_balance_loss = {true, 0.02};
  Routing top1_routing = make_rule(top1)(logits, context);
  CHECK(top1_routing.losses.at("communication_balance_loss").item() ==
        Approx(communication_balance_loss(probs, top1_routing.expert_index, 4, 1).item()).epsilon(1e-12));
  plain.balance_devices = 3;
  CHECK_THROWS_WITH(plain.validate(), Catch::Contains("RouterConfig") && Catch::Contains("dividing E = 8"));
  RouterConfig chooser = expert_choice(8);
  chooser.device_balance_loss = {true, 0.05};
  CHECK_THROWS_WITH(chooser.validate(), Catch::Contains("expert choice"));
}
