// nn::Router: the gate of a sparse MoE block. It owns the router weights and runs a routing rule
// (nn/router_presets.h make_rule) on logits = x W^T.
//
// Names (HuggingFace's when the block registers the router as child "gate"):
//   "weight"                   [E, d] parameter          -> "gate.weight"
//   "noise_weight"             [E, d] parameter, only with config.noisy_gating (Shazeer 2017),
//                              zero-initialised as in the paper (sec. 2.1: no signal, some noise)
//   "bias"                     [E] parameter, only with config.gate_bias: logits = x W^T + b
//                              (GPT-OSS), drawn as torch.nn.Linear's bias
//   "e_score_correction_bias"  [E] f32 buffer, only with config.selection_bias (DeepSeek-V3),
//                              never trained by autograd: update_bias moves it.
//   "l1_coefficient"           [1] f64 buffer, only with config.l1_loss (ReMoE): the lambda the
//                              l1 loss is weighted by, moved by update_l1_coefficient.
//
// Dtype: the router computes in its own dtype (f32 by default, like HF, whose routers run in f32
// whatever the model dtype); x of another dtype is cast first (differentiably). An f64 router is
// for gradient checks.
//
// Gradients: x, weight, noise_weight and bias get them through the pair weights and the losses;
// the selection bias never does.
//
// A Router can also run a user's RoutingRule (nn/routing.h): it then owns only "weight", and its
// config() is a plain one (name "custom", E, no jitter, noise or bias); the rule still sees
// context.training and context.generator.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/module.h"
#include "nn/router_presets.h"
#include "tinymoe/random.h"

namespace tinymoe::nn {

class Router : public Module {
 public:
  // weight drawn as torch.nn.Linear's, uniform(-1/sqrt(d), 1/sqrt(d)), from generator (the global
  // one when null). The config is validated (Error naming "RouterConfig").
  Router(const RouterConfig& config, int64_t hidden_size, Generator* generator = nullptr,
         DType dtype = DType::f32);
  // A user's rule with a router weight [E, d] drawn as above. The rule must not be empty.
  Router(RoutingRule rule, int64_t num_experts, int64_t hidden_size, Generator* generator = nullptr,
         DType dtype = DType::f32);
  // From existing tensors, registered by handle (loaded weights; gradient checks, where autograd
  // must reach the very tensors): weight floating [E, d]; noise_weight [E, d] of weight's dtype,
  // given exactly when config.noisy_gating; bias [E] of weight's dtype, given exactly when
  // config.gate_bias. The selection bias starts at zero.
  Router(const RouterConfig& config, const Tensor& weight, const Tensor& noise_weight = Tensor(),
         const Tensor& bias = Tensor());
  Router(RoutingRule rule, const Tensor& weight);

  // x [T, d] -> Routing. T must be a multiple of sequence_length (0: one sequence). In training
  // mode: multiplicative jitter on the router's copy of x (Switch; the experts see the plain x),
  // and the noise of noisy gating; neither in eval. router_logits is filled in (x W^T) when the
  // rule leaves it out. Errors name "Router".
  Routing forward(const Tensor& x, int64_t sequence_length = 0) const;
  Routing operator()(const Tensor& x, int64_t sequence_length = 0) const { return forward(x, sequence_length); }

  // Auxiliary-loss-free balancing (DeepSeek-V3 sec. 2.1.2; Wang et al. 2024; Megatron-LM
  // get_updated_expert_bias): b_i += rate * sign(mean_load - load_i), under NoGradGuard.
  // load = tokens per expert of the selection (routing.expert_index, before capacity), or given
  // counts accumulated over several steps. Needs config.selection_bias; rate >= 0.
  void update_bias(const Routing& routing, double rate);
  void update_bias(const std::vector<int64_t>& tokens_per_expert, double rate);

  // ReMoE's adaptive L1 coefficient (Wang et al. 2025, eq. 6):
  //   lambda <- lambda * multiplier^sign(target - sparsity),   target = 1 - relu_target_k / E,
  // after each training step, outside autograd: too few zero scores (a token uses more than k
  // experts on average) raise lambda, too many lower it. sparsity is Routing::sparsity() of the
  // step, or its mean over the layers that share the controller as in the paper (MoETransformer::
  // update_router_l1_coefficients). Needs config.l1_loss; 0 <= sparsity <= 1, or NaN (an empty
  // batch's Routing::sparsity), which leaves lambda as it is. A lambda pushed out of
  // [1e-300, 1e300] (a target the routing never reaches, thousands of steps on end) is an Error.
  void update_l1_coefficient(double sparsity);
  double l1_coefficient() const;  // lambda now; needs config.l1_loss

  // Source of jitter and noise (null: the global generator). Not owned.
  void set_generator(Generator* generator) { noise_generator_ = generator; }

  const Tensor& weight() const { return weight_; }
  const Tensor& noise_weight() const { return noise_weight_; }  // undefined without noisy gating
  const Tensor& bias() const { return bias_; }                  // undefined without gate_bias
  const Tensor& e_score_correction_bias() const { return state_->selection_bias; }  // undefined without a bias
  const RouterConfig& config() const { return config_; }
  const RoutingRule& rule() const { return rule_; }
  int64_t hidden_size() const { return hidden_size_; }
  int64_t num_experts() const { return config_.num_experts; }
  DType dtype() const { return weight_.dtype(); }

 private:
  void set_weights(const Tensor& weight, const Tensor& noise_weight, const Tensor& bias);
  void set_user_rule(RoutingRule rule);

  RouterConfig config_;
  int64_t hidden_size_ = 0;
  Tensor weight_, noise_weight_, bias_;
  std::shared_ptr<RouterState> state_;
  RoutingRule rule_;
  Generator* noise_generator_ = nullptr;
};

}  // namespace tinymoe::nn
