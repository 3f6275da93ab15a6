// Balance losses: uniform routing gives the documented minimum of each form, hand-computed
// small cases (HF Switch's dropped-token quirk included), z-loss and importance loss by hand,
// gradchecks w.r.t. the logits, the noisy top-k load loss against its definition, and bad inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <vector>

#include "nn/balance_losses.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

Tensor probs_of(const std::vector<double>& values, int64_t experts) {
  return from_vector(values, {static_cast<int64_t>(values.size()) / experts, experts});
}

Tensor ids(const std::vector<int64_t>& values, int64_t k) {
  return from_vector(values, {static_cast<int64_t>(values.size()) / k, k});
}

}  // namespace

TEST_CASE("balance_losses: uniform routing gives 1 (Switch form) and k (HF Mixtral form)", "[balance_losses]") {
  const int64_t tokens = 8, experts = 4, k = 2;
  Tensor probs = full({tokens, experts}, 0.25, DType::f64);
  std::vector<int64_t> chosen;
  for (int64_t t = 0; t < tokens; ++t) chosen.push_back(t % 4), chosen.push_back((t + 1) % 4);
  Tensor expert_index = ids(chosen, k);
  CHECK(load_balancing_loss(probs, expert_index).item() == Approx(1.0));
  CHECK(load_balancing_loss(probs, expert_index, LoadBalanceForm::hf_mixtral).item() == Approx(2.0));
  CHECK(sequence_aux_loss(probs, expert_index, 4).item() == Approx(1.0));
  // HF Switch is top-1: uniform top-1 routing per sequence gives 1.
  Tensor top1 = ids({0, 1, 2, 3, 3, 2, 1, 0}, 1);
  CHECK(load_balancing_loss(probs, top1, LoadBalanceForm::hf_switch, 4).item() == Approx(1.0));
  CHECK(load_balancing_loss(probs, top1).item() == Approx(1.0));
  // f32 in, f32 out.
  CHECK(load_balancing_loss(probs.to(DType::f32), expert_index).dtype() == DType::f32);
}

TEST_CASE("balance_losses: small cases by hand", "[balance_losses]") {
  // T = 2, E = 2, k = 1, both tokens on expert 0: f = (1, 0), P = (0.55, 0.45), L = 2 * 0.55.
  Tensor probs = probs_of({0.7, 0.3, 0.4, 0.6}, 2);
  CHECK(load_balancing_loss(probs, ids({0, 0}, 1)).item() == Approx(1.1));
  CHECK(load_balancing_loss(probs, ids({0, 0}, 1), LoadBalanceForm::hf_mixtral).item() == Approx(1.1));
  // T = 2, E = 3, k = 2: counts (1, 2, 1), P = (0.3, 0.45, 0.25).
  Tensor three = probs_of({0.5, 0.3, 0.2, 0.1, 0.6, 0.3}, 3);
  Tensor chosen = ids({0, 1, 1, 2}, 2);
  double switch_form = 3 * (1.0 / 4 * 0.3 + 2.0 / 4 * 0.45 + 1.0 / 4 * 0.25);
  CHECK(load_balancing_loss(three, chosen).item() == Approx(switch_form));
  CHECK(load_balancing_loss(three, chosen, LoadBalanceForm::hf_mixtral).item() == Approx(2 * switch_form));
}

TEST_CASE("balance_losses: HF Switch counts dropped tokens as expert 0, per sequence", "[balance_losses]") {
  Tensor probs = probs_of({0.6, 0.4, 0.3, 0.7, 0.2, 0.8, 0.1, 0.9}, 2);
  Tensor chosen = ids({0, 1, 1, 1}, 1);
  // Capacity dropped tokens 2 and 3: HF's argmax of their all-zero mask rows is expert 0.
  Tensor seen = hf_switch_loss_expert_index(chosen, ids({1, 1, 0, 0}, 1));
  CHECK(seen.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 0, 0});
  // One sequence: f = (3/4, 1/4), P = (0.3, 0.7).
  CHECK(load_balancing_loss(probs, seen, LoadBalanceForm::hf_switch).item() == Approx(2 * (0.75 * 0.3 + 0.25 * 0.7)));
  // Counting them under their chosen expert would give f = (1/4, 3/4) instead.
  CHECK(load_balancing_loss(probs, chosen, LoadBalanceForm::hf_switch).item() == Approx(2 * (0.25 * 0.3 + 0.75 * 0.7)));
  // Two sequences of 2: (E / B) sum_b sum_e f P = (2/2) * ((0.5*0.45 + 0.5*0.55) + (0*0.15 + 1*0.85)).
  CHECK(load_balancing_loss(probs, chosen, LoadBalanceForm::hf_switch, 2).item() == Approx(0.5 + 0.85));
  // A token listing an expert twice counts once there (HF takes the max over slots).
  Tensor doubled = ids({0, 0, 1, 1}, 2);
  CHECK(load_balancing_loss(probs_of({0.5, 0.5, 0.5, 0.5}, 2), doubled, LoadBalanceForm::hf_switch).item() ==
        Approx(2 * (0.5 * 0.5 + 0.5 * 0.5)));
}

TEST_CASE("balance_losses: sequence-level aux loss by hand", "[balance_losses]") {
  // E = 3, k = 2, two sequences of 2 tokens.
  Tensor probs = probs_of({0.5, 0.3, 0.2, 0.1, 0.6, 0.3, 0.2, 0.2, 0.6, 0.3, 0.4, 0.3}, 3);
  Tensor chosen = ids({0, 1, 1, 2, 2, 0, 1, 0}, 2);
  // Sequence 0: counts (1, 2, 1) / (S k = 4), P = (0.3, 0.45, 0.25).
  double first = 3 * (0.25 * 0.3 + 0.5 * 0.45 + 0.25 * 0.25);
  // Sequence 1: counts (2, 1, 1) / 4, P = (0.25, 0.3, 0.45).
  double second = 3 * (0.5 * 0.25 + 0.25 * 0.3 + 0.25 * 0.45);
  CHECK(sequence_aux_loss(probs, chosen, 2).item() == Approx((first + second) / 2));
  // One sequence is the Switch form.
  CHECK(sequence_aux_loss(probs, chosen).item() == Approx(load_balancing_loss(probs, chosen).item()));
  // Sigmoid scores are normalised per token first (DeepSeek-V3 eq. 19).
  std::vector<double> normalised = normalised_scores(probs_of({0.2, 0.6, 0.9, 0.1}, 2)).to_vector<double>();
  CHECK(normalised[0] == Approx(0.25));
  CHECK(normalised[3] == Approx(0.1));
}

TEST_CASE("balance_losses: z-loss and importance loss by hand", "[balance_losses]") {
  Tensor logits = from_vector(std::vector<double>{0, 0, std::log(3.0), 0}, {2, 2});
  double lse0 = std::log(2.0), lse1 = std::log(4.0);
  CHECK(z_loss(logits).item() == Approx((lse0 * lse0 + lse1 * lse1) / 2));
  CHECK(z_loss(logits.to(DType::f32)).item() == Approx((lse0 * lse0 + lse1 * lse1) / 2).epsilon(1e-6));
  // Importance (1.3, 0.4, 0.3): mean 2/3, population variance, CV^2.
  Tensor weights = from_vector(std::vector<double>{0.6, 0.4, 0.7, 0.3}, {2, 2});
  double mean = 2.0 / 3.0;
  double variance = ((1.3 - mean) * (1.3 - mean) + (0.4 - mean) * (0.4 - mean) + (0.3 - mean) * (0.3 - mean)) / 3;
  CHECK(importance_loss(weights, ids({0, 1, 0, 2}, 2), 3).item() == Approx(variance / (mean * mean)));
  CHECK(importance_loss(weights, ids({0, 0, 0, 0}, 2), 1).item() == 0.0);
  // Equal importance is perfectly balanced.
  CHECK(importance_loss(full({2, 1}, 0.5, DType::f64), ids({0, 1}, 1), 2).item() == Approx(0.0).margin(1e-15));
}

TEST_CASE("balance_losses: entropy loss by hand", "[balance_losses]") {
  // Uniform over 4: log 4. p = (3/4, 1/4): -(3/4 log 3/4 + 1/4 log 1/4). The mean of the two.
  Tensor logits = from_vector(std::vector<double>{0, 0, 0, 0, std::log(3.0), 0, -1e4, -1e4}, {2, 4});
  double sharp = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  CHECK(entropy_loss(logits).item() == Approx((std::log(4.0) + sharp) / 2).epsilon(1e-12));
  // Probabilities that underflow to 0 (the -1e4 logits) add nothing and stay finite, in f32 too.
  CHECK(entropy_loss(logits.to(DType::f32)).item() == Approx((std::log(4.0) + sharp) / 2).epsilon(1e-6));
  CHECK(entropy_loss(from_vector(std::vector<double>{50, -50}, {1, 2})).item() == Approx(0.0).margin(1e-30));
  // Large f32 logits: the row shift keeps the two terms from cancelling.
  Tensor large = add(from_vector(std::vector<float>{0.0f, 0.0f, 1.0f, -1.0f}, {1, 4}), 3000.0f);
  double expected_large = entropy_loss(from_vector(std::vector<double>{0, 0, 1, -1}, {1, 4})).item();
  CHECK(entropy_loss(large).item() == Approx(expected_large).epsilon(1e-6));
  CHECK_THROWS_WITH(entropy_loss(zeros({3}, DType::f64)), Catch::Contains("entropy_loss"));
}

TEST_CASE("balance_losses: an empty batch gives 0", "[balance_losses]") {
  Tensor probs = zeros({0, 4}, DType::f64);
  Tensor none = zeros({0, 2}, DType::i64);
  CHECK(load_balancing_loss(probs, none).item() == 0.0);
  CHECK(load_balancing_loss(probs, none, LoadBalanceForm::hf_switch, 3).item() == 0.0);
  CHECK(sequence_aux_loss(probs, none, 3).item() == 0.0);
  CHECK(z_loss(probs).item() == 0.0);
  CHECK(entropy_loss(probs).item() == 0.0);
  CHECK(importance_loss(zeros({0, 2}, DType::f64), none, 4).item() == 0.0);
}

TEST_CASE("balance_losses: gradcheck of every loss w.r.t. the logits", "[balance_losses][gradcheck]") {
  Generator generator(17);
  for (auto [tokens, experts, k, sequence] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
           {6, 4, 2, 3}, {8, 3, 1, 4}, {4, 5, 3, 0}}) {
    Tensor logits = randn({tokens, experts}, DType::f64, &generator).requires_grad_();
    Tensor chosen = topk(logits.detach(), k, 1).indices;
    for (LoadBalanceForm form : {LoadBalanceForm::switch_megatron, LoadBalanceForm::hf_mixtral, LoadBalanceForm::hf_switch}) {
      auto fn = [&](const TensorList& in) { return load_balancing_loss(softmax(in[0], -1), chosen, form, sequence); };
      GradcheckResult result = gradcheck(fn, {logits});
      INFO(load_balance_form_name(form) << ": " << result.report);
      CHECK(result.passed());
    }
    auto seq_aux = [&](const TensorList& in) {
      return sequence_aux_loss(normalised_scores(sigmoid(in[0])), chosen, sequence);
    };
    CHECK(gradcheck(seq_aux, {logits}).passed());
    CHECK(gradcheck([](const TensorList& in) { return z_loss(in[0]); }, {logits}).passed());
    CHECK(gradcheck([](const TensorList& in) { return entropy_loss(in[0]); }, {logits}).passed());
    auto importance = [&](const TensorList& in) {
      return importance_loss(gather(softmax(in[0], -1), 1, chosen), chosen, experts);
    };
    CHECK(gradcheck(importance, {logits}).passed());
  }
}

TEST_CASE("balance_losses: global-batch f by hand, and with the batch's own counts it is load_balancing_loss",
          "[balance_losses]") {
  Generator generator(31);
  Tensor probs = softmax(randn({6, 4}, DType::f64, &generator), -1);
  Tensor expert_index = ids({0, 1, 1, 2, 3, 0, 2, 1, 0, 3, 1, 2}, 2);
  std::vector<double> counts = expert_pair_counts(expert_index, 4);
  CHECK(counts == std::vector<double>{3, 4, 3, 2});
  // A batch of 10 tokens (these 6 and 4 more) with other loads: E sum_i f_i P_i, P_i over these 6.
  const std::vector<double> batch_counts = {5, 6, 4, 5};
  std::vector<double> p = probs.to_vector<double>(), mean_p(4, 0.0);
  for (size_t i = 0; i < p.size(); ++i) mean_p[i % 4] += p[i] / 6.0;
  double weighted = 0;
  for (size_t e = 0; e < 4; ++e) weighted += batch_counts[e] * mean_p[e];
  CHECK(load_balancing_loss_with_batch(probs, 2, LoadBalanceForm::switch_megatron, batch_counts, 10).item() ==
        Approx(4.0 * weighted / (10.0 * 2)).epsilon(1e-14));
  CHECK(load_balancing_loss_with_batch(probs, 2, LoadBalanceForm::hf_mixtral, batch_counts, 10).item() ==
        Approx(4.0 * weighted / 10.0).epsilon(1e-14));
  for (LoadBalanceForm form : {LoadBalanceForm::switch_megatron, LoadBalanceForm::hf_mixtral}) {
    INFO(load_balance_form_name(form));
    CHECK(load_balancing_loss_with_batch(probs, 2, form, counts, 6).item() ==
          Approx(load_balancing_loss(probs, expert_index, form).item()).epsilon(1e-14));
  }
  CHECK(expert_pair_counts(zeros({0, 2}, DType::i64), 3) == std::vector<double>{0, 0, 0});
}

TEST_CASE("balance_losses: global-batch f over two halves: their mean is the whole batch's loss, and gradients follow",
          "[balance_losses][gradcheck]") {
  // A batch of 8 tokens split into two ranks of 4: each weighs its own P by the whole batch's f.
  Generator generator(32);
  Tensor logits = randn({8, 4}, DType::f64, &generator);
  Tensor expert_index = ids({0, 1, 0, 1, 0, 2, 1, 0, 3, 2, 2, 3, 3, 2, 1, 3}, 2);
  std::vector<double> counts = expert_pair_counts(expert_index, 4);
  for (LoadBalanceForm form : {LoadBalanceForm::switch_megatron, LoadBalanceForm::hf_mixtral}) {
    INFO(load_balance_form_name(form));
    Tensor probs = softmax(logits, -1);
    Tensor first = load_balancing_loss_with_batch(slice(probs, 0, 0, 4), 2, form, counts, 8);
    Tensor second = load_balancing_loss_with_batch(slice(probs, 0, 4, 8), 2, form, counts, 8);
    CHECK(mul(add(first, second), 0.5).item() ==
          Approx(load_balancing_loss(probs, expert_index, form).item()).epsilon(1e-14));
    // Each half's loss alone differs from it: its own f would be another (the halves route differently).
    CHECK(load_balancing_loss(slice(probs, 0, 0, 4), slice(expert_index, 0, 0, 4), form).item() !=
          Approx(first.item()).epsilon(1e-6));
    auto share = [&](const TensorList& in) {
      return load_balancing_loss_with_batch(softmax(in[0], -1), 2, form, counts, 8);
    };
    CHECK(gradcheck(share, {slice(logits, 0, 0, 4).clone().requires_grad_()}).passed());
  }
}

TEST_CASE("balance_losses: bad inputs name the loss", "[balance_losses][errors]") {
  Tensor probs = full({4, 2}, 0.5, DType::f64);
  CHECK_THROWS_WITH(load_balancing_loss(probs, ids({0, 1, 2, 0}, 1)),
                    Catch::Contains("load_balancing_loss") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(load_balancing_loss(probs, ids({0, 1, 0}, 1)), Catch::Contains("load_balancing_loss"));
  CHECK_THROWS_WITH(load_balancing_loss(probs, ids({0, 1, 0, 1}, 1), LoadBalanceForm::hf_switch, 3),
                    Catch::Contains("load_balancing_loss") && Catch::Contains("sequences"));
  CHECK_THROWS_WITH(load_balancing_loss(zeros({4, 2}, DType::i64), ids({0, 1, 0, 1}, 1)),
                    Catch::Contains("load_balancing_loss"));
  CHECK_THROWS_WITH(load_balancing_loss(probs, from_vector(std::vector<double>{0, 1, 0, 1}, {4, 1})),
                    Catch::Contains("load_balancing_loss"));
  CHECK_THROWS_WITH(sequence_aux_loss(probs, ids({0, 1, 0, 1}, 1), -1), Catch::Contains("sequence_aux_loss"));
  CHECK_THROWS_WITH(z_loss(zeros({4}, DType::f64)), Catch::Contains("z_loss"));
  CHECK_THROWS_WITH(importance_loss(probs, ids({0, 1, 0, 1}, 1), 2), Catch::Contains("importance_loss"));
  CHECK_THROWS_WITH(hf_switch_loss_expert_index(ids({0, 1}, 1), ids({1}, 1)),
                    Catch::Contains("hf_switch_loss_expert_index"));
}

// ---- load loss (Shazeer et al. 2017, eqs. 8-10) ----

namespace {

double standard_normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// The paper's definition read literally: kth_excluding(H, k, i) is the k-th largest of H with
// entry i left out.
double slow_load_loss(const Tensor& clean, const Tensor& noisy, const Tensor& stddev, int64_t k) {
  const int64_t tokens = clean.size(0), experts = clean.size(1);
  std::vector<double> c = clean.to_vector<double>(), h = noisy.to_vector<double>(), s = stddev.to_vector<double>();
  std::vector<double> load(experts, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < experts; ++i) {
      std::vector<double> others;
      for (int64_t j = 0; j < experts; ++j)
        if (j != i) others.push_back(h[t * experts + j]);
      std::sort(others.begin(), others.end(), std::greater<double>());
      load[i] += standard_normal_cdf((c[t * experts + i] - others[k - 1]) / s[t * experts + i]);
    }
  double mean = 0.0, variance = 0.0;
  for (double l : load) mean += l / experts;
  for (double l : load) variance += (l - mean) * (l - mean) / experts;
  return variance / (mean * mean + 1e-10);
}

struct NoisyLogits {
  Tensor clean, noisy, stddev;
};

NoisyLogits noisy_logits_for_test(int64_t tokens, int64_t experts, uint64_t seed) {
  Generator generator(seed);
  Tensor clean = randn({tokens, experts}, DType::f64, &generator);
  Tensor stddev = rand({tokens, experts}, DType::f64, &generator, 0.3, 1.5);
  Tensor noisy = add(clean, mul(randn({tokens, experts}, DType::f64, &generator), stddev));
  return {clean, noisy, stddev};
}

}  // namespace

TEST_CASE("balance_losses: global-batch f refuses what it cannot weigh", "[balance_losses][errors]") {
  Tensor probs = full({2, 3}, 1.0 / 3, DType::f64);
  const std::vector<double> counts = {1, 1, 0};
  auto with_batch = [&](LoadBalanceForm form, const std::vector<double>& c, int64_t k, int64_t tokens) {
    return load_balancing_loss_with_batch(probs, k, form, c, tokens);
  };
  CHECK_THROWS_WITH(with_batch(LoadBalanceForm::hf_switch, counts, 1, 2),
                    Catch::Contains("load_balancing_loss_with_batch") && Catch::Contains("per sequence"));
  CHECK_THROWS_WITH(with_batch(LoadBalanceForm::switch_megatron, {1, 1}, 1, 2), Catch::Contains("one per expert"));
  CHECK_THROWS_WITH(with_batch(LoadBalanceForm::switch_megatron, counts, 0, 2), Catch::Contains("k >= 1"));
  CHECK_THROWS_WITH(with_batch(LoadBalanceForm::switch_megatron, counts, 1, 1), Catch::Contains("cannot hold"));
  CHECK(with_batch(LoadBalanceForm::switch_megatron, counts, 1, 5).item() > 0.0);
  CHECK(load_balancing_loss_with_batch(zeros({0, 3}, DType::f64), 1, LoadBalanceForm::hf_mixtral, counts, 4).item() ==
        0.0);
  CHECK_THROWS_WITH(expert_pair_counts(ids({0, 3}, 1), 3), Catch::Contains("expert_pair_counts"));
}

TEST_CASE("balance_losses: load loss matches the paper's definition read literally", "[balance_losses][load_loss]") {
  for (auto [tokens, experts, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{7, 6, 2}, {5, 4, 1}, {9, 8, 3}}) {
    NoisyLogits in = noisy_logits_for_test(tokens, experts, 70 + tokens);
    INFO("T " << tokens << " E " << experts << " k " << k);
    CHECK(load_loss(in.clean, in.noisy, in.stddev, k).item() ==
          Approx(slow_load_loss(in.clean, in.noisy, in.stddev, k)).epsilon(1e-12));
    Tensor loss32 = load_loss(in.clean.to(DType::f32), in.noisy.to(DType::f32), in.stddev.to(DType::f32), k);
    CHECK(loss32.dtype() == DType::f32);
    CHECK(loss32.item() == Approx(slow_load_loss(in.clean, in.noisy, in.stddev, k)).epsilon(1e-4));
  }
  // Every expert always in the top k (k = E), or no tokens: nothing to balance.
  NoisyLogits in = noisy_logits_for_test(4, 3, 80);
  CHECK(load_loss(in.clean, in.noisy, in.stddev, 3).item() == 0.0);
  Tensor none = zeros({0, 3}, DType::f64);
  CHECK(load_loss(none, none, none, 1).item() == 0.0);
}

TEST_CASE("balance_losses: load loss gradcheck through clean logits, noisy logits and noise scale",
          "[balance_losses][load_loss][gradcheck]") {
  NoisyLogits in = noisy_logits_for_test(6, 5, 90);
  for (int64_t k : {1, 2, 4}) {
    INFO("k " << k);
    auto fn = [k](const TensorList& x) { return load_loss(x[0], x[1], x[2], k); };
    GradcheckResult result = gradcheck(fn, {in.clean.requires_grad_(), in.noisy.requires_grad_(),
                                            in.stddev.requires_grad_()});
    INFO(result.report);
    CHECK(result.passed());
  }
}

TEST_CASE("balance_losses: load loss stays finite where a noise scale is 0", "[balance_losses][load_loss]") {
  // softplus underflows to 0 for noise logits below about -104 in f32: a zero scale at an expert
  // on the top-k boundary, and one outside it.
  NoisyLogits in = noisy_logits_for_test(5, 4, 97);
  std::vector<double> scale = in.stddev.to_vector<double>();
  std::vector<int64_t> order = topk(in.noisy, 4, 1).indices.to_vector<int64_t>();
  scale[order[1]] = 0.0;          // token 0: its 2nd largest, the k-th for k = 2
  scale[4 + order[4 + 3]] = 0.0;  // token 1: its smallest, outside the top 2
  Tensor zero_scale = from_vector(scale, {5, 4});
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO(dtype);
    Tensor clean = in.clean.to(dtype).detach().requires_grad_(), noisy = in.noisy.to(dtype).detach().requires_grad_();
    Tensor stddev = zero_scale.to(dtype).detach().requires_grad_();
    Tensor loss = load_loss(clean, noisy, stddev, 2);
    CHECK(std::isfinite(loss.item()));
    loss.backward();
    for (const Tensor& grad : {clean.grad(), noisy.grad(), stddev.grad()})
      for (double value : grad.to(DType::f64).to_vector<double>()) CHECK(std::isfinite(value));
  }
}

TEST_CASE("balance_losses: load loss bad inputs name the loss", "[balance_losses][load_loss][errors]") {
  NoisyLogits in = noisy_logits_for_test(4, 3, 95);
  CHECK_THROWS_WITH(load_loss(in.clean, in.noisy, in.stddev, 0), Catch::Contains("load_loss") && Catch::Contains("k"));
  CHECK_THROWS_WITH(load_loss(in.clean, in.noisy, in.stddev, 4), Catch::Contains("load_loss"));
  CHECK_THROWS_WITH(load_loss(in.clean, slice(in.noisy, 1, 0, 2), in.stddev, 1),
                    Catch::Contains("load_loss") && Catch::Contains("noisy_logits"));
  CHECK_THROWS_WITH(load_loss(in.clean, in.noisy, in.stddev.to(DType::f32), 1),
                    Catch::Contains("load_loss") && Catch::Contains("noise_stddev"));
  CHECK_THROWS_WITH(load_loss(in.clean, in.noisy, Tensor(), 1), Catch::Contains("load_loss"));
  CHECK_THROWS_WITH(load_loss(zeros({3}, DType::f64), zeros({3}, DType::f64), zeros({3}, DType::f64), 1),
                    Catch::Contains("load_loss"));
}
