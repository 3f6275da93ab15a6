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
#include <vector>

#include "tinymoe/communicator.h"
#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update from the parameters' current gradients.
  virtual void step() = 0;
  // Drops every parameter's gradient (torch's set_to_none behaviour).
  void zero_grad();
  const TensorList& parameters() const { return parameters_; }
  // The learning rate, for schedules; non-negative.
  double lr() const { return lr_; }
  void set_lr(double lr);

 protected:
  // Checks the parameters and lr; errors name `op`.
  Optimizer(TensorList parameters, double lr, const char* op);
  TensorList parameters_;
  double lr_;
  const char* op_;
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
  void step_through_ops(size_t i, const Tensor& gradient);

  SGDOptions options_;
  std::vector<Tensor> momentum_buffers_;  // per parameter; undefined until its first step
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
  void step_through_ops(size_t i, const Tensor& gradient, double step_size, double bias_correction2_sqrt);

  AdamWOptions options_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // m and v per parameter; undefined until its first step
  std::vector<int64_t> steps_;
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
