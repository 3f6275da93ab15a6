#include "nn/router.h"

#include <cmath>
#include <utility>

#include "nn/in_place.h"
#include "ops/counting.h"
#include "ops/matmul.h"
#include "tinymoe/autograd.h"

namespace tinymoe::nn {

namespace {

constexpr const char* kOp = "Router";

// torch.nn.Linear's default init, for its weight [E, d] and its bias [E] alike:
// uniform(-1/sqrt(d), 1/sqrt(d)).
Tensor linear_init(const Shape& shape, int64_t hidden_size, Generator* generator, DType dtype) {
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  return rand(shape, dtype, generator, -bound, bound);
}

Tensor weight_init(int64_t num_experts, int64_t hidden_size, Generator* generator, DType dtype) {
  TINYMOE_CHECK(num_experts >= 1 && hidden_size >= 1, kOp, "expected num_experts >= 1 and hidden_size >= 1, got ",
                num_experts, " and ", hidden_size);
  TINYMOE_CHECK(is_floating(dtype), kOp, "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  return linear_init({num_experts, hidden_size}, hidden_size, generator, dtype);
}

RouterConfig user_rule_config(int64_t num_experts) {
  RouterConfig config;
  config.num_experts = num_experts;
  return config;
}

}  // namespace

Router::Router(const RouterConfig& config, int64_t hidden_size, Generator* generator, DType dtype)
    : config_(config) {
  config_.validate();
  Tensor weight = weight_init(config_.num_experts, hidden_size, generator, dtype);
  Tensor bias = config_.gate_bias ? linear_init({config_.num_experts}, hidden_size, generator, dtype) : Tensor();
  // Zero-initialised as in Shazeer et al. 2017, sec. 2.1: no signal, some noise.
  set_weights(weight, config_.noisy_gating ? zeros(weight.shape(), dtype) : Tensor(), bias);
}

Router::Router(RoutingRule rule, int64_t num_experts, int64_t hidden_size, Generator* generator, DType dtype)
    : config_(user_rule_config(num_experts)) {
  set_weights(weight_init(num_experts, hidden_size, generator, dtype), Tensor(), Tensor());
  set_user_rule(std::move(rule));
}

Router::Router(const RouterConfig& config, const Tensor& weight, const Tensor& noise_weight, const Tensor& bias)
    : config_(config) {
  config_.validate();
  set_weights(weight, noise_weight, bias);
}

Router::Router(RoutingRule rule, const Tensor& weight) {
  check_floating(weight, kOp, "weight");
  check_dim(weight, 2, kOp, "weight");
  config_ = user_rule_config(weight.size(0));
  set_weights(weight, Tensor(), Tensor());
  set_user_rule(std::move(rule));
}

void Router::set_weights(const Tensor& weight, const Tensor& noise_weight, const Tensor& bias) {
  check_floating(weight, kOp, "weight");
  TINYMOE_CHECK(weight.dim() == 2 && weight.size(0) == config_.num_experts && weight.size(1) >= 1, kOp,
                "expected a weight of shape [", config_.num_experts, ", d], got ", shape_str(weight.shape()));
  hidden_size_ = weight.size(1);
  TINYMOE_CHECK(noise_weight.defined() == config_.noisy_gating, kOp, "the rule '", config_.name, "' ",
                config_.noisy_gating ? "needs a noise_weight (noisy gating)" : "has no noisy gating: no noise_weight");
  if (noise_weight.defined())
    TINYMOE_CHECK(noise_weight.dtype() == weight.dtype() && noise_weight.shape() == weight.shape(), kOp,
                  "expected a ", dtype_name(weight.dtype()), " noise_weight of shape ", shape_str(weight.shape()),
                  ", got ", dtype_name(noise_weight.dtype()), " ", shape_str(noise_weight.shape()));
  TINYMOE_CHECK(bias.defined() == config_.gate_bias, kOp, "the rule '", config_.name, "' ",
                config_.gate_bias ? "needs a bias (gate_bias)" : "has no gate_bias: no bias");
  if (bias.defined())
    TINYMOE_CHECK(bias.dtype() == weight.dtype() && bias.shape() == Shape{config_.num_experts}, kOp, "expected a ",
                  dtype_name(weight.dtype()), " bias of shape [", config_.num_experts, "], got ",
                  dtype_name(bias.dtype()), " ", shape_str(bias.shape()));
  weight_ = register_parameter("weight", weight);
  if (noise_weight.defined()) noise_weight_ = register_parameter("noise_weight", noise_weight);
  if (bias.defined()) bias_ = register_parameter("bias", bias);
  state_ = make_router_state(config_);
  if (config_.selection_bias) register_buffer("e_score_correction_bias", state_->selection_bias);
  if (config_.l1_loss.enabled) register_buffer("l1_coefficient", state_->l1_coefficient);
  rule_ = make_rule(config_, state_);
}

void Router::set_user_rule(RoutingRule rule) {
  TINYMOE_CHECK(static_cast<bool>(rule), kOp, "expected a routing rule, got an empty RoutingRule");
  rule_ = std::move(rule);
}

Routing Router::forward(const Tensor& x, int64_t sequence_length) const {
  check_floating(x, kOp, "x");
  TINYMOE_CHECK(x.dim() == 2 && x.size(1) == hidden_size_, kOp, "expected x [T, ", hidden_size_, "], got ",
                shape_str(x.shape()));
  TINYMOE_CHECK(x.device() == weight_.device(), kOp, "expected x on the router's device ", weight_.device().str(),
                ", got ", x.device().str(), " (move the module with to(device))");
  sequence_count(x.size(0), sequence_length, kOp);
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
  Tensor logits = linear(input, weight_, bias_);
  Routing routing = rule_(logits, context);
  if (!routing.router_logits.defined()) routing.router_logits = logits;
  return routing;
}

void Router::update_bias(const Routing& routing, double rate) {
  check_dtype(routing.expert_index, DType::i64, "Router::update_bias", "routing.expert_index");
  TINYMOE_CHECK(config_.selection != SelectionKind::expert_choice, "Router::update_bias",
                "expert choice is balanced by construction and has no selection bias");
  Tensor counts = bincount(routing.expert_index.flatten(), config_.num_experts);  // on the routing's device
  TINYMOE_CHECK(counts.numel() == config_.num_experts, "Router::update_bias", "routing.expert_index holds an expert id >= E = ",
                config_.num_experts);
  update_bias(counts.to(Device::cpu()).to_vector<int64_t>(), rate);  // [E] counts to the host
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
  // The [E] bias is updated on the host and written back in place, on whatever device it lives.
  std::vector<float> bias = state_->selection_bias.to(Device::cpu()).to_vector<float>();
  for (int64_t i = 0; i < config_.num_experts; ++i) {
    double offset = mean_load - static_cast<double>(tokens_per_expert[i]);
    double sign = offset > 0.0 ? 1.0 : (offset < 0.0 ? -1.0 : 0.0);
    bias[i] = static_cast<float>(bias[i] + rate * sign);  // underloaded experts rise, overloaded sink
  }
  write_values(state_->selection_bias, from_vector(bias, {config_.num_experts}), op);
}

double Router::l1_coefficient() const {
  TINYMOE_CHECK(config_.l1_loss.enabled, "Router::l1_coefficient", "the rule '", config_.name, "' has no l1 loss");
  return state_->l1_coefficient.item<double>();
}

void Router::update_l1_coefficient(double sparsity) {
  const char* op = "Router::update_l1_coefficient";
  TINYMOE_CHECK(config_.l1_loss.enabled, op, "the rule '", config_.name, "' has no l1 loss to adapt");
  if (std::isnan(sparsity)) return;  // an empty batch: no evidence either way
  TINYMOE_CHECK(sparsity >= 0.0 && sparsity <= 1.0, op, "expected a sparsity in [0, 1], got ", sparsity);
  const double target = 1.0 - static_cast<double>(config_.relu_target_k) / static_cast<double>(config_.num_experts);
  const double direction = target > sparsity ? 1.0 : (target < sparsity ? -1.0 : 0.0);
  const double lambda = l1_coefficient() * std::pow(config_.l1_coefficient_multiplier, direction);
  TINYMOE_CHECK(lambda >= 1e-300 && lambda <= 1e300, op, "lambda left [1e-300, 1e300] (", lambda, "): the rule '",
                config_.name, "' never reaches its target sparsity ", target, " (last ", sparsity, ")");
  NoGradGuard no_grad;
  write_values(state_->l1_coefficient, full({1}, lambda, state_->l1_coefficient.dtype()), op);
}

}  // namespace tinymoe::nn
