// `tinymoe bench moe`: a SparseMoEBlock (nn/moe_block.h, SwiGLU experts, Mixtral routing) trained
// forward + backward, next to a dense SwiGLU MLP doing the same GEMM FLOPs, at a Mixtral-like shape
// (few wide experts) and a fine-grained one (many narrow experts, DeepSeek-style), f32.
//
//  - GFLOP/s count only the expert GEMMs, the same count for both: 3 projections (w1, w3, w2) of
//    2 T k d f FLOPs forward, and two GEMMs per projection backward (input and weight gradient),
//    so 9 * 2 T k d f per step. The dense MLP has width k f, so its 9 GEMMs are the same FLOPs.
//    The gate GEMM, softmax, top-k and the permutation are not counted: they are the overhead.
//  - ratio = dense time / block time (per interleaved round, then the median; target >= 0.85).
//  - time split: the block's steps timed one by one (routing = gate GEMM + softmax + top-k +
//    weights + aux loss; permutation = argsort, bincount, offsets, index_select and the
//    scatter_add combine; experts = the three grouped GEMMs and SwiGLU; backward = all of it).
//  - routing + permutation forward + backward: the same block with the experts left out (y_perm =
//    x_perm), its share of the full block's time (target <= 10%).
//  - peak memory: the most CPU tensor storage held at once during one step, minus what was held
//    before it (cpu_memory_stats: exact bytes of tensors, not RSS; weights and the input excluded,
//    weight gradients, activations and the tape's saved tensors included).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
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
#include "tools/cli/bench_util.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

struct BenchMoeOptions {
  bool json = false;
  int threads = 1;
  int repeats = 5;
  bool quick = false;
  std::string shape;  // run only the shape of this name; empty: all
};

// T tokens of width d, E SwiGLU experts of width f, each token routed to top_k of them.
struct MoeShape {
  std::string name;
  int64_t tokens, d_model, d_ff, experts, top_k;

  int64_t dense_ff() const { return top_k * d_ff; }  // the dense MLP's width: equal FLOPs
  double gemm_flops() const { return 2.0 * tokens * top_k * d_model * d_ff; }  // one projection, forward
  double step_flops() const { return 9 * gemm_flops(); }  // 3 forward + 6 backward GEMMs
  std::string str() const {
    std::ostringstream text;
    text << name << ": T=" << tokens << " d=" << d_model << " f=" << d_ff << " E=" << experts << " k=" << top_k;
    return text.str();
  }
  std::string dense_str() const {
    std::ostringstream text;
    text << name << " dense: T=" << tokens << " d=" << d_model << " f=" << dense_ff();
    return text.str();
  }
};

std::vector<MoeShape> moe_shapes(bool quick) {
  if (quick) return {{"mixtral-like", 128, 64, 128, 4, 2}, {"fine-grained", 128, 64, 32, 16, 4}};
  return {{"mixtral-like", 2048, 512, 1024, 8, 2}, {"fine-grained", 2048, 512, 256, 64, 8}};
}

std::string gemm_path_name() {
  return gemm_backend() == GemmBackend::cblas ? "cblas " + blas_core_name() : "eigen";
}

// Seconds since construction or the previous lap().
class Stopwatch {
 public:
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return seconds;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// ---- the two models ----

// What one training step of either model needs: the input, the output gradient, the leaves.
struct Workload {
  Tensor x;            // [T, d], requires grad (the previous layer's output in a real model)
  Tensor grad_output;  // [T, d]
};

// Dense SwiGLU MLP of width k f: (silu(x W1) * (x W3)) W2, through matmul (ops/gemm.h) and the
// same fused swiglu as the experts.
struct DenseSwiGLU {
  Tensor w1, w3, w2;

  DenseSwiGLU(const MoeShape& shape, Generator* generator) {
    double bound_in = 1.0 / std::sqrt(static_cast<double>(shape.d_model));
    double bound_out = 1.0 / std::sqrt(static_cast<double>(shape.dense_ff()));
    w1 = rand({shape.d_model, shape.dense_ff()}, DType::f32, generator, -bound_in, bound_in).requires_grad_();
    w3 = rand({shape.d_model, shape.dense_ff()}, DType::f32, generator, -bound_in, bound_in).requires_grad_();
    w2 = rand({shape.dense_ff(), shape.d_model}, DType::f32, generator, -bound_out, bound_out).requires_grad_();
  }
  Tensor forward(const Tensor& x) const { return matmul(swiglu(matmul(x, w1), matmul(x, w3)), w2); }
  void zero_grad() {
    for (Tensor* w : {&w1, &w3, &w2}) w->zero_grad();
  }
};

nn::SparseMoEConfig block_config(const MoeShape& shape) {
  nn::SparseMoEConfig config;
  config.num_experts = shape.experts;
  config.hidden_size = shape.d_model;
  config.intermediate_size = shape.d_ff;
  config.expert_kind = nn::ExpertKind::swiglu;
  config.router = nn::mixtral(shape.experts, shape.top_k);
  return config;
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

std::function<void()> dense_step(DenseSwiGLU& dense, Workload& work) {
  return [&dense, &work] {
    dense.forward(work.x).backward(work.grad_output);
    dense.zero_grad();
    work.x.zero_grad();
  };
}

// ---- the block's steps one by one ----

struct Phases {
  double routing = 0, permutation = 0, experts = 0, backward = 0;
  double total() const { return routing + permutation + experts + backward; }
};

// The routing, as SparseMoEBlock::forward computes it for a 2-D x (one sequence).
nn::Routing routing_of(const nn::SparseMoEBlock& block, const Tensor& x) {
  return block.gate()->forward(x, x.size(0));
}

nn::DispatchPlan plan_of(const nn::SparseMoEBlock& block, const nn::Routing& routing, const Tensor& x) {
  return nn::plan_dispatch(routing, x.size(0), block.num_experts(), x.dtype());
}

// SparseMoEBlock::forward's steps (no shared expert) with a lap after each, then backward.
Phases timed_block_step(nn::SparseMoEBlock& block, Workload& work) {
  Phases phases;
  {
    Stopwatch watch;
    nn::Routing routing = routing_of(block, work.x);
    phases.routing = watch.lap();
    nn::DispatchPlan plan = plan_of(block, routing, work.x);
    Tensor x_perm = nn::dispatch_tokens(work.x, plan);
    phases.permutation = watch.lap();
    Tensor y_perm = block.experts()->forward(x_perm, plan.offsets);
    phases.experts = watch.lap();
    Tensor y = nn::combine_outputs(y_perm, plan);
    phases.permutation += watch.lap();
    y.backward(work.grad_output);
    phases.backward = watch.lap();
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

double peak_bytes_of(const std::function<void()>& step) {
  reset_cpu_peak_bytes();
  int64_t before = cpu_memory_stats().live_bytes;
  step();
  return static_cast<double>(cpu_memory_stats().peak_bytes - before);
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

void report_split(Report& report, const MoeShape& shape, const std::vector<Phases>& rounds) {
  auto median_of = [&](double Phases::*part) {
    std::vector<double> values;
    for (const Phases& phases : rounds) values.push_back(phases.*part);
    return median(values);
  };
  std::vector<double> forward_share;
  for (const Phases& phases : rounds) forward_share.push_back((phases.routing + phases.permutation) / phases.total());
  const std::string path = gemm_path_name();
  report.add({"moe_block", "time: routing (forward)", median_of(&Phases::routing) * 1e3, "ms", shape.str(), path, {}});
  report.add({"moe_block", "time: permutation (forward)", median_of(&Phases::permutation) * 1e3, "ms", shape.str(),
              path, {}});
  report.add({"moe_block", "time: experts (forward)", median_of(&Phases::experts) * 1e3, "ms", shape.str(), path, {}});
  report.add({"moe_block", "time: backward", median_of(&Phases::backward) * 1e3, "ms", shape.str(), path, {}});
  report.add({"moe_block", "routing+permutation fwd share", median(forward_share) * 100, "%", shape.str(), path, {}});
}

void bench_shape(const BenchMoeOptions& options, const MoeShape& shape, Report& report) {
  Generator generator(0);
  nn::SparseMoEBlock block(block_config(shape), &generator);
  DenseSwiGLU dense(shape, &generator);
  Workload work{randn({shape.tokens, shape.d_model}, DType::f32, &generator).requires_grad_(),
                randn({shape.tokens, shape.d_model}, DType::f32, &generator)};

  std::vector<Phases> phases;
  auto seconds = interleaved_seconds({block_step(block, work), dense_step(dense, work),
                                      routing_permutation_step(block, work),
                                      [&] { phases.push_back(timed_block_step(block, work)); }},
                                     options.repeats);
  phases.erase(phases.begin());  // the warm-up round's
  const std::string path = gemm_path_name();
  const double flops = shape.step_flops();
  report.add({"moe_block", "forward+backward", gflops_per_second(flops, median(seconds[0])), "GFLOP/s", shape.str(),
              path, {}});
  report.add({"dense_swiglu", "forward+backward, equal FLOPs", gflops_per_second(flops, median(seconds[1])),
              "GFLOP/s", shape.dense_str(), path, {}});
  report.add({"moe_block", "forward+backward / dense", median(per_round(seconds, 1, 0)), "x", shape.str(), path,
              Target::at_least(0.85)});
  report_split(report, shape, phases);
  report.add({"moe_block", "routing+permutation fwd+bwd share", median(per_round(seconds, 2, 0)) * 100, "%",
              shape.str(), path, Target::at_most(10)});
  report.add({"moe_block", "expert load max/mean", load_imbalance(block, work.x), "x", shape.str(), "", {}});
  const double mebibyte = 1024.0 * 1024.0;
  report.add({"moe_block", "peak memory, forward+backward", peak_bytes_of(block_step(block, work)) / mebibyte, "MiB",
              shape.str(), "", {}});
  report.add({"dense_swiglu", "peak memory, forward+backward", peak_bytes_of(dense_step(dense, work)) / mebibyte,
              "MiB", shape.dense_str(), "", {}});
}

void run_bench_moe(const BenchMoeOptions& options) {
  set_blas_threads(options.threads);
  Report report(std::cout, options.json);
  std::ostringstream context;
  context << "tinymoe bench moe: f32 SwiGLU experts, Mixtral routing; median of " << options.repeats
          << " interleaved rounds after 1 warm-up; " << options.threads
          << " BLAS thread(s); GFLOP/s count the expert GEMMs only (9 x 2 T k d f per step); GEMM path "
          << gemm_path_name() << (options.quick ? "; --quick shapes" : "");
  report.note(context.str());
  for (const MoeShape& shape : moe_shapes(options.quick))
    if (options.shape.empty() || options.shape == shape.name) bench_shape(options, shape, report);
}

}  // namespace

void add_bench_moe(CLI::App& bench) {
  auto options = std::make_shared<BenchMoeOptions>();
  CLI::App* command = bench.add_subcommand(
      "moe", "SparseMoEBlock forward+backward vs a dense SwiGLU MLP of equal FLOPs: GFLOP/s, time split, peak memory");
  command->add_flag("--json", options->json, "One JSON object per line instead of a table");
  command->add_option("--threads", options->threads, "BLAS threads (set_blas_threads)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command->add_option("--repeats", options->repeats, "Timed rounds per measurement; the median is reported")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command->add_flag("--quick", options->quick, "Small shapes, for a smoke test");
  command->add_option("--shape", options->shape, "Run only this shape")
      ->check(CLI::IsMember({"mixtral-like", "fine-grained"}));
  command->callback([options] { run_bench_moe(*options); });
}

}  // namespace tinymoe::cli
