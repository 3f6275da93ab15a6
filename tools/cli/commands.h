// The subcommands of the `tinymoe` tool. Each command lives in its own file and adds itself to
// the parent command it belongs to; tools/cli/main.cpp builds the tree.
#pragma once

namespace CLI {
class App;
}

namespace tinymoe::cli {

// `tinymoe bench ops`: autograd tape overhead per recorded op, grouped_matmul against a dense
// GEMM of equal FLOPs, and dense f32 GEMM throughput through each GEMM path (bench_ops.cpp).
void add_bench_ops(CLI::App& bench);

// `tinymoe bench moe`: SparseMoEBlock forward + backward against a dense SwiGLU MLP of equal
// FLOPs at a Mixtral-like and a fine-grained shape: GFLOP/s, ratio, time split (routing,
// permutation, experts, backward) and peak memory (bench_moe.cpp).
void add_bench_moe(CLI::App& bench);

}  // namespace tinymoe::cli
