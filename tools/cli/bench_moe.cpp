// `tinymoe bench moe`: a SparseMoEBlock (nn/moe_block.h, SwiGLU experts, Mixtral routing) trained
// forward + backward, next to a dense SwiGLU MLP doing the same GEMM FLOPs, at a Mixtral-like shape
// (few wide experts) and a fine-grained one (many narrow experts, DeepSeek-style), f32; on cuda
// (--device) also at Mixtral 8x7B's layer sizes, and every shape in f32 then with TF32 GEMMs.
//
//  - GFLOP/s count only the expert GEMMs, the same count for both: 3 projections (w1, w3, w2) of
//    2 T k d f FLOPs forward, and two GEMMs per projection backward (input and weight gradient),
//    so 9 * 2 T k d f per step. The dense MLP has width k f, so its 9 GEMMs are the same FLOPs.
//    The gate GEMM, softmax, top-k and the permutation are not counted: they are the overhead.
//  - ratio = dense time / block time (per interleaved round, then the median; target >= 0.85).
//  - time split: the block's steps timed one by one, as SparseMoEBlock::forward runs them
//    (routing = gate GEMM + softmax + top-k + weights + aux loss; dispatch plan = argsort,
//    bincount, offsets; experts = Experts::forward_combined: the gather of token rows, the three
//    GEMMs, SwiGLU and the weighted combine, fused per expert on the cpu
//    (ops/moe_swiglu_experts.h); backward = all of it).
//  - routing + permutation forward + backward: the same block with the experts left out (y_perm =
//    x_perm), its share of the full block's time (target <= 10% on the cpu, <= 15% on cuda).
//  - peak memory: the most CPU tensor storage held at once during one step, minus what was held
//    before it (cpu_memory_stats: exact bytes of tensors, not RSS; weights and the input excluded,
//    weight gradients, activations and the tape's saved tensors included). On cuda: what the
//    caching allocator reserved during one step, starting from an empty cache (see
//    peak_mebibytes_of).
// On cuda every time is device time between CUDA events (LapTimer, tools/cli/bench_util.h).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nn/dispatch.h"
#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "ops/swiglu.h"
#include "tinymoe/autograd.h"
#include "tinymoe/random.h"
#include "tinymoe/storage.h"
#include "tinymoe/tensor.h"
#include "tools/cli/bench_device.h"
#include "tools/cli/bench_models.h"
#include "tools/cli/bench_util.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

struct BenchMoeOptions {
  BenchOptions common;
  std::string shape;  // run only the shape of this name; empty: all that suit the device
};

// mixtral-8x7b: Mixtral 8x7B's MoE layer (d=4096, f=14336, E=8, k=2) on 4096 tokens, 1024 pairs
// per expert at balanced load; an estimated 20 GiB on a GPU with the dense MLP beside it.
std::vector<MoeShape> moe_shapes(bool quick) {
  if (quick) return {{"mixtral-like", 128, 64, 128, 4, 2}, {"fine-grained", 128, 64, 32, 16, 4}};
  return {{"mixtral-like", 2048, 512, 1024, 8, 2},
          {"fine-grained", 2048, 512, 256, 64, 8},
          {"mixtral-8x7b", 4096, 4096, 14336, 8, 2, true}};
}

std::vector<std::string> shape_names() {
  std::vector<std::string> names;
  for (const MoeShape& shape : moe_shapes(false)) names.push_back(shape.name);
  return names;
}

// The shapes to run: the one named by --shape, else all that suit the device.
std::vector<MoeShape> selected_shapes(const BenchMoeOptions& options, Device device) {
  std::vector<MoeShape> selected;
  for (const MoeShape& shape : moe_shapes(options.common.quick))
    if (options.shape.empty() ? !shape.gpu_sized || device.is_cuda() : options.shape == shape.name)
      selected.push_back(shape);
  TINYMOE_CHECK(!selected.empty(), "bench moe", "shape ", options.shape, " has no --quick version");
  return selected;
}

// ---- the two models ----

// The block of `shape` with its parameters on `device`. The parameters are drawn on the cpu (the
// same values on every device); for cuda the block is then assembled from cuda copies of its
// parts (SparseMoEBlock(MoEParts)), the gate keeping its RouterConfig.
std::shared_ptr<nn::SparseMoEBlock> make_block(const MoeShape& shape, Generator* generator, Device device) {
  auto block = std::make_shared<nn::SparseMoEBlock>(block_config(shape), generator);
  if (device.is_cpu()) return block;
  auto experts = std::dynamic_pointer_cast<nn::SwiGLUExperts>(block->experts());
  TINYMOE_CHECK(experts != nullptr, "bench moe", "expected SwiGLU experts");
  auto on_device = [device](const Tensor& parameter) { return parameter.detach().to(device); };
  nn::MoEParts parts;
  parts.gate = std::make_shared<nn::Router>(block->gate()->config(), on_device(block->gate()->weight()));
  parts.experts = std::make_shared<nn::SwiGLUExperts>(on_device(experts->w1()), on_device(experts->w3()),
                                                      on_device(experts->w2()));
  return std::make_shared<nn::SparseMoEBlock>(parts);
}

// One training step of each, the gradients dropped afterwards (as zero_grad does), so every step
// allocates them afresh.
std::function<void()> block_step(nn::SparseMoEBlock& block, Workload& work) {
  return [&block, &work] {
    block.forward(work.x).output.backward(work.grad_output);
    block.zero_grad();
    work.x.zero_grad();
  };
}

// ---- the block's steps one by one ----

struct Phases {
  double routing = 0, plan = 0, experts = 0, backward = 0;
  double total() const { return routing + plan + experts + backward; }
};

// The routing, as SparseMoEBlock::forward computes it for a 2-D x (one sequence).
nn::Routing routing_of(const nn::SparseMoEBlock& block, const Tensor& x) {
  return block.gate()->forward(x, x.size(0));
}

nn::DispatchPlan plan_of(const nn::SparseMoEBlock& block, const nn::Routing& routing, const Tensor& x) {
  return nn::plan_dispatch(routing, x.size(0), block.num_experts(), x.dtype());
}

// SparseMoEBlock::forward's steps (no shared expert) with a lap after each, then backward.
Phases timed_block_step(nn::SparseMoEBlock& block, Workload& work, Device device) {
  Phases phases;
  {
    LapTimer timer(device);
    nn::Routing routing = routing_of(block, work.x);
    timer.lap();
    nn::DispatchPlan plan = plan_of(block, routing, work.x);
    timer.lap();
    Tensor y = block.experts()->forward_combined(work.x, plan);
    timer.lap();
    y.backward(work.grad_output);
    timer.lap();
    std::vector<double> laps = timer.seconds();  // routing, plan, experts (with gather and combine), backward
    phases = {laps[0], laps[1], laps[2], laps[3]};
  }
  block.zero_grad();
  work.x.zero_grad();
  return phases;
}

// The block without its experts (y_perm = x_perm): what routing and permutation cost forward and
// backward.
std::function<void()> routing_permutation_step(nn::SparseMoEBlock& block, Workload& work) {
  return [&block, &work] {
    nn::DispatchPlan plan = plan_of(block, routing_of(block, work.x), work.x);
    nn::combine_outputs(nn::dispatch_tokens(work.x, plan), plan).backward(work.grad_output);
    block.zero_grad();
    work.x.zero_grad();
  };
}

// ---- measurements ----

// The memory one step needs beyond what was held before it, in MiB. cpu: the most tensor bytes
// held at once (cpu_memory_stats' peak: exact). cuda: the caching allocator keeps no peak, but
// within a step its reserved bytes (blocks in use + cached) only grow, by a cudaMalloc whenever
// no cached block of the size class is free; so from an empty cache, the growth over a step is
// its peak reserved memory: in size classes (up to 25% above the tensors' bytes), an upper bound
// of the tensor bytes held at once.
double peak_mebibytes_of(const std::function<void()>& step, Device device) {
  const double mebibyte = 1024.0 * 1024.0;
  if (device.is_cpu()) {
    reset_cpu_peak_bytes();
    int64_t before = cpu_memory_stats().live_bytes;
    step();
    return static_cast<double>(cpu_memory_stats().peak_bytes - before) / mebibyte;
  }
  synchronize(device);
  cuda_release_cached_blocks();
  size_t before = cuda_reserved_bytes(device);
  step();
  synchronize(device);
  return static_cast<double>(cuda_reserved_bytes(device) - before) / mebibyte;
}

std::string peak_memory_metric(Device device) {
  return device.is_cuda() ? "peak memory (reserved), forward+backward" : "peak memory, forward+backward";
}

// max / mean of the kept pairs per expert: 1 is a perfectly balanced load.
double load_imbalance(const nn::SparseMoEBlock& block, const Tensor& x) {
  NoGradGuard no_grad;
  std::vector<int64_t> counts = plan_of(block, routing_of(block, x), x).tokens_per_expert.to_vector<int64_t>();
  double total = 0;
  for (int64_t count : counts) total += static_cast<double>(count);
  return static_cast<double>(*std::max_element(counts.begin(), counts.end())) / (total / counts.size());
}

std::vector<double> per_round(const std::vector<std::vector<double>>& seconds, size_t numerator, size_t denominator) {
  std::vector<double> ratios;
  for (size_t round = 0; round < seconds[0].size(); ++round)
    ratios.push_back(seconds[numerator][round] / seconds[denominator][round]);
  return ratios;
}

void report_split(Report& report, const MoeShape& shape, const std::string& path, const std::vector<Phases>& rounds) {
  auto median_of = [&](double Phases::*part) {
    std::vector<double> values;
    for (const Phases& phases : rounds) values.push_back(phases.*part);
    return median(values);
  };
  std::vector<double> forward_share;
  for (const Phases& phases : rounds) forward_share.push_back((phases.routing + phases.plan) / phases.total());
  report.add({"moe_block", "time: routing (forward)", median_of(&Phases::routing) * 1e3, "ms", shape.str(), path, {}});
  report.add({"moe_block", "time: dispatch plan (forward)", median_of(&Phases::plan) * 1e3, "ms", shape.str(), path,
              {}});
  report.add({"moe_block", "time: experts+gather+combine (forward)", median_of(&Phases::experts) * 1e3, "ms",
              shape.str(), path, {}});
  report.add({"moe_block", "time: backward", median_of(&Phases::backward) * 1e3, "ms", shape.str(), path, {}});
  report.add({"moe_block", "routing+plan fwd share", median(forward_share) * 100, "%", shape.str(), path, {}});
}

// Both models of one shape on one device.
struct Models {
  std::shared_ptr<nn::SparseMoEBlock> block;
  DenseSwiGLU dense;
  Workload work;
};

Models make_models(const MoeShape& shape, Device device) {
  Generator generator(0);
  auto block = make_block(shape, &generator, device);
  DenseSwiGLU dense(shape, &generator, device);
  Workload work = make_workload(shape, &generator, device);
  return {block, dense, work};
}

// The timed measurements of one shape, at the current GEMM precision.
void measure_times(const BenchMoeOptions& options, Device device, const MoeShape& shape, Models& models,
                   Report& report) {
  nn::SparseMoEBlock& block = *models.block;
  DenseSwiGLU& dense = models.dense;
  Workload& work = models.work;
  std::vector<Phases> phases;
  auto seconds = interleaved_seconds({block_step(block, work), dense_step(dense, work),
                                      routing_permutation_step(block, work),
                                      [&] { phases.push_back(timed_block_step(block, work, device)); }},
                                     options.common.repeats, 1, device);
  phases.erase(phases.begin());  // the warm-up round's
  const std::string path = gemm_path(device);
  const double flops = shape.step_flops();
  report.add({"moe_block", "forward+backward", gflops_per_second(flops, median(seconds[0])), "GFLOP/s", shape.str(),
              path, {}});
  report.add({"dense_swiglu", "forward+backward, equal FLOPs", gflops_per_second(flops, median(seconds[1])),
              "GFLOP/s", shape.dense_str(), path, {}});
  report.add({"moe_block", "forward+backward / dense", median(per_round(seconds, 1, 0)), "x", shape.str(), path,
              Target::at_least(0.85)});
  report_split(report, shape, path, phases);
  // On cuda the GEMMs are far faster than on the cpu while routing and permutation stay many small
  // kernels, so their share is allowed to be larger.
  Target share_target = Target::at_most(device.is_cuda() ? 15 : 10);
  report.add({"moe_block", "routing+permutation fwd+bwd share", median(per_round(seconds, 2, 0)) * 100, "%",
              shape.str(), path, share_target});
}

// Expert load and peak memory: the same at every GEMM precision, so measured once.
void measure_load_and_memory(Device device, const MoeShape& shape, Models& models, Report& report) {
  nn::SparseMoEBlock& block = *models.block;
  Workload& work = models.work;
  const std::string where = device.is_cuda() ? "cuda, " + cuda_device_name(device) : "";
  const std::string memory = peak_memory_metric(device);
  report.add({"moe_block", "expert load max/mean", load_imbalance(block, work.x), "x", shape.str(), where, {}});
  report.add({"moe_block", memory, peak_mebibytes_of(block_step(block, work), device), "MiB", shape.str(), where, {}});
  report.add({"dense_swiglu", memory, peak_mebibytes_of(dense_step(models.dense, work), device), "MiB",
              shape.dense_str(), where, {}});
}

// Times on cuda twice: f32 GEMMs, then TF32 tensor cores (separate rows, path "cublas tf32").
void bench_shape(const BenchMoeOptions& options, Device device, const MoeShape& shape, Report& report) {
  Models models = make_models(shape, device);
  if (device.is_cpu()) {
    measure_times(options, device, shape, models, report);
  } else {
    for (bool tf32 : {false, true}) {
      Tf32Guard precision(tf32);
      measure_times(options, device, shape, models, report);
    }
  }
  measure_load_and_memory(device, shape, models, report);
}

void run_bench_moe(const BenchMoeOptions& options) {
  const BenchOptions& common = options.common;
  Device device = prepare_bench_device(common);
  std::vector<MoeShape> shapes = selected_shapes(options, device);
  Report report(std::cout, common.json);
  std::ostringstream context;
  context << "tinymoe bench moe: f32 SwiGLU experts, Mixtral routing; median of " << common.repeats
          << " interleaved rounds after 1 warm-up; ";
  if (device.is_cuda())
    context << device.str() << " " << cuda_device_summary(device) << ", timed with CUDA events; f32 then TF32 GEMMs";
  else
    context << common.threads << " BLAS thread(s); GEMM path " << gemm_path(device);
  context << "; GFLOP/s count the expert GEMMs only (9 x 2 T k d f per step)"
          << (common.quick ? "; --quick shapes" : "");
  report.note(context.str());
  for (const MoeShape& shape : shapes) bench_shape(options, device, shape, report);
}

}  // namespace

void add_bench_moe(CLI::App& bench) {
  auto options = std::make_shared<BenchMoeOptions>();
  CLI::App* command = bench.add_subcommand(
      "moe", "SparseMoEBlock forward+backward vs a dense SwiGLU MLP of equal FLOPs: GFLOP/s, time split, peak memory");
  add_bench_options(*command, options->common);
  command->add_option("--shape", options->shape, "Run only this shape (mixtral-8x7b runs by default on cuda only)")
      ->check(CLI::IsMember(shape_names()));
  command->callback([options] { run_bench_moe(*options); });
}

}  // namespace tinymoe::cli
