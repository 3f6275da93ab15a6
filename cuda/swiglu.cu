// swiglu(gate, up) = silu(gate) * up (Shazeer 2020), forward and backward in one pass each, with
// the CPU's formulas: sigmoid(v) = 1 / (1 + e^-v).
#include "cuda/fused.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__device__ T sigmoid_of(T value) {
  return T(1) / (T(1) + exp(-value));
}

template <typename T>
__global__ void swiglu_kernel(const T* gate, const T* up, T* out, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) out[i] = gate[i] * sigmoid_of(gate[i]) * up[i];
}

// d_gate or d_up may be null (not wanted).
template <typename T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* d_gate, T* d_up, int64_t count) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    T s = sigmoid_of(gate[i]);
    if (d_up) d_up[i] = grad[i] * gate[i] * s;
    if (d_gate) d_gate[i] = grad[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
  }
}

void check_like(const Tensor& tensor, const Tensor& gate, const char* name) {
  check_cuda_tensor(tensor, "swiglu", name);
  check_same_device(tensor, gate, "swiglu");
  check_dtype(tensor, gate.dtype(), "swiglu", name);
  TINYMOE_CHECK(tensor.shape() == gate.shape(), "swiglu", "expected '", name, "' of gate's shape ",
                shape_str(gate.shape()), ", got ", shape_str(tensor.shape()));
}

template <typename T>
T* optional_data(const Tensor& tensor) {
  return tensor.defined() ? static_cast<T*>(tensor.raw_data()) : nullptr;
}

}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_cuda_tensor(gate, "swiglu", "gate");
  check_floating(gate, "swiglu", "gate");
  check_like(up, gate, "up");
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(gate.device());
  dispatch_floating(gate.dtype(), "swiglu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_kernel<<<grid_for(out.numel()), kBlockThreads>>>(static_cast<const T*>(gate.raw_data()),
                                                            static_cast<const T*>(up.raw_data()),
                                                            static_cast<T*>(out.raw_data()), out.numel());
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

TensorList swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up, bool want_gate, bool want_up) {
  check_cuda_tensor(gate, "swiglu", "gate");
  check_floating(gate, "swiglu", "gate");
  check_like(up, gate, "up");
  check_like(grad, gate, "grad");
  Tensor d_gate = want_gate ? Tensor::empty(gate.shape(), gate.dtype(), gate.device()) : Tensor();
  Tensor d_up = want_up ? Tensor::empty(up.shape(), up.dtype(), up.device()) : Tensor();
  if (gate.numel() == 0 || !(want_gate || want_up)) return {d_gate, d_up};
  DeviceGuard guard(gate.device());
  dispatch_floating(gate.dtype(), "swiglu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_backward_kernel<<<grid_for(gate.numel()), kBlockThreads>>>(
        static_cast<const T*>(grad.raw_data()), static_cast<const T*>(gate.raw_data()),
        static_cast<const T*>(up.raw_data()), optional_data<T>(d_gate), optional_data<T>(d_up), gate.numel());
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return {d_gate, d_up};
}

}  // namespace cuda
}  // namespace tinymoe
