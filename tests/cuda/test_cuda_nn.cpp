// The nn pieces a SparseMoEBlock touches, on cuda tensors against the cpu: Module::to (handles,
// names, gradients, tied weights, the way back), load_state_dict across devices, in-place writes,
// the optimizers and gradient clipping, the HF expert layout, and the routing parts (selections,
// capacity with every drop policy, GShard's coin flips, diagnostics) on inputs larger than the
// block tests use. Selections, ids and counts must match exactly; values within docs/design.md's
// tolerances.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "graph_parity.h"
#include "nn/diagnostics.h"
#include "nn/experts.h"
#include "nn/in_place.h"
#include "nn/moe_block.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "nn/routing_parts.h"
#include "ops/softmax.h"

using namespace cuda_test;
using namespace tinymoe::nn;
using Catch::Contains;

namespace {

constexpr Compare kGemm{false, kGemmF32};

SparseMoEConfig deepseek_block(DType dtype) {
  SparseMoEConfig config;
  config.num_experts = 8;
  config.hidden_size = 6;
  config.intermediate_size = 5;
  config.shared = {SharedExpertKind::ungated, 2, 3};
  config.router = deepseek_v3(8, 2, 4, 2);
  config.dtype = dtype;
  return config;
}

// Two linears holding one weight tensor (an LM head tied to an embedding, in miniature).
struct TiedPair : Module {
  std::shared_ptr<Linear> first, second;
  explicit TiedPair(const Tensor& weight)
      : first(register_module("first", std::make_shared<Linear>(weight))),
        second(register_module("second", std::make_shared<Linear>(weight))) {}
};

// Softmax scores [T, E] from random logits.
Tensor random_scores(int64_t tokens, int64_t experts, DType dtype, uint64_t seed) {
  return softmax(random_input({tokens, experts}, dtype, seed), -1);
}

}  // namespace

TEST_CASE("cuda nn module: to(cuda) moves every parameter, buffer and gradient in place, and back",
          "[cuda][module]") {
  Generator generator(100);
  SparseMoEBlock block(deepseek_block(DType::f32), &generator);
  StateDict before = block.state_dict();
  std::vector<std::vector<double>> values_before;
  for (const auto& entry : before) values_before.push_back(host_values(entry.second));
  NamedTensors parameters = block.named_parameters();
  parameters[1].second.set_grad(ones_like(parameters[1].second));

  block.to(kGpu);
  NamedTensors moved = block.named_parameters();
  REQUIRE(moved.size() == parameters.size());
  for (size_t i = 0; i < moved.size(); ++i) {
    INFO(moved[i].first);
    CHECK(moved[i].first == parameters[i].first);
    CHECK(moved[i].second.impl() == parameters[i].second.impl());  // the same handle
    CHECK(moved[i].second.device() == kGpu);
    CHECK(moved[i].second.requires_grad());
    CHECK(moved[i].second.is_leaf());
  }
  CHECK(parameters[1].second.grad().device() == kGpu);
  CHECK(host_values(parameters[1].second.grad()) == std::vector<double>(parameters[1].second.numel(), 1.0));
  CHECK_FALSE(parameters[0].second.grad().defined());
  // Members see the move: the router's weight and bias, the shared expert's Linear.
  CHECK(block.gate()->weight().device() == kGpu);
  CHECK(block.gate()->e_score_correction_bias().device() == kGpu);
  CHECK(block.shared_expert()->gate_proj()->weight().device() == kGpu);
  StateDict after = block.state_dict();
  size_t i = 0;
  for (const auto& entry : after) {
    INFO(entry.first);
    CHECK(entry.second.device() == kGpu);
    CHECK(host_values(entry.second) == values_before[i++]);
  }

  block.to(Device::cpu());
  i = 0;
  for (const auto& entry : block.state_dict()) {
    CHECK(entry.second.device().is_cpu());
    CHECK(host_values(entry.second) == values_before[i++]);
  }
  CHECK(parameters[1].second.grad().device().is_cpu());
}

TEST_CASE("cuda nn module: tied weights still share one storage after to(cuda)", "[cuda][module]") {
  TiedPair tied(random_input({3, 4}, DType::f32, 110));
  REQUIRE(tied.parameters().size() == 1);
  tied.to(kGpu);
  CHECK(tied.first->weight().device() == kGpu);
  CHECK(tied.first->weight().storage() == tied.second->weight().storage());
  Tensor x = random_input({2, 4}, DType::f32, 111).to(kGpu);
  check_close(tied.second->forward(x), tied.first->forward(x), kExact, "tied outputs");
}

TEST_CASE("cuda nn module: load_state_dict copies between devices in both directions", "[cuda][module]") {
  Generator first_init(120), second_init(121);
  SparseMoEBlock source(deepseek_block(DType::f64), &first_init);
  SparseMoEBlock on_gpu(deepseek_block(DType::f64), &second_init);
  on_gpu.to(kGpu);
  on_gpu.load_state_dict(source.state_dict());  // cpu -> cuda
  StateDict expected = source.state_dict(), loaded = on_gpu.state_dict();
  for (const auto& entry : expected) check_close(loaded.at(entry.first), entry.second, kExact, entry.first);

  Generator third_init(122);
  SparseMoEBlock back(deepseek_block(DType::f64), &third_init);
  back.load_state_dict(on_gpu.state_dict());  // cuda -> cpu
  for (const auto& entry : back.state_dict()) {
    CHECK(entry.second.device().is_cpu());
    CHECK(host_values(entry.second) == host_values(expected.at(entry.first)));
  }
  on_gpu.load_state_dict(on_gpu.state_dict());  // onto itself: unchanged
  for (const auto& entry : expected) check_close(on_gpu.state_dict().at(entry.first), entry.second, kExact, entry.first);
}

TEST_CASE("cuda nn in_place: write_values writes a range of a device tensor from either device", "[cuda][in_place]") {
  Tensor destination = zeros({2, 3}, DType::f64, kGpu);
  write_values(destination, from_vector(std::vector<double>{1, 2}, {2}), "test", 1);
  write_values(destination, from_vector(std::vector<double>{7}, {1}).to(kGpu), "test", 5);
  CHECK(host_values(destination) == std::vector<double>{0, 1, 2, 0, 0, 7});
  Tensor host = zeros({3}, DType::f64);
  write_values(host, slice(destination.flatten(), 0, 1, 4), "test");
  CHECK(host_values(host) == std::vector<double>{1, 2, 0});
  CHECK_THROWS_WITH(write_values(destination, ones({2}, DType::f64), "test", 5), Contains("test"));
}

TEST_CASE("cuda nn optim: SGD, AdamW and clip_grad_norm on cuda parameters follow the cpu", "[cuda][optim]") {
  uint64_t seed = 200;
  for (DType dtype : {DType::f32, DType::f64})
    for (int which = 0; which < 3; ++which) {
      INFO(dtype_name(dtype) << ", optimizer " << which);
      TensorList cpu_parameters, gpu_parameters;
      for (const Shape& shape : {Shape{4, 5}, Shape{7}}) {
        Tensor values = random_input(shape, dtype, ++seed);
        cpu_parameters.push_back(values.clone().requires_grad_());
        gpu_parameters.push_back(values.to(kGpu).requires_grad_());
      }
      auto make = [&](const TensorList& p) -> std::unique_ptr<Optimizer> {
        if (which == 0) return std::make_unique<SGD>(p, SGDOptions{0.1, 0.0, 0.0});
        if (which == 1) return std::make_unique<SGD>(p, SGDOptions{0.1, 0.9, 0.05});
        return std::make_unique<AdamW>(p, AdamWOptions{0.01, 0.9, 0.99, 1e-8, 0.1});
      };
      std::unique_ptr<Optimizer> cpu_optimizer = make(cpu_parameters), gpu_optimizer = make(gpu_parameters);
      for (int step = 0; step < 3; ++step) {
        for (size_t i = 0; i < cpu_parameters.size(); ++i) {
          Tensor gradient = random_input(cpu_parameters[i].shape(), dtype, ++seed);
          cpu_parameters[i].set_grad(gradient.clone());
          gpu_parameters[i].set_grad(gradient.to(kGpu));
        }
        Tensor gpu_gradient = gpu_parameters[0].grad();
        double cpu_norm = clip_grad_norm(cpu_parameters, 1.5);
        double gpu_norm = clip_grad_norm(gpu_parameters, 1.5);
        CHECK(std::abs(gpu_norm - cpu_norm) <= tolerance(dtype, kElementwiseF32) * cpu_norm);
        CHECK(gpu_parameters[0].grad().storage() == gpu_gradient.storage());  // clipped in place
        for (size_t i = 0; i < cpu_parameters.size(); ++i)
          check_close(gpu_parameters[i].grad(), cpu_parameters[i].grad(), kElementwise, "clipped gradient");
        cpu_optimizer->step();
        gpu_optimizer->step();
      }
      for (size_t i = 0; i < cpu_parameters.size(); ++i)
        check_close(gpu_parameters[i], cpu_parameters[i], kElementwise, "parameter " + std::to_string(i));
    }
}

TEST_CASE("cuda nn optim: optimizer state saved on one device continues the run on the other", "[cuda][optim]") {
  uint64_t seed = 400;
  for (bool from_gpu : {true, false}) {
    INFO((from_gpu ? "cuda -> cpu" : "cpu -> cuda"));
    Device source_device = from_gpu ? kGpu : Device::cpu(), target_device = from_gpu ? Device::cpu() : kGpu;
    Tensor values = random_input({4, 5}, DType::f64, ++seed);
    Tensor source = values.to(source_device).requires_grad_(), target = values.to(target_device).requires_grad_();
    AdamW source_optimizer({source}, AdamWOptions{0.01, 0.9, 0.99, 1e-8, 0.1});
    for (int step = 0; step < 2; ++step) {
      source.set_grad(random_input({4, 5}, DType::f64, ++seed).to(source_device));
      source_optimizer.step();
    }
    write_values(target, source.detach(), "test");
    AdamW target_optimizer({target}, AdamWOptions{0.01, 0.9, 0.99, 1e-8, 0.1});
    target_optimizer.load_state_dict(source_optimizer.state_dict());
    CHECK(target_optimizer.state_dict().at("0.exp_avg").device() == target_device);
    CHECK(target_optimizer.step_count(0) == 2);
    Tensor gradient = random_input({4, 5}, DType::f64, ++seed);
    source.set_grad(gradient.to(source_device));
    target.set_grad(gradient.to(target_device));
    source_optimizer.step();
    target_optimizer.step();
    // The same update on either device, compared as every optimizer parity test compares.
    check_close(from_gpu ? source : target, from_gpu ? target : source, kElementwise, "parameter after the third step");
  }
}

TEST_CASE("cuda nn optim: optimizer state left on another device is an Error naming the optimizer",
          "[cuda][optim][errors]") {
  Tensor parameter = random_input({1, 3}, DType::f32, 300).requires_grad_();
  AdamW adamw({parameter});
  SGD sgd({parameter}, SGDOptions{0.1, 0.9, 0.0});
  parameter.set_grad(ones_like(parameter));
  adamw.step();
  sgd.step();
  Linear holder(parameter);  // a module holding the parameter, moved after the first step
  holder.to(kGpu);
  CHECK_THROWS_WITH(adamw.step(), Contains("AdamW") && Contains("optimizer state") && Contains("cpu"));
  CHECK_THROWS_WITH(sgd.step(), Contains("SGD") && Contains("optimizer state"));
}

TEST_CASE("cuda nn experts: the HF layout is read and written on the device", "[cuda][experts]") {
  Generator init(400);
  SwiGLUExperts cpu_experts(3, 4, 5, &init, DType::f64);
  Generator same_init(400);
  SwiGLUExperts gpu_experts(3, 4, 5, &same_init, DType::f64);
  gpu_experts.to(kGpu);
  Tensor w1 = random_input({5, 4}, DType::f32, 401), w3 = random_input({5, 4}, DType::f64, 402);
  Tensor w2 = random_input({4, 5}, DType::f64, 403);
  cpu_experts.load_expert_from_hf(1, w1, w3, w2);
  gpu_experts.load_expert_from_hf(1, w1, w3.to(kGpu), w2);  // from the host and from the device
  for (const auto& name_weight : {std::make_pair("w1", 0), std::make_pair("w3", 1), std::make_pair("w2", 2)}) {
    INFO(name_weight.first);
    Tensor cpu_stack = cpu_experts.parameters()[name_weight.second];
    Tensor gpu_stack = gpu_experts.parameters()[name_weight.second];
    check_close(gpu_stack, cpu_stack, kExact, "stacked weights");
    for (int64_t expert = 0; expert < 3; ++expert)
      check_close(expert_weight_to_hf(gpu_stack, expert), expert_weight_to_hf(cpu_stack, expert), kExact, "HF layout");
  }
}

TEST_CASE("cuda nn routing parts: selections on the device choose what the cpu chooses", "[cuda][routing]") {
  uint64_t seed = 500;
  const double minus_infinity = -std::numeric_limits<double>::infinity();
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype));
    Tensor scores = random_scores(40, 64, dtype, ++seed), bias = mul(random_input({64}, DType::f32, ++seed), 0.01);
    Tensor gpu_scores = scores.to(kGpu), gpu_bias = bias.to(kGpu);
    for (double masked : {0.0, minus_infinity}) {
      INFO("masked score " << masked);
      check_close(select_group_limited_topk(gpu_scores, 8, 8, 4, gpu_bias, masked),
                  select_group_limited_topk(scores, 8, 8, 4, bias, masked), kExact, "group-limited top-k");
    }
    // Past the topk kernel's limits: rows of 300 experts, k = 12; expert choice of 20 tokens of 300.
    Tensor wide = random_scores(30, 300, dtype, ++seed);
    check_close(select_topk(wide.to(kGpu), 12), select_topk(wide, 12), kExact, "top-12 of 300");
    check_close(select_topk(gpu_scores, 8, gpu_bias), select_topk(scores, 8, bias), kExact, "top-8 of 64 with bias");
    Tensor many_tokens = random_scores(300, 8, dtype, ++seed);
    check_close(select_expert_choice(many_tokens.to(kGpu), 20), select_expert_choice(many_tokens, 20), kExact,
                "expert choice of 20");
    check_close(select_expert_choice(many_tokens.to(kGpu), 0), select_expert_choice(many_tokens, 0), kExact,
                "expert choice of none");
    // Sinkhorn's plan sums in another order on the GPU, so it is close rather than equal. A
    // tolerance below what f32 reaches runs both for the same 200 rounds: with the default one the
    // two could stop a round apart, a difference of the tolerance's size.
    Tensor logits = random_input({300, 8}, dtype, ++seed);
    check_close(sinkhorn_plan(logits.to(kGpu), 1e-12, 200), sinkhorn_plan(logits, 1e-12, 200), kElementwise,
                "Sinkhorn plan");
  }
}

TEST_CASE("cuda nn routing parts: capacity on device selections keeps what the cpu keeps", "[cuda][routing]") {
  uint64_t seed = 600;
  const int64_t tokens = 48, experts = 6, k = 2;
  Tensor scores = random_scores(tokens, experts, DType::f32, ++seed);
  Tensor expert_index = select_topk(scores, k);
  Tensor weights = gather_selected(scores, expert_index);
  Generator coins(seed), same_coins(seed);
  Tensor active = gshard_second_choice_mask(weights, &coins);
  Tensor gpu_active = gshard_second_choice_mask(weights.to(kGpu), &same_coins);
  check_close(gpu_active, active, kExact, "GShard second-choice flags");
  for (DropPolicy policy : {DropPolicy::position, DropPolicy::token_position, DropPolicy::probability})
    for (bool per_sequence : {false, true})
      for (bool pad : {false, true})
        for (bool with_active : {false, true}) {
          INFO(drop_policy_name(policy) << (per_sequence ? ", per sequence" : "") << (pad ? ", padded" : "")
                                        << (with_active ? ", active flags" : ""));
          CapacityConfig capacity = per_sequence ? CapacityConfig::per_sequence_count(3, policy)
                                                 : CapacityConfig::factor(1.0, policy);
          capacity.pad_to_capacity = pad;
          CapacityResult cpu = apply_capacity(expert_index, weights, experts, capacity, 12,
                                              with_active ? active : Tensor());
          CapacityResult gpu = apply_capacity(expert_index.to(kGpu), weights.to(kGpu), experts, capacity, 12,
                                              with_active ? gpu_active : Tensor());
          check_close(gpu.pairs.token, cpu.pairs.token, kExact, "pair tokens");
          check_close(gpu.pairs.expert, cpu.pairs.expert, kExact, "pair experts");
          check_close(gpu.pairs.weight, cpu.pairs.weight, kExact, "pair weights");
          check_close(gpu.kept, cpu.kept, kExact, "kept flags");
          CHECK(gpu.capacity == cpu.capacity);
          CHECK(gpu.routed == cpu.routed);
          CHECK(gpu.dropped == cpu.dropped);
          CHECK(gpu.padded == cpu.padded);
        }
  CapacityResult everything = apply_capacity(expert_index.to(kGpu), weights.to(kGpu), experts, CapacityConfig());
  check_close(everything.kept, ones({tokens, k}, DType::i64), kExact, "dropless flags");
  CHECK_THROWS_WITH(apply_capacity(expert_index.to(kGpu), weights.to(kGpu), 1, CapacityConfig()),
                    Contains("apply_capacity") && Contains("out of range"));
}

TEST_CASE("cuda nn diagnostics and losses: device routings give the cpu's numbers", "[cuda][diagnostics]") {
  uint64_t seed = 700;
  RouterConfig relu_routing = remoe(6, 2);
  relu_routing.l1_loss.coefficient = 0.5;  // a lambda the weighted loss shows
  for (const RouterConfig& config : {switch_transformer(6, CapacityConfig::per_sequence_count(3)), gshard(6, 1.0),
                                     noisy_topk(6, 2), deepseek_v3(6, 2, 3, 2), relu_routing}) {
    INFO(config.name);
    Tensor logits = random_input({24, 6}, DType::f64, ++seed), noise = random_input({24, 6}, DType::f64, ++seed);
    auto state = make_router_state(config);
    if (config.selection_bias) state->selection_bias = mul(random_input({6}, DType::f32, ++seed), 0.1);
    auto on_gpu = [](const Tensor& t) { return t.defined() ? t.to(kGpu) : Tensor(); };
    auto gpu_state = std::make_shared<RouterState>(RouterState{on_gpu(state->selection_bias), on_gpu(state->l1_coefficient)});
    Generator cpu_generator(seed), gpu_generator(seed);
    RoutingContext cpu_context{6, 12, true, &cpu_generator, noise};
    RoutingContext gpu_context{6, 12, true, &gpu_generator, noise.to(kGpu)};
    Routing cpu = make_rule(config, state)(logits, cpu_context);
    Routing gpu = make_rule(config, gpu_state)(logits.to(kGpu), gpu_context);
    check_close(gpu.pair_expert, cpu.pair_expert, kExact, "pair experts");
    for (const auto& entry : cpu.losses) check_close(gpu.losses.at(entry.first), entry.second, kGemm, entry.first);
    check_close(gpu.weighted_loss(), cpu.weighted_loss(), kGemm, "weighted loss");
    Tensor gpu_bias = config.selection_bias ? gpu_state->selection_bias : Tensor();
    RoutingDiagnostics d_cpu = diagnose(cpu, config.selection_bias ? state->selection_bias : Tensor());
    RoutingDiagnostics d_gpu = diagnose(gpu, gpu_bias);
    CHECK(d_gpu.tokens_per_expert == d_cpu.tokens_per_expert);
    CHECK(d_gpu.dropped_fraction == d_cpu.dropped_fraction);
    CHECK(d_gpu.selection_bias == d_cpu.selection_bias);
    CHECK(std::abs(d_gpu.router_entropy - d_cpu.router_entropy) <= kF64 * d_cpu.router_entropy);
  }
}
