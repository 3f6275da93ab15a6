#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "nn/in_place.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace nn {
namespace {

void check_parameters(const TensorList& parameters, const char* op) {
  TINYMOE_CHECK(!parameters.empty(), op, "got an empty parameter list");
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor& parameter = parameters[i];
    TINYMOE_CHECK(parameter.defined(), op, "parameter ", i, " is an undefined tensor");
    TINYMOE_CHECK(is_floating(parameter.dtype()), op, "parameter ", i, " must be floating, got ",
                  dtype_name(parameter.dtype()));
    TINYMOE_CHECK(parameter.is_leaf() && parameter.requires_grad(), op, "parameter ", i,
                  " must be a leaf that requires grad");
    TINYMOE_CHECK(seen.insert(parameter.impl()).second, op, "parameter ", i,
                  " appears twice in the list (it would be updated twice per step)");
  }
}

void check_coefficient(double value, double low, double high, const char* op, const char* name) {
  TINYMOE_CHECK(value >= low && value <= high, op, "expected ", name, " in [", low, ", ", high, "], got ", value);
}

const double kInfinity = HUGE_VAL;

// The gradient of `parameter` (on its device); undefined when it has none.
Tensor gradient_for_step(const Tensor& parameter, const char* op) {
  Tensor gradient = parameter.grad();
  if (!gradient.defined()) return gradient;
  check_same_device(parameter, gradient, op);
  return gradient;
}

// Optimizer state made on the parameter's device must still be there: a module moved after its
// optimizer was built would otherwise fail deep inside an op.
void check_state_device(const Tensor& state, const Tensor& parameter, size_t index, const char* op) {
  TINYMOE_CHECK(!state.defined() || state.device() == parameter.device(), op, "parameter ", index, " is on ",
                parameter.device().str(), " but its optimizer state is on ", state.device().str(),
                " (build the optimizer after moving the module)");
}

}  // namespace

Optimizer::Optimizer(TensorList parameters, double lr, const char* op, std::vector<std::string> slot_names,
                     bool counts_steps)
    : parameters_(std::move(parameters)), lr_(lr), op_(op), slot_names_(std::move(slot_names)),
      counts_steps_(counts_steps) {
  check_parameters(parameters_, op_);
  set_lr(lr);
  slots_.assign(slot_names_.size(), std::vector<Tensor>(parameters_.size()));
  steps_.assign(parameters_.size(), 0);
}

void Optimizer::set_lr(double lr) {
  check_coefficient(lr, 0.0, kInfinity, op_, "lr");
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (Tensor& parameter : parameters_) parameter.zero_grad();
}

// ---- SGD ----
SGD::SGD(TensorList parameters, SGDOptions options)
    : Optimizer(std::move(parameters), options.lr, "SGD", {"momentum_buffer"}, /*counts_steps=*/false),
      options_(options) {
  check_coefficient(options.momentum, 0.0, kInfinity, op_, "momentum");
  check_coefficient(options.weight_decay, 0.0, kInfinity, op_, "weight_decay");
}

std::vector<std::pair<std::string, double>> SGD::fixed_options() const {
  return {{"momentum", options_.momentum}, {"weight_decay", options_.weight_decay}};
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor gradient = gradient_for_step(parameters_[i], op_);
    if (!gradient.defined()) continue;
    check_state_device(momentum_buffer(i), parameters_[i], i, op_);
    if (!parameters_[i].device().is_cpu()) {
      step_through_ops(i, gradient);
      continue;
    }
    bool first_step = !momentum_buffer(i).defined();
    if (options_.momentum != 0.0 && first_step) momentum_buffer(i) = zeros_like(parameters_[i]);
    dispatch_floating(parameters_[i].dtype(), op_, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = parameters_[i].data<T>();
      const T* g = gradient.data<T>();
      T* buffer = options_.momentum != 0.0 ? momentum_buffer(i).data<T>() : nullptr;
      const T lr = T(lr_), momentum = T(options_.momentum), weight_decay = T(options_.weight_decay);
      for (int64_t j = 0; j < parameters_[i].numel(); ++j) {
        T direction = g[j] + weight_decay * p[j];
        if (buffer) {
          buffer[j] = first_step ? direction : momentum * buffer[j] + direction;
          direction = buffer[j];
        }
        p[j] -= lr * direction;
      }
    });
  }
}

// The same update off the cpu, through ops (each allocates): the new values are written into the
// parameter's storage, so every handle to it sees them; the momentum buffer is the optimizer's own.
void SGD::step_through_ops(size_t i, const Tensor& gradient) {
  Tensor parameter = parameters_[i].detach();
  Tensor direction = options_.weight_decay != 0.0 ? add(gradient, mul(parameter, options_.weight_decay)) : gradient;
  if (options_.momentum != 0.0) {
    // A copy on the first step: the buffer must not share the gradient's storage.
    Tensor& buffer = momentum_buffer(i);
    buffer = buffer.defined() ? add(mul(buffer, options_.momentum), direction) : direction.clone();
    direction = buffer;
  }
  write_values(parameters_[i], sub(parameter, mul(direction, lr_)), op_);
}

// ---- AdamW ----
AdamW::AdamW(TensorList parameters, AdamWOptions options)
    : Optimizer(std::move(parameters), options.lr, "AdamW", {"exp_avg", "exp_avg_sq"}, /*counts_steps=*/true),
      options_(options) {
  check_coefficient(options.beta1, 0.0, std::nextafter(1.0, 0.0), op_, "beta1");
  check_coefficient(options.beta2, 0.0, std::nextafter(1.0, 0.0), op_, "beta2");
  check_coefficient(options.eps, 0.0, kInfinity, op_, "eps");
  check_coefficient(options.weight_decay, 0.0, kInfinity, op_, "weight_decay");
}

std::vector<std::pair<std::string, double>> AdamW::fixed_options() const {
  return {{"beta1", options_.beta1}, {"beta2", options_.beta2}, {"eps", options_.eps},
          {"weight_decay", options_.weight_decay}};
}

int64_t AdamW::step_count(size_t parameter) const {
  TINYMOE_CHECK(parameter < parameters_.size(), op_, "parameter ", parameter, " out of range for ",
                parameters_.size(), " parameters");
  return step_count_of(parameter);
}

void AdamW::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor gradient = gradient_for_step(parameters_[i], op_);
    if (!gradient.defined()) continue;
    check_state_device(exp_avg(i), parameters_[i], i, op_);
    if (!exp_avg(i).defined()) {
      exp_avg(i) = zeros_like(parameters_[i]);
      exp_avg_sq(i) = zeros_like(parameters_[i]);
    }
    int64_t t = ++step_count_of(i);
    // torch's single-tensor AdamW: scalars in double, then one pass over the elements.
    double step_size = lr_ / (1.0 - std::pow(options_.beta1, static_cast<double>(t)));
    double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(t)));
    if (!parameters_[i].device().is_cpu()) {
      step_through_ops(i, gradient, step_size, bias_correction2_sqrt);
      continue;
    }
    dispatch_floating(parameters_[i].dtype(), op_, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = parameters_[i].data<T>();
      const T* g = gradient.data<T>();
      T* m = exp_avg(i).data<T>();
      T* v = exp_avg_sq(i).data<T>();
      const T decay = T(1.0 - lr_ * options_.weight_decay), beta1 = T(options_.beta1), beta2 = T(options_.beta2);
      const T eps = T(options_.eps);
      for (int64_t j = 0; j < parameters_[i].numel(); ++j) {
        p[j] *= decay;
        m[j] = beta1 * m[j] + (T(1) - beta1) * g[j];
        v[j] = beta2 * v[j] + (T(1) - beta2) * g[j] * g[j];
        T denominator = std::sqrt(v[j]) / T(bias_correction2_sqrt) + eps;
        p[j] -= T(step_size) * m[j] / denominator;
      }
    });
  }
}

// The same update off the cpu, through ops (see SGD::step_through_ops): the moments are replaced,
// the parameter is written in place.
void AdamW::step_through_ops(size_t i, const Tensor& gradient, double step_size, double bias_correction2_sqrt) {
  const AdamWOptions& o = options_;
  Tensor parameter = mul(parameters_[i].detach(), 1.0 - lr_ * o.weight_decay);
  exp_avg(i) = add(mul(exp_avg(i), o.beta1), mul(gradient, 1.0 - o.beta1));
  exp_avg_sq(i) = add(mul(exp_avg_sq(i), o.beta2), mul(mul(gradient, gradient), 1.0 - o.beta2));
  Tensor denominator = add(mul(sqrt(exp_avg_sq(i)), 1.0 / bias_correction2_sqrt), o.eps);
  write_values(parameters_[i], sub(parameter, div(mul(exp_avg(i), step_size), denominator)), op_);
}

// ---- clipping ----
namespace {

// The gradients of the parameters that have one (each checked as an optimizer step checks it).
TensorList gradients_of(const TensorList& parameters, const char* op) {
  TensorList gradients;
  for (const Tensor& parameter : parameters) {
    check_defined(parameter, op, "parameter");
    Tensor gradient = gradient_for_step(parameter, op);
    if (gradient.defined()) gradients.push_back(gradient);
  }
  return gradients;
}

// sum of g^2 over every gradient, accumulated in double.
double sum_of_squares(const TensorList& gradients, const char* op) {
  double total = 0.0;
  for (const Tensor& gradient : gradients) {
    if (!gradient.device().is_cpu()) {
      // Summed in f64 on the device, as the cpu loop does; one number comes back to the host.
      Tensor wide = gradient.detach().to(DType::f64);
      total += sum(mul(wide, wide)).to(Device::cpu()).item<double>();
      continue;
    }
    dispatch_floating(gradient.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* g = gradient.data<T>();
      for (int64_t j = 0, end = gradient.numel(); j < end; ++j) total += static_cast<double>(g[j]) * g[j];
    });
  }
  return total;
}

// torch: clip_coef = max_norm / (total + 1e-6), clamped to at most 1 (NaN passes through); every
// gradient is multiplied by it in place. Returns total_norm.
double clip_to(const TensorList& gradients, double total_norm, double max_norm, const char* op) {
  double scale = std::min(max_norm / (total_norm + 1e-6), 1.0);
  if (scale == 1.0) return total_norm;
  NoGradGuard no_grad;
  for (const Tensor& gradient : gradients) {
    if (!gradient.device().is_cpu()) {
      write_values(gradient, mul(gradient, scale), op);  // in place, as on the cpu
      continue;
    }
    dispatch_floating(gradient.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* g = gradient.data<T>();
      for (int64_t j = 0, end = gradient.numel(); j < end; ++j) g[j] *= T(scale);
    });
  }
  return total_norm;
}

}  // namespace

double clip_grad_norm(const TensorList& parameters, double max_norm) {
  const char* op = "clip_grad_norm";
  TINYMOE_CHECK(max_norm >= 0.0, op, "expected max_norm >= 0, got ", max_norm);
  TensorList gradients = gradients_of(parameters, op);
  return clip_to(gradients, std::sqrt(sum_of_squares(gradients, op)), max_norm, op);
}

double clip_grad_norm(const TensorList& replicated, const TensorList& own, double max_norm, Communicator& comm) {
  const char* op = "clip_grad_norm";
  TINYMOE_CHECK(max_norm >= 0.0, op, "expected max_norm >= 0, got ", max_norm);
  TensorList replicated_gradients = gradients_of(replicated, op), own_gradients = gradients_of(own, op);
  Tensor own_squares = full({}, sum_of_squares(own_gradients, op), DType::f64);
  comm.all_reduce_sum(own_squares);  // every rank's share, once each
  double total_norm = std::sqrt(sum_of_squares(replicated_gradients, op) + own_squares.item<double>());
  clip_to(replicated_gradients, total_norm, max_norm, op);
  return clip_to(own_gradients, total_norm, max_norm, op);
}

}  // namespace nn
}  // namespace tinymoe
