// The slow reference of a SparseMoEBlock for the block tests: plain loops over the block's
// weights (the router's logits, each routed expert on one token, the shared expert), and the
// combine of (token, expert, weight) pairs. Independent of the block's ops. Also: MoEParts from
// given tensors for whole-block gradient checks.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "nn/moe_block.h"
#include "tinymoe/tinymoe.h"

namespace tinymoe::testing {

using nn::Activation;
using nn::MLPExperts;
using nn::SparseMoEBlock;
using nn::SwiGLUExperts;

inline std::vector<double> values(const Tensor& t) { return t.to(DType::f64).to_vector<double>(); }

inline double activation_value(double z, Activation activation) {
  switch (activation) {
    case Activation::relu: return z > 0 ? z : 0.0;
    case Activation::gelu: return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
    default: return z / (1.0 + std::exp(-z));
  }
}

struct ReferenceWeights {
  int64_t experts = 0, d = 0, f = 0, shared_f = 0;
  bool swiglu = true;
  Activation activation = Activation::silu;
  std::vector<double> gate;                   // [E, d]
  std::vector<double> gate_bias;              // [E], empty without RouterConfig::gate_bias
  std::vector<double> w_in, w_up, w_out;      // [E, d, f], [E, d, f] (SwiGLU only), [E, f, d]
  std::vector<double> shared_gate_proj, shared_up_proj, shared_down_proj;  // [sf, d], [sf, d], [d, sf]
  std::vector<double> shared_expert_gate;     // [1, d], empty when ungated
};

inline ReferenceWeights reference_weights(const SparseMoEBlock& block) {
  ReferenceWeights w;
  w.experts = block.num_experts();
  w.d = block.hidden_size();
  w.f = block.experts()->intermediate_size();
  w.gate = values(block.gate()->weight());
  if (block.gate()->bias().defined()) w.gate_bias = values(block.gate()->bias());
  if (auto swiglu = std::dynamic_pointer_cast<SwiGLUExperts>(block.experts())) {
    w.w_in = values(swiglu->w1()), w.w_up = values(swiglu->w3()), w.w_out = values(swiglu->w2());
  } else {
    auto mlp = std::dynamic_pointer_cast<MLPExperts>(block.experts());
    w.swiglu = false, w.activation = mlp->activation();
    w.w_in = values(mlp->wi()), w.w_out = values(mlp->wo());
  }
  if (block.shared_expert()) {
    w.shared_f = block.shared_expert()->intermediate_size();
    w.shared_gate_proj = values(block.shared_expert()->gate_proj()->weight());
    w.shared_up_proj = values(block.shared_expert()->up_proj()->weight());
    w.shared_down_proj = values(block.shared_expert()->down_proj()->weight());
  }
  if (block.shared_expert_gate()) w.shared_expert_gate = values(block.shared_expert_gate()->weight());
  return w;
}

// Routed expert e on one token, over the stacked layout w[e][i][j].
inline std::vector<double> expert_output(const ReferenceWeights& w, int64_t e, const double* x) {
  std::vector<double> hidden(w.f), out(w.d, 0.0);
  for (int64_t j = 0; j < w.f; ++j) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < w.d; ++i) {
      a += x[i] * w.w_in[(e * w.d + i) * w.f + j];
      if (w.swiglu) b += x[i] * w.w_up[(e * w.d + i) * w.f + j];
    }
    hidden[j] = w.swiglu ? activation_value(a, Activation::silu) * b : activation_value(a, w.activation);
  }
  for (int64_t m = 0; m < w.d; ++m)
    for (int64_t j = 0; j < w.f; ++j) out[m] += hidden[j] * w.w_out[(e * w.f + j) * w.d + m];
  return out;
}

// The shared expert on one token (HF layout [out, in]), times its sigmoid gate when gated.
inline std::vector<double> shared_output(const ReferenceWeights& w, const double* x) {
  std::vector<double> hidden(w.shared_f), out(w.d, 0.0);
  for (int64_t j = 0; j < w.shared_f; ++j) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < w.d; ++i) a += w.shared_gate_proj[j * w.d + i] * x[i], b += w.shared_up_proj[j * w.d + i] * x[i];
    hidden[j] = activation_value(a, Activation::silu) * b;
  }
  double scale = 1.0;
  if (!w.shared_expert_gate.empty()) {
    double z = 0;
    for (int64_t i = 0; i < w.d; ++i) z += w.shared_expert_gate[i] * x[i];
    scale = 1.0 / (1.0 + std::exp(-z));
  }
  for (int64_t m = 0; m < w.d; ++m)
    for (int64_t j = 0; j < w.shared_f; ++j) out[m] += scale * w.shared_down_proj[m * w.shared_f + j] * hidden[j];
  return out;
}

// logits[t, e] = sum_i x[t, i] gate[e, i] (+ gate_bias[e]), the router's x W^T + b; [T, E] row-major.
inline std::vector<double> reference_logits(const ReferenceWeights& w, const std::vector<double>& xs) {
  const int64_t tokens = static_cast<int64_t>(xs.size()) / w.d;
  std::vector<double> logits(tokens * w.experts, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < w.experts; ++e) {
      if (!w.gate_bias.empty()) logits[t * w.experts + e] = w.gate_bias[e];
      for (int64_t i = 0; i < w.d; ++i) logits[t * w.experts + e] += xs[t * w.d + i] * w.gate[e * w.d + i];
    }
  return logits;
}

struct ReferencePair {
  int64_t token = 0, expert = 0;
  double weight = 0;
};

// For each token, the sum over its pairs of weight * expert(x_t) (weight_on_input, Llama 4:
// expert(weight * x_t)), plus the shared expert.
inline std::vector<double> reference_combine(const ReferenceWeights& w, const std::vector<double>& xs,
                                             const std::vector<ReferencePair>& pairs, bool weight_on_input = false) {
  const int64_t tokens = static_cast<int64_t>(xs.size()) / w.d;
  std::vector<double> out(tokens * w.d, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const double* row = xs.data() + t * w.d;
    for (const ReferencePair& pair : pairs) {
      if (pair.token != t) continue;
      if (weight_on_input) {
        std::vector<double> scaled(row, row + w.d);
        for (double& value : scaled) value *= pair.weight;
        std::vector<double> y = expert_output(w, pair.expert, scaled.data());
        for (int64_t m = 0; m < w.d; ++m) out[t * w.d + m] += y[m];
        continue;
      }
      std::vector<double> y = expert_output(w, pair.expert, row);
      for (int64_t m = 0; m < w.d; ++m) out[t * w.d + m] += pair.weight * y[m];
    }
    if (w.shared_f > 0) {
      std::vector<double> y = shared_output(w, row);
      for (int64_t m = 0; m < w.d; ++m) out[t * w.d + m] += y[m];
    }
  }
  return out;
}

// The experts and shared expert of MoEParts from `params` in named_parameters() order, starting
// at params[next] (after the gate's), as gradient checks need: autograd must reach those tensors.
inline void add_expert_parts(nn::MoEParts& parts, const nn::SparseMoEConfig& config, const TensorList& params,
                             size_t next) {
  if (config.expert_kind == nn::ExpertKind::swiglu) {
    parts.experts = std::make_shared<SwiGLUExperts>(params[next], params[next + 1], params[next + 2]);
    next += 3;
  } else {
    Activation activation = config.expert_kind == nn::ExpertKind::relu ? Activation::relu : Activation::gelu;
    parts.experts = std::make_shared<MLPExperts>(params[next], params[next + 1], activation);
    next += 2;
  }
  if (config.shared.kind != nn::SharedExpertKind::none) {
    parts.shared_expert = std::make_shared<nn::SharedExpert>(params[next], params[next + 1], params[next + 2]);
    next += 3;
  }
  if (config.shared.kind == nn::SharedExpertKind::sigmoid_gated)
    parts.shared_expert_gate = std::make_shared<nn::Linear>(params[next]);
}

inline void check_close(const std::vector<double>& got, const std::vector<double>& expected, double tolerance) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(expected[i]).epsilon(tolerance).margin(tolerance));
  }
}

}  // namespace tinymoe::testing
