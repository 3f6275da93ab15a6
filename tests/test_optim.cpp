// nn::SGD, nn::AdamW and clip_grad_norm against hand-computed values, and a small regression.
#include <catch2/catch.hpp>

#include <cmath>

#include "nn/linear.h"
#include "nn/lr_schedule.h"
#include "nn/optim.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;

namespace {

Tensor parameter(const std::vector<double>& values) {
  return from_vector(values, {int64_t(values.size())}).requires_grad_();
}

void set_gradient(Tensor& tensor, const std::vector<double>& values) {
  tensor.set_grad(from_vector(values, {int64_t(values.size())}));
}

void check_values(const Tensor& tensor, const std::vector<double>& expected) {
  std::vector<double> values = tensor.to_vector<double>();
  REQUIRE(values.size() == expected.size());
  for (size_t i = 0; i < values.size(); ++i) CHECK(values[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-15));
}

}  // namespace

TEST_CASE("optim: SGD with momentum, two steps by hand", "[optim]") {
  Tensor p = parameter({1.0, -1.0});
  nn::SGD sgd({p}, {0.1, 0.9, 0.0});
  set_gradient(p, {0.5, 0.2});
  sgd.step();  // b = g = [0.5, 0.2];  p = [1 - 0.05, -1 - 0.02]
  check_values(p, {0.95, -1.02});
  sgd.step();  // b = 0.9 b + g = [0.95, 0.38];  p -= 0.1 b
  check_values(p, {0.855, -1.058});
}

TEST_CASE("optim: SGD weight decay is added to the gradient", "[optim]") {
  Tensor p = parameter({1.0});
  nn::SGD sgd({p}, {0.1, 0.9, 0.1});
  set_gradient(p, {0.5});
  sgd.step();  // g = 0.5 + 0.1 * 1 = 0.6;  b = 0.6;  p = 1 - 0.06
  check_values(p, {0.94});
  sgd.step();  // g = 0.5 + 0.1 * 0.94 = 0.594;  b = 0.9 * 0.6 + 0.594 = 1.134;  p = 0.94 - 0.1134
  check_values(p, {0.8266});
  Tensor plain = parameter({2.0});
  nn::SGD no_momentum({plain}, {0.5});
  set_gradient(plain, {1.0});
  no_momentum.step();
  no_momentum.step();
  check_values(plain, {1.0});
}

TEST_CASE("optim: AdamW first step by hand, second step by the formula", "[optim]") {
  Tensor p = parameter({1.0, -2.0, 0.5});
  nn::AdamWOptions options;
  options.lr = 0.1;
  options.weight_decay = 0.01;
  nn::AdamW adamw({p}, options);
  set_gradient(p, {0.5, -0.1, 0.0});
  adamw.step();
  // t = 1: m = 0.1 g, v = 0.001 g^2, so m / (1 - 0.9) = g and sqrt(v / (1 - 0.999)) = |g|:
  //   p = 0.999 p - 0.1 g / (|g| + 1e-8)
  //   p0 = 0.999 - 0.1 * 0.5 / 0.50000001 = 0.999 - 0.099999998000000004
  //   p1 = -1.998 + 0.1 * 0.1 / 0.10000001 = -1.998 + 0.099999990000001
  //   p2 = 0.4995 (no gradient: decay only)
  check_values(p, {0.899000001999999996, -1.898000009999999, 0.4995});
  CHECK(adamw.step_count(0) == 1);

  std::vector<double> before = p.to_vector<double>();
  std::vector<double> g1 = {0.5, -0.1, 0.0}, g2 = {0.2, 0.3, -0.4};
  set_gradient(p, g2);
  adamw.step();
  std::vector<double> expected;
  for (size_t j = 0; j < 3; ++j) {
    double m = 0.9 * (0.1 * g1[j]) + 0.1 * g2[j];
    double v = 0.999 * (0.001 * g1[j] * g1[j]) + 0.001 * g2[j] * g2[j];
    double m_hat = m / (1 - 0.9 * 0.9), v_hat = v / (1 - 0.999 * 0.999);
    expected.push_back(before[j] * (1 - 0.1 * 0.01) - 0.1 * m_hat / (std::sqrt(v_hat) + 1e-8));
  }
  check_values(p, expected);
  CHECK(adamw.step_count(0) == 2);
}

TEST_CASE("optim: parameters without a gradient are skipped", "[optim]") {
  Tensor with_grad = parameter({1.0}), without_grad = parameter({3.0});
  nn::AdamW adamw({with_grad, without_grad}, {0.1, 0.9, 0.999, 1e-8, 0.5});
  nn::SGD sgd({with_grad, without_grad}, {0.1, 0.9, 0.5});
  set_gradient(with_grad, {1.0});
  adamw.step();
  sgd.step();
  check_values(without_grad, {3.0});  // not even decayed
  CHECK(adamw.step_count(0) == 1);
  CHECK(adamw.step_count(1) == 0);
  adamw.zero_grad();
  CHECK_FALSE(with_grad.grad().defined());
  adamw.step();  // nothing to do
  CHECK(adamw.step_count(0) == 1);
}

TEST_CASE("optim: f32 parameters update in place", "[optim]") {
  Tensor p = from_vector(std::vector<float>{1.0f, 2.0f}, {2}).requires_grad_();
  void* storage = p.raw_data();
  nn::SGD sgd({p}, {0.5});
  p.set_grad(from_vector(std::vector<float>{1.0f, -1.0f}, {2}));
  sgd.step();
  CHECK(p.to_vector<float>() == std::vector<float>{0.5f, 2.5f});
  CHECK(p.raw_data() == storage);
  CHECK(p.is_leaf());
}

TEST_CASE("optim: clip_grad_norm follows torch", "[optim]") {
  Tensor a = parameter({3.0, 4.0}), b = parameter({12.0}), no_grad = parameter({100.0});
  set_gradient(a, {3.0, 4.0});
  set_gradient(b, {12.0});
  CHECK(nn::clip_grad_norm({a, b, no_grad}, 100.0) == Approx(13.0).epsilon(1e-15));
  check_values(a.grad(), {3.0, 4.0});  // under the limit: untouched
  CHECK(nn::clip_grad_norm({a, b, no_grad}, 6.5) == Approx(13.0).epsilon(1e-15));
  double scale = 6.5 / (13.0 + 1e-6);
  check_values(a.grad(), {3.0 * scale, 4.0 * scale});
  check_values(b.grad(), {12.0 * scale});
  CHECK_FALSE(no_grad.grad().defined());
  CHECK(nn::clip_grad_norm({no_grad}, 1.0) == 0.0);
  Tensor f = from_vector(std::vector<float>{6.0f, 8.0f}, {2}).requires_grad_();
  f.set_grad(from_vector(std::vector<float>{6.0f, 8.0f}, {2}));
  CHECK(nn::clip_grad_norm({f}, 5.0) == Approx(10.0));
  CHECK(f.grad().to_vector<float>()[1] == Approx(4.0f).epsilon(1e-6));
}

TEST_CASE("optim: a tiny regression converges", "[optim]") {
  Generator generator(3);
  Tensor x = randn({64, 3}, DType::f32, &generator);
  Tensor true_weight = from_vector(std::vector<float>{1.0f, -2.0f, 0.5f}, {3, 1});
  Tensor target = matmul(x, true_weight) + 0.3;
  auto train = [&](nn::Optimizer& optimizer, nn::Linear& model, int steps) {
    double loss_value = 0;
    for (int step = 0; step < steps; ++step) {
      Tensor error = model(x) - target;
      Tensor loss = mean(error * error);
      optimizer.zero_grad();
      loss.backward();
      nn::clip_grad_norm(model.parameters(), 10.0);
      optimizer.step();
      loss_value = loss.item();
    }
    return loss_value;
  };
  nn::Linear adam_model(3, 1, true, &generator);
  nn::AdamW adamw(adam_model.parameters(), {0.05, 0.9, 0.999, 1e-8, 0.0});
  CHECK(train(adamw, adam_model, 400) < 1e-5);
  CHECK(adam_model.bias().item() == Approx(0.3).margin(1e-3));

  nn::Linear sgd_model(3, 1, true, &generator);
  nn::SGD sgd(sgd_model.parameters(), {0.05, 0.9, 0.0});
  CHECK(train(sgd, sgd_model, 200) < 1e-6);
  std::vector<float> weight = sgd_model.weight().to_vector<float>();
  CHECK(weight[1] == Approx(-2.0).margin(1e-3));
}

TEST_CASE("optim: errors", "[optim][errors]") {
  Tensor p = parameter({1.0});
  CHECK_THROWS_WITH(nn::SGD({}), Catch::Contains("SGD") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(nn::AdamW({p, p}), Catch::Contains("AdamW") && Catch::Contains("twice"));
  CHECK_THROWS_WITH(nn::AdamW({Tensor()}), Catch::Contains("AdamW") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(nn::SGD({zeros({2}, DType::i64)}), Catch::Contains("SGD") && Catch::Contains("floating"));
  CHECK_THROWS_WITH(nn::SGD({zeros({2})}), Catch::Contains("SGD") && Catch::Contains("requires grad"));
  CHECK_THROWS_WITH(nn::SGD({mul(p, 2.0)}), Catch::Contains("SGD") && Catch::Contains("leaf"));
  CHECK_THROWS_WITH(nn::SGD({p}, {-0.1}), Catch::Contains("SGD") && Catch::Contains("lr"));
  CHECK_THROWS_WITH(nn::SGD({p}, {0.1, -0.9}), Catch::Contains("SGD") && Catch::Contains("momentum"));
  CHECK_THROWS_WITH(nn::SGD({p}, {0.1, 0.9, -1.0}), Catch::Contains("SGD") && Catch::Contains("weight_decay"));
  CHECK_THROWS_WITH(nn::AdamW({p}, {0.1, 1.0}), Catch::Contains("AdamW") && Catch::Contains("beta1"));
  CHECK_THROWS_WITH(nn::AdamW({p}, {0.1, 0.9, -0.5}), Catch::Contains("AdamW") && Catch::Contains("beta2"));
  CHECK_THROWS_WITH(nn::AdamW({p}, {0.1, 0.9, 0.999, -1.0}), Catch::Contains("AdamW") && Catch::Contains("eps"));
  CHECK_THROWS_WITH(nn::AdamW({p}, {0.1, 0.9, 0.999, 1e-8, NAN}),
                    Catch::Contains("AdamW") && Catch::Contains("weight_decay"));
  nn::AdamW adamw({p});
  CHECK_THROWS_WITH(adamw.set_lr(-1.0), Catch::Contains("AdamW") && Catch::Contains("lr"));
  adamw.set_lr(0.5);
  CHECK(adamw.lr() == 0.5);
  CHECK_THROWS_WITH(adamw.step_count(3), Catch::Contains("AdamW") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(nn::clip_grad_norm({p}, -1.0), Catch::Contains("clip_grad_norm") && Catch::Contains("max_norm"));
}

TEST_CASE("optim: the warm-up cosine schedule by its formula", "[optim][schedule]") {
  nn::WarmupCosineSchedule schedule(1e-3, 4, 12, 1e-4);
  CHECK(schedule.lr(1) == Approx(0.25e-3).epsilon(1e-15));  // linear warm-up
  CHECK(schedule.lr(2) == Approx(0.5e-3).epsilon(1e-15));
  CHECK(schedule.lr(4) == Approx(1e-3).epsilon(1e-15));     // the peak, at the end of warm-up
  CHECK(schedule.lr(8) == Approx(0.55e-3).epsilon(1e-14));  // half way down: (peak + min) / 2
  // r = 1/8: min + (peak - min) (1 + cos(pi / 8)) / 2
  CHECK(schedule.lr(5) == Approx(1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(M_PI / 8))).epsilon(1e-14));
  CHECK(schedule.lr(12) == Approx(1e-4).epsilon(1e-14));  // the floor at the last step, and after it
  CHECK(schedule.lr(1000) == 1e-4);
  for (int64_t step = 5; step <= 12; ++step) CHECK(schedule.lr(step) < schedule.lr(step - 1));
  nn::WarmupCosineSchedule no_warmup(2.0, 0, 4);
  CHECK(no_warmup.lr(1) == Approx(1.0 + std::cos(M_PI / 4)).epsilon(1e-15));
  CHECK(no_warmup.lr(4) == Approx(0.0).margin(1e-15));
}

TEST_CASE("optim: the warm-up cosine schedule refuses impossible settings", "[optim][schedule][errors]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(nn::WarmupCosineSchedule(-1.0, 1, 2), Contains("WarmupCosineSchedule") && Contains("peak_lr"));
  CHECK_THROWS_WITH(nn::WarmupCosineSchedule(1.0, 1, 2, 2.0), Contains("min_lr <= peak_lr"));
  CHECK_THROWS_WITH(nn::WarmupCosineSchedule(1.0, 3, 2), Contains("warmup_steps <= total_steps"));
  CHECK_THROWS_WITH(nn::WarmupCosineSchedule(1.0, 0, 0), Contains("total_steps >= 1"));
  CHECK_THROWS_WITH(nn::WarmupCosineSchedule(1.0, 1, 2).lr(0), Contains("steps count from 1, got 0"));
}
