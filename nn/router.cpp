#include "nn/router.h"

#include <cmath>

#include "ops/counting.h"
#include "ops/matmul.h"
#include "tinymoe/autograd.h"

namespace tinymoe::nn {

Router::Router(const RouterConfig& config, int64_t hidden_size, Generator* generator, DType dtype)
    : config_(config), hidden_size_(hidden_size) {
  config_.validate();
  TINYMOE_CHECK(hidden_size >= 1, "Router", "expected hidden_size >= 1, got ", hidden_size);
  TINYMOE_CHECK(is_floating(dtype), "Router", "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  // torch.nn.Linear's default init: uniform(-1/sqrt(in), 1/sqrt(in)).
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  weight_ = register_parameter("weight", rand({config_.num_experts, hidden_size}, dtype, generator, -bound, bound));
  if (config_.noisy_gating)
    noise_weight_ = register_parameter("noise_weight", zeros({config_.num_experts, hidden_size}, dtype));
  state_ = make_router_state(config_);
  if (config_.selection_bias) register_buffer("e_score_correction_bias", state_->selection_bias);
  rule_ = make_rule(config_, state_);
}

Routing Router::forward(const Tensor& x, int64_t sequence_length) const {
  check_floating(x, "Router", "x");
  TINYMOE_CHECK(x.dim() == 2 && x.size(1) == hidden_size_, "Router", "expected x [T, ", hidden_size_, "], got ",
                shape_str(x.shape()));
  sequence_count(x.size(0), sequence_length, "Router");
  Tensor input = x.dtype() == weight_.dtype() ? x : x.to(weight_.dtype());
  // Switch jitters the router's input only (HF SwitchTransformersTop1Router); HF Mixtral jitters
  // the block input, which its experts see too: a block wanting that applies the jitter itself.
  if (is_training() && config_.jitter_epsilon > 0.0)
    input = multiplicative_jitter(input, config_.jitter_epsilon, noise_generator_);
  RoutingContext context;
  context.num_experts = config_.num_experts;
  context.sequence_length = sequence_length;
  context.training = is_training();
  context.generator = noise_generator_;
  if (config_.noisy_gating && is_training()) context.noise_logits = linear(input, noise_weight_);
  return rule_(linear(input, weight_), context);
}

void Router::update_bias(const Routing& routing, double rate) {
  check_dtype(routing.expert_index, DType::i64, "Router::update_bias", "routing.expert_index");
  TINYMOE_CHECK(config_.selection != SelectionKind::expert_choice, "Router::update_bias",
                "expert choice is balanced by construction and has no selection bias");
  Tensor counts = bincount(routing.expert_index.flatten(), config_.num_experts);
  TINYMOE_CHECK(counts.numel() == config_.num_experts, "Router::update_bias", "routing.expert_index holds an expert id >= E = ",
                config_.num_experts);
  update_bias(counts.to_vector<int64_t>(), rate);
}

void Router::update_bias(const std::vector<int64_t>& tokens_per_expert, double rate) {
  const char* op = "Router::update_bias";
  TINYMOE_CHECK(config_.selection_bias, op, "the rule '", config_.name, "' has no selection bias to update");
  TINYMOE_CHECK(static_cast<int64_t>(tokens_per_expert.size()) == config_.num_experts, op, "expected ",
                config_.num_experts, " expert loads, got ", tokens_per_expert.size());
  TINYMOE_CHECK(rate >= 0.0 && std::isfinite(rate), op, "expected an update rate >= 0, got ", rate);
  NoGradGuard no_grad;
  double mean_load = 0.0;
  for (int64_t load : tokens_per_expert) mean_load += static_cast<double>(load);
  mean_load /= static_cast<double>(config_.num_experts);
  float* bias = state_->selection_bias.data<float>();
  for (int64_t i = 0; i < config_.num_experts; ++i) {
    double offset = mean_load - static_cast<double>(tokens_per_expert[i]);
    double sign = offset > 0.0 ? 1.0 : (offset < 0.0 ? -1.0 : 0.0);
    bias[i] = static_cast<float>(bias[i] + rate * sign);  // underloaded experts rise, overloaded sink
  }
}

}  // namespace tinymoe::nn
