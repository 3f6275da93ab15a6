// `tinymoe bench ep`: what expert parallelism costs, under `mpirun -np N tinymoe bench ep` (run
// alone it is one rank). Every rank trains an ExpertParallelMoEBlock (nn/expert_parallel.h: E / N
// experts here, the gate replicated) on its own T tokens, and times beside it, in interleaved
// rounds:
//  - ep_block: forward + backward of the block, then all_reduce_gradients of the replicated gate
//    (one training step's work); GFLOP/s count the expert GEMMs at balanced load, 9 x 2 T k d f
//    per rank, as bench moe counts them;
//  - dense_swiglu: a dense SwiGLU MLP of width k f on the same T tokens: the same GEMM FLOPs, no
//    routing and no exchange; ratio = dense time / block time;
//  - all_to_all: the step's four row exchanges alone (tokens out and back in the forward, their
//    gradients in the backward), each of T k rows split evenly over the ranks; their time and
//    their share of the block step.
// Each rank times its own laps; for every figure the report takes the slowest rank's median (the
// ranks wait for each other in every exchange, so the slowest sets the pace). Rank 0 prints.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "ops/all_to_all.h"
#include "tinymoe/autograd.h"
#include "tinymoe/communicator.h"
#include "tools/cli/bench_models.h"
#include "tools/cli/bench_util.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

constexpr const char* kCommand = "bench ep";

struct BenchEpOptions {
  BenchOptions common;
  std::string communicator = "mpi";  // with --device cuda: "nccl" moves rows GPU to GPU
};

// Per rank: T tokens; E = 8 experts, so 1, 2, 4 or 8 ranks.
MoeShape ep_shape(bool quick) {
  if (quick) return {"ep-small", 128, 64, 128, 8, 2};
  return {"ep-mixtral-like", 1024, 512, 1024, 8, 2};
}

// Every rank of the job when this build has MPI (MpiSession started here), else this process.
struct Ranks {
  std::unique_ptr<MpiSession> mpi;
  std::shared_ptr<Communicator> comm = local_communicator();
};

void start_ranks(Ranks& ranks) {
  if (!mpi_available()) return;
  ranks.mpi = std::make_unique<MpiSession>(nullptr, nullptr);
  ranks.comm = mpi_communicator();
}

// The device of this rank: --device as given, or for a plain "cuda" the rank's GPU of its machine.
Device rank_device(const BenchEpOptions& options, Communicator& comm) {
  Device device = prepare_bench_device(options.common);
  return device.is_cuda() && options.common.device == "cuda" ? rank_cuda_device(comm) : device;
}

// The four exchanges of one step without autograd: T k rows of width d, split evenly.
std::function<void()> exchange_step(const Tensor& rows, const std::vector<int64_t>& send_splits,
                                    const std::vector<int64_t>& recv_splits, const std::shared_ptr<Communicator>& comm) {
  return [rows, send_splits, recv_splits, comm] {
    NoGradGuard no_grad;
    for (int exchange = 0; exchange < 4; ++exchange) all_to_all(rows, send_splits, recv_splits, comm);
  };
}

std::vector<int64_t> even_splits(int64_t rows, int ranks) {
  std::vector<int64_t> splits(static_cast<size_t>(ranks), rows / ranks);
  splits.back() += rows % ranks;
  return splits;
}

std::function<void()> ep_step(nn::ExpertParallelMoEBlock& block, Workload& work, Communicator& comm) {
  return [&block, &work, &comm] {
    block.forward(work.x).output.backward(work.grad_output);
    nn::all_reduce_gradients(block.replicated_parameters(), comm);
    block.zero_grad();
    work.x.zero_grad();
  };
}

// The slowest rank's value of each entry (seconds, compared in nanoseconds).
std::vector<double> slowest_rank(const std::vector<double>& seconds, Communicator& comm) {
  std::vector<int64_t> nanoseconds;
  for (double value : seconds) nanoseconds.push_back(static_cast<int64_t>(value * 1e9));
  std::vector<int64_t> all = comm.all_gather(nanoseconds);
  std::vector<double> slowest(seconds.size(), 0.0);
  for (size_t i = 0; i < all.size(); ++i)
    slowest[i % seconds.size()] = std::max(slowest[i % seconds.size()], static_cast<double>(all[i]) * 1e-9);
  return slowest;
}

void measure(const BenchEpOptions& options, const std::shared_ptr<Communicator>& comm, Device device) {
  const MoeShape shape = ep_shape(options.common.quick);
  Generator weights(0), data(1 + static_cast<uint64_t>(comm->rank()));
  nn::ExpertParallelMoEBlock block(block_config(shape), comm, &weights);  // the same weights everywhere
  block.to(device);
  DenseSwiGLU dense(shape, &data, device);
  Workload work = make_workload(shape, &data, device);
  Tensor rows = randn({shape.tokens * shape.top_k, shape.d_model}, DType::f32, &data).to(device);
  const std::vector<int64_t> send_splits = even_splits(rows.size(0), comm->size());
  const std::vector<int64_t> recv_splits = exchange_splits(send_splits, *comm);

  // The exchanges run right after the block step, which ends in a collective (the gate's
  // all_reduce): the ranks enter them together, so no rank's exchange time holds a wait for
  // another rank still busy with the dense MLP, which has no collective.
  auto seconds = interleaved_seconds({ep_step(block, work, *comm), exchange_step(rows, send_splits, recv_splits, comm),
                                      dense_step(dense, work)},
                                     options.common.repeats, 1, device);
  const std::vector<double> slowest =
      slowest_rank({median(seconds[0]), median(seconds[2]), median(seconds[1])}, *comm);

  std::ostream null_stream(nullptr);
  Report report(comm->rank() == 0 ? std::cout : null_stream, options.common.json);
  std::ostringstream context;
  context << "tinymoe bench ep: " << comm->size() << " rank(s) over " << comm->name() << ", f32 SwiGLU experts, "
          << "Mixtral routing, on " << device.str() << "; median of " << options.common.repeats
          << " interleaved rounds after 1 warm-up, the slowest rank's; GEMM path " << gemm_path(device);
  report.note(context.str());
  std::ostringstream where;
  where << shape.str() << " per rank, N=" << comm->size();
  const std::string path = gemm_path(device);
  report.add({"ep_block", "forward+backward + gate all_reduce", gflops_per_second(shape.step_flops(), slowest[0]),
              "GFLOP/s", where.str(), path, {}});
  report.add({"dense_swiglu", "forward+backward, equal FLOPs", gflops_per_second(shape.step_flops(), slowest[1]),
              "GFLOP/s", shape.dense_str(), path, {}});
  report.add({"ep_block", "forward+backward / dense", slowest[1] / slowest[0], "x", where.str(), path, {}});
  report.add({"all_to_all", "4 exchanges of T k rows", slowest[2] * 1e3, "ms", where.str(), comm->name(), {}});
  report.add({"all_to_all", "share of the ep_block step", 100.0 * slowest[2] / slowest[0], "%", where.str(),
              comm->name(), {}});
}

void run_bench_ep(const BenchEpOptions& options) {
  Ranks ranks;
  start_ranks(ranks);
  try {
    Device device = rank_device(options, *ranks.comm);
    std::shared_ptr<Communicator> comm = ranks.comm;
    if (options.communicator == "nccl") comm = nccl_communicator(ranks.comm, device);
    measure(options, comm, device);
  } catch (const std::exception& error) {
    if (ranks.comm->size() == 1) throw;
    // The other ranks may be waiting in a collective: end the whole job, not just this rank.
    std::cerr << "tinymoe " << kCommand << ": rank " << ranks.comm->rank() << ": " << error.what() << std::endl;
    MpiSession::abort(1);
  }
}

}  // namespace

void add_bench_ep(CLI::App& bench) {
  auto options = std::make_shared<BenchEpOptions>();
  CLI::App* command = bench.add_subcommand(
      "ep", "ExpertParallelMoEBlock over the ranks of mpirun (-np 1, 2, 4 or 8) vs a dense SwiGLU MLP of equal "
            "FLOPs, and the all_to_all share of its step");
  add_bench_options(*command, options->common);
  command->add_option("--communicator", options->communicator, "mpi, or nccl (with --device cuda)")
      ->check(CLI::IsMember({"mpi", "nccl"}));
  command->callback([options] { run_bench_ep(*options); });
}

}  // namespace tinymoe::cli
