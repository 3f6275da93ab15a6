// SparseMoEBlock on cuda:0 against the same block (the same weights, loaded from its state_dict)
// on the cpu, for every router preset: the routing (pairs and selections exactly, pair weights
// and losses within tolerance), the output, tokens per expert and the diagnostics, and after one
// backward the gradient of x and of every parameter; f32 and f64, one sequence and a batch,
// dropless and with capacity (padding included), in eval and in training. Jitter, noise and
// GShard's coin flips come from one generator per device with the same seed, drawn on the host:
// the same numbers on both. Also DeepSeek-V3's bias update on the device, routers past the topk
// kernel's limits, optimizer steps on both devices, and bit-identical reruns on the GPU.
// Tolerances: docs/design.md's GEMM tolerance for f32 (the block is GEMMs end to end), 1e-12 for f64.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "graph_parity.h"
#include "nn/in_place.h"
#include "nn/moe_block.h"
#include "nn/optim.h"
#include "nn/router_presets.h"

using namespace cuda_test;
using namespace tinymoe::nn;
using Catch::Contains;

namespace {

constexpr Compare kGemm{false, kGemmF32};

struct BlockCase {
  std::string name;
  RouterConfig router;
  ExpertKind experts = ExpertKind::swiglu;
  SharedExpertKind shared = SharedExpertKind::none;
  bool training = false;
};

RouterConfig dropless(RouterConfig config) {
  config.capacity = CapacityConfig();
  return config;
}

RouterConfig padded(RouterConfig config) {
  config.capacity.pad_to_capacity = true;
  return config;
}

RouterConfig with_random_second_choice(RouterConfig config) {
  config.gshard_random_second_choice = true;
  return config;
}

RouterConfig with_masked_score(RouterConfig config, double masked_score) {
  config.masked_group_score = masked_score;
  return config;
}

// Every preset at E = 8, with capacity where it has one and dropless, in training where it draws
// random numbers.
std::vector<BlockCase> preset_cases() {
  const double minus_infinity = -std::numeric_limits<double>::infinity();
  return {
      {"mixtral", mixtral(8, 2)},
      {"switch capacity factor, training (jitter)", switch_transformer(8, CapacityConfig::factor(1.0)),
       ExpertKind::relu, SharedExpertKind::none, true},
      {"switch per-sequence capacity, padded", padded(switch_transformer(8, CapacityConfig::per_sequence_count(2))),
       ExpertKind::relu},
      {"switch dropless", dropless(switch_transformer(8, CapacityConfig::factor(1.0))), ExpertKind::relu},
      {"deepseek_v3 groups, bias, shared experts", deepseek_v3(8, 2, 4, 2), ExpertKind::swiglu,
       SharedExpertKind::ungated},
      {"deepseek_v3 groups masked with -inf", with_masked_score(deepseek_v3(8, 3, 4, 2), minus_infinity),
       ExpertKind::swiglu, SharedExpertKind::ungated},
      {"qwen2_moe gated shared expert", qwen2_moe(8, 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated},
      {"qwen2_moe normalised", qwen2_moe(8, 2, true), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated},
      {"gshard capacity", gshard(8, 1.0), ExpertKind::gelu},
      {"gshard random second choice, training", with_random_second_choice(gshard(8, 1.0)), ExpertKind::gelu,
       SharedExpertKind::none, true},
      {"gshard dropless", dropless(gshard(8, 1.0)), ExpertKind::gelu},
      {"noisy_topk eval", noisy_topk(8, 2)},
      {"noisy_topk training (noise)", noisy_topk(8, 2), ExpertKind::swiglu, SharedExpertKind::none, true},
      {"expert_choice", expert_choice(8, 2.0), ExpertKind::relu},
      {"top_p 0.5 of up to 4", top_p(8, 0.5, 4)},
      {"sinkhorn top-2 eval", sinkhorn(8, 2)},
      {"llama4 weights on the expert input, shared expert", llama4(8, 1), ExpertKind::swiglu,
       SharedExpertKind::ungated},
      {"gpt_oss router bias, clamped SwiGLU experts with biases", gpt_oss(8, 2), ExpertKind::gpt_oss},
      {"remoe relu routing with its l1 loss, shared expert", remoe(8, 2), ExpertKind::swiglu, SharedExpertKind::ungated},
  };
}

SparseMoEConfig block_config(const BlockCase& c, DType dtype, int64_t hidden_size = 16) {
  SparseMoEConfig config;
  config.num_experts = c.router.num_experts;
  config.hidden_size = hidden_size;
  config.intermediate_size = 12;
  config.expert_kind = c.experts;
  config.shared = {c.shared, c.shared == SharedExpertKind::ungated ? 2 : 1, 8};
  config.router = c.router;
  config.dtype = dtype;
  return config;
}

// Gives the router state that starts at zero something to do: a DeepSeek-V3 selection bias and
// a noisy-top-k noise weight.
void perturb_router_state(Router& router, uint64_t seed) {
  NoGradGuard no_grad;
  if (router.config().selection_bias)
    write_values(router.e_score_correction_bias(), mul(random_input({router.num_experts()}, DType::f32, seed), 0.1),
                 "test");
  if (router.config().noisy_gating)
    write_values(router.noise_weight(), mul(random_input(router.noise_weight().shape(), router.dtype(), seed + 1), 0.5),
                 "test");
}

struct BlockPair {
  std::shared_ptr<SparseMoEBlock> cpu, gpu;
};

// A block on the cpu, and the same block on the GPU: built elsewhere, moved with to(), then
// loaded from the cpu block's state_dict (cpu tensors copied into cuda parameters and buffers).
BlockPair make_blocks(const SparseMoEConfig& config, bool training, uint64_t seed) {
  Generator cpu_init(seed), gpu_init(seed + 1);
  BlockPair blocks{std::make_shared<SparseMoEBlock>(config, &cpu_init),
                   std::make_shared<SparseMoEBlock>(config, &gpu_init)};
  perturb_router_state(*blocks.cpu->gate(), seed + 2);
  blocks.gpu->to(kGpu);
  blocks.gpu->load_state_dict(blocks.cpu->state_dict());
  blocks.cpu->train(training);
  blocks.gpu->train(training);
  return blocks;
}

struct BlockRun {
  MoEOutput out;
  Tensor x_grad;
  NamedTensors grads;  // every parameter's gradient, by name
};

// One forward from x (a cpu tensor, copied to the block's device) with a routing generator seeded
// `routing_seed`, then a backward of sum(output * grad_output) + the routing's weighted loss.
BlockRun run_block(SparseMoEBlock& block, const Tensor& x_host, const Tensor& grad_output_host, uint64_t routing_seed) {
  const Device device = block.device();
  Tensor x = x_host.clone().to(device);
  x.requires_grad_();
  Generator routing_generator(routing_seed);
  block.set_routing_generator(&routing_generator);
  block.zero_grad();
  BlockRun run;
  run.out = block.forward(x);
  block.set_routing_generator(nullptr);
  add(sum(mul(run.out.output, grad_output_host.to(device))), run.out.routing.weighted_loss()).backward();
  run.x_grad = x.grad();
  for (const auto& entry : block.named_parameters()) run.grads.emplace_back(entry.first, entry.second.grad());
  return run;
}

void check_same_routing(const Routing& gpu, const Routing& cpu, Compare compare) {
  check_close(gpu.expert_index, cpu.expert_index, kExact, "expert_index");
  check_close(gpu.pair_token, cpu.pair_token, kExact, "pair_token");
  check_close(gpu.pair_expert, cpu.pair_expert, kExact, "pair_expert");
  check_close(gpu.pair_weight, cpu.pair_weight, compare, "pair_weight");
  check_close(gpu.router_logits, cpu.router_logits, compare, "router_logits");
  check_close(gpu.scores, cpu.scores, compare, "scores");
  CHECK(gpu.routed_pairs == cpu.routed_pairs);
  CHECK(gpu.dropped_pairs == cpu.dropped_pairs);
  CHECK(gpu.padded_pairs == cpu.padded_pairs);
  CHECK(gpu.capacity == cpu.capacity);
  REQUIRE(gpu.losses.size() == cpu.losses.size());
  for (const auto& entry : cpu.losses) {
    REQUIRE(gpu.losses.count(entry.first) == 1);
    check_close(gpu.losses.at(entry.first), entry.second, compare, "loss " + entry.first);
  }
}

// The counts are integers computed from the same pairs: equal. The entropy is summed on each
// device from scores that differ by rounding.
void check_same_diagnostics(const RoutingDiagnostics& gpu, const RoutingDiagnostics& cpu, double tolerance) {
  CHECK(gpu.tokens_per_expert == cpu.tokens_per_expert);
  CHECK(gpu.max_load == cpu.max_load);
  CHECK(gpu.mean_load == cpu.mean_load);
  CHECK(gpu.coefficient_of_variation == cpu.coefficient_of_variation);
  CHECK(gpu.dropped_fraction == cpu.dropped_fraction);
  CHECK(gpu.dead_experts == cpu.dead_experts);
  CHECK(gpu.collapsed == cpu.collapsed);
  CHECK(gpu.selection_bias == cpu.selection_bias);
  CHECK(std::abs(gpu.router_entropy - cpu.router_entropy) <= tolerance * std::abs(cpu.router_entropy));
}

void check_same_run(const BlockRun& gpu, const BlockRun& cpu, DType dtype) {
  check_same_routing(gpu.out.routing, cpu.out.routing, kGemm);
  check_close(gpu.out.output, cpu.out.output, kGemm, "output");
  check_close(gpu.out.tokens_per_expert, cpu.out.tokens_per_expert, kExact, "tokens_per_expert");
  check_same_diagnostics(gpu.out.diagnostics, cpu.out.diagnostics, tolerance(dtype, kGemmF32));
  check_close(gpu.x_grad, cpu.x_grad, kGemm, "gradient of x");
  REQUIRE(gpu.grads.size() == cpu.grads.size());
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    REQUIRE(gpu.grads[i].first == cpu.grads[i].first);
    check_close(gpu.grads[i].second, cpu.grads[i].second, kGemm, "gradient of " + cpu.grads[i].first);
  }
}

// Both blocks on one input: x and the output gradient drawn from `seed`.
void check_block_parity(const BlockPair& blocks, const Shape& shape, DType dtype, uint64_t seed) {
  Tensor x = random_input(shape, dtype, seed);
  Tensor grad_output = random_input(shape, dtype, seed + 1);
  BlockRun cpu = run_block(*blocks.cpu, x, grad_output, seed + 2);
  BlockRun gpu = run_block(*blocks.gpu, x, grad_output, seed + 2);
  check_same_run(gpu, cpu, dtype);
}

const std::vector<Shape> kShapes = {{16, 16}, {2, 8, 16}};

}  // namespace

TEST_CASE("cuda moe block: every preset on the GPU matches the same block on the CPU, forward and backward",
          "[cuda][moe_block]") {
  uint64_t seed = 9000;
  for (DType dtype : {DType::f32, DType::f64})
    for (const BlockCase& c : preset_cases()) {
      INFO(c.name << ", " << dtype_name(dtype));
      BlockPair blocks = make_blocks(block_config(c, dtype), c.training, seed += 10);
      for (const Shape& shape : kShapes) {
        INFO("x " << shape_str(shape));
        check_block_parity(blocks, shape, dtype, seed += 10);
      }
    }
}

TEST_CASE("cuda moe block: the parameters, buffers and outputs live on the GPU", "[cuda][moe_block]") {
  BlockCase c{"deepseek", deepseek_v3(8, 2, 4, 2), ExpertKind::swiglu, SharedExpertKind::ungated};
  BlockPair blocks = make_blocks(block_config(c, DType::f32), false, 9500);
  CHECK(blocks.gpu->device() == kGpu);
  for (const auto& entry : blocks.gpu->state_dict()) {
    INFO(entry.first);
    CHECK(entry.second.device() == kGpu);
  }
  MoEOutput out = blocks.gpu->forward(random_input({16, 16}, DType::f32, 9501).to(kGpu));
  for (const Tensor* t : {&out.output, &out.tokens_per_expert, &out.routing.pair_token, &out.routing.pair_expert,
                          &out.routing.pair_weight, &out.routing.expert_index, &out.routing.scores})
    CHECK(t->device() == kGpu);
  CHECK(out.routing.weighted_loss().device() == kGpu);
}

TEST_CASE("cuda moe block: DeepSeek-V3 bias updates on the device follow the CPU's", "[cuda][moe_block]") {
  BlockCase c{"deepseek", deepseek_v3(8, 2, 4, 2), ExpertKind::swiglu, SharedExpertKind::ungated};
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype));
    BlockPair blocks = make_blocks(block_config(c, dtype), true, 9600);
    Tensor x = random_input({2, 8, 16}, dtype, 9601), grad_output = random_input({2, 8, 16}, dtype, 9602);
    for (int step = 0; step < 4; ++step) {
      INFO("step " << step);
      BlockRun cpu = run_block(*blocks.cpu, x, grad_output, 9603);
      BlockRun gpu = run_block(*blocks.gpu, x, grad_output, 9603);
      check_same_run(gpu, cpu, dtype);
      blocks.cpu->update_bias(cpu.out, 0.05);
      blocks.gpu->update_bias(gpu.out, 0.05);
      const Tensor& bias = blocks.gpu->gate()->e_score_correction_bias();
      CHECK(bias.device() == kGpu);
      // The same counts move the bias by the same steps: bit-identical.
      check_close(bias, blocks.cpu->gate()->e_score_correction_bias(), kExact, "e_score_correction_bias");
    }
  }
}

TEST_CASE("cuda moe block: routers past the topk kernel's limits (k > 8, rows > 256) take the sort path",
          "[cuda][moe_block]") {
  uint64_t seed = 9700;
  // Expert choice over many tokens: capacity ceil(T * 2 / E) > 8, rows of T > 256.
  for (int64_t tokens : {64, 300}) {
    INFO("expert choice, T = " << tokens);
    BlockCase c{"expert_choice", expert_choice(8, 2.0), ExpertKind::relu};
    BlockPair blocks = make_blocks(block_config(c, DType::f32, 8), false, seed += 10);
    check_block_parity(blocks, {tokens, 8}, DType::f32, seed += 10);
  }
  // Token choice over 260 experts, 10 per token.
  BlockCase wide{"mixtral E = 260, k = 10", mixtral(260, 10)};
  BlockPair blocks = make_blocks(block_config(wide, DType::f64, 8), false, seed += 10);
  check_block_parity(blocks, {16, 8}, DType::f64, seed += 10);
}

TEST_CASE("cuda moe block: two runs on the GPU are bit-identical", "[cuda][moe_block]") {
  uint64_t seed = 9800;
  for (const BlockCase& c : preset_cases()) {
    INFO(c.name);
    BlockPair blocks = make_blocks(block_config(c, DType::f32), c.training, seed += 10);
    Tensor x = random_input({2, 8, 16}, DType::f32, seed + 1), grad_output = random_input({2, 8, 16}, DType::f32, seed + 2);
    BlockRun first = run_block(*blocks.gpu, x, grad_output, seed + 3);
    BlockRun second = run_block(*blocks.gpu, x, grad_output, seed + 3);
    check_close(second.out.output, first.out.output, kExact, "output");
    check_close(second.out.routing.pair_weight, first.out.routing.pair_weight, kExact, "pair_weight");
    for (const auto& entry : first.out.routing.losses)
      check_close(second.out.routing.losses.at(entry.first), entry.second, kExact, "loss " + entry.first);
    CHECK(second.out.diagnostics.router_entropy == first.out.diagnostics.router_entropy);
    check_close(second.x_grad, first.x_grad, kExact, "gradient of x");
    for (size_t i = 0; i < first.grads.size(); ++i)
      check_close(second.grads[i].second, first.grads[i].second, kExact, "gradient of " + first.grads[i].first);
  }
}

TEST_CASE("cuda moe block: optimizer steps on both devices stay together", "[cuda][moe_block][optim]") {
  struct OptimizerCase {
    const char* name;
    DType dtype;
    std::function<std::unique_ptr<Optimizer>(const TensorList&)> make;
  };
  // AdamW divides by sqrt(v): a gradient entry at rounding level steps by up to lr either way, so
  // its parity is checked in f64; SGD is linear in the gradient and checked in f32 as well.
  std::vector<OptimizerCase> optimizers = {
      {"AdamW", DType::f64,
       [](const TensorList& p) { return std::make_unique<AdamW>(p, AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.01}); }},
      {"SGD", DType::f32,
       [](const TensorList& p) { return std::make_unique<SGD>(p, SGDOptions{0.05, 0.9, 0.01}); }},
      {"SGD", DType::f64,
       [](const TensorList& p) { return std::make_unique<SGD>(p, SGDOptions{0.05, 0.9, 0.01}); }},
  };
  uint64_t seed = 9900;
  for (const OptimizerCase& o : optimizers)
    for (const BlockCase& c : {BlockCase{"qwen2_moe", qwen2_moe(8, 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated},
                               BlockCase{"switch", switch_transformer(8, CapacityConfig::factor(1.5)), ExpertKind::relu}}) {
      INFO(o.name << " " << dtype_name(o.dtype) << ", " << c.name);
      BlockPair blocks = make_blocks(block_config(c, o.dtype), false, seed += 10);
      std::unique_ptr<Optimizer> cpu_optimizer = o.make(blocks.cpu->parameters());
      std::unique_ptr<Optimizer> gpu_optimizer = o.make(blocks.gpu->parameters());
      for (int step = 0; step < 3; ++step) {
        Tensor x = random_input({16, 16}, o.dtype, seed + step), grad_output = random_input({16, 16}, o.dtype, seed + 5 + step);
        run_block(*blocks.cpu, x, grad_output, seed);
        run_block(*blocks.gpu, x, grad_output, seed);
        cpu_optimizer->step();
        gpu_optimizer->step();
      }
      NamedTensors cpu_parameters = blocks.cpu->named_parameters(), gpu_parameters = blocks.gpu->named_parameters();
      for (size_t i = 0; i < cpu_parameters.size(); ++i) {
        CHECK(gpu_parameters[i].second.device() == kGpu);
        check_close(gpu_parameters[i].second, cpu_parameters[i].second, kGemm, cpu_parameters[i].first);
      }
    }
}

TEST_CASE("cuda moe block: inputs on another device are an Error naming the block or the router",
          "[cuda][moe_block][errors]") {
  BlockCase c{"mixtral", mixtral(8, 2)};
  BlockPair blocks = make_blocks(block_config(c, DType::f32), false, 9990);
  Tensor x = random_input({16, 16}, DType::f32, 9991);
  CHECK_THROWS_WITH(blocks.gpu->forward(x), Contains("SparseMoEBlock") && Contains("cuda:0") && Contains("cpu"));
  CHECK_THROWS_WITH(blocks.cpu->forward(x.to(kGpu)), Contains("SparseMoEBlock") && Contains("device"));
  CHECK_THROWS_WITH(blocks.gpu->gate()->forward(x), Contains("Router") && Contains("device"));
  // A routing whose ids are out of range is caught on the device, naming the pair tensor.
  Routing routing = blocks.gpu->gate()->forward(x.to(kGpu));
  routing.pair_token = full(routing.pair_token.shape(), 16.0, DType::i64, kGpu);
  CHECK_THROWS_WITH(plan_dispatch(routing, 16, 8, DType::f32),
                    Contains("moe_dispatch") && Contains("pair_token") && Contains("out of range"));
}
