// `tinymoe bench ops`: the costs that decide whether a small MoE trains fast on a CPU.
//  - tape: what recording one op costs on 1-element tensors, where the arithmetic is nothing and
//    only the autograd bookkeeping is left (target: <= 1 us per op, DESIGN.md "Tape").
//  - grouped_matmul: an MoE layer's expert GEMMs (T tokens, top-k, E experts, balanced) forward
//    and backward, next to one dense GEMM of equal FLOPs; the ratio says what the segmentation
//    costs (target: >= 0.9 of dense).
//  - gemm_f32: the raw GEMM kernel through each path (Eigen, CBLAS) on the same sizes.
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
#include "tools/cli/bench_util.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

struct BenchOpsOptions {
  bool json = false;
  int threads = 1;
  int repeats = 5;
  bool quick = false;
};

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

ExpertSizes expert_sizes(const BenchOpsOptions& options) {
  return options.quick ? ExpertSizes{128, 2, 4, 64, 128} : ExpertSizes{2048, 2, 8, 512, 1024};
}

std::string gemm_path_name(GemmBackend backend) {
  return backend == GemmBackend::cblas ? "cblas " + blas_core_name() : "eigen";
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

void bench_tape(const BenchOpsOptions& options, Report& report) {
  int chains = options.quick ? 4 : 40, chain_length = options.quick ? 64 : 256;
  double ops = static_cast<double>(chains) * chain_length;
  Tensor a = scalar(1.0001).requires_grad_(), b = scalar(0.9999).requires_grad_();
  auto seconds = interleaved_seconds(
      {scalar_chains(a, b, true, chains, chain_length), scalar_chains(a, b, false, chains, chain_length)},
      options.repeats);
  auto overhead = [](double recorded, double plain) { return recorded - plain; };
  std::ostringstream shape;
  shape << "1-element f32, chains of " << chain_length << " add/mul";
  report.add({"tape", "time per op, recorded", median(seconds[0]) / ops * 1e6, "us", shape.str(), "", {}});
  report.add({"tape", "time per op, no grad", median(seconds[1]) / ops * 1e6, "us", shape.str(), "", {}});
  report.add({"tape", "recording overhead per op", median_of_pairs(seconds, overhead) / ops * 1e6, "us",
              shape.str(), "", Target::at_most(1.0)});
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

Tensor balanced_offsets(const ExpertSizes& sizes) {
  std::vector<int64_t> offsets;
  for (int64_t e = 0; e <= sizes.experts; ++e) offsets.push_back(e * sizes.rows() / sizes.experts);
  return from_vector(offsets, {sizes.experts + 1});
}

// Reports grouped and dense GFLOP/s (medians) and their ratio (the median of the per-round
// ratios, each round timing both back to back).
void report_grouped_vs_dense(Report& report, const ExpertSizes& sizes, const std::string& what,
                             const std::vector<std::vector<double>>& seconds, double flops, Target ratio_target) {
  std::string path = gemm_path_name(gemm_backend());
  auto speedup = [](double grouped, double dense) { return dense / grouped; };
  report.add({"grouped_matmul", what, gflops_per_second(flops, median(seconds[0])), "GFLOP/s", sizes.str(), path, {}});
  report.add({"matmul (dense)", what + ", equal FLOPs", gflops_per_second(flops, median(seconds[1])), "GFLOP/s",
              sizes.dense_str(), path, {}});
  report.add({"grouped_matmul", what + " / dense", median_of_pairs(seconds, speedup), "x", sizes.str(), path,
              ratio_target});
}

void bench_grouped_matmul(const BenchOpsOptions& options, Report& report) {
  ExpertSizes sizes = expert_sizes(options);
  Generator generator(0);
  Tensor x = randn({sizes.rows(), sizes.d_model}, DType::f32, &generator).requires_grad_();
  Tensor w = randn({sizes.experts, sizes.d_model, sizes.d_ff}, DType::f32, &generator).requires_grad_();
  Tensor w_dense = randn({sizes.d_model, sizes.d_ff}, DType::f32, &generator).requires_grad_();
  Tensor grad_output = randn({sizes.rows(), sizes.d_ff}, DType::f32, &generator);
  Tensor offsets = balanced_offsets(sizes);
  std::function<Tensor()> grouped = [=] { return grouped_matmul(x, w, offsets); };
  std::function<Tensor()> dense = [=] { return matmul(x, w_dense); };

  auto training = interleaved_seconds(
      {forward_backward(grouped, grad_output, {x, w}), forward_backward(dense, grad_output, {x, w_dense})},
      options.repeats);
  report_grouped_vs_dense(report, sizes, "forward+backward", training, sizes.forward_backward_flops(),
                          Target::at_least(0.9));
  auto inference = interleaved_seconds({forward_only(grouped), forward_only(dense)}, options.repeats);
  report_grouped_vs_dense(report, sizes, "forward only", inference, sizes.forward_flops(), {});
}

// ---- the raw GEMM kernel through each path ----

void bench_gemm_paths(const BenchOpsOptions& options, Report& report) {
  ExpertSizes sizes = expert_sizes(options);
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

void run_bench_ops(const BenchOpsOptions& options) {
  set_blas_threads(options.threads);
  Report report(std::cout, options.json);
  std::ostringstream context;
  context << "tinymoe bench ops: median of " << options.repeats << " runs after 1 warm-up; " << options.threads
          << " BLAS thread(s) (Eigen runs single-threaded); default GEMM path "
          << gemm_path_name(gemm_backend()) << (options.quick ? "; --quick shapes" : "");
  report.note(context.str());
  bench_tape(options, report);
  bench_grouped_matmul(options, report);
  bench_gemm_paths(options, report);
}

}  // namespace

void add_bench_ops(CLI::App& bench) {
  auto options = std::make_shared<BenchOpsOptions>();
  CLI::App* command = bench.add_subcommand(
      "ops", "Tape overhead per op, grouped_matmul vs dense GEMM, f32 GEMM per path (Eigen, CBLAS)");
  command->add_flag("--json", options->json, "One JSON object per line instead of a table");
  command->add_option("--threads", options->threads, "BLAS threads (set_blas_threads)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command->add_option("--repeats", options->repeats, "Timed runs per measurement; the median is reported")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command->add_flag("--quick", options->quick, "Small shapes, for a smoke test");
  command->callback([options] { run_bench_ops(*options); });
}

}  // namespace tinymoe::cli
