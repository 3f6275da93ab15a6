// nn::CausalSelfAttention: multi-head causal self-attention (Vaswani et al. 2017, "Attention Is
// All You Need", eq. 1, with GPT's causal mask), HuggingFace Llama/Mixtral parameter names:
//   q_proj.weight, k_proj.weight, v_proj.weight, o_proj.weight   [d, d], no biases
//
//   x [B, S, d] -> q, k, v = x Wq^T, x Wk^T, x Wv^T, each split into H heads  [B*H, S, dh]
//   scores[i, j] = q_i . k_j / sqrt(dh), and -inf for j > i (no looking ahead)  [B*H, S, S]
//   out = heads joined again (softmax(scores) v) Wo^T                            [B, S, d]
//
// The per-(sequence, head) products are grouped GEMMs (ops/grouped_matmul.h) with B*H groups of
// S rows each: a batched GEMM is a grouped GEMM whose groups are all the same size, so attention
// runs on the kernels the experts use, on both backends, with their gradients. The heads are split
// and joined with transpose(x, 1, 2) ([B, S, H, dh] <-> [B, H, S, dh]). Positions are not encoded
// here: the model adds them to its input (nn/moe_transformer.h). x and every weight get gradients.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/linear.h"
#include "nn/module.h"

namespace tinymoe {
namespace nn {

class CausalSelfAttention : public Module {
 public:
  // num_heads must divide hidden_size; weights drawn as nn::Linear's (torch's default) from
  // `generator`, in the order q, k, v, o.
  CausalSelfAttention(int64_t hidden_size, int64_t num_heads, Generator* generator = nullptr,
                      DType dtype = DType::f32);

  // x [B, S, d] with B, S >= 1, of the weights' dtype and device -> [B, S, d].
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t hidden_size() const { return q_proj_->in_features(); }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return hidden_size() / num_heads_; }
  const std::shared_ptr<Linear>& q_proj() const { return q_proj_; }
  const std::shared_ptr<Linear>& k_proj() const { return k_proj_; }
  const std::shared_ptr<Linear>& v_proj() const { return v_proj_; }
  const std::shared_ptr<Linear>& o_proj() const { return o_proj_; }

 private:
  // The causal mask and the grouped GEMMs' row offsets of the last input shape, dtype and device
  // seen. Built on the host, they would otherwise cost two copies to the device each forward (on
  // cuda, each a wait for the queued work). Like every module, not for two threads at once.
  struct ShapeConstants {
    int64_t batch = -1, length = -1;
    DType dtype = DType::f32;
    Device device = Device::cpu();
    Tensor mask, offsets;
  };
  const ShapeConstants& constants_for(int64_t batch, int64_t length, DType dtype, Device device) const;
  mutable ShapeConstants constants_;

  int64_t num_heads_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
};

}  // namespace nn
}  // namespace tinymoe
