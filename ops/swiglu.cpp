#include "ops/swiglu.h"

#include "ops/cuda_dispatch.h"
#include "ops/swiglu_math.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/fused.h"
#endif

namespace tinymoe {
namespace {

constexpr const char* kOp = "swiglu";

void check_inputs(const Tensor& gate, const Tensor& up) {
  check_floating(gate, kOp, "gate");
  check_floating(up, kOp, "up");
  check_same_device(gate, up, kOp);
  check_has_kernel(gate, kOp);
  TINYMOE_CHECK(gate.dtype() == up.dtype(), kOp, "expected gate and up of one dtype, got ",
                dtype_name(gate.dtype()), " and ", dtype_name(up.dtype()));
  TINYMOE_CHECK(gate.shape() == up.shape(), kOp, "expected gate and up of one shape, got ",
                shape_str(gate.shape()), " and ", shape_str(up.shape()));
}

// d gate and d up (either may be skipped) in one pass over g, gate and up.
TensorList swiglu_backward(const Tensor& g, const Tensor& gate, const Tensor& up, bool grad_gate, bool grad_up) {
#ifdef TINYMOE_WITH_CUDA
  if (gate.device().is_cuda()) return cuda::swiglu_backward(g, gate, up, grad_gate, grad_up);
#endif
  Tensor d_gate = grad_gate ? Tensor::empty(gate.shape(), gate.dtype(), gate.device()) : Tensor();
  Tensor d_up = grad_up ? Tensor::empty(up.shape(), up.dtype(), up.device()) : Tensor();
  dispatch_floating(gate.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_backward_span(g.data<T>(), gate.data<T>(), up.data<T>(), grad_gate ? d_gate.data<T>() : nullptr,
                         grad_up ? d_up.data<T>() : nullptr, gate.numel());
  });
  return {d_gate, d_up};
}

}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_inputs(gate, up);
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (gate.device().is_cuda()) out = cuda::swiglu(gate, up);
  else
#endif
    dispatch_floating(gate.dtype(), kOp, [&](auto tag) {
      using T = typename decltype(tag)::type;
      out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
      swiglu_forward_span(gate.data<T>(), up.data<T>(), out.data<T>(), gate.numel());
    });
  if (needs_record({&gate, &up})) {
    bool grad_gate = gate.requires_grad(), grad_up = up.requires_grad();
    Tensor saved_gate = gate.detach(), saved_up = up.detach();
    record(kOp, {gate, up}, {out}, [=](const TensorList& grads) -> TensorList {
      return swiglu_backward(grads[0], saved_gate, saved_up, grad_gate, grad_up);
    });
  }
  return out;
}

}  // namespace tinymoe
