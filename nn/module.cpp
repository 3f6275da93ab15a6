#include "nn/module.h"

#include <algorithm>
#include <set>

#include "nn/in_place.h"
#include "nn/state_problems.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace nn {
namespace {

bool has_name(const NamedTensors& entries, const std::string& name) {
  for (const auto& entry : entries)
    if (entry.first == name) return true;
  return false;
}

// Every problem, in name order: missing and mismatched entries, then unexpected ones.
std::vector<std::string> find_problems(const StateDict& destinations, const StateDict& state, bool strict) {
  std::vector<std::string> problems;
  for (const auto& entry : destinations) {
    auto found = state.find(entry.first);
    if (found == state.end()) {
      if (strict) problems.push_back("missing '" + entry.first + "' (" + describe(entry.second) + ")");
      continue;
    }
    std::string problem = load_problem(entry.first, entry.second, found->second);
    if (!problem.empty()) problems.push_back(problem);
  }
  if (strict)
    for (const auto& entry : state)
      if (!destinations.count(entry.first)) problems.push_back("unexpected '" + entry.first + "'");
  return problems;
}

// Every distinct storage among `tensors` on `device`, keyed by the old storage: a copy, or the
// storage itself when it is there already. Tensors that share storage (tied weights) keep sharing it.
std::map<const Storage*, std::shared_ptr<Storage>> copies_on(const std::vector<TensorImpl*>& tensors, Device device) {
  std::map<const Storage*, std::shared_ptr<Storage>> copies;
  for (TensorImpl* tensor : tensors) {
    const Storage& old = *tensor->storage;
    if (copies.count(&old)) continue;
    if (old.device() == device) {
      copies.emplace(&old, tensor->storage);
      continue;
    }
    auto fresh = std::make_shared<Storage>(old.nbytes(), device);
    copy_bytes(fresh->data(), device, old.data(), old.device(), old.nbytes(), "Module::to");
    copies.emplace(&old, std::move(fresh));
  }
  return copies;
}

}  // namespace

void Module::check_new_name(const std::string& name, const char* op) const {
  TINYMOE_CHECK(!name.empty(), op, "expected a non-empty name");
  TINYMOE_CHECK(name.find('.') == std::string::npos, op, "name '", name,
                "' contains '.', which separates the levels of a dotted name");
  bool taken = has_name(parameters_, name) || has_name(buffers_, name);
  for (const auto& child : children_) taken = taken || child.first == name;
  TINYMOE_CHECK(!taken, op, "name '", name, "' is already registered in this module");
}

Tensor Module::register_parameter(const std::string& name, const Tensor& tensor) {
  const char* op = "register_parameter";
  check_new_name(name, op);
  check_floating(tensor, op, name.c_str());
  TINYMOE_CHECK(tensor.is_leaf(), op, "parameter '", name, "' must be a leaf tensor, got the output of '",
                tensor.grad_fn()->op, "' (detach() it first)");
  Tensor parameter = tensor;
  parameter.requires_grad_(true);
  parameters_.emplace_back(name, parameter);
  return parameter;
}

Tensor Module::register_buffer(const std::string& name, const Tensor& tensor) {
  const char* op = "register_buffer";
  check_new_name(name, op);
  check_defined(tensor, op, name.c_str());
  TINYMOE_CHECK(!tensor.requires_grad(), op, "buffer '", name,
                "' requires grad; buffers hold state without gradients (detach() it, or register a parameter)");
  buffers_.emplace_back(name, tensor);
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  const char* op = "register_module";
  check_new_name(name, op);
  TINYMOE_CHECK(module != nullptr, op, "module '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, NamedTensors* parameters, NamedTensors* buffers) const {
  if (parameters)
    for (const auto& entry : parameters_) parameters->emplace_back(prefix + entry.first, entry.second);
  if (buffers)
    for (const auto& entry : buffers_) buffers->emplace_back(prefix + entry.first, entry.second);
  for (const auto& child : children_) child.second->collect(prefix + child.first + ".", parameters, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors all;
  collect("", &all, nullptr);
  NamedTensors unique;
  std::set<const TensorImpl*> seen;
  for (auto& entry : all)
    if (seen.insert(entry.second.impl()).second) unique.push_back(std::move(entry));
  return unique;
}

TensorList Module::parameters() const {
  TensorList out;
  for (const auto& entry : named_parameters()) out.push_back(entry.second);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", nullptr, &out);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

void Module::train(bool on) {
  training_ = on;
  for (const auto& child : children_) child.second->train(on);
}

void Module::zero_grad() {
  for (auto& entry : named_parameters()) entry.second.zero_grad();
}

void Module::to(Device device) {
  NamedTensors parameters, buffers;
  collect("", &parameters, &buffers);
  std::vector<TensorImpl*> tensors;
  for (const NamedTensors* list : {&parameters, &buffers})
    for (const auto& entry : *list)
      if (std::find(tensors.begin(), tensors.end(), entry.second.impl()) == tensors.end())
        tensors.push_back(entry.second.impl());
  NoGradGuard no_grad;
  // Copy first (values and gradients), swap after: a failed copy leaves the module as it was.
  std::map<const Storage*, std::shared_ptr<Storage>> storages;
  std::vector<Tensor> gradients;
  try {
    storages = copies_on(tensors, device);
    for (TensorImpl* tensor : tensors) {
      const Tensor& grad = tensor->grad;
      gradients.push_back(!grad.defined() || grad.device() == device ? grad : grad.detach().to(device));
    }
  } catch (const Error& error) {
    fail("Module::to", "cannot move the module to ", device.str(), " (nothing was moved): ", error.what());
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    tensors[i]->storage = storages.at(tensors[i]->storage.get());
    tensors[i]->grad = gradients[i];
  }
}

StateDict Module::state_dict() const {
  NamedTensors parameters, buffers;
  collect("", &parameters, &buffers);
  StateDict out;
  for (const auto& entry : parameters) out.emplace(entry.first, entry.second.detach());
  for (const auto& entry : buffers) out.emplace(entry.first, entry.second.detach());
  return out;
}

std::vector<std::string> Module::state_dict_problems(const StateDict& state, bool strict) const {
  return find_problems(state_dict(), state, strict);
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  StateDict destinations = state_dict();
  throw_if_problems("load_state_dict", find_problems(destinations, state, strict));
  NoGradGuard no_grad;
  for (const auto& entry : destinations) {
    auto found = state.find(entry.first);
    // Any device to any device; loading a module's own state_dict copies a tensor onto itself.
    if (found != state.end()) write_values(entry.second, found->second.detach(), "load_state_dict");
  }
}

const std::shared_ptr<Module>& ModuleList::at(size_t index) const {
  TINYMOE_CHECK(index < modules_.size(), "ModuleList", "index ", index, " out of range for a list of ",
                modules_.size(), " modules");
  return modules_[index];
}

}  // namespace nn
}  // namespace tinymoe
