// gradcheck: compares the gradients autograd computes with central finite differences,
// following torch.autograd.gradcheck (same defaults: eps 1e-6, atol 1e-5, rtol 1e-3; an element
// passes when |analytic - numeric| <= atol + rtol * |numeric|).
//
// Inputs that require grad must be f64. The check works on private copies: the caller's
// tensors and their grad() are left alone.
//
// Around discrete choices (top-k, sort, argmax, capacity drops) a finite difference can step
// over a tie and measure a jump that no derivative has. Ops that choose report their choices
// (tinymoe::note_choice); gradcheck fingerprints them at the unperturbed point and at every
// perturbed one, and when a perturbation of eps changes a choice it returns
// `selection_unstable`, naming the op and the input element, instead of a false failure.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tinymoe/tensor.h"

namespace tinymoe {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  // Fast mode compares v^T J u for random unit u, v (one backward, two forwards per draw)
  // instead of the whole Jacobian; torch's fast_mode.
  bool fast_mode = false;
  int fast_mode_draws = 3;
  uint64_t seed = 0;
  // Runs backward twice and requires identical gradients (torch's reentrancy check).
  bool check_reentrant = true;
};

enum class GradcheckStatus { passed, failed, selection_unstable };

struct GradcheckResult {
  GradcheckStatus status = GradcheckStatus::passed;
  // The worst element: which input, its flat index, which output element (-1 in fast mode).
  int64_t input = -1, index = -1, output_index = -1;
  double analytic = 0, numeric = 0;
  double max_abs_error = 0;
  double smallest_choice_margin = 0;  // of the unperturbed point; +inf when nothing was chosen
  std::string report;                 // human-readable summary, always filled

  bool passed() const { return status == GradcheckStatus::passed; }
};

using GradcheckFn = std::function<Tensor(const TensorList& inputs)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const TensorList& inputs,
                          const GradcheckOptions& options = GradcheckOptions());

// The same check with respect to tensors that `fn` reads by itself, such as a module's
// parameters, which a module keeps by handle and so cannot take from gradcheck's copies:
//   gradcheck_in_place([&] { return model(ids, targets).total_loss(); }, model.parameters());
// Each tensor must be an f64 cpu leaf that requires grad. They are perturbed in place, and their
// values and grad() are restored before this returns, on an Error too.
GradcheckResult gradcheck_in_place(const std::function<Tensor()>& fn, const TensorList& tensors,
                                   const GradcheckOptions& options = GradcheckOptions());

}  // namespace tinymoe
