// The small MoE language model (nn/moe_transformer.h) on the GPU against the same model on the
// CPU: a few training steps, each step's losses and logits, then every parameter; attention alone
// (its grouped GEMMs and the 4-D transposes) forward and backward.
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graph_parity.h"
#include "nn/attention.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using namespace cuda_test;

namespace {

constexpr Compare kGemm{false, kGemmF32};

// Wider than the CPU tests' model, so the GPU kernels see more than one tile.
MoETransformerConfig small_model(const RouterConfig& router, DType dtype) {
  MoETransformerConfig config = tinymoe::testing::tiny_lm_config(router, dtype, 2, /*vocabulary=*/11, /*length=*/8);
  config.num_heads = 4;
  config.moe.hidden_size = 16;
  config.moe.intermediate_size = 12;
  return config;
}

}  // namespace

TEST_CASE("cuda attention: the GPU's causal self-attention matches the CPU forward and backward",
          "[cuda][attention]") {
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype));
    Generator generator(9700);
    CausalSelfAttention cpu(16, 4, &generator, dtype);
    CausalSelfAttention gpu(16, 4, nullptr, dtype);
    gpu.load_state_dict(cpu.state_dict());
    gpu.to(kGpu);
    Tensor x = random_input({3, 7, 16}, dtype, 9701), grad_output = random_input({3, 7, 16}, dtype, 9702);
    Tensor x_cpu = x.clone().requires_grad_(), x_gpu = x.to(kGpu).requires_grad_();
    Tensor y_cpu = cpu(x_cpu), y_gpu = gpu(x_gpu);
    check_close(y_gpu, y_cpu, kGemm, "output");
    y_cpu.backward(grad_output);
    y_gpu.backward(grad_output.to(kGpu));
    check_close(x_gpu.grad(), x_cpu.grad(), kGemm, "gradient of x");
    NamedTensors cpu_parameters = cpu.named_parameters(), gpu_parameters = gpu.named_parameters();
    for (size_t i = 0; i < cpu_parameters.size(); ++i)
      check_close(gpu_parameters[i].second.grad(), cpu_parameters[i].second.grad(), kGemm,
                  "gradient of " + cpu_parameters[i].first);
  }
}

TEST_CASE("cuda moe transformer: training steps on the GPU follow the same steps on the CPU",
          "[cuda][moe_transformer][optim]") {
  struct TrainingCase {
    const char* name;
    RouterConfig router;
    DType dtype;
    std::function<std::unique_ptr<Optimizer>(const TensorList&)> make;
  };
  // As in the block's optimizer test: AdamW divides by sqrt(v), so a gradient entry at rounding
  // level can step by up to lr either way; it is checked in f64, SGD in f32.
  auto adamw = [](const TensorList& p) { return std::make_unique<AdamW>(p, AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.01}); };
  auto sgd = [](const TensorList& p) { return std::make_unique<SGD>(p, SGDOptions{0.05, 0.9, 0.0}); };
  std::vector<TrainingCase> cases = {
      {"mixtral, AdamW", mixtral(8, 2), DType::f64, adamw},
      {"deepseek_v3 with bias updates, AdamW", deepseek_v3(8, 2, 4, 2), DType::f64, adamw},
      {"mixtral, SGD", mixtral(8, 2), DType::f32, sgd},
  };
  uint64_t seed = 9800;
  for (const TrainingCase& c : cases) {
    INFO(c.name << ", " << dtype_name(c.dtype));
    Generator cpu_generator(seed += 10), gpu_generator(seed);
    MoETransformer cpu(small_model(c.router, c.dtype), &cpu_generator);
    MoETransformer gpu(small_model(c.router, c.dtype), &gpu_generator);
    gpu.to(kGpu);
    std::unique_ptr<Optimizer> cpu_optimizer = c.make(cpu.parameters()), gpu_optimizer = c.make(gpu.parameters());
    for (int step = 0; step < 3; ++step) {
      INFO("step " << step);
      Tensor ids = random_ids({4, 8}, 11, seed + 2 * step), targets = random_ids({4, 8}, 11, seed + 2 * step + 1);
      cpu.zero_grad();
      gpu.zero_grad();
      LMOutput cpu_out = cpu(ids, targets), gpu_out = gpu(ids.to(kGpu), targets.to(kGpu));
      check_close(gpu_out.logits, cpu_out.logits, kGemm, "logits");
      check_close(gpu_out.loss, cpu_out.loss, kGemm, "loss");
      check_close(gpu_out.aux_loss, cpu_out.aux_loss, kGemm, "aux_loss");
      for (size_t l = 0; l < cpu_out.layers.size(); ++l)
        check_close(gpu_out.layers[l].tokens_per_expert, cpu_out.layers[l].tokens_per_expert, kExact, "loads");
      cpu_out.total_loss().backward();
      gpu_out.total_loss().backward();
      cpu_optimizer->step();
      gpu_optimizer->step();
      cpu.update_router_biases(cpu_out, 1e-3);
      gpu.update_router_biases(gpu_out, 1e-3);
    }
    NamedTensors cpu_parameters = cpu.named_parameters(), gpu_parameters = gpu.named_parameters();
    REQUIRE(cpu_parameters.size() == gpu_parameters.size());
    for (size_t i = 0; i < cpu_parameters.size(); ++i)
      check_close(gpu_parameters[i].second, cpu_parameters[i].second, kGemm, cpu_parameters[i].first);
    NamedTensors cpu_buffers = cpu.named_buffers(), gpu_buffers = gpu.named_buffers();
    for (size_t i = 0; i < cpu_buffers.size(); ++i)
      check_close(gpu_buffers[i].second, cpu_buffers[i].second, kGemm, cpu_buffers[i].first);
  }
}
