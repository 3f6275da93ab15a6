// Checks of expert parallelism across processes that every engine must pass, on the device the
// engine's tensors live on: the CPU suite runs them over the mpi engine with cpu tensors, the
// CUDA one over mpi (cuda rows through host memory) and NCCL with cuda tensors. Each rank also
// builds the single-process block on the cpu, runs it on the whole batch, and compares its share.
//
// Non-fatal on purpose (CHECK, never REQUIRE): a rank that left a check early would skip the
// collectives the other ranks are waiting in, and the job would hang instead of failing.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/expert_parallel_state.h"
#include "nn/router_presets.h"
#include "ops/all_to_all.h"
#include "ops/elementwise.h"
#include "ops/shape.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

namespace mpi_test {

using namespace tinymoe;
using namespace tinymoe::nn;

// Rows rank `from` sends to rank `to`: uneven, and none from a rank to the next one (but from the
// last to the first, so that with two ranks one direction is empty and the other is not).
inline int64_t rows_between(int64_t from, int64_t to) { return to == from + 1 ? 0 : from + to + 1; }

// A row sent from `from` to `to`, number k: its values say where it came from.
inline double row_value(int64_t from, int64_t to, int64_t k, int64_t column) {
  return from * 1000 + to * 100 + k * 10 + column;
}

inline std::vector<double> host_values(const Tensor& x) { return x.to(Device::cpu()).to_vector<double>(); }

// f64 results within 1e-12 relative (1e-13 absolute near zero): the same sums, maybe in another
// order on the GPU.
inline void check_close(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  CHECK(actual.defined());
  if (!actual.defined()) return;
  CHECK(actual.shape() == expected.shape());
  if (actual.shape() != expected.shape()) return;
  std::vector<double> a = host_values(actual), e = host_values(expected);
  size_t mismatches = 0;
  for (size_t i = 0; i < a.size(); ++i) mismatches += a[i] == Approx(e[i]).epsilon(1e-12).margin(1e-13) ? 0 : 1;
  CHECK(mismatches == 0);
}

// This rank's experts hold the single block's slice of the expert gradients: every rank's tokens
// reached them.
inline void check_expert_gradients(const ExpertParallelMoEBlock& parallel, const SparseMoEBlock& single) {
  NamedTensors single_experts = single.experts()->named_parameters(), mine = parallel.experts()->named_parameters();
  for (size_t i = 0; i < single_experts.size(); ++i)
    check_close(mine[i].second.grad(),
                slice(single_experts[i].second.grad(), 0, parallel.first_expert(),
                      parallel.first_expert() + parallel.local_experts()),
                "gradient of experts." + single_experts[i].first);
}

inline SparseMoEConfig block_config(const RouterConfig& router, ExpertKind kind, SharedExpertKind shared) {
  return tinymoe::testing::small_block_config(router, kind, shared, DType::f64, 8, 6, 5);
}

// all_to_all with uneven and empty blocks: every row reaches its rank, in order, and its gradient
// comes back; i64 rows travel too. x and the results on `device`.
inline void check_uneven_exchange(const std::shared_ptr<Communicator>& comm, Device device) {
  const int64_t ranks = comm->size(), me = comm->rank(), width = 3;
  CHECK(ranks >= 2);
  std::vector<int64_t> send_splits, expected_recv;
  std::vector<double> values;
  for (int64_t to = 0; to < ranks; ++to) {
    send_splits.push_back(rows_between(me, to));
    expected_recv.push_back(rows_between(to, me));
    for (int64_t k = 0; k < send_splits.back(); ++k)
      for (int64_t c = 0; c < width; ++c) values.push_back(row_value(me, to, k, c));
  }
  std::vector<int64_t> recv_splits = exchange_splits(send_splits, *comm);
  CHECK(recv_splits == expected_recv);
  Tensor x = from_vector(values, {static_cast<int64_t>(values.size()) / width, width}).to(device).requires_grad_();
  Tensor y = all_to_all(x, send_splits, recv_splits, comm);
  CHECK(y.device() == device);
  std::vector<double> expected;
  for (int64_t from = 0; from < ranks; ++from)
    for (int64_t k = 0; k < rows_between(from, me); ++k)
      for (int64_t c = 0; c < width; ++c) expected.push_back(row_value(from, me, k, c));
  CHECK(host_values(y) == expected);
  // d(sum(y * y)) / dx = 2 x: the gradient of each row returns to the row's own rank and place.
  sum(mul(y, y)).backward();
  CHECK(host_values(x.grad()) == host_values(mul(x.detach(), 2.0)));
  Tensor ids = full({x.size(0)}, static_cast<double>(me), DType::i64).to(device);
  std::vector<int64_t> sources = all_to_all(ids, send_splits, recv_splits, comm).to(Device::cpu()).to_vector<int64_t>();
  std::vector<int64_t> expected_sources;
  for (int64_t from = 0; from < ranks; ++from) expected_sources.insert(expected_sources.end(), recv_splits[from], from);
  CHECK(sources == expected_sources);
}

// EP=N on `device` against EP=1 on the cpu, for each kind of block below: this rank's outputs and
// input gradients, its experts' gradients, and the replicated parameters' once summed.
inline void check_matches_single_process(const std::shared_ptr<Communicator>& comm, Device device) {
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
        Case{"llama4 (weights on the expert input) with a shared expert",
             block_config(llama4(experts, 1), ExpertKind::swiglu, SharedExpertKind::ungated)},
        Case{"gpt_oss (router bias, clamped SwiGLU experts with biases)",
             block_config(gpt_oss(experts, 2), ExpertKind::gpt_oss, SharedExpertKind::none)},
        Case{"top-p (a varying number of experts per token)",
             block_config(top_p(experts, 0.6), ExpertKind::swiglu, SharedExpertKind::none)},
        Case{"remoe (relu routing: tokens may use no expert) with a shared expert",
             block_config(remoe(experts, 1), ExpertKind::swiglu, SharedExpertKind::ungated)},
        Case{"switch relu, per-sequence capacity (whole sequences per rank)",
             block_config(switch_transformer(experts, CapacityConfig::per_sequence_count(2)), ExpertKind::relu,
                          SharedExpertKind::none)}}) {
    INFO(c.name << ", rank " << me << " of " << ranks << " over " << comm->name() << " on " << device.str());
    Generator single_generator(91), parallel_generator(91);
    SparseMoEBlock single(c.config, &single_generator);
    ExpertParallelMoEBlock parallel(c.config, comm, &parallel_generator);
    parallel.to(device);
    single.eval();
    parallel.eval();
    CHECK(parallel.first_expert() == 2 * me);
    // The whole batch, the same on every rank; this rank takes its sequences.
    Generator data(92);
    Tensor x = randn({ranks * sequences_per_rank, length, d}, DType::f64, &data);
    Tensor grad_output = randn(x.shape(), DType::f64, &data);
    const int64_t first = me * sequences_per_rank, last = (me + 1) * sequences_per_rank;
    Tensor x_all = x.clone().requires_grad_(), x_mine = slice(x, 0, first, last).to(device).requires_grad_();

    MoEOutput whole = single(x_all), mine = parallel(x_mine);
    CHECK(mine.output.device() == device);
    check_close(mine.output, slice(whole.output, 0, first, last).detach(), "output");
    whole.output.backward(grad_output);
    mine.output.backward(slice(grad_output, 0, first, last).to(device));
    check_close(x_mine.grad(), slice(x_all.grad(), 0, first, last), "dx");

    check_expert_gradients(parallel, single);
    // The replicated parameters, once summed over the ranks.
    all_reduce_gradients(parallel.replicated_parameters(), *comm);
    TensorList replicated = parallel.replicated_parameters();
    size_t next = 0;
    for (const auto& [name, parameter] : single.named_parameters())
      if (name.rfind("experts.", 0) != 0) check_close(replicated.at(next++).grad(), parameter.grad(), "gradient of " + name);
    CHECK(next == replicated.size());
  }
}

// The weights of a block split over the ranks on `device`: they gather into the single-process
// block's (built from the same seed on the cpu), exactly, and another single block's weights
// load into the split one, which then gathers into them.
inline void check_weights_round_trip(const std::shared_ptr<Communicator>& comm, Device device) {
  INFO("rank " << comm->rank() << " of " << comm->size() << " over " << comm->name() << " on " << device.str());
  SparseMoEConfig config = block_config(qwen2_moe(2 * comm->size(), 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated);
  Generator single_generator(93), parallel_generator(93), other_generator(94);
  SparseMoEBlock single(config, &single_generator), other(config, &other_generator);
  ExpertParallelMoEBlock parallel(config, comm, &parallel_generator);
  parallel.to(device);
  auto check_gathers_into = [&](const SparseMoEBlock& expected, const std::string& what) {
    StateDict gathered = gather_expert_parallel_state(parallel);
    CHECK(gathered.size() == expected.state_dict().size());
    for (const auto& [name, tensor] : expected.state_dict()) {
      CHECK(gathered.count(name) == 1);
      if (gathered.count(name)) check_close(gathered.at(name), tensor, what + ": " + name);
    }
  };
  check_gathers_into(single, "built from one seed");
  load_expert_parallel_state(parallel, other.state_dict());
  check_gathers_into(other, "after loading another block");
}

}  // namespace mpi_test
