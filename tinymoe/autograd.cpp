#include "tinymoe/autograd.h"

#include <algorithm>
#include <unordered_map>

#include "ops/elementwise.h"

namespace tinymoe {
namespace {

struct Tape {
  bool grad_enabled = true;
  uint64_t next_sequence = 0;
  // Weak: records belong to the tensors they produced. Expired entries are dropped in batches,
  // so the tape's own size stays proportional to the live records.
  std::vector<std::weak_ptr<Node>> records;
  size_t compact_at = 1024;
  ChoiceObserver* observer = nullptr;

  void append(const std::shared_ptr<Node>& node) {
    if (records.size() >= compact_at) compact();
    records.push_back(node);
  }
  void compact() {
    records.erase(std::remove_if(records.begin(), records.end(),
                                 [](const std::weak_ptr<Node>& record) { return record.expired(); }),
                  records.end());
    compact_at = std::max<size_t>(1024, 2 * records.size());
  }
};

Tape& tape() {
  static thread_local Tape instance;
  return instance;
}

// Sum of gradients flowing into the same place; out-of-place so no saved tensor is mutated.
Tensor sum_gradients(const Tensor& accumulated, const Tensor& incoming) {
  if (!accumulated.defined()) return incoming;
  return add(accumulated, incoming);
}

void accumulate_into_leaf(TensorImpl& leaf, const Tensor& gradient) {
  if (!leaf.grad.defined()) {
    // A gradient may alias a tensor the caller still holds (reshape passes views through):
    // the leaf gets storage of its own so later accumulation or optimizer updates stay local.
    leaf.grad = gradient.storage().use_count() > 1 ? gradient.clone() : gradient;
  } else {
    leaf.grad = add(leaf.grad, gradient);
  }
}

void check_gradient_fits(const Tensor& gradient, const Shape& shape, DType dtype, const char* op) {
  TINYMOE_CHECK(gradient.shape() == shape && gradient.dtype() == dtype, "backward", "'", op,
                "' produced a ", dtype_name(gradient.dtype()), " gradient of shape ", shape_str(gradient.shape()),
                " for an input of dtype ", dtype_name(dtype), " and shape ", shape_str(shape));
}

// The records reachable from `root`, latest first: the tape in reverse, restricted to `root`.
std::vector<Node*> records_leading_to(Node* root) {
  std::vector<Node*> found;
  std::vector<Node*> stack = {root};
  std::unordered_map<Node*, bool> seen = {{root, true}};
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    TINYMOE_CHECK(!node->released, "backward", "the record of '", node->op,
                  "' was already used by a backward and released its saved tensors; "
                  "pass retain_graph=true to the first backward to run backward twice");
    found.push_back(node);
    for (const Edge& edge : node->inputs) {
      if (edge.node && seen.emplace(edge.node.get(), true).second) stack.push_back(edge.node.get());
    }
  }
  std::sort(found.begin(), found.end(), [](Node* a, Node* b) { return a->sequence > b->sequence; });
  return found;
}

}  // namespace

bool grad_enabled() { return tape().grad_enabled; }
void set_grad_enabled(bool enabled) { tape().grad_enabled = enabled; }

bool needs_record(std::initializer_list<const Tensor*> inputs) {
  if (!tape().grad_enabled) return false;
  for (const Tensor* input : inputs)
    if (input->defined() && input->requires_grad()) return true;
  return false;
}

bool needs_record(const TensorList& inputs) {
  if (!tape().grad_enabled) return false;
  for (const Tensor& input : inputs)
    if (input.defined() && input.requires_grad()) return true;
  return false;
}

void record(const char* op, const TensorList& inputs, const TensorList& outputs, BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->op = op;
  node->sequence = tape().next_sequence++;
  node->backward = std::move(backward);
  node->inputs.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined() || !input.requires_grad()) continue;
    if (input.grad_fn()) {
      node->inputs[i].node = input.grad_fn();
      node->inputs[i].output_index = input.impl()->output_index;
    } else {
      node->inputs[i].leaf = input.impl_ptr();
    }
  }
  node->output_shapes.reserve(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* impl = outputs[i].impl();
    node->output_shapes.push_back(impl->shape);
    node->output_dtypes.push_back(impl->dtype);
    impl->requires_grad = true;
    impl->grad_fn = node;
    impl->output_index = static_cast<int>(i);
  }
  if (!outputs.empty()) node->device = outputs[0].device();
  tape().append(node);
}

void backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  check_defined(root, "backward", "root");
  TINYMOE_CHECK(root.requires_grad(), "backward", "the tensor does not require grad and has no grad_fn: "
                "nothing was recorded that leads to it (was it computed under NoGradGuard, or from "
                "inputs that do not require grad?)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    TINYMOE_CHECK(root.numel() == 1, "backward", "grad_output can be omitted only for a one-element "
                  "output, got shape ", shape_str(root.shape()), "; pass grad_output");
    seed = ones_like(root);
  } else {
    check_gradient_fits(seed, root.shape(), root.dtype(), "grad_output");
    check_same_device(seed, root, "backward");
  }
  NoGradGuard no_grad;  // backward closures compute plain tensors
  if (root.is_leaf()) {
    accumulate_into_leaf(*root.impl(), seed);
    return;
  }
  std::unordered_map<Node*, TensorList> pending;
  pending[root.grad_fn().get()].resize(root.grad_fn()->output_shapes.size());
  pending[root.grad_fn().get()][root.impl()->output_index] = seed;
  for (Node* node : records_leading_to(root.grad_fn().get())) {
    auto entry = pending.find(node);
    if (entry == pending.end()) continue;  // reachable, but every path to it carried no gradient
    TensorList grad_outputs = std::move(entry->second);
    pending.erase(entry);
    grad_outputs.resize(node->output_shapes.size());
    for (size_t i = 0; i < grad_outputs.size(); ++i)
      if (!grad_outputs[i].defined()) grad_outputs[i] = zeros(node->output_shapes[i], node->output_dtypes[i], node->device);
    TensorList grad_inputs = node->backward(grad_outputs);
    TINYMOE_CHECK(grad_inputs.size() == node->inputs.size(), "backward", "'", node->op, "' returned ",
                  grad_inputs.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < grad_inputs.size(); ++i) {
      const Edge& edge = node->inputs[i];
      if (!edge.needs_grad() || !grad_inputs[i].defined()) continue;
      if (edge.leaf) {
        check_gradient_fits(grad_inputs[i], edge.leaf->shape, edge.leaf->dtype, node->op);
        accumulate_into_leaf(*edge.leaf, grad_inputs[i]);
      } else {
        check_gradient_fits(grad_inputs[i], edge.node->output_shapes[edge.output_index],
                            edge.node->output_dtypes[edge.output_index], node->op);
        TensorList& slots = pending[edge.node.get()];
        slots.resize(edge.node->output_shapes.size());
        slots[edge.output_index] = sum_gradients(slots[edge.output_index], grad_inputs[i]);
      }
    }
    if (!retain_graph) {
      node->backward = nullptr;  // frees the saved tensors
      node->released = true;
    }
  }
}

std::vector<std::string> tape_ops() {
  std::vector<std::string> names;
  for (const auto& weak : tape().records)
    if (auto node = weak.lock()) names.emplace_back(node->op);
  return names;
}

size_t tape_size() {
  tape().compact();
  return tape().records.size();
}

ChoiceObserver* choice_observer() { return tape().observer; }
void set_choice_observer(ChoiceObserver* observer) { tape().observer = observer; }

}  // namespace tinymoe
