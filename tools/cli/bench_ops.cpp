// `tinymoe bench ops`: the costs that decide whether a small MoE trains fast, on the cpu or on a
// cuda device (--device).
//  - tape: what recording one op costs on 1-element tensors, where the arithmetic is nothing and
//    only the autograd bookkeeping (and on cuda the kernel launch) is left (target: <= 1 us per
//    op, docs/design.md, "Core").
//  - grouped_matmul: an MoE layer's expert GEMMs (T tokens, top-k, E experts, balanced) forward
//    and backward, next to one dense GEMM of equal FLOPs; the ratio says what the segmentation
//    costs (target: >= 0.9 of dense on the cpu). On cuda at Mixtral 8x7B's sizes (512 rows per
//    expert), cuBLAS grouped GEMM against one cuBLAS GEMM, in f32 and again with TF32 (target:
//    >= 0.7; MegaBlocks reports about 0.98 of cuBLAS on an A100).
//  - gemm_f32: the raw GEMM kernel through each cpu path (Eigen, CBLAS) on the same sizes.
#include <CLI/CLI.hpp>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/grouped_matmul.h"
#include "ops/matmul.h"
#include "tinymoe/autograd.h"
#include "tinymoe/random.h"
#include "tinymoe/tensor.h"
#include "tools/cli/bench_device.h"
#include "tools/cli/bench_util.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

// An MoE layer's expert GEMM: T tokens each routed to top_k of E experts, d -> f.
struct ExpertSizes {
  int64_t tokens, top_k, experts, d_model, d_ff;

  int64_t rows() const { return tokens * top_k; }  // (token, slot) pairs, the rows of x
  // Forward x w is 2 N d f; backward dx = dy w^T and dw = x^T dy are 2 N d f each.
  double forward_flops() const { return 2.0 * rows() * d_model * d_ff; }
  double forward_backward_flops() const { return 3 * forward_flops(); }
  std::string str() const {
    std::ostringstream text;
    text << "T=" << tokens << " top-" << top_k << " E=" << experts << " d=" << d_model << " f=" << d_ff
         << " (x [" << rows() << "," << d_model << "], w [" << experts << "," << d_model << "," << d_ff << "])";
    return text.str();
  }
  std::string dense_str() const {
    std::ostringstream text;
    text << "[" << rows() << "," << d_model << "] x [" << d_model << "," << d_ff << "]";
    return text.str();
  }
};

// On cuda: Mixtral 8x7B's expert GEMM (d=4096, f=14336, E=8, k=2), 2048 tokens so that each expert
// gets 512 rows at balanced load, a size where cuBLAS runs near its peak.
ExpertSizes expert_sizes(const BenchOptions& options, Device device) {
  if (options.quick) return {128, 2, 4, 64, 128};
  return device.is_cuda() ? ExpertSizes{2048, 2, 8, 4096, 14336} : ExpertSizes{2048, 2, 8, 512, 1024};
}


// ---- tape: recording cost per op ----

// A run of `chains` chains of `chain_length` alternating add/mul on 1-element f32 tensors that
// require grad, recorded or (under NoGradGuard) not. Chains are short so each one's records
// are freed before the next starts: the time includes creating and freeing each record.
std::function<void()> scalar_chains(const Tensor& a, const Tensor& b, bool recording, int chains, int chain_length) {
  return [=] {
    std::optional<NoGradGuard> no_grad;
    if (!recording) no_grad.emplace();
    for (int chain = 0; chain < chains; ++chain) {
      Tensor y = a;
      for (int i = 0; i < chain_length; ++i) y = (i % 2 == 0) ? add(y, b) : mul(y, b);
    }
  };
}

// Per-round value of f(first run's seconds, second run's seconds), then the median over rounds.
double median_of_pairs(const std::vector<std::vector<double>>& seconds, double (*f)(double, double)) {
  std::vector<double> values;
  for (size_t round = 0; round < seconds[0].size(); ++round) values.push_back(f(seconds[0][round], seconds[1][round]));
  return median(values);
}

void bench_tape(const BenchOptions& options, Device device, Report& report) {
  int chains = options.quick ? 4 : 40, chain_length = options.quick ? 64 : 256;
  double ops = static_cast<double>(chains) * chain_length;
  Tensor a = scalar(1.0001).to(device).requires_grad_(), b = scalar(0.9999).to(device).requires_grad_();
  auto seconds = interleaved_seconds(
      {scalar_chains(a, b, true, chains, chain_length), scalar_chains(a, b, false, chains, chain_length)},
      options.repeats, 1, device);
  auto overhead = [](double recorded, double plain) { return recorded - plain; };
  std::ostringstream shape;
  shape << "1-element f32, chains of " << chain_length << " add/mul";
  const std::string path = device.is_cuda() ? "cuda, " + cuda_device_name(device) : "";
  report.add({"tape", "time per op, recorded", median(seconds[0]) / ops * 1e6, "us", shape.str(), path, {}});
  report.add({"tape", "time per op, no grad", median(seconds[1]) / ops * 1e6, "us", shape.str(), path, {}});
  report.add({"tape", "recording overhead per op", median_of_pairs(seconds, overhead) / ops * 1e6, "us",
              shape.str(), path, Target::at_most(1.0)});
}

// ---- grouped_matmul against dense ----

// forward() then backward(grad_output), the leaves' gradients dropped after each run (as a
// training step's zero_grad does), so every run allocates its gradients afresh.
std::function<void()> forward_backward(std::function<Tensor()> forward, Tensor grad_output, std::vector<Tensor> leaves) {
  return [=]() mutable {
    forward().backward(grad_output);
    for (Tensor& leaf : leaves) leaf.zero_grad();
  };
}

std::function<void()> forward_only(std::function<Tensor()> forward) {
  return [=] {
    NoGradGuard no_grad;
    forward();
  };
}

// On `device`: grouped_matmul wants its offsets where x is.
Tensor balanced_offsets(const ExpertSizes& sizes, Device device) {
  std::vector<int64_t> offsets;
  for (int64_t e = 0; e <= sizes.experts; ++e) offsets.push_back(e * sizes.rows() / sizes.experts);
  return from_vector(offsets, {sizes.experts + 1}).to(device);
}

// Reports grouped and dense GFLOP/s (medians) and their ratio (the median of the per-round
// ratios, each round timing both back to back).
void report_grouped_vs_dense(Report& report, const ExpertSizes& sizes, const std::string& path,
                             const std::string& what, const std::vector<std::vector<double>>& seconds, double flops,
                             Target ratio_target) {
  auto speedup = [](double grouped, double dense) { return dense / grouped; };
  report.add({"grouped_matmul", what, gflops_per_second(flops, median(seconds[0])), "GFLOP/s", sizes.str(), path, {}});
  report.add({"matmul (dense)", what + ", equal FLOPs", gflops_per_second(flops, median(seconds[1])), "GFLOP/s",
              sizes.dense_str(), path, {}});
  report.add({"grouped_matmul", what + " / dense", median_of_pairs(seconds, speedup), "x", sizes.str(), path,
              ratio_target});
}

// The operands of one grouped-vs-dense comparison, on one device.
struct GroupedOperands {
  Tensor x, w, w_dense, grad_output, offsets;
};

GroupedOperands grouped_operands(const ExpertSizes& sizes, Device device) {
  Generator generator(0);
  auto leaf = [&](const Shape& shape) { return randn(shape, DType::f32, &generator).to(device).requires_grad_(); };
  GroupedOperands operands;
  operands.x = leaf({sizes.rows(), sizes.d_model});
  operands.w = leaf({sizes.experts, sizes.d_model, sizes.d_ff});
  operands.w_dense = leaf({sizes.d_model, sizes.d_ff});
  operands.grad_output = randn({sizes.rows(), sizes.d_ff}, DType::f32, &generator).to(device);
  operands.offsets = balanced_offsets(sizes, device);
  return operands;
}

// Grouped against dense, forward + backward (with the target) and forward only.
void compare_grouped_dense(const BenchOptions& options, Device device, const ExpertSizes& sizes,
                           const GroupedOperands& operands, Target ratio_target, Report& report) {
  const GroupedOperands& o = operands;
  std::function<Tensor()> grouped = [o] { return grouped_matmul(o.x, o.w, o.offsets); };
  std::function<Tensor()> dense = [o] { return matmul(o.x, o.w_dense); };
  const std::string path = gemm_path(device);
  auto training = interleaved_seconds(
      {forward_backward(grouped, o.grad_output, {o.x, o.w}), forward_backward(dense, o.grad_output, {o.x, o.w_dense})},
      options.repeats, 1, device);
  report_grouped_vs_dense(report, sizes, path, "forward+backward", training, sizes.forward_backward_flops(),
                          ratio_target);
  auto inference = interleaved_seconds({forward_only(grouped), forward_only(dense)}, options.repeats, 1, device);
  report_grouped_vs_dense(report, sizes, path, "forward only", inference, sizes.forward_flops(), {});
}

// On cuda twice: f32 GEMMs, then TF32 tensor cores (reported as separate rows, path "cublas tf32").
void bench_grouped_matmul(const BenchOptions& options, Device device, Report& report) {
  ExpertSizes sizes = expert_sizes(options, device);
  GroupedOperands operands = grouped_operands(sizes, device);
  if (device.is_cpu()) {
    compare_grouped_dense(options, device, sizes, operands, Target::at_least(0.9), report);
    return;
  }
  for (bool tf32 : {false, true}) {
    Tf32Guard precision(tf32);
    compare_grouped_dense(options, device, sizes, operands, Target::at_least(0.7), report);
  }
}

// ---- the raw GEMM kernel through each path ----

void bench_gemm_paths(const BenchOptions& options, Report& report) {
  ExpertSizes sizes = expert_sizes(options, Device::cpu());
  const int64_t m = sizes.rows(), k = sizes.d_model, n = sizes.d_ff;
  Generator generator(1);
  Tensor a = randn({m, k}, DType::f32, &generator), b = randn({k, n}, DType::f32, &generator);
  Tensor c = Tensor::empty({m, n});
  std::ostringstream shape;
  shape << "C [" << m << "," << n << "] = A [" << m << "," << k << "] B [" << k << "," << n << "]";

  std::vector<GemmBackend> backends = {GemmBackend::eigen};
  if (cblas_available()) backends.push_back(GemmBackend::cblas);
  GemmBackend previous = gemm_backend();
  for (GemmBackend backend : backends) {
    set_gemm_backend(backend);
    double seconds = median_seconds(
        [&] { gemm<float>(false, false, m, n, k, 1.0f, a.data<float>(), k, b.data<float>(), n, 0.0f, c.data<float>(), n); },
        options.repeats);
    report.add({"gemm_f32", "throughput", gflops_per_second(2.0 * m * n * k, seconds), "GFLOP/s", shape.str(),
                gemm_path_name(backend), {}});
  }
  set_gemm_backend(previous);
}

void run_bench_ops(const BenchOptions& options) {
  Device device = prepare_bench_device(options);
  Report report(std::cout, options.json);
  std::ostringstream context;
  context << "tinymoe bench ops: median of " << options.repeats << " runs after 1 warm-up; ";
  if (device.is_cuda())
    context << device.str() << " " << cuda_device_summary(device) << ", timed with CUDA events; f32 then TF32";
  else
    context << options.threads << " BLAS thread(s) (Eigen runs single-threaded); default GEMM path "
            << gemm_path_name(gemm_backend());
  context << (options.quick ? "; --quick shapes" : "");
  report.note(context.str());
  bench_tape(options, device, report);
  bench_grouped_matmul(options, device, report);
  if (device.is_cpu()) bench_gemm_paths(options, report);  // the cpu's GEMM paths; cuda has one
}

}  // namespace

void add_bench_ops(CLI::App& bench) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command = bench.add_subcommand(
      "ops", "Tape overhead per op, grouped_matmul vs dense GEMM, f32 GEMM per path (Eigen, CBLAS)");
  add_bench_options(*command, *options);
  command->callback([options] { run_bench_ops(*options); });
}

}  // namespace tinymoe::cli
