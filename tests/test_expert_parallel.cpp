// Expert parallelism within one process: all_to_all and the ExpertParallelMoEBlock over the local
// communicator (one rank, EP=1) against SparseMoEBlock, and the errors. The multi-process checks
// run under mpirun (tests/mpi/).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "ops/all_to_all.h"
#include "tests/small_configs.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

SparseMoEConfig small_block(const RouterConfig& router, ExpertKind kind, SharedExpertKind shared) {
  return tinymoe::testing::small_block_config(router, kind, shared, DType::f64, 6, 5, 4);
}

}  // namespace

TEST_CASE("all_to_all: one rank receives what it sends, and the gradient comes back", "[all_to_all]") {
  auto comm = local_communicator();
  Tensor x = randn({4, 3}, DType::f64).requires_grad_();
  Tensor y = all_to_all(x, {4}, {4}, comm);
  CHECK(y.to_vector<double>() == x.to_vector<double>());
  tinymoe::testing::check_gradients("all_to_all", [&](const TensorList& in) { return all_to_all(in[0], {4}, {4}, comm); },
                                    {x});
  Tensor ids = from_vector(std::vector<int64_t>{3, 1}, {2});
  CHECK(all_to_all(ids, {2}, {2}, comm).to_vector<int64_t>() == std::vector<int64_t>{3, 1});
  CHECK(all_to_all(zeros({0, 5}), {0}, {0}, comm).shape() == Shape{0, 5});
  CHECK(exchange_splits({7}, *comm) == std::vector<int64_t>{7});
}

TEST_CASE("all_to_all: bad splits and inputs name the op", "[all_to_all][errors]") {
  auto comm = local_communicator();
  Tensor x = zeros({4, 2});
  CHECK_THROWS_WITH(all_to_all(x, {2, 2}, {4}, comm), Catch::Contains("all_to_all") && Catch::Contains("one per rank"));
  CHECK_THROWS_WITH(all_to_all(x, {3}, {3}, comm), Catch::Contains("all_to_all") && Catch::Contains("x has 4"));
  CHECK_THROWS_WITH(all_to_all(x, {4}, {-1}, comm), Catch::Contains("all_to_all") && Catch::Contains("negative"));
  CHECK_THROWS_WITH(all_to_all(x, {4}, {3}, comm), Catch::Contains("all_to_all") && Catch::Contains("one rank"));
  CHECK_THROWS_WITH(all_to_all(zeros({}), {0}, {0}, comm), Catch::Contains("all_to_all") && Catch::Contains("0-dimensional"));
  CHECK_THROWS_WITH(all_to_all(x, {4}, {4}, nullptr), Catch::Contains("all_to_all") && Catch::Contains("communicator"));
  CHECK_THROWS_WITH(exchange_splits({1, 2}, *comm), Catch::Contains("all_to_all"));
}

TEST_CASE("communicator: all_to_all_rows checks its tensors and blocks, whatever the engine", "[all_to_all][errors]") {
  auto comm = local_communicator();
  Tensor send = ones({3, 2}), recv = zeros({3, 2});
  comm->all_to_all_rows(send, {3}, recv, {3});
  CHECK(recv.to_vector<float>() == send.to_vector<float>());
  CHECK_THROWS_WITH(comm->all_to_all_rows(send, {3}, zeros({3, 2}, DType::f64), {3}),
                    Catch::Contains("all_to_all") && Catch::Contains("one dtype"));
  CHECK_THROWS_WITH(comm->all_to_all_rows(send, {3}, zeros({3, 4}), {3}),
                    Catch::Contains("all_to_all") && Catch::Contains("rows of one shape"));
  CHECK_THROWS_WITH(comm->all_to_all_rows(send, {2}, recv, {3}),
                    Catch::Contains("all_to_all") && Catch::Contains("send blocks hold 2 rows"));
  CHECK_THROWS_WITH(comm->all_to_all_rows(Tensor(), {0}, recv, {3}), Catch::Contains("all_to_all"));
  CHECK_THROWS_WITH(comm->all_reduce_sum(zeros({2}, DType::i64)),
                    Catch::Contains("all_reduce_sum") && Catch::Contains("f32 or f64"));
  CHECK(comm->reaches(Device::cpu()));
}

TEST_CASE("communicator: one process is machine rank 0, and NCCL and GPUs need the CUDA backend", "[all_to_all][errors]") {
  auto comm = local_communicator();
  CHECK(node_local_rank(*comm) == 0);
  if (!nccl_available())
    CHECK_THROWS_WITH(nccl_communicator(comm, Device::cuda(0)),
                      Catch::Contains("nccl_communicator") && Catch::Contains("no NCCL"));
#ifndef TINYMOE_WITH_CUDA
  CHECK_THROWS_WITH(rank_cuda_device(*comm), Catch::Contains("rank_cuda_device") && Catch::Contains("no CUDA"));
#endif
}

TEST_CASE("expert parallel: one rank computes what SparseMoEBlock computes, forward and backward",
          "[expert_parallel]") {
  struct Case {
    const char* name;
    SparseMoEConfig config;
  };
  for (const Case& c : {Case{"mixtral swiglu", small_block(mixtral(4, 2), ExpertKind::swiglu, SharedExpertKind::none)},
                        Case{"qwen2 gated shared expert",
                             small_block(qwen2_moe(4, 2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated)},
                        Case{"switch relu, per-sequence capacity",
                             small_block(switch_transformer(4, CapacityConfig::per_sequence_count(2)), ExpertKind::relu,
                                         SharedExpertKind::none)}}) {
    INFO(c.name);
    Generator single_generator(81), parallel_generator(81);
    SparseMoEBlock single(c.config, &single_generator);
    ExpertParallelMoEBlock parallel(c.config, local_communicator(), &parallel_generator);
    single.eval();  // Switch's jitter draws from the routing generator in training
    parallel.eval();
    CHECK(parallel.local_experts() == 4);
    CHECK(parallel.first_expert() == 0);
    Tensor x = randn({2, 5, 6}, DType::f64, &single_generator), grad_output = randn({2, 5, 6}, DType::f64, &single_generator);
    Tensor x_single = x.clone().requires_grad_(), x_parallel = x.clone().requires_grad_();
    MoEOutput a = single(x_single), b = parallel(x_parallel);
    REQUIRE(b.output.shape() == a.output.shape());
    std::vector<double> ya = a.output.to_vector<double>(), yb = b.output.to_vector<double>();
    for (size_t i = 0; i < ya.size(); ++i) REQUIRE(yb[i] == Approx(ya[i]).epsilon(1e-12).margin(1e-14));
    CHECK(b.tokens_per_expert.to_vector<int64_t>() == a.tokens_per_expert.to_vector<int64_t>());
    a.output.backward(grad_output);
    b.output.backward(grad_output);
    std::vector<double> ga = x_single.grad().to_vector<double>(), gb = x_parallel.grad().to_vector<double>();
    for (size_t i = 0; i < ga.size(); ++i) REQUIRE(gb[i] == Approx(ga[i]).epsilon(1e-12).margin(1e-14));
    NamedTensors pa = single.named_parameters(), pb = parallel.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].first);
      CHECK(pb[i].first == pa[i].first);
      std::vector<double> wa = pa[i].second.grad().to_vector<double>(), wb = pb[i].second.grad().to_vector<double>();
      for (size_t j = 0; j < wa.size(); ++j) REQUIRE(wb[j] == Approx(wa[j]).epsilon(1e-12).margin(1e-14));
    }
    CHECK(parallel.replicated_parameters().size() == (c.config.shared.kind == SharedExpertKind::none ? 1u : 5u));
  }
}

TEST_CASE("expert parallel: global-batch balancing over one rank is the block's own aux loss", "[expert_parallel]") {
  for (RouterConfig router : {mixtral(4, 2), gshard(4)}) {
    INFO(router.name);
    router.aux_loss_global_batch = true;
    SparseMoEConfig config = small_block(router, ExpertKind::swiglu, SharedExpertKind::none);
    Generator single_generator(82), parallel_generator(82);
    SparseMoEBlock single(config, &single_generator);
    ExpertParallelMoEBlock parallel(config, local_communicator(), &parallel_generator);
    single.eval();  // GShard's random second choice draws in training
    parallel.eval();
    Tensor x = randn({2, 5, 6}, DType::f64, &single_generator);
    MoEOutput a = single(x), b = parallel(x);
    REQUIRE(b.routing.losses.count("aux_loss") == 1);
    CHECK(b.routing.losses.at("aux_loss").item() == Approx(a.routing.losses.at("aux_loss").item()).epsilon(1e-14));
  }
}

TEST_CASE("expert parallel: all_reduce_gradients gives a missing gradient zeros", "[expert_parallel]") {
  Tensor used = ones({2}, DType::f64).requires_grad_(), unused = ones({3}, DType::f64).requires_grad_();
  sum(mul(used, 2.0)).backward();
  all_reduce_gradients({used, unused}, *local_communicator());
  CHECK(used.grad().to_vector<double>() == std::vector<double>{2, 2});
  CHECK(unused.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("expert parallel: bad configurations and inputs name the block, MPI needs a session",
          "[expert_parallel][errors]") {
  SparseMoEConfig config = small_block(mixtral(4, 2), ExpertKind::swiglu, SharedExpertKind::none);
  CHECK_THROWS_WITH(ExpertParallelMoEBlock(config, nullptr), Catch::Contains("ExpertParallelMoEBlock"));
  ExpertParallelMoEBlock block(config, local_communicator());
  CHECK_THROWS_WITH(block(zeros({3, 5}, DType::f64)),
                    Catch::Contains("ExpertParallelMoEBlock") && Catch::Contains("[T, 6]"));
  CHECK_THROWS_WITH(block(zeros({3, 6}, DType::f32)), Catch::Contains("ExpertParallelMoEBlock") && Catch::Contains("dtype"));
  // No MpiSession in this process: the MPI engine refuses, in builds with and without MPI.
  CHECK_THROWS_WITH(mpi_communicator(), Catch::Contains("mpi_communicator"));
}

TEST_CASE("expert parallel: clip_grad_norm over one rank is clip_grad_norm over every parameter", "[expert_parallel][optim]") {
  Tensor a = ones({3}, DType::f64).requires_grad_(), b = ones({2}, DType::f64).requires_grad_();
  Tensor c = ones({3}, DType::f64).requires_grad_(), d = ones({2}, DType::f64).requires_grad_();
  for (const Tensor& loss : {sum(mul(a, 3.0)), sum(mul(b, 4.0)), sum(mul(c, 3.0)), sum(mul(d, 4.0))}) loss.backward();
  double split = clip_grad_norm({a}, {b}, 1.0, *local_communicator());
  double whole = clip_grad_norm({c, d}, 1.0);
  CHECK(split == Approx(std::sqrt(3 * 9.0 + 2 * 16.0)));
  CHECK(split == whole);
  CHECK(a.grad().to_vector<double>() == c.grad().to_vector<double>());
  CHECK(b.grad().to_vector<double>() == d.grad().to_vector<double>());
  CHECK_THROWS_WITH(clip_grad_norm({a}, {b}, -1.0, *local_communicator()), Catch::Contains("clip_grad_norm"));
}
