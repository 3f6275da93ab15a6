// Expert parallelism across processes (run under mpirun -np N): all_to_all with uneven and empty
// blocks and its reverse gradient, the communicator's gather and sum, and EP=N against EP=1: every
// rank also builds the single-process block, runs it on the whole batch, and compares its share.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn/balance_losses.h"
#include "tests/mpi/expert_parallel_checks.h"

using namespace mpi_test;

namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> comm = mpi_communicator();
  return comm;
}

}  // namespace

TEST_CASE("mpi all_to_all: uneven and empty blocks reach their ranks, gradients come back", "[mpi][all_to_all]") {
  check_uneven_exchange(world(), Device::cpu());
}

TEST_CASE("mpi communicator: the ranks of one machine number themselves in rank order", "[mpi]") {
  // mpirun here starts every rank on this machine.
  CHECK(node_local_rank(*world()) == world()->rank());
}

TEST_CASE("mpi communicator: all_gather in rank order and all_reduce_sum", "[mpi]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank();
  std::vector<int64_t> gathered = comm->all_gather({me, 10 * me});
  for (int64_t r = 0; r < ranks; ++r) {
    CHECK(gathered[2 * r] == r);
    CHECK(gathered[2 * r + 1] == 10 * r);
  }
  Tensor t = full({2}, static_cast<double>(me + 1), DType::f32);
  comm->all_reduce_sum(t);
  CHECK(t.to_vector<float>() == std::vector<float>(2, static_cast<float>(ranks * (ranks + 1) / 2)));
  CHECK_THROWS_WITH(comm->all_reduce_sum(zeros({2}, DType::i64)), Catch::Contains("all_reduce_sum"));
  CHECK(comm->name() == "mpi");
}

TEST_CASE("mpi expert parallel: EP=N gives EP=1's outputs and gradients", "[mpi][expert_parallel]") {
  check_matches_single_process(world(), Device::cpu());
}

TEST_CASE("mpi expert parallel: a split block's weights gather into the single block's and load back",
          "[mpi][expert_parallel][state]") {
  check_weights_round_trip(world(), Device::cpu());
}

TEST_CASE("mpi expert parallel: ranks that build different blocks are an Error on every rank", "[mpi][errors]") {
  auto comm = world();
  SparseMoEConfig config = block_config(mixtral(2 * comm->size(), 2), ExpertKind::swiglu, SharedExpertKind::none);
  if (comm->rank() == comm->size() - 1) config.hidden_size += 2;  // one rank with wider rows
  CHECK_THROWS_WITH(ExpertParallelMoEBlock(config, comm),
                    Catch::Contains("ExpertParallelMoEBlock") && Catch::Contains("another block"));
  // ReLU routing with and without its l1 loss would call the controller's collective on some
  // ranks only; another starting lambda would let the replicated lambdas drift apart.
  for (bool with_loss : {false, true}) {
    RouterConfig router = remoe(2 * comm->size(), 1);
    if (comm->rank() == 0) {
      if (with_loss) router.l1_loss.coefficient = 2e-8;
      else router.l1_loss = {};
    }
    SparseMoEConfig relu = block_config(router, ExpertKind::swiglu, SharedExpertKind::none);
    CHECK_THROWS_WITH(ExpertParallelMoEBlock(relu, comm), Catch::Contains("another block"));
  }
}

TEST_CASE("mpi expert parallel: experts that do not divide over the ranks are an Error", "[mpi][errors]") {
  auto comm = world();
  SparseMoEConfig config = block_config(mixtral(2 * comm->size() + 1, 2), ExpertKind::swiglu, SharedExpertKind::none);
  CHECK_THROWS_WITH(ExpertParallelMoEBlock(config, comm),
                    Catch::Contains("ExpertParallelMoEBlock") && Catch::Contains("divisible"));
}

TEST_CASE("mpi expert parallel: uneven token counts, a rank with none included", "[mpi][expert_parallel]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank(), d = 8;
  SparseMoEConfig config = block_config(mixtral(2 * ranks, 2), ExpertKind::swiglu, SharedExpertKind::none);
  Generator single_generator(93), parallel_generator(93);
  SparseMoEBlock single(config, &single_generator);
  ExpertParallelMoEBlock parallel(config, comm, &parallel_generator);
  // Rank r holds 3 r tokens: rank 0 none, yet it takes part in every exchange, backward too.
  std::vector<int64_t> starts = {0};
  for (int64_t r = 0; r < ranks; ++r) starts.push_back(starts.back() + 3 * r);
  Generator data(94);
  Tensor x = randn({starts.back(), d}, DType::f64, &data), grad_output = randn({starts.back(), d}, DType::f64, &data);
  // Rank 0's empty x does not even require grad: the exchanges' backward must run there anyway.
  Tensor x_all = x.clone().requires_grad_(), x_mine = slice(x, 0, starts[me], starts[me + 1]);
  if (me > 0) x_mine.requires_grad_();
  MoEOutput whole = single(x_all), mine = parallel(x_mine);
  check_close(mine.output, slice(whole.output, 0, starts[me], starts[me + 1]).detach(), "output");
  whole.output.backward(grad_output);
  mine.output.backward(slice(grad_output, 0, starts[me], starts[me + 1]));
  if (me > 0) check_close(x_mine.grad(), slice(x_all.grad(), 0, starts[me], starts[me + 1]), "dx");
  check_expert_gradients(parallel, single);
}

TEST_CASE("mpi expert parallel: DeepSeek-V3's bias moves by the loads of every rank's tokens", "[mpi][expert_parallel]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank();
  SparseMoEConfig config = block_config(deepseek_v3(2 * ranks, 2, 2, 1), ExpertKind::swiglu, SharedExpertKind::ungated);
  Generator single_generator(95), parallel_generator(95);
  SparseMoEBlock single(config, &single_generator);
  ExpertParallelMoEBlock parallel(config, comm, &parallel_generator);
  Generator data(96);
  Tensor x = randn({ranks * 4, 8}, DType::f64, &data);
  for (int step = 0; step < 3; ++step) {
    MoEOutput whole = single(x), mine = parallel(slice(x, 0, me * 4, (me + 1) * 4));
    single.update_bias(whole, 0.01);
    parallel.update_bias(mine, 0.01);
  }
  CHECK(parallel.gate()->e_score_correction_bias().to_vector<float>() ==
        single.gate()->e_score_correction_bias().to_vector<float>());
}

TEST_CASE("mpi expert parallel: ReMoE's lambda moves by the sparsity of every rank's tokens", "[mpi][expert_parallel]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank();
  auto first_token = [](int64_t rank) { return rank * (rank + 3); };  // rank r holds 4 + 2r tokens
  SparseMoEConfig config = block_config(remoe(2 * ranks, 1), ExpertKind::swiglu, SharedExpertKind::none);
  Generator single_generator(99), parallel_generator(99);
  SparseMoEBlock single(config, &single_generator);
  ExpertParallelMoEBlock parallel(config, comm, &parallel_generator);
  Generator data(100);
  Tensor x = randn({first_token(ranks), 8}, DType::f64, &data);
  for (int step = 0; step < 3; ++step) {
    MoEOutput whole = single(x), mine = parallel(slice(x, 0, first_token(me), first_token(me + 1)));
    CHECK(parallel.routing_sparsity(mine) == Approx(whole.routing.sparsity()).epsilon(1e-14));
    single.update_l1_coefficient(whole);
    parallel.update_l1_coefficient(mine);
    CHECK(parallel.gate()->l1_coefficient() == single.gate()->l1_coefficient());
  }
  CHECK(single.gate()->l1_coefficient() != 1e-8);
}

TEST_CASE("mpi expert parallel: global-batch balancing, the ranks' aux losses average to the whole batch's",
          "[mpi][expert_parallel]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank();
  // Ranks of different sizes: rank r holds 4 + 2r tokens.
  auto first_token = [](int64_t rank) { return rank * (rank + 3); };  // sum of 4 + 2q for q < rank
  const int64_t total = first_token(ranks), begin = first_token(me), end = first_token(me + 1);
  for (RouterConfig router : {mixtral(2 * ranks, 2), gshard(2 * ranks)}) {
    INFO(router.name << ", rank " << me << " of " << ranks);
    router.aux_loss_global_batch = true;
    SparseMoEConfig config = block_config(router, ExpertKind::swiglu, SharedExpertKind::none);
    Generator single_generator(97), parallel_generator(97);
    SparseMoEBlock single(config, &single_generator);
    ExpertParallelMoEBlock parallel(config, comm, &parallel_generator);
    single.eval();
    parallel.eval();
    Generator data(98);
    Tensor x = randn({total, 8}, DType::f64, &data);
    Tensor whole = single(x).routing.losses.at("aux_loss");
    Routing routing = parallel(slice(x, 0, begin, end)).routing;
    Tensor mine = routing.losses.at("aux_loss");
    // The rank's own-batch loss is another number: the global counts did replace it.
    Tensor own_batch = load_balancing_loss(balance_probabilities(router, routing.scores),
                                           aux_loss_counted_index(router, routing.expert_index), router.aux_loss_form);
    CHECK(std::abs(own_batch.item() - mine.item()) > 1e-9);
    // Each rank weighs its own tokens' probabilities by the whole batch's load, and its share of
    // the tokens: the mean over the ranks is the whole batch's loss, and so are the gate's
    // gradients, whatever the ranks' sizes.
    Tensor mean_over_ranks = mine.detach().clone();
    comm->all_reduce_sum(mean_over_ranks);
    check_close(mul(mean_over_ranks, 1.0 / static_cast<double>(ranks)), whole.detach(), "aux loss");
    whole.backward();
    mine.backward();
    all_reduce_gradients(parallel.replicated_parameters(), *comm);
    check_close(mul(parallel.gate()->weight().grad(), 1.0 / static_cast<double>(ranks)), single.gate()->weight().grad(),
                "gate gradient of the aux loss");
  }
}
