// nn/gpt_oss_experts.h: GPT-OSS's routed experts (OpenAI 2025, "gpt-oss-120b & gpt-oss-20b";
// HF GptOssExperts, OpenAI's gpt_oss/torch/model.py swiglu), a SwiGLU with biases, clamps, a
// scaled sigmoid and a shifted up projection:
//
//   g = min(x w1[e] + b1[e], limit)                   the gate, clamped from above only
//   u = clamp(x w3[e] + b3[e], -limit, limit)          the up projection, clamped both ways
//   expert_e(x) = ((u + 1) * g * sigmoid(alpha g)) w2[e] + b2[e]
//
// with alpha = 1.702 (g sigmoid(1.702 g) is the sigmoid approximation of GELU) and limit = 7,
// the constants HF and OpenAI hard-code. The clamps keep the activations bounded; their gradient is
// 0 where they clip, as torch.clamp's. Parameters, stacked as the other experts (x w[e]):
//   w1, w3 [E, d, f], w2 [E, f, d]; b1, b3 [E, f], b2 [E, d].
// HF keeps w1 and w3 interleaved in one tensor (experts.gate_up_proj [E, d, 2f], gate in the even
// columns, up in the odd ones) and the biases likewise (gate_up_proj_bias [E, 2f]); docs/hf_check.md.
//
// The biases make an expert's output nonzero for a zero input; every row still belongs to one
// expert (its bias is gathered by the row's expert, from the offsets). Initialisation: weights as
// the other experts (uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), order w1, w3, w2), biases zero (as
// HF's _init_weights). Composed of differentiable ops, so it runs on every backend.
#pragma once

#include <cstdint>

#include "nn/experts.h"

namespace tinymoe::nn {

class GptOssExperts : public Experts {
 public:
  static constexpr double kDefaultLimit = 7.0;
  static constexpr double kDefaultAlpha = 1.702;

  GptOssExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, Generator* generator = nullptr,
                DType dtype = DType::f32, double limit = kDefaultLimit, double alpha = kDefaultAlpha);
  // Wraps existing tensors as the parameters (by handle): for loaded weights and gradient checks.
  GptOssExperts(const Tensor& w1, const Tensor& w3, const Tensor& w2, const Tensor& b1, const Tensor& b3,
                const Tensor& b2, double limit = kDefaultLimit, double alpha = kDefaultAlpha);

  Tensor forward(const Tensor& x_perm, const Tensor& offsets) const override;
  bool maps_zero_to_zero() const override { return false; }  // the biases

  const Tensor& w1() const { return w1_; }
  const Tensor& w3() const { return w3_; }
  const Tensor& w2() const { return w2_; }
  const Tensor& b1() const { return b1_; }
  const Tensor& b3() const { return b3_; }
  const Tensor& b2() const { return b2_; }
  double limit() const { return limit_; }
  double alpha() const { return alpha_; }

 private:
  void register_all(const Tensor& w1, const Tensor& w3, const Tensor& w2, const Tensor& b1, const Tensor& b3,
                    const Tensor& b2);

  double limit_, alpha_;
  Tensor w1_, w3_, w2_, b1_, b3_, b2_;
};

// The expert owning each row that `offsets` (i64 [E+1], rows offsets[e] .. offsets[e+1] belong to
// expert e) describes: i64 [offsets[E]] on offsets' device. The offsets are read on the host.
Tensor expert_of_rows(const Tensor& offsets);

}  // namespace tinymoe::nn
