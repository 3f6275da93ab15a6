// The subcommands of the `tinymoe` tool. Each command lives in its own file and adds itself to
// the parent command it belongs to; tools/cli/main.cpp builds the tree.
#pragma once

#include <stdexcept>
#include <string>

namespace CLI {
class App;
}

namespace tinymoe::cli {

// Thrown by a command that cannot run here and was asked to skip rather than fail (a GPU bench
// with --skip-without-gpu on a machine without one): the tool prints "SKIPPED: <reason>" and
// exits with kSkipExitCode, which CTest reports as skipped (SKIP_RETURN_CODE).
class CommandSkipped : public std::runtime_error {
 public:
  explicit CommandSkipped(const std::string& reason) : std::runtime_error(reason) {}
};
constexpr int kSkipExitCode = 77;

// `tinymoe bench ops`: autograd tape overhead per recorded op, grouped_matmul against a dense
// GEMM of equal FLOPs, and dense f32 GEMM throughput through each GEMM path (bench_ops.cpp).
void add_bench_ops(CLI::App& bench);

// `tinymoe moe`: one HuggingFace MoE layer from its config.json and weights, run forward (and
// backward with --grad-output); writes the tensors docs/hf_check.md lists; --compare checks them
// against an expected file (moe_check.cpp).
void add_moe_check(CLI::App& app);

// `tinymoe bench moe`: SparseMoEBlock forward + backward against a dense SwiGLU MLP of equal
// FLOPs at a Mixtral-like and a fine-grained shape: GFLOP/s, ratio, time split (routing,
// permutation, experts, backward) and peak memory (bench_moe.cpp).
void add_bench_moe(CLI::App& bench);

// `tinymoe bench ep`: ExpertParallelMoEBlock over the ranks of mpirun against a dense SwiGLU MLP
// of equal FLOPs per rank, and the share of its step spent in all_to_all (bench_ep.cpp).
void add_bench_ep(CLI::App& bench);

// `tinymoe inspect FILE`: a safetensors file's metadata and tensors, grouped by name, and a
// training checkpoint's step, optimizer and rank (inspect.cpp).
void add_inspect(CLI::App& app);

}  // namespace tinymoe::cli
