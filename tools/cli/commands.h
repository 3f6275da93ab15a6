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

}  // namespace tinymoe::cli
