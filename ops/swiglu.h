// swiglu: the gated activation of a SwiGLU MLP (Shazeer 2020, "GLU Variants Improve
// Transformer"; Mixtral's experts, Llama's MLP), fused into one op:
//
//   swiglu(gate, up) = silu(gate) * up = gate * sigmoid(gate) * up
//
// gate and up are the two input projections (x W1 and x W3), same shape, same floating dtype.
// One pass forward and one pass backward, computed in the tensors' own dtype: silu(gate) and
// the product are never stored, which saves two full-size buffers and two passes over them
// against silu() then mul(). Gradients, with s = sigmoid(gate) and g the output gradient:
//   d gate = g * up * s * (1 + gate * (1 - s))
//   d up   = g * gate * s
// Both inputs get gradients.
#pragma once

#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor swiglu(const Tensor& gate, const Tensor& up);

}  // namespace tinymoe
