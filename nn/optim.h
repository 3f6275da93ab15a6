// Optimizers that update parameters in place, and gradient clipping, with PyTorch's semantics.
//
// An optimizer keeps the parameter handles it was given (Module::parameters()): step() writes
// into their storage under a NoGradGuard, so nothing is recorded, and Module::load_state_dict
// (which also writes in place) keeps the optimizer valid. Parameters whose grad() is undefined
// are skipped by step(), and their state (momentum, moments, step count) stays untouched.
// Parameters must be distinct floating leaves that require grad, on any device (each with its
// gradient on its own device). On the cpu step() runs one loop per parameter; on a cuda device
// it runs the same formula through ops (a few kernels per parameter) and writes the result into
// the parameter's storage. The state (momentum, moments) is made on the parameter's device at its
// first step: build the optimizer after moving the module (a parameter moved later is an Error).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "tinymoe/communicator.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  // Applies one update from the parameters' current gradients.
  virtual void step() = 0;
  // Drops every parameter's gradient (torch's set_to_none behaviour).
  void zero_grad();
  const TensorList& parameters() const { return parameters_; }
  // The learning rate, for schedules; non-negative.
  double lr() const { return lr_; }
  void set_lr(double lr);
  // "SGD" or "AdamW": the name errors use and checkpoints record.
  const char* name() const { return op_; }

  // The whole state as named tensors, torch's optimizer.state_dict() flattened:
  //   "lr" and every option (f64 scalars);
  //   for each parameter i (its index in parameters()) that has state, "<i>.<slot>" per slot (a
  //   tensor of the parameter's shape and dtype) and, where the optimizer counts steps, "<i>.step"
  //   (an i64 scalar).
  // The tensors are copies (a snapshot that later steps do not change, on the parameters'
  // devices). nn/checkpoint.h saves them with the model.
  StateDict state_dict() const;
  // Replaces the whole state with `state`: a parameter without entries starts afresh, as in torch.
  // lr is restored; every other option must equal this optimizer's (torch would quietly take
  // the file's: here a state from another setup is an Error). Checks everything first and loads
  // nothing when any problem is found; the Error lists them all. Values are copied onto each
  // parameter's device, so a state saved on one device loads on another.
  void load_state_dict(const StateDict& state);
  // The problems load_state_dict would report for `state`; empty when it would load.
  std::vector<std::string> state_dict_problems(const StateDict& state) const;

 protected:
  // Checks the parameters and lr; errors name `op`. `slot_names` are the per-parameter tensors
  // the optimizer keeps; `counts_steps` whether it keeps a step count per parameter.
  Optimizer(TensorList parameters, double lr, const char* op, std::vector<std::string> slot_names,
            bool counts_steps);
  // The options besides lr, by the names state_dict uses.
  virtual std::vector<std::pair<std::string, double>> fixed_options() const = 0;
  // Whether slot `slot` can hold state with these options (SGD without momentum keeps no buffer):
  // a state that has it anyway is refused as unexpected.
  virtual bool keeps_slot(size_t /*slot*/) const { return true; }
  // Slot `slot` of parameter `index`; undefined until the parameter's first step.
  Tensor& slot(size_t slot, size_t index) { return slots_[slot][index]; }
  int64_t& step_count_of(size_t index) { return steps_[index]; }
  int64_t step_count_of(size_t index) const { return steps_[index]; }

  TensorList parameters_;
  double lr_;
  const char* op_;

 private:
  std::vector<std::string> slot_names_;
  std::vector<std::vector<Tensor>> slots_;  // [slot][parameter]
  bool counts_steps_;
  std::vector<int64_t> steps_;  // [parameter]; all 0 unless counts_steps_
};

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2 penalty added to the gradient: g + wd * p
};

// Stochastic gradient descent, torch.optim.SGD without dampening or Nesterov:
//   g = grad + wd * p;  b = g on the first step, else b = momentum * b + g;  p -= lr * b
// (b is g itself when momentum is 0).
class SGD : public Optimizer {
 public:
  explicit SGD(TensorList parameters, SGDOptions options = SGDOptions());
  void step() override;
  const SGDOptions& options() const { return options_; }

 private:
  std::vector<std::pair<std::string, double>> fixed_options() const override;
  bool keeps_slot(size_t /*slot*/) const override { return options_.momentum != 0.0; }
  void step_through_ops(size_t i, const Tensor& gradient);
  // b per parameter (slot "momentum_buffer"); undefined until its first step with momentum.
  Tensor& momentum_buffer(size_t i) { return slot(0, i); }

  SGDOptions options_;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), as
// torch.optim.AdamW: per parameter with its own step count t,
//   p -= lr * wd * p                                (decoupled decay, not added to the gradient)
//   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
class AdamW : public Optimizer {
 public:
  explicit AdamW(TensorList parameters, AdamWOptions options = AdamWOptions());
  void step() override;
  const AdamWOptions& options() const { return options_; }
  // How many updates parameter i has received.
  int64_t step_count(size_t parameter) const;

 private:
  std::vector<std::pair<std::string, double>> fixed_options() const override;
  void step_through_ops(size_t i, const Tensor& gradient, double step_size, double bias_correction2_sqrt);
  // m and v per parameter (slots "exp_avg", "exp_avg_sq"); undefined until its first step.
  Tensor& exp_avg(size_t i) { return slot(0, i); }
  Tensor& exp_avg_sq(size_t i) { return slot(1, i); }

  AdamWOptions options_;
};

// Scales the gradients in place so that their joint L2 norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_: total = ||(||g_1||, ..., ||g_n||)||_2 over parameters with a
// gradient; every gradient is multiplied by min(1, max_norm / (total + 1e-6)). Returns total
// (the norm before clipping). As in torch (error_if_nonfinite=False), a non-finite total turns the
// gradients non-finite too: check the returned norm to skip such a step.
double clip_grad_norm(const TensorList& parameters, double max_norm);

// The same over a model split across ranks (expert parallelism): the norm of every rank's
// gradients, with `replicated` (identical on every rank: call it after all_reduce_gradients)
// counted once and each rank's `own` (its experts) once each, and the same scale on every rank,
// so the replicated copies stay identical. A collective. Returns the total norm.
double clip_grad_norm(const TensorList& replicated, const TensorList& own, double max_norm, Communicator& comm);

}  // namespace nn
}  // namespace tinymoe
