// Optimizer::state_dict and load_state_dict: the optimizers' state as named tensors, for
// checkpoints (nn/checkpoint.h). The layout is torch's optimizer.state_dict() flattened into
// names, so that it fits a safetensors file: "lr", the options, "<index>.<slot>".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "nn/in_place.h"
#include "nn/optim.h"
#include "nn/state_problems.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace nn {
namespace {

const char* kStepSlot = "step";

std::string entry_name(size_t index, const std::string& slot) { return std::to_string(index) + "." + slot; }

// The index of a "<index>.<slot>" name, spelled as entry_name spells it; -1 for any other name.
int64_t parameter_index(const std::string& name, size_t parameter_count, std::string* slot) {
  size_t dot = name.find('.');
  if (dot == std::string::npos) return -1;
  int64_t index = canonical_count(name.substr(0, dot));
  if (index < 0 || static_cast<uint64_t>(index) >= parameter_count) return -1;
  *slot = name.substr(dot + 1);
  return index;
}

// The value of a scalar entry of `dtype`, or a problem.
std::string scalar_problem(const std::string& name, const Tensor& source, DType dtype) {
  return load_problem(name, full({}, 0.0, dtype), source);
}

// The shortest decimal that reads back as `value` ("0.95", not "0.94999999999999996").
std::string shortest(double value) {
  char text[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

const int64_t kMaxStep = std::numeric_limits<int64_t>::max();

int64_t step_value(const Tensor& tensor) { return tensor.detach().to(Device::cpu()).item<int64_t>(); }

double scalar_value(const Tensor& tensor) { return tensor.detach().to(Device::cpu()).to(DType::f64).item<double>(); }

}  // namespace

StateDict Optimizer::state_dict() const {
  StateDict out;
  out.emplace("lr", full({}, lr_, DType::f64));
  for (const auto& option : fixed_options()) out.emplace(option.first, full({}, option.second, DType::f64));
  for (size_t i = 0; i < parameters_.size(); ++i) {
    // Copies: the cpu step updates the slots in place, the cuda step replaces them, and a
    // snapshot must not follow either.
    for (size_t s = 0; s < slot_names_.size(); ++s)
      if (slots_[s][i].defined()) out.emplace(entry_name(i, slot_names_[s]), slots_[s][i].detach().clone());
    if (counts_steps_ && steps_[i] > 0)
      out.emplace(entry_name(i, kStepSlot), from_vector(std::vector<int64_t>{steps_[i]}, {}));
  }
  return out;
}

std::vector<std::string> Optimizer::state_dict_problems(const StateDict& state) const {
  std::vector<std::string> problems;
  auto add = [&](const std::string& problem) {
    if (!problem.empty()) problems.push_back(problem);
  };
  // The options: lr is taken, the others must agree.
  auto lr = state.find("lr");
  if (lr == state.end()) {
    add("missing 'lr'");
  } else if (std::string problem = scalar_problem("lr", lr->second, DType::f64); !problem.empty()) {
    add(problem);
  } else {
    double value = scalar_value(lr->second);
    if (!(value >= 0.0 && std::isfinite(value))) add("'lr' must be finite and >= 0, got " + shortest(value));
  }
  std::set<std::string> known = {"lr"};
  for (const auto& option : fixed_options()) {
    known.insert(option.first);
    auto found = state.find(option.first);
    if (found == state.end()) {
      add("missing '" + option.first + "'");
    } else if (std::string problem = scalar_problem(option.first, found->second, DType::f64); !problem.empty()) {
      add(problem);
    } else if (double saved = scalar_value(found->second); saved != option.second) {
      add("'" + option.first + "' is " + shortest(saved) + " in the state but " + shortest(option.second) + " in this " +
          op_ + " (build the optimizer with the options of the run it continues)");
    }
  }
  // Per parameter: every slot or none.
  std::set<std::string> slot_names;
  for (size_t s = 0; s < slot_names_.size(); ++s)
    if (keeps_slot(s)) slot_names.insert(slot_names_[s]);
  if (counts_steps_) slot_names.insert(kStepSlot);
  std::set<size_t> with_state;
  for (const auto& entry : state) {
    if (known.count(entry.first)) continue;
    std::string slot;
    int64_t index = parameter_index(entry.first, parameters_.size(), &slot);
    if (index < 0 || !slot_names.count(slot)) {
      add("unexpected '" + entry.first + "'");
      continue;
    }
    with_state.insert(static_cast<size_t>(index));
  }
  for (size_t i : with_state) {
    for (const std::string& slot : slot_names) {
      std::string name = entry_name(i, slot);
      auto found = state.find(name);
      if (found == state.end()) {
        add("missing '" + name + "' (parameter " + std::to_string(i) + " has other state)");
      } else if (slot != kStepSlot) {
        add(load_problem(name, parameters_[i], found->second));
      } else if (std::string problem = scalar_problem(name, found->second, DType::i64); !problem.empty()) {
        add(problem);
      } else if (int64_t count = step_value(found->second); count < 1 || count == kMaxStep) {
        // At the limit the next step's ++ would overflow.
        add("'" + name + "' must be in [1, " + std::to_string(kMaxStep) + "), got " + std::to_string(count));
      }
    }
  }
  return problems;
}

void Optimizer::load_state_dict(const StateDict& state) {
  const std::string op = std::string(op_) + "::load_state_dict";
  throw_if_problems(op.c_str(), state_dict_problems(state));
  NoGradGuard no_grad;
  // Staged, then swapped in: a device error while copying leaves the old state whole.
  std::vector<std::vector<Tensor>> slots(slot_names_.size(), std::vector<Tensor>(parameters_.size()));
  std::vector<int64_t> steps(parameters_.size(), 0);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& parameter = parameters_[i];
    for (size_t s = 0; s < slot_names_.size(); ++s) {
      auto found = state.find(entry_name(i, slot_names_[s]));
      if (found == state.end()) continue;
      // A copy on the parameter's device: the optimizer's state never aliases the caller's tensors.
      slots[s][i] = Tensor::empty(parameter.shape(), parameter.dtype(), parameter.device());
      write_values(slots[s][i], found->second.detach(), op.c_str());
    }
    auto step = state.find(entry_name(i, kStepSlot));
    if (counts_steps_ && step != state.end()) steps[i] = step_value(step->second);
  }
  lr_ = scalar_value(state.at("lr"));
  slots_.swap(slots);
  steps_.swap(steps);
}

}  // namespace nn
}  // namespace tinymoe
