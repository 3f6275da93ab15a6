// Module: the base of every layer. A module owns named parameters (leaf tensors that require
// grad), named buffers (state without gradients, such as DeepSeek-V3's per-expert
// e_score_correction_bias) and named child modules. Names join with dots the way PyTorch and
// HuggingFace checkpoints spell them: "experts.3.w1.weight".
//
// Modules are held by std::shared_ptr and are not copyable (a copy would silently share or split
// parameter storage). A subclass registers its pieces in its constructor and keeps the returned
// handles for its forward:
//
//   struct Mlp : Module {
//     std::shared_ptr<Linear> up, down;
//     Mlp(int64_t d, int64_t h) : up(register_module("up", std::make_shared<Linear>(d, h))),
//                                 down(register_module("down", std::make_shared<Linear>(h, d))) {}
//     Tensor forward(const Tensor& x) const { return down->forward(relu(up->forward(x))); }
//   };
//
// Every function here is bookkeeping: none records on the autograd tape.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// Name -> tensor, sorted by name; the form checkpoints are saved and loaded in.
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a parameter under `name` (non-empty, no '.', not yet used by a parameter, buffer
  // or child) and returns it. The tensor must be a defined floating leaf; it is marked
  // requires_grad and kept by handle, so the caller's tensor is the parameter.
  Tensor register_parameter(const std::string& name, const Tensor& tensor);
  // Registers a buffer: saved in state_dict, never a parameter, never requires grad. Any dtype.
  Tensor register_buffer(const std::string& name, const Tensor& tensor);
  // Registers a child module; its names appear under "name.". Returns the child, typed.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // Own parameters in registration order, then each child's under its prefix, depth first.
  // A tensor registered twice (tied weights) appears once, under its first name.
  NamedTensors named_parameters() const;
  TensorList parameters() const;
  NamedTensors named_buffers() const;
  // Direct children in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;

  // Training mode for this module and every descendant (jitter, dropout and capacity
  // policies read it). Modules start in training mode.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops the accumulated gradient of every parameter (torch's set_to_none behaviour).
  void zero_grad();

  // Moves every parameter and buffer of this module and its descendants, with their gradients,
  // to `device`, in place (torch's module.to(device)): each tensor keeps its handle, so the
  // members holding it (Linear's weight, the Router's bias) see the move, and keeps its name,
  // dtype, requires_grad and leaf status. Tensors that share storage (tied weights) still share
  // it. Everything is copied before anything is swapped: after an Error nothing has moved.
  // Handles from an earlier state_dict() keep the old storage, and an optimizer's state does not
  // move: build optimizers after moving. Errors name "Module::to".
  void to(Device device);

  // Parameters and buffers by dotted name (tied tensors under every name). The values are
  // detached handles sharing the module's storage: save them, do not write through them.
  StateDict state_dict() const;
  // Copies values into the existing tensors' storage, so optimizers keep valid references.
  // Checks everything first and loads nothing when any problem is found; the Error lists them
  // all: with `strict`, names missing from `state` and names the module does not have; always,
  // tensors whose dtype or shape differs and undefined tensors. Sources and destinations may be
  // on any devices: loading cpu tensors into a module on cuda copies them to the device.
  void load_state_dict(const StateDict& state, bool strict = true);
  // The problems load_state_dict would report for `state`; empty when it would load.
  std::vector<std::string> state_dict_problems(const StateDict& state, bool strict = true) const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void check_new_name(const std::string& name, const char* op) const;
  void collect(const std::string& prefix, NamedTensors* parameters, NamedTensors* buffers) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An indexed list of modules: children named "0", "1", ..., so a list registered as "experts"
// yields "experts.3.w1.weight".
class ModuleList : public Module {
 public:
  ModuleList() = default;
  // Appends a module under the next index and returns it, typed.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    add_child(std::to_string(modules_.size()), module);
    modules_.push_back(module);
    return module;
  }
  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // The i-th module; an Error when i is out of range. at<M>(i) also checks the type.
  const std::shared_ptr<Module>& at(size_t index) const;
  template <typename M>
  std::shared_ptr<M> at(size_t index) const;
  const std::shared_ptr<Module>& operator[](size_t index) const { return at(index); }
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return modules_.begin(); }
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

template <typename M>
std::shared_ptr<M> ModuleList::at(size_t index) const {
  auto typed = std::dynamic_pointer_cast<M>(at(index));
  if (!typed) throw Error("ModuleList: module " + std::to_string(index) + " is not of the requested type");
  return typed;
}

}  // namespace nn
}  // namespace tinymoe
