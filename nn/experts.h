// nn/experts.h: the experts of a sparse MoE block.
//
// Routed experts keep every expert's weights stacked in one tensor, [E, in, out], so the block
// runs all experts as one grouped GEMM per projection (ops/grouped_matmul.h) over the rows that
// dispatch sorted by expert (nn/dispatch.h). Expert e's slice w[e] maps `in` features to `out`
// features as x w[e] (the transpose of an nn.Linear weight):
//
//   SwiGLUExperts (Mixtral, Qwen2-MoE, DeepSeek-V3; Shazeer 2020 "GLU Variants"):
//     w1 [E, d, f]  gate projection   (HF experts.{e}.w1.weight / gate_proj.weight [f, d] = w1[e]^T)
//     w3 [E, d, f]  up projection     (HF experts.{e}.w3.weight / up_proj.weight   [f, d] = w3[e]^T)
//     w2 [E, f, d]  down projection   (HF experts.{e}.w2.weight / down_proj.weight [d, f] = w2[e]^T)
//     expert_e(x) = (silu(x w1[e]) * (x w3[e])) w2[e]
//   MLPExperts (Switch Transformer's DenseActDense):
//     wi [E, d, f]  (HF experts.expert_{e}.wi.weight [f, d] = wi[e]^T)
//     wo [E, f, d]  (HF experts.expert_{e}.wo.weight [d, f] = wo[e]^T)
//     expert_e(x) = act(x wi[e]) wo[e], act = relu or gelu
//
// HF checkpoints hold one nn.Linear weight [out, in] per expert: load_expert_from_hf copies
// expert e's weights in (transposing), expert_weight_to_hf reads one back (values or gradients)
// in the HF layout.
//
// The shared expert (Qwen2-MoE, DeepSeek-V3) is a dense SwiGLU MLP applied to every token, built
// from nn::Linear with the HF names gate_proj / up_proj / down_proj.
//
// Initialisation: each expert's slice is drawn like a bias-free torch nn.Linear of the same
// fan-in, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), in the order w1, w3, w2 (wi, wo).
// Every parameter gets gradients; offsets (an index) gets none.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/dispatch.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "tinymoe/random.h"

namespace tinymoe {
namespace nn {

// The activation of an MLP expert. silu is the gate nonlinearity of SwiGLU.
enum class Activation { relu, gelu, silu };
const char* activation_name(Activation activation);
// relu(x), gelu(x) (exact, erf form, torch's default) or silu(x); differentiable.
Tensor activate(const Tensor& x, Activation activation);

// The routed experts: stacked weights, one grouped GEMM per projection.
class Experts : public Module {
 public:
  // x_perm [N, d]: the dispatched token rows, sorted by expert; offsets i64 [E+1]: rows
  // offsets[e] .. offsets[e+1] go to expert e (an expert may get none). Returns [N, d], row i
  // = expert_e(x_perm[i]) for the expert e owning row i. x_perm and the weights get gradients.
  virtual Tensor forward(const Tensor& x_perm, const Tensor& offsets) const = 0;
  Tensor operator()(const Tensor& x_perm, const Tensor& offsets) const { return forward(x_perm, offsets); }

  // The experts on the tokens a dispatch plan sends them, combined back: x [T, d] -> y [T, d],
  //   combine_outputs(forward(dispatch_tokens(x, plan), plan.offsets), plan)   (nn/dispatch.h).
  // That composition is the default; SwiGLUExperts on the cpu runs it as one fused op
  // (ops/moe_swiglu_experts.h) with the same result up to rounding order and no [P, d] buffers.
  // x, the plan's sorted_weight and the weights get gradients.
  virtual Tensor forward_combined(const Tensor& x, const DispatchPlan& plan) const;

  // Whether every expert maps a zero row to a zero row (no biases). Weighing expert inputs
  // (Routing::weight_on_expert_input) needs it: a pair of weight 0, such as capacity padding, must
  // then add nothing.
  virtual bool maps_zero_to_zero() const { return true; }

  int64_t num_experts() const { return num_experts_; }
  int64_t hidden_size() const { return hidden_size_; }              // d
  int64_t intermediate_size() const { return intermediate_size_; }  // f
  DType dtype() const { return dtype_; }

 protected:
  Experts() = default;
  // Records the sizes of stacked weights `input_projection` [E, d, f] and `output_projection`
  // [E, f, d] after checking they agree (op names the module in errors).
  void set_sizes(const Tensor& input_projection, const Tensor& output_projection, const char* op);
  // x_perm must be [N, d] of the experts' dtype.
  void check_input(const Tensor& x_perm, const char* op) const;

 private:
  int64_t num_experts_ = 0, hidden_size_ = 0, intermediate_size_ = 0;
  DType dtype_ = DType::f32;
};

// Mixtral-style SwiGLU experts: parameters "w1", "w3" [E, d, f] and "w2" [E, f, d].
class SwiGLUExperts : public Experts {
 public:
  SwiGLUExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, Generator* generator = nullptr,
                DType dtype = DType::f32);
  // Wraps existing stacked tensors as the parameters (kept by handle, marked requires_grad):
  // for weights loaded elsewhere and for gradient checks of the module.
  SwiGLUExperts(const Tensor& w1, const Tensor& w3, const Tensor& w2);

  Tensor forward(const Tensor& x_perm, const Tensor& offsets) const override;
  // Fused on the cpu (gather, three GEMMs, SwiGLU and weighted scatter per expert).
  Tensor forward_combined(const Tensor& x, const DispatchPlan& plan) const override;

  // Copies expert `expert`'s HF per-expert nn.Linear weights into the stacks, transposed:
  // w1 = experts.{e}.w1.weight (gate_proj) [f, d], w3 = experts.{e}.w3.weight (up_proj) [f, d],
  // w2 = experts.{e}.w2.weight (down_proj) [d, f]. Not recorded on the tape.
  void load_expert_from_hf(int64_t expert, const Tensor& w1, const Tensor& w3, const Tensor& w2);

  const Tensor& w1() const { return w1_; }
  const Tensor& w3() const { return w3_; }
  const Tensor& w2() const { return w2_; }

 private:
  Tensor w1_, w3_, w2_;
};

// Switch-style MLP experts: parameters "wi" [E, d, f] and "wo" [E, f, d], act relu or gelu.
class MLPExperts : public Experts {
 public:
  MLPExperts(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, Activation activation,
             Generator* generator = nullptr, DType dtype = DType::f32);
  // Wraps existing stacked tensors as the parameters (see SwiGLUExperts).
  MLPExperts(const Tensor& wi, const Tensor& wo, Activation activation);

  Tensor forward(const Tensor& x_perm, const Tensor& offsets) const override;

  // Copies HF experts.expert_{e}.wi.weight [f, d] and .wo.weight [d, f] into expert `expert`.
  void load_expert_from_hf(int64_t expert, const Tensor& wi, const Tensor& wo);

  Activation activation() const { return activation_; }
  const Tensor& wi() const { return wi_; }
  const Tensor& wo() const { return wo_; }

 private:
  Activation activation_;
  Tensor wi_, wo_;
};

// What every stacked-experts module checks and draws: positive sizes (errors name `op`), and a
// weight [E, in, out] with each expert's slice uniform(-1/sqrt(in), 1/sqrt(in)), torch's nn.Linear
// default (kaiming_uniform_ with a = sqrt(5)) for a layer of fan-in `in`, of a floating dtype.
void check_positive_sizes(int64_t num_experts, int64_t hidden_size, int64_t intermediate_size, const char* op);
Tensor stacked_init(int64_t num_experts, int64_t in, int64_t out, Generator* generator, DType dtype, const char* op);

// Expert `expert` of a stacked weight [E, in, out] (or of its gradient) in the HF nn.Linear
// layout [out, in]: a new tensor on stacked's device, not recorded on the tape.
Tensor expert_weight_to_hf(const Tensor& stacked, int64_t expert);
// stacked[expert] = hf_weight^T for an HF weight [out, in]; `name` says which weight in errors.
// Writes through the storage without recording (a load, like Module::load_state_dict). hf_weight
// may have another floating dtype (it is cast) and live on another device (it is copied).
void load_expert_weight_from_hf(const Tensor& stacked, int64_t expert, const Tensor& hf_weight, const char* name);

// A dense SwiGLU MLP on every token: down_proj(silu(gate_proj(x)) * up_proj(x)), bias-free
// Linears named as HF's Qwen2MoeMLP / DeepseekV3MLP ("gate_proj.weight" [f, d], "up_proj.weight"
// [f, d], "down_proj.weight" [d, f]). The block adds its output to the routed output, ungated
// (DeepSeek) or times a sigmoid gate (Qwen2-MoE; the gate Linear sits beside it, in the block,
// as HF's shared_expert_gate does).
class SharedExpert : public Module {
 public:
  SharedExpert(int64_t hidden_size, int64_t intermediate_size, Generator* generator = nullptr,
               DType dtype = DType::f32);
  // Wraps existing HF-layout weights: gate_proj [f, d], up_proj [f, d], down_proj [d, f].
  SharedExpert(const Tensor& gate_proj, const Tensor& up_proj, const Tensor& down_proj);

  // x [..., d] -> [..., d]; x and every weight get gradients.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t hidden_size() const { return gate_proj_->in_features(); }
  int64_t intermediate_size() const { return gate_proj_->out_features(); }
  DType dtype() const { return gate_proj_->weight().dtype(); }
  const std::shared_ptr<Linear>& gate_proj() const { return gate_proj_; }
  const std::shared_ptr<Linear>& up_proj() const { return up_proj_; }
  const std::shared_ptr<Linear>& down_proj() const { return down_proj_; }

 private:
  void check_sizes() const;

  std::shared_ptr<Linear> gate_proj_, up_proj_, down_proj_;
};

}  // namespace nn
}  // namespace tinymoe
