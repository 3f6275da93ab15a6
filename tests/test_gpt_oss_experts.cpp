// nn/gpt_oss_experts.h: GPT-OSS's clamped SwiGLU experts with biases against a per-row loop,
// with rows on both sides of both clamps; gradchecks of the experts and of a whole GPT-OSS block
// (router bias included); expert_of_rows; argument errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/gpt_oss_experts.h"
#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

std::vector<double> values(const Tensor& t) { return t.to(DType::f64).to_vector<double>(); }

struct ClampCounts {
  int gate_clipped = 0, up_clipped_above = 0, up_clipped_below = 0;
};

// OpenAI's swiglu, one row at a time over the stacked layout; counts which clamps cut.
std::vector<double> reference(const GptOssExperts& experts, const Tensor& x, const std::vector<int64_t>& offsets,
                              ClampCounts* counts) {
  const int64_t d = experts.hidden_size(), f = experts.intermediate_size(), rows = x.size(0);
  const std::vector<double> xs = values(x), w1 = values(experts.w1()), w3 = values(experts.w3()),
                            w2 = values(experts.w2()), b1 = values(experts.b1()), b3 = values(experts.b3()),
                            b2 = values(experts.b2());
  const double limit = experts.limit(), alpha = experts.alpha();
  std::vector<double> out(rows * d, 0.0);
  for (size_t e = 0; e + 1 < offsets.size(); ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      std::vector<double> hidden(f);
      for (int64_t j = 0; j < f; ++j) {
        double g = b1[e * f + j], u = b3[e * f + j];
        for (int64_t k = 0; k < d; ++k) {
          g += xs[i * d + k] * w1[(e * d + k) * f + j];
          u += xs[i * d + k] * w3[(e * d + k) * f + j];
        }
        counts->gate_clipped += g > limit;
        counts->up_clipped_above += u > limit;
        counts->up_clipped_below += u < -limit;
        g = std::min(g, limit);
        u = std::max(-limit, std::min(u, limit));
        hidden[j] = (u + 1.0) * g / (1.0 + std::exp(-alpha * g));
      }
      for (int64_t m = 0; m < d; ++m) {
        double y = b2[e * d + m];
        for (int64_t j = 0; j < f; ++j) y += hidden[j] * w2[(e * f + j) * d + m];
        out[i * d + m] = y;
      }
    }
  return out;
}

// Experts with weights large enough that both clamps cut (limit 7) and nonzero biases.
GptOssExperts clipping_experts(Generator& generator, DType dtype) {
  const int64_t experts = 3, d = 6, f = 5;
  return GptOssExperts(mul(randn({experts, d, f}, dtype, &generator), 6.0), mul(randn({experts, d, f}, dtype, &generator), 6.0),
                       randn({experts, f, d}, dtype, &generator), randn({experts, f}, dtype, &generator),
                       randn({experts, f}, dtype, &generator), randn({experts, d}, dtype, &generator));
}

// A small block of 4 GPT-OSS experts (d 4, f 3) behind `router`.
SparseMoEConfig gpt_oss_block(const RouterConfig& router, DType dtype) {
  SparseMoEConfig config;
  config.num_experts = 4;
  config.hidden_size = 4;
  config.intermediate_size = 3;
  config.expert_kind = ExpertKind::gpt_oss;
  config.router = router;
  config.dtype = dtype;
  return config;
}

}  // namespace

TEST_CASE("gpt_oss_experts: the per-row formula, with both clamps cutting", "[gpt_oss_experts]") {
  Generator generator(7);
  GptOssExperts experts = clipping_experts(generator, DType::f64);
  const std::vector<int64_t> offsets = {0, 4, 4, 9};  // expert 1 gets no row
  Tensor x = randn({9, 6}, DType::f64, &generator);
  ClampCounts counts;
  std::vector<double> expected = reference(experts, x, offsets, &counts);
  std::vector<double> got = values(experts.forward(x, from_vector(offsets, {4})));
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-12));
  CHECK(counts.gate_clipped > 0);
  CHECK(counts.up_clipped_above > 0);
  CHECK(counts.up_clipped_below > 0);
  // f32 agrees with f64 to rounding.
  GptOssExperts single(experts.w1().detach().to(DType::f32), experts.w3().detach().to(DType::f32), experts.w2().detach().to(DType::f32),
                       experts.b1().detach().to(DType::f32), experts.b3().detach().to(DType::f32), experts.b2().detach().to(DType::f32));
  std::vector<double> f32 = values(single.forward(x.to(DType::f32), from_vector(offsets, {4})));
  for (size_t i = 0; i < got.size(); ++i) CHECK(f32[i] == Approx(expected[i]).epsilon(1e-4).margin(1e-4));
}

TEST_CASE("gpt_oss_experts: gradcheck through x, the weights and the biases", "[gpt_oss_experts][gradcheck]") {
  Generator generator(11);
  GptOssExperts experts = clipping_experts(generator, DType::f64);
  Tensor offsets = from_vector(std::vector<int64_t>{0, 3, 3, 7}, {4});
  TensorList inputs = {randn({7, 6}, DType::f64, &generator).requires_grad_()};
  for (const Tensor& parameter : experts.parameters()) inputs.push_back(parameter);
  REQUIRE(inputs.size() == 7);
  testing::check_gradients(
      "GptOssExperts",
      [&](const TensorList& in) { return GptOssExperts(in[1], in[2], in[3], in[4], in[5], in[6]).forward(in[0], offsets); },
      inputs);
}

TEST_CASE("gpt_oss_experts: a GPT-OSS block, router bias included, gradchecks", "[gpt_oss_experts][gradcheck]") {
  SparseMoEConfig config = gpt_oss_block(gpt_oss(4, 2), DType::f64);
  Generator generator(23);
  SparseMoEBlock block(config, &generator);
  REQUIRE(block.gate()->bias().defined());
  std::vector<std::string> names;
  for (const auto& item : block.named_parameters()) names.push_back(item.first);
  CHECK(names == std::vector<std::string>{"gate.weight", "gate.bias", "experts.w1", "experts.w3", "experts.w2",
                                          "experts.b1", "experts.b3", "experts.b2"});
  TensorList inputs = {randn({2, 3, 4}, DType::f64, &generator).requires_grad_()};
  for (const Tensor& parameter : block.parameters()) inputs.push_back(parameter);
  REQUIRE(inputs.size() == 9);  // x, gate weight and bias, six expert tensors
  for (size_t i = 4; i < inputs.size(); ++i) {  // biases away from zero, so they matter
    NoGradGuard no_grad;
    Tensor nudge = randn(inputs[i].shape(), DType::f64, &generator);
    std::copy(nudge.data<double>(), nudge.data<double>() + nudge.numel(), inputs[i].data<double>());
  }
  testing::check_gradients(
      "GPT-OSS block",
      [&](const TensorList& in) {
        MoEParts parts;
        parts.gate = std::make_shared<Router>(config.router, in[1], Tensor(), in[2]);
        parts.experts = std::make_shared<GptOssExperts>(in[3], in[4], in[5], in[6], in[7], in[8]);
        MoEOutput out = SparseMoEBlock(parts).forward(in[0]);
        return add(out.output, out.routing.weighted_loss());  // the aux loss reaches the router too
      },
      inputs);
}

TEST_CASE("gpt_oss_experts: biased experts refuse weights on their inputs", "[gpt_oss_experts][errors]") {
  // A zero-weight pair (capacity padding) would feed the expert a zero row, and its biases would
  // still be added: weighing inputs needs experts that map zero to zero.
  SparseMoEConfig config = gpt_oss_block(llama4(4, 1), DType::f32);
  Generator generator(2);
  SparseMoEBlock block(config, &generator);
  CHECK_FALSE(block.experts()->maps_zero_to_zero());
  CHECK_THROWS_WITH(block.forward(randn({5, 4}, DType::f32, &generator)),
                    Catch::Contains("SparseMoEBlock") && Catch::Contains("weight_on_expert_input"));
  config.expert_kind = ExpertKind::swiglu;  // bias-free: fine
  SparseMoEBlock swiglu(config, &generator);
  CHECK(swiglu.experts()->maps_zero_to_zero());
  CHECK_NOTHROW(swiglu.forward(randn({5, 4}, DType::f32, &generator)));
}

TEST_CASE("gpt_oss_experts: expert_of_rows and argument errors", "[gpt_oss_experts][errors]") {
  CHECK(expert_of_rows(from_vector(std::vector<int64_t>{0, 2, 2, 5}, {4})).to_vector<int64_t>() ==
        std::vector<int64_t>{0, 0, 2, 2, 2});
  CHECK(expert_of_rows(from_vector(std::vector<int64_t>{0}, {1})).numel() == 0);
  CHECK_THROWS_WITH(expert_of_rows(from_vector(std::vector<int64_t>{0, 3, 2}, {3})),
                    Catch::Contains("expert_of_rows") && Catch::Contains("non-decreasing"));
  CHECK_THROWS_WITH(expert_of_rows(from_vector(std::vector<int64_t>{1, 3}, {2})), Catch::Contains("offsets[0] = 0"));
  CHECK_THROWS_WITH(expert_of_rows(zeros({2})), Catch::Contains("expert_of_rows"));
  Generator generator(3);
  GptOssExperts experts(2, 4, 3, &generator);
  CHECK(experts.b1().to_vector<float>() == std::vector<float>(6, 0.0f));  // biases start at zero
  CHECK_THROWS_WITH(GptOssExperts(experts.w1(), experts.w3(), experts.w2(), zeros({2, 4}), experts.b3(), experts.b2()),
                    Catch::Contains("GptOssExperts") && Catch::Contains("b1 f32 [2, 3]"));
  CHECK_THROWS_WITH(GptOssExperts(experts.w1(), experts.w3(), experts.w2(), experts.b1(), experts.b3(), experts.b2(),
                                  -1.0),
                    Catch::Contains("limit > 0"));
  CHECK_THROWS_WITH(experts.forward(zeros({2, 5}), from_vector(std::vector<int64_t>{0, 1, 2}, {3})),
                    Catch::Contains("GptOssExperts") && Catch::Contains("[N, 4]"));
}
