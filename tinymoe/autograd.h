// Tape-based reverse-mode autograd.
//
// Every differentiable op, when grad mode is on and an input requires grad, appends one record
// (a Node: op name, where each input's gradient goes, its backward closure holding only what
// backward needs) to the thread's tape, stamped with a sequence number in execution order.
// backward(loss) walks the records that lead to `loss` in reverse order, runs each record's
// backward once with the summed gradients of its outputs, and accumulates into leaves' grad().
//
// Records are owned by the tensors they produced: a forward pass that is dropped without a
// backward frees its records with its tensors, so a training loop does not grow memory. After a
// backward the records it ran release their saved tensors, unless retain_graph is set.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {

// A record's backward: gets one gradient per output (zeros where an output got none) and
// returns one gradient per input (an undefined Tensor where the input gets none).
using BackwardFn = std::function<TensorList(const TensorList& grad_outputs)>;

// Where the gradient of one input goes: into another record's output, or into a leaf.
struct Edge {
  std::shared_ptr<Node> node;        // the record that produced the input, or null
  int output_index = 0;
  std::shared_ptr<TensorImpl> leaf;  // the input itself when it is a leaf requiring grad
  bool needs_grad() const { return node != nullptr || leaf != nullptr; }
};

struct Node {
  const char* op = "";
  uint64_t sequence = 0;
  std::vector<Edge> inputs;
  std::vector<Shape> output_shapes;
  std::vector<DType> output_dtypes;
  Device device;
  BackwardFn backward;
  bool released = false;
};

// True while gradients are being recorded on this thread.
bool grad_enabled();
void set_grad_enabled(bool enabled);

// Stops recording for its lifetime (evaluation, optimizer steps, backward closures).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any input requires grad: then an op must record.
bool needs_record(std::initializer_list<const Tensor*> inputs);
bool needs_record(const TensorList& inputs);

// Appends a record for `outputs` (which become non-leaves requiring grad) computed from `inputs`.
// Save only detached tensors in `backward` (Tensor::detach): a saved output that still holds its
// record would keep itself alive.
void record(const char* op, const TensorList& inputs, const TensorList& outputs, BackwardFn backward);

// Reverse pass. `grad_output` may be omitted only for a one-element `root`.
void backward(const Tensor& root, const Tensor& grad_output = Tensor(), bool retain_graph = false);

// The op names of the live records on this thread's tape, oldest first: for teaching and
// debugging ("what did my forward record?").
std::vector<std::string> tape_ops();
// Number of live records on this thread's tape.
size_t tape_size();

// Observes discrete choices (top-k indices, sort orders, capacity drops) made during forward.
// gradcheck uses it to tell a selection that a perturbation flips from a wrong gradient.
class ChoiceObserver {
 public:
  virtual ~ChoiceObserver() = default;
  // op made the choice `chosen` (e.g. indices); `margin` is how far the deciding values were from
  // a tie (e.g. the gap between the k-th and (k+1)-th score), +inf when no tie is possible.
  virtual void observe(const char* op, const int64_t* chosen, int64_t count, double margin) = 0;
};
ChoiceObserver* choice_observer();
void set_choice_observer(ChoiceObserver* observer);  // null to stop observing
// Called by ops that make discrete choices; free when no observer is set.
inline void note_choice(const char* op, const int64_t* chosen, int64_t count, double margin) {
  if (ChoiceObserver* observer = choice_observer()) observer->observe(op, chosen, count, margin);
}

}  // namespace tinymoe
