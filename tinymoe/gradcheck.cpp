#include "tinymoe/gradcheck.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "tinymoe/autograd.h"
#include "tinymoe/random.h"

namespace tinymoe {
namespace {

// Fingerprints every discrete choice made during one forward.
class ChoiceRecorder final : public ChoiceObserver {
 public:
  void observe(const char* op, const int64_t* chosen, int64_t count, double margin) override {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a over the op name and the choices
    for (const char* c = op; *c; ++c) hash = (hash ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
    for (int64_t i = 0; i < count; ++i) hash = (hash ^ static_cast<uint64_t>(chosen[i])) * 1099511628211ull;
    fingerprint.push_back(hash);
    ops.emplace_back(op);
    smallest_margin = std::min(smallest_margin, margin);
  }
  std::vector<uint64_t> fingerprint;
  std::vector<std::string> ops;
  double smallest_margin = std::numeric_limits<double>::infinity();
};

struct ObservedOutput {
  Tensor output;
  ChoiceRecorder choices;
};

ObservedOutput observe(const GradcheckFn& fn, const TensorList& inputs) {
  ObservedOutput result;
  ChoiceObserver* previous = choice_observer();
  set_choice_observer(&result.choices);
  try {
    result.output = fn(inputs);
  } catch (...) {
    set_choice_observer(previous);
    throw;
  }
  set_choice_observer(previous);
  TINYMOE_CHECK(result.output.defined(), "gradcheck", "the function returned an undefined tensor");
  TINYMOE_CHECK(result.output.dtype() == DType::f64, "gradcheck", "expected the function to return f64, got ",
                dtype_name(result.output.dtype()));
  return result;
}

// Name of the first choice that differs, or "" when all agree.
std::string changed_choice(const ChoiceRecorder& base, const ChoiceRecorder& other) {
  if (base.fingerprint == other.fingerprint) return "";
  for (size_t i = 0; i < base.fingerprint.size(); ++i)
    if (i >= other.fingerprint.size() || base.fingerprint[i] != other.fingerprint[i]) return base.ops[i];
  return other.ops.empty() ? "?" : other.ops[base.fingerprint.size()];
}

TensorList private_copies(const TensorList& inputs) {
  TensorList copies;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined()) {
      copies.push_back(input);
      continue;
    }
    Tensor copy = input.detach().clone();
    if (input.requires_grad()) {
      TINYMOE_CHECK(input.dtype() == DType::f64, "gradcheck", "input ", i, " requires grad but is ",
                    dtype_name(input.dtype()), "; gradient checks need f64 inputs (use .to(DType::f64))");
      TINYMOE_CHECK(input.device().is_cpu(), "gradcheck", "input ", i, " is on ", input.device().str(),
                    "; gradient checks run on cpu");
      copy.requires_grad_(true);
    }
    copies.push_back(copy);
  }
  return copies;
}

std::vector<size_t> checked_inputs(const TensorList& inputs) {
  std::vector<size_t> indices;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) indices.push_back(i);
  TINYMOE_CHECK(!indices.empty(), "gradcheck", "no input requires grad: nothing to check");
  return indices;
}

// Gradients of every checked input for one grad_output; undefined gradients read as zeros.
std::vector<std::vector<double>> analytic_gradients(const GradcheckFn& fn, const TensorList& inputs,
                                                    const std::vector<size_t>& checked, const Tensor& grad_output) {
  for (size_t i : checked) inputs[i].impl()->grad = Tensor();
  Tensor output = fn(inputs);
  std::vector<std::vector<double>> gradients;
  if (output.requires_grad()) output.backward(grad_output);
  for (size_t i : checked) {
    Tensor grad = inputs[i].grad();
    gradients.push_back(grad.defined() ? grad.to_vector<double>() : std::vector<double>(inputs[i].numel(), 0.0));
    inputs[i].impl()->grad = Tensor();
  }
  return gradients;
}

struct Comparison {
  GradcheckResult& result;
  const GradcheckOptions& options;
  double worst_excess = -std::numeric_limits<double>::infinity();

  void compare(int64_t input, int64_t index, int64_t output_index, double analytic, double numeric) {
    double error = std::abs(analytic - numeric);
    double bound = options.atol + options.rtol * std::abs(numeric);
    bool within = error <= bound;  // false for NaN
    double excess = std::isnan(error) ? std::numeric_limits<double>::infinity() : error - bound;
    if (!std::isnan(error)) result.max_abs_error = std::max(result.max_abs_error, error);
    if (excess > worst_excess) {
      worst_excess = excess;
      result.input = input, result.index = index, result.output_index = output_index;
      result.analytic = analytic, result.numeric = numeric;
    }
    if (!within) result.status = GradcheckStatus::failed;
  }
};

// Perturbs `input` by +-eps along `direction`; returns (f(x+eps) - f(x-eps)) / 2eps, or sets
// `flipped` (and returns nothing) when a choice changed. A choice can change how many elements f
// returns (a pair more or less); an output of another size without a reported choice is an Error.
std::vector<double> central_difference(const GradcheckFn& fn, const TensorList& inputs, const Tensor& input,
                                       const std::vector<double>& direction, double eps,
                                       const ChoiceRecorder& base, int64_t outputs, std::string& flipped) {
  double* values = input.data<double>();
  std::vector<double> original(values, values + input.numel());
  auto evaluate = [&](double sign) {
    for (int64_t j = 0, end = input.numel(); j < end; ++j) values[j] = original[j] + sign * eps * direction[j];
    ObservedOutput observed = observe(fn, inputs);
    if (flipped.empty()) flipped = changed_choice(base, observed.choices);
    return observed.output.to_vector<double>();
  };
  std::vector<double> plus, minus;
  {
    NoGradGuard no_grad;
    plus = evaluate(+1.0);
    minus = evaluate(-1.0);
  }
  std::copy(original.begin(), original.end(), values);
  if (!flipped.empty()) return {};
  const size_t expected = static_cast<size_t>(outputs);
  TINYMOE_CHECK(plus.size() == expected && minus.size() == expected, "gradcheck", "the function returned ", outputs,
                " elements at the inputs and ", plus.size(), " and ", minus.size(),
                " at a perturbation of eps with no choice reported (tinymoe::note_choice) that would explain it");
  for (size_t o = 0; o < plus.size(); ++o) plus[o] = (plus[o] - minus[o]) / (2.0 * eps);
  return plus;
}

std::vector<double> random_unit(int64_t count, Generator& generator) {
  std::vector<double> v(count);
  double norm = 0;
  for (double& x : v) x = generator.normal(), norm += x * x;
  norm = std::sqrt(norm);
  for (double& x : v) x = norm > 0 ? x / norm : 0.0;
  return v;
}

std::string describe(const GradcheckResult& result, const TensorList& inputs) {
  std::ostringstream out;
  out.precision(10);
  switch (result.status) {
    case GradcheckStatus::passed: out << "gradcheck passed"; break;
    case GradcheckStatus::failed: out << "gradcheck FAILED"; break;
    case GradcheckStatus::selection_unstable: return result.report;
  }
  out << " (max |analytic - numeric| = " << result.max_abs_error << ")";
  if (result.input >= 0) {
    out << "; worst element: input " << result.input << " " << shape_str(inputs[result.input].shape())
        << " flat index " << result.index;
    if (result.output_index >= 0) out << ", output element " << result.output_index;
    out << ": analytic " << result.analytic << ", numeric " << result.numeric;
  }
  if (std::isfinite(result.smallest_choice_margin))
    out << "; smallest selection margin " << result.smallest_choice_margin;
  return out.str();
}

void check_full(const GradcheckFn& fn, const TensorList& inputs, const std::vector<size_t>& checked,
                const ChoiceRecorder& base, const Tensor& base_output, Comparison& comparison) {
  GradcheckResult& result = comparison.result;
  int64_t outputs = base_output.numel();
  // Analytic Jacobian rows: one backward per output element.
  std::vector<std::vector<std::vector<double>>> rows(outputs);
  for (int64_t o = 0; o < outputs; ++o) {
    Tensor one_hot = zeros(base_output.shape(), DType::f64);
    one_hot.data<double>()[o] = 1.0;
    rows[o] = analytic_gradients(fn, inputs, checked, one_hot);
  }
  // Numeric Jacobian columns: two forwards per input element.
  for (size_t c = 0; c < checked.size(); ++c) {
    const Tensor& input = inputs[checked[c]];
    for (int64_t j = 0, end = input.numel(); j < end; ++j) {
      std::vector<double> direction(input.numel(), 0.0);
      direction[j] = 1.0;
      std::string flipped;
      std::vector<double> column =
          central_difference(fn, inputs, input, direction, comparison.options.eps, base, outputs, flipped);
      if (!flipped.empty()) {
        std::ostringstream out;
        out << "gradcheck: selection unstable: perturbing input " << checked[c] << " flat index " << j << " by eps="
            << comparison.options.eps << " changes the choice made by '" << flipped
            << "' (smallest margin " << base.smallest_margin << "); the finite difference steps over a tie, "
            << "so no gradient verdict is given. Move the inputs away from the tie.";
        result.status = GradcheckStatus::selection_unstable;
        result.input = static_cast<int64_t>(checked[c]), result.index = j;
        result.report = out.str();
        return;
      }
      for (int64_t o = 0; o < outputs; ++o)
        comparison.compare(static_cast<int64_t>(checked[c]), j, o, rows[o][c][j], column[o]);
    }
  }
}

void check_fast(const GradcheckFn& fn, const TensorList& inputs, const std::vector<size_t>& checked,
                const ChoiceRecorder& base, const Tensor& base_output, Comparison& comparison) {
  GradcheckResult& result = comparison.result;
  Generator generator(comparison.options.seed);
  for (int draw = 0; draw < comparison.options.fast_mode_draws; ++draw) {
    std::vector<double> v = random_unit(base_output.numel(), generator);
    std::vector<std::vector<double>> u;
    for (size_t i : checked) u.push_back(random_unit(inputs[i].numel(), generator));
    std::vector<std::vector<double>> grads = analytic_gradients(fn, inputs, checked, from_vector(v, base_output.shape()));
    double analytic = 0, numeric = 0;
    for (size_t c = 0; c < checked.size(); ++c) {
      for (size_t j = 0; j < u[c].size(); ++j) analytic += grads[c][j] * u[c][j];
      std::string flipped;
      std::vector<double> column = central_difference(fn, inputs, inputs[checked[c]], u[c], comparison.options.eps, base,
                                                      base_output.numel(), flipped);
      if (!flipped.empty()) {
        result.status = GradcheckStatus::selection_unstable;
        result.input = static_cast<int64_t>(checked[c]);
        result.report = "gradcheck: selection unstable: a random perturbation of input " + std::to_string(checked[c]) +
                        " changes the choice made by '" + flipped + "'; no gradient verdict is given";
        return;
      }
      for (size_t o = 0; o < v.size(); ++o) numeric += v[o] * column[o];
    }
    comparison.compare(-1, draw, -1, analytic, numeric);
  }
}

void check_reentrant(const GradcheckFn& fn, const TensorList& inputs, const std::vector<size_t>& checked,
                     const Tensor& base_output, GradcheckResult& result) {
  Generator generator(12345);
  Tensor v = from_vector(random_unit(base_output.numel(), generator), base_output.shape());
  auto first = analytic_gradients(fn, inputs, checked, v);
  auto second = analytic_gradients(fn, inputs, checked, v);
  for (size_t c = 0; c < checked.size(); ++c)
    for (size_t j = 0; j < first[c].size(); ++j)
      if (first[c][j] != second[c][j]) {
        result.status = GradcheckStatus::failed;
        std::ostringstream out;
        out.precision(17);
        out << "gradcheck FAILED: backward is not reentrant: two runs gave " << first[c][j] << " and "
            << second[c][j] << " for input " << checked[c] << " flat index " << j;
        result.report = out.str();
        return;
      }
}

}  // namespace

namespace {

// The check itself, on `tensors` that it may perturb and whose grad() it may overwrite.
GradcheckResult check_on(const GradcheckFn& fn, const TensorList& tensors, const GradcheckOptions& options) {
  TINYMOE_CHECK(options.eps > 0, "gradcheck", "eps must be positive, got ", options.eps);
  std::vector<size_t> checked = checked_inputs(tensors);
  ObservedOutput base;
  {
    NoGradGuard no_grad;
    base = observe(fn, tensors);
  }
  GradcheckResult result;
  result.smallest_choice_margin = base.choices.smallest_margin;
  Comparison comparison{result, options};
  if (options.fast_mode) check_fast(fn, tensors, checked, base.choices, base.output, comparison);
  else check_full(fn, tensors, checked, base.choices, base.output, comparison);
  if (result.status == GradcheckStatus::selection_unstable) return result;
  result.report = describe(result, tensors);
  if (result.status == GradcheckStatus::passed && options.check_reentrant)
    check_reentrant(fn, tensors, checked, base.output, result);
  return result;
}

// Puts back the values and gradients of tensors checked in place, however the check ends.
class RestoreOnExit {
 public:
  explicit RestoreOnExit(const TensorList& tensors) : tensors_(tensors) {
    for (const Tensor& tensor : tensors_) {
      values_.push_back(tensor.to_vector<double>());
      grads_.push_back(tensor.grad());
    }
  }
  ~RestoreOnExit() {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      std::copy(values_[i].begin(), values_[i].end(), tensors_[i].data<double>());
      tensors_[i].impl()->grad = grads_[i];
    }
  }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  TensorList tensors_;
  std::vector<std::vector<double>> values_;
  TensorList grads_;
};

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const TensorList& inputs, const GradcheckOptions& options) {
  return check_on(fn, private_copies(inputs), options);
}

GradcheckResult gradcheck_in_place(const std::function<Tensor()>& fn, const TensorList& tensors,
                                   const GradcheckOptions& options) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& tensor = tensors[i];
    TINYMOE_CHECK(tensor.defined() && tensor.requires_grad() && tensor.is_leaf(), "gradcheck_in_place", "tensor ", i,
                  " must be a defined leaf that requires grad (a parameter)");
    TINYMOE_CHECK(tensor.dtype() == DType::f64 && tensor.device().is_cpu(), "gradcheck_in_place", "tensor ", i,
                  " is ", dtype_name(tensor.dtype()), " on ", tensor.device().str(),
                  "; gradient checks need f64 tensors on the cpu (build the module with DType::f64)");
  }
  RestoreOnExit restore(tensors);
  return check_on([&fn](const TensorList&) { return fn(); }, tensors, options);
}

}  // namespace tinymoe
