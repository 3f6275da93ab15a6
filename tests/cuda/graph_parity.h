// Runs one autograd graph on the CPU and on the GPU and compares them: the output, and the
// gradient of every floating input after a backward from one random output gradient (the same
// values on both devices). The ops' cuda paths are checked against their CPU paths, forward and
// backward through the tape (ggml's test-backend-ops, with a gradient mode).
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "parity.h"

namespace cuda_test {

using GraphFn = std::function<Tensor(const TensorList&)>;

// Indices uniform in [0, bound), of any shape.
inline Tensor random_ids(const Shape& shape, int64_t bound, uint64_t seed) {
  Generator generator(seed);
  return randint(0, bound, shape, &generator);
}

struct GraphRun {
  Tensor output;
  TensorList grads;  // one per input; undefined for inputs without a gradient
};

// How a parity check compares: exactly (indices, counts, moves of values, the deterministic
// scatter sums), or by relative error at docs/design.md's tolerance for f32 work (f64 is held to 1e-12).
struct Compare {
  bool exact = false;
  double f32_tolerance = kElementwiseF32;
};
inline constexpr Compare kExact{true, 0.0};
inline constexpr Compare kElementwise{false, kElementwiseF32};

// Copies inputs (cpu tensors) to `device`; floating ones in `differentiable` (all floating ones
// when empty) become leaves requiring grad. Runs fn, then backward with grad_output when the
// output is floating and anything requires grad.
inline GraphRun run_graph(const GraphFn& fn, const TensorList& inputs, Device device, const Tensor& grad_output,
                          const std::vector<bool>& differentiable = {}) {
  TensorList on_device;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor copy = inputs[k].detach().to(device);
    bool wanted = differentiable.empty() || differentiable[k];
    if (wanted && is_floating(copy.dtype())) copy.requires_grad_();
    on_device.push_back(copy);
  }
  GraphRun run{fn(on_device), {}};
  if (run.output.requires_grad()) run.output.backward(grad_output.to(device));
  for (const Tensor& input : on_device) run.grads.push_back(input.requires_grad() ? input.grad() : Tensor());
  return run;
}

inline void check_close(const Tensor& actual, const Tensor& expected, Compare compare, const std::string& what) {
  INFO(what);
  REQUIRE(actual.defined() == expected.defined());
  if (!expected.defined()) return;
  CHECK(actual.device() == kGpu);
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(actual.dtype() == expected.dtype());
  if (compare.exact || expected.dtype() == DType::i64) {
    if (expected.dtype() == DType::i64) CHECK(actual.to_vector<int64_t>() == expected.to_vector<int64_t>());
    else CHECK(host_values(actual) == host_values(expected));
    return;
  }
  CHECK(relative_error(actual, expected) <= tolerance(expected.dtype(), compare.f32_tolerance));
}

// The output and every input's gradient of fn on the GPU against the CPU. `forward` and
// `backward` say how each is compared. Returns the GPU run (for further checks).
inline GraphRun check_graph(const GraphFn& fn, const TensorList& inputs, Compare forward, Compare backward,
                            uint64_t seed, const std::vector<bool>& differentiable = {}) {
  Tensor probe = run_graph(fn, inputs, Device::cpu(), Tensor(), std::vector<bool>(inputs.size(), false)).output;
  Tensor grad_output = is_floating(probe.dtype()) ? random_input(probe.shape(), probe.dtype(), seed) : Tensor();
  GraphRun cpu = run_graph(fn, inputs, Device::cpu(), grad_output, differentiable);
  GraphRun gpu = run_graph(fn, inputs, kGpu, grad_output, differentiable);
  check_close(gpu.output, cpu.output, forward, "output");
  for (size_t k = 0; k < inputs.size(); ++k)
    check_close(gpu.grads[k], cpu.grads[k], backward, "gradient of input " + std::to_string(k));
  return gpu;
}

}  // namespace cuda_test
