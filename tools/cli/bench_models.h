// The models the `tinymoe bench` commands time side by side: a MoE layer's shape, the dense SwiGLU
// MLP of equal GEMM FLOPs it is compared with, and the input of one training step. Shared by
// bench moe (bench_moe.cpp) and bench ep (bench_ep.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "nn/moe_block.h"
#include "tinymoe/random.h"
#include "tinymoe/tensor.h"

namespace tinymoe::cli {

// T tokens of width d, E SwiGLU experts of width f, each token routed to top_k of them.
struct MoeShape {
  std::string name;
  int64_t tokens, d_model, d_ff, experts, top_k;
  bool gpu_sized = false;  // run by default on cuda only (named with --shape, it runs anywhere)

  int64_t dense_ff() const { return top_k * d_ff; }  // the dense MLP's width: equal FLOPs
  double gemm_flops() const { return 2.0 * tokens * top_k * d_model * d_ff; }  // one projection, forward
  double step_flops() const { return 9 * gemm_flops(); }  // 3 forward + 6 backward GEMMs
  std::string str() const;        // "name: T=.. d=.. f=.. E=.. k=.."
  std::string dense_str() const;  // "name dense: T=.. d=.. f=.."
};

// What one training step of either model needs: the input, the output gradient, the leaves.
struct Workload {
  Tensor x;            // [T, d], requires grad (the previous layer's output in a real model)
  Tensor grad_output;  // [T, d]
};

// Random f32 x and output gradient of `shape` on `device`, drawn on the cpu from `generator`.
Workload make_workload(const MoeShape& shape, Generator* generator, Device device);

// Dense SwiGLU MLP of width k f: (silu(x W1) * (x W3)) W2, through matmul (ops/gemm.h) and the
// same fused swiglu as the experts.
struct DenseSwiGLU {
  Tensor w1, w3, w2;

  // Drawn on the cpu (the same values on every device), then put on `device`.
  DenseSwiGLU(const MoeShape& shape, Generator* generator, Device device);
  Tensor forward(const Tensor& x) const;
  void zero_grad();
};

// f32 SwiGLU experts of `shape` with Mixtral's top-k softmax routing.
nn::SparseMoEConfig block_config(const MoeShape& shape);

// One training step of the dense MLP, the gradients dropped afterwards (as zero_grad does), so
// every step allocates them afresh.
std::function<void()> dense_step(DenseSwiGLU& dense, Workload& work);

}  // namespace tinymoe::cli
