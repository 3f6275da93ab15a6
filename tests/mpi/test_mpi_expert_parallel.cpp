// Expert parallelism across processes (run under mpirun -np N): all_to_all with uneven and empty
// blocks and its reverse gradient, the communicator's gather and sum, and EP=N against EP=1: every
// rank also builds the single-process block, runs it on the whole batch, and compares its share.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/router_presets.h"
#include "ops/all_to_all.h"
#include "ops/shape.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> comm = mpi_communicator();
  return comm;
}

// Rows rank `from` sends to rank `to`: uneven, and none from a rank to the next one.
int64_t rows_between(int64_t from, int64_t to, int64_t ranks) { return (to == (from + 1) % ranks) ? 0 : from + to + 1; }

// A row sent from `from` to `to`, number k: its values say where it came from.
double row_value(int64_t from, int64_t to, int64_t k, int64_t column) { return from * 1000 + to * 100 + k * 10 + column; }

// Non-fatal on purpose (CHECK, never REQUIRE): a rank that left a test case early would skip the
// collectives the other ranks are waiting in, and the job would hang instead of failing.
void check_close(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  CHECK(actual.defined());
  if (!actual.defined()) return;
  CHECK(actual.shape() == expected.shape());
  if (actual.shape() != expected.shape()) return;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  size_t mismatches = 0;
  for (size_t i = 0; i < a.size(); ++i) mismatches += a[i] == Approx(e[i]).epsilon(1e-12).margin(1e-13) ? 0 : 1;
  CHECK(mismatches == 0);
}

// This rank's experts hold the single block's slice of the expert gradients: every rank's tokens
// reached them.
void check_expert_gradients(const ExpertParallelMoEBlock& parallel, const SparseMoEBlock& single) {
  NamedTensors single_experts = single.experts()->named_parameters(), mine = parallel.experts()->named_parameters();
  for (size_t i = 0; i < single_experts.size(); ++i)
    check_close(mine[i].second.grad(),
                slice(single_experts[i].second.grad(), 0, parallel.first_expert(),
                      parallel.first_expert() + parallel.local_experts()),
                "gradient of experts." + single_experts[i].first);
}

SparseMoEConfig block_config(const RouterConfig& router, ExpertKind kind, SharedExpertKind shared) {
  SparseMoEConfig config;
  config.num_experts = router.num_experts;
  config.hidden_size = 8;
  config.intermediate_size = 6;
  config.expert_kind = kind;
  config.shared = {shared, 1, 5};
  config.router = router;
  config.dtype = DType::f64;
  return config;
}

}  // namespace

TEST_CASE("mpi all_to_all: uneven and empty blocks reach their ranks, gradients come back", "[mpi][all_to_all]") {
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank(), width = 3;
  CHECK(ranks >= 2);
  std::vector<int64_t> send_splits, expected_recv;
  std::vector<double> values;
  for (int64_t to = 0; to < ranks; ++to) {
    send_splits.push_back(rows_between(me, to, ranks));
    expected_recv.push_back(rows_between(to, me, ranks));
    for (int64_t k = 0; k < send_splits.back(); ++k)
      for (int64_t c = 0; c < width; ++c) values.push_back(row_value(me, to, k, c));
  }
  std::vector<int64_t> recv_splits = exchange_splits(send_splits, *comm);
  CHECK(recv_splits == expected_recv);
  Tensor x = from_vector(values, {static_cast<int64_t>(values.size()) / width, width}).requires_grad_();
  Tensor y = all_to_all(x, send_splits, recv_splits, comm);
  std::vector<double> expected;
  for (int64_t from = 0; from < ranks; ++from)
    for (int64_t k = 0; k < rows_between(from, me, ranks); ++k)
      for (int64_t c = 0; c < width; ++c) expected.push_back(row_value(from, me, k, c));
  CHECK(y.to_vector<double>() == expected);
  // d(sum(y * y)) / dx = 2 x: the gradient of each row returns to the row's own rank and place.
  sum(mul(y, y)).backward();
  CHECK(x.grad().to_vector<double>() == mul(x.detach(), 2.0).to_vector<double>());
  // i64 rows travel too.
  Tensor ids = full({x.size(0)}, static_cast<double>(me), DType::i64);
  std::vector<int64_t> sources = all_to_all(ids, send_splits, recv_splits, comm).to_vector<int64_t>();
  std::vector<int64_t> expected_sources;
  for (int64_t from = 0; from < ranks; ++from) expected_sources.insert(expected_sources.end(), recv_splits[from], from);
  CHECK(sources == expected_sources);
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
  auto comm = world();
  const int64_t ranks = comm->size(), me = comm->rank();
  const int64_t experts = 2 * ranks, sequences_per_rank = 2, length = 5, d = 8;
  struct Case {
    const char* name;
    SparseMoEConfig config;
  };
  for (const Case& c :
       {Case{"mixtral swiglu", block_config(mixtral(experts, 2), ExpertKind::swiglu, SharedExpertKind::none)},
        Case{"qwen2 gated shared expert",
             block_config(qwen2_moe(experts, 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated)},
        Case{"switch relu, per-sequence capacity (whole sequences per rank)",
             block_config(switch_transformer(experts, CapacityConfig::per_sequence_count(2)), ExpertKind::relu,
                          SharedExpertKind::none)}}) {
    INFO(c.name << ", rank " << me << " of " << ranks);
    Generator single_generator(91), parallel_generator(91);
    SparseMoEBlock single(c.config, &single_generator);
    ExpertParallelMoEBlock parallel(c.config, comm, &parallel_generator);
    single.eval();
    parallel.eval();
    CHECK(parallel.first_expert() == 2 * me);
    // The whole batch, the same on every rank; this rank takes its sequences.
    Generator data(92);
    Tensor x = randn({ranks * sequences_per_rank, length, d}, DType::f64, &data);
    Tensor grad_output = randn(x.shape(), DType::f64, &data);
    Tensor x_all = x.clone().requires_grad_();
    Tensor x_mine = slice(x, 0, me * sequences_per_rank, (me + 1) * sequences_per_rank).requires_grad_();
    Tensor grad_mine = slice(grad_output, 0, me * sequences_per_rank, (me + 1) * sequences_per_rank);

    MoEOutput whole = single(x_all), mine = parallel(x_mine);
    check_close(mine.output, slice(whole.output, 0, me * sequences_per_rank, (me + 1) * sequences_per_rank).detach(),
                "output");
    whole.output.backward(grad_output);
    mine.output.backward(grad_mine);
    check_close(x_mine.grad(), slice(x_all.grad(), 0, me * sequences_per_rank, (me + 1) * sequences_per_rank), "dx");

    check_expert_gradients(parallel, single);
    // The replicated parameters, once summed over the ranks.
    all_reduce_gradients(parallel.replicated_parameters(), *comm);
    TensorList replicated = parallel.replicated_parameters();
    NamedTensors single_parameters = single.named_parameters();
    size_t next = 0;
    for (const auto& [name, parameter] : single_parameters)
      if (name.rfind("experts.", 0) != 0) check_close(replicated.at(next++).grad(), parameter.grad(), "gradient of " + name);
    CHECK(next == replicated.size());
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
