// Expert parallelism under mpirun: 8 experts split over the ranks, each rank routing its own
// tokens and exchanging rows with all_to_all (nn/expert_parallel.h). A few SGD steps fit the
// block to a fixed target; each rank prints its loss, how many of its pairs went to each expert
// (on any rank), and which experts it holds.
//
//   mpirun -np 2 build/examples/expert_parallel     # 4 experts per rank
//   mpirun -np 4 build/examples/expert_parallel     # 2 experts per rank
//   build/examples/expert_parallel                  # one process: all 8 experts here
#include <cstdio>
#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

std::string joined(const std::vector<int64_t>& values) {
  std::string text;
  for (int64_t value : values) text += (text.empty() ? "" : " ") + std::to_string(value);
  return text;
}

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  try {
    std::shared_ptr<Communicator> comm = mpi_communicator();
    SparseMoEConfig config;
    config.num_experts = 8;
    config.hidden_size = 32;
    config.intermediate_size = 64;
    config.router = mixtral(8, 2);
    // The same seed on every rank: the same gate everywhere, and each rank its slice of experts.
    Generator weights(0);
    ExpertParallelMoEBlock block(config, comm, &weights);

    // Each rank its own tokens (seeded by rank) and a target the block should learn to produce.
    Generator data(100 + comm->rank());
    Tensor x = randn({64, 32}, DType::f32, &data), target = mul(randn({64, 32}, DType::f32, &data), 0.1);
    SGD optimizer(block.parameters(), SGDOptions{0.5});
    for (int step = 0; step < 20; ++step) {
      block.zero_grad();
      MoEOutput out = block(x);
      Tensor error = sub(out.output, target);
      Tensor loss = add(mean(mul(error, error)), out.routing.weighted_loss());
      loss.backward();
      all_reduce_gradients(block.replicated_parameters(), *comm);  // the gate is shared: sum its gradients
      optimizer.step();
      if (step % 5 == 0 || step == 19)
        std::printf("rank %d/%d step %2d  loss %.5f  pairs per expert %s\n", comm->rank(), comm->size(), step,
                    loss.item<double>(), joined(out.tokens_per_expert.to_vector<int64_t>()).c_str());
    }
    std::printf("rank %d holds experts %lld..%lld\n", comm->rank(), static_cast<long long>(block.first_expert()),
                static_cast<long long>(block.first_expert() + block.local_experts() - 1));
    return 0;
  } catch (const Error& error) {
    // The other ranks may be waiting in a collective: end the whole job, not just this rank.
    std::fprintf(stderr, "%s\n", error.what());
    MpiSession::abort(1);
  }
}
