// Expert parallelism on the GPU within one process: all_to_all and all_reduce_sum of cuda tensors
// over each engine that one process can run (the local one; one that moves host memory only, as
// the mpi engine does, so cuda rows travel through the host; NCCL with one rank), and the
// ExpertParallelMoEBlock on cuda:0 over each of them against SparseMoEBlock on the cpu. The
// checks between processes run under mpirun (tests/mpi/test_mpi_cuda_expert_parallel.cpp).
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#ifdef TINYMOE_TEST_NCCL_LIBRARY
#include "cuda/nccl_library.h"
#endif
#include "nn/expert_parallel.h"
#include "nn/router_presets.h"
#include "ops/all_to_all.h"
#include "tests/small_configs.h"
#include "parity.h"

using namespace cuda_test;
using namespace tinymoe::nn;
using Catch::Contains;

namespace {

// One rank that moves host memory only, as the mpi engine does: every cuda tensor goes through a
// host copy. Its sum doubles the values, as a sum over two ranks holding the same tensor would,
// so that a sum lost on the way back shows.
class HostOnlyCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "host-only"; }
  bool reaches(Device device) const override { return device.is_cpu(); }
  Device staging_device() const override { return Device::cpu(); }
  std::vector<int64_t> all_gather(const std::vector<int64_t>& values) override { return values; }

 protected:
  void exchange_rows(const Tensor& send, const std::vector<int64_t>&, const Tensor& recv,
                     const std::vector<int64_t>&) override {
    REQUIRE(send.device().is_cpu());
    REQUIRE(recv.device().is_cpu());
    std::memcpy(recv.raw_data(), send.raw_data(), static_cast<size_t>(send.numel()) * element_size(send.dtype()));
  }
  void sum_in_place(const Tensor& tensor) override {
    REQUIRE(tensor.device().is_cpu());
    Tensor doubled = mul(tensor, 2.0);
    std::memcpy(tensor.raw_data(), doubled.raw_data(), static_cast<size_t>(tensor.numel()) * element_size(tensor.dtype()));
  }
};

// The engines of one process that need no library of their own.
std::vector<std::shared_ptr<Communicator>> local_engines() {
  return {local_communicator(), std::make_shared<HostOnlyCommunicator>()};
}

SparseMoEConfig block_config(const RouterConfig& router, SharedExpertKind shared, DType dtype) {
  return tinymoe::testing::small_block_config(router, ExpertKind::swiglu, shared, dtype, 16, 24, 12);
}

// all_to_all over one rank: rows and their gradients come back exactly, on the GPU.
void check_one_rank_exchange(const std::shared_ptr<Communicator>& comm) {
  INFO(comm->name());
  Tensor x = random_input({5, 3, 2}, DType::f32, 1).to(kGpu).requires_grad_();
  Tensor y = all_to_all(x, {5}, {5}, comm);
  CHECK(y.device() == kGpu);
  CHECK(host_values(y) == host_values(x));
  Tensor grad_output = random_input({5, 3, 2}, DType::f32, 2).to(kGpu);
  y.backward(grad_output);
  CHECK(x.grad().device() == kGpu);
  CHECK(host_values(x.grad()) == host_values(grad_output));
  Tensor ids = from_vector(std::vector<int64_t>{4, 0, 7}, {3}).to(kGpu);
  CHECK(all_to_all(ids, {3}, {3}, comm).to_vector<int64_t>() == std::vector<int64_t>{4, 0, 7});
  CHECK(all_to_all(zeros({0, 4}).to(kGpu), {0}, {0}, comm).shape() == Shape{0, 4});
}

// The expert-parallel block over `comm` (one rank) on the GPU against SparseMoEBlock on the cpu:
// outputs, loads, and the gradients of x and of every parameter.
void check_block_against_cpu(const std::shared_ptr<Communicator>& comm) {
  struct Case {
    std::string name;
    SparseMoEConfig config;
  };
  const std::vector<Case> cases = {
      {"mixtral f64", block_config(mixtral(4, 2), SharedExpertKind::none, DType::f64)},
      {"deepseek-v3 with a shared expert, f32", block_config(deepseek_v3(8, 2, 4, 2), SharedExpertKind::ungated, DType::f32)},
      {"qwen2 gated shared expert f64", block_config(qwen2_moe(4, 2), SharedExpertKind::sigmoid_gated, DType::f64)}};
  for (const Case& c : cases) {
    INFO(comm->name() << ": " << c.name);
    const DType dtype = c.config.dtype;
    Generator single_generator(5), parallel_generator(5);
    SparseMoEBlock single(c.config, &single_generator);
    ExpertParallelMoEBlock parallel(c.config, comm, &parallel_generator);
    parallel.to(kGpu);
    Tensor x = random_input({2, 6, 16}, dtype, 7), grad_output = random_input({2, 6, 16}, dtype, 8);
    Tensor x_cpu = x.clone().requires_grad_(), x_gpu = x.to(kGpu).requires_grad_();
    MoEOutput expected = single(x_cpu), actual = parallel(x_gpu);
    CHECK(actual.output.device() == kGpu);
    CHECK(relative_error(actual.output, expected.output) <= tolerance(dtype, kGemmF32));
    CHECK(actual.tokens_per_expert.to_vector<int64_t>() == expected.tokens_per_expert.to_vector<int64_t>());
    expected.output.backward(grad_output);
    actual.output.backward(grad_output.to(kGpu));
    CHECK(relative_error(x_gpu.grad(), x_cpu.grad()) <= tolerance(dtype, kGemmF32));
    NamedTensors expected_parameters = single.named_parameters(), actual_parameters = parallel.named_parameters();
    REQUIRE(actual_parameters.size() == expected_parameters.size());
    for (size_t i = 0; i < expected_parameters.size(); ++i) {
      INFO(expected_parameters[i].first);
      CHECK(actual_parameters[i].second.grad().device() == kGpu);
      CHECK(relative_error(actual_parameters[i].second.grad(), expected_parameters[i].second.grad()) <=
            tolerance(dtype, kGemmF32));
    }
  }
}

}  // namespace

TEST_CASE("cuda all_to_all: one rank over the local and a host-only engine moves cuda rows and their gradients exactly",
          "[cuda][all_to_all]") {
  for (const auto& comm : local_engines()) check_one_rank_exchange(comm);
}

TEST_CASE("cuda all_reduce_sum: a host-only engine sums cuda tensors through host memory", "[cuda][all_to_all]") {
  Tensor values = random_input({7}, DType::f64, 3);
  Tensor on_gpu = values.to(kGpu);
  HostOnlyCommunicator host_only;
  host_only.all_reduce_sum(on_gpu);
  CHECK(on_gpu.device() == kGpu);
  CHECK(host_values(on_gpu) == host_values(mul(values, 2.0)));
}

TEST_CASE("cuda expert parallel: the block on the GPU over the local and a host-only engine computes "
          "SparseMoEBlock's cpu results",
          "[cuda][expert_parallel]") {
  for (const auto& comm : local_engines()) check_block_against_cpu(comm);
}

TEST_CASE("cuda expert parallel: NCCL and the rank's GPU refuse what they cannot serve", "[nodevice][errors]") {
  auto local = local_communicator();
  if (cuda_available()) {
    CHECK(rank_cuda_device(*local) == Device::cuda(0));
  } else {
    CHECK_THROWS_WITH(rank_cuda_device(*local), Contains("rank_cuda_device") && Contains("no CUDA device"));
  }
  CHECK_THROWS_WITH(nccl_communicator(nullptr, kGpu), Contains("nccl_communicator"));
  if (!nccl_available()) {
    CHECK_THROWS_WITH(nccl_communicator(local, kGpu), Contains("nccl_communicator") && Contains("no NCCL"));
    return;
  }
  CHECK_THROWS_WITH(nccl_communicator(local, Device::cpu()),
                    Contains("nccl_communicator") && Contains("rank 0") && Contains("expected a cuda device"));
  if (!cuda_available())
    CHECK_THROWS_WITH(nccl_communicator(local, kGpu), Contains("nccl_communicator") && Contains("rank 0"));
  CHECK_THROWS_WITH(nccl_communicator(local, Device::cuda(cuda_device_count())),
                    Contains("nccl_communicator") && Contains("rank 0"));
}

#ifdef TINYMOE_TEST_NCCL_LIBRARY
// NCCL with one rank (a local bootstrap): all the single GPU of a test machine allows, as NCCL
// refuses two ranks on one GPU. Tagged [nccl]: gpu-check.sh runs them outside compute-sanitizer,
// which reports NCCL's own internals.
TEST_CASE("cuda nccl: one rank moves cuda rows and their gradients exactly", "[cuda][nccl][all_to_all]") {
  auto nccl = nccl_communicator(local_communicator(), kGpu);
  CHECK(nccl->name() == "nccl");
  CHECK(nccl->reaches(kGpu));
  CHECK_FALSE(nccl->reaches(Device::cpu()));
  check_one_rank_exchange(nccl);
}

TEST_CASE("cuda nccl: all_reduce_sum over one rank leaves cuda and cpu tensors as they are", "[cuda][nccl]") {
  auto nccl = nccl_communicator(local_communicator(), kGpu);
  Tensor values = random_input({7}, DType::f64, 3);
  Tensor f32 = values.to(DType::f32).to(kGpu), on_cpu = values.clone();
  nccl->all_reduce_sum(f32);
  nccl->all_reduce_sum(on_cpu);  // through the GPU and back
  CHECK(host_values(f32) == host_values(values.to(DType::f32)));
  CHECK(on_cpu.device().is_cpu());
  CHECK(host_values(on_cpu) == host_values(values));
}

TEST_CASE("cuda nccl: the block over a one-rank NCCL communicator computes SparseMoEBlock's cpu results",
          "[cuda][nccl][expert_parallel]") {
  check_block_against_cpu(nccl_communicator(local_communicator(), kGpu));
}

// The library opens (from the loader's path or the copy CMake found) and has every function the
// engine calls: no GPU is needed for that, so a broken NCCL shows on every machine.
TEST_CASE("cuda nccl: libnccl opens with every function the engine calls", "[nodevice][nccl]") {
  const cuda::NcclLibrary& nccl = cuda::nccl_library();
  int version = 0;
  REQUIRE(nccl.get_version(&version) == ncclSuccess);
  CHECK(version >= 21400);  // ncclGetLastError, grouped send/recv to self: NCCL 2.14 or later
  CHECK(std::string(nccl.error_string(ncclInvalidUsage)).size() > 0);
}
#endif
