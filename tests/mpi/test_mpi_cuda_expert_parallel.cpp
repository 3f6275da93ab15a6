// Expert parallelism across processes with cuda tensors (run under mpirun -np N, every rank with
// a GPU; cuda_main.cpp skips otherwise): the checks every engine passes
// (expert_parallel_checks.h) over the mpi engine, whose cuda rows travel through host memory so
// ranks may share a GPU, and, tagged [nccl], over NCCL between one GPU per rank.
#include <catch2/catch.hpp>

#include "tests/mpi/expert_parallel_checks.h"

using namespace mpi_test;

namespace {

// Made on first use, let go by release_test_communicators() before MPI ends.
std::shared_ptr<Communicator> mpi_world_communicator, nccl_world_communicator;

std::shared_ptr<Communicator> mpi_world() {
  if (!mpi_world_communicator) mpi_world_communicator = mpi_communicator();
  return mpi_world_communicator;
}

Device my_gpu() {
  static Device device = rank_cuda_device(*mpi_world());
  return device;
}

std::shared_ptr<Communicator> nccl_world() {
  if (!nccl_world_communicator) nccl_world_communicator = nccl_communicator(mpi_world(), my_gpu());
  return nccl_world_communicator;
}

}  // namespace

// Called by every rank after the tests: the NCCL communicator's destruction is a collective of the
// machine's ranks, so it happens here, in step, rather than in static destruction after MPI ended.
void release_test_communicators() {
  nccl_world_communicator.reset();
  mpi_world_communicator.reset();
}

TEST_CASE("mpi cuda all_to_all: cuda rows through host memory reach their ranks, gradients come back",
          "[mpi][cuda][all_to_all]") {
  check_uneven_exchange(mpi_world(), my_gpu());
}

TEST_CASE("mpi cuda expert parallel: EP=N on GPUs over mpi gives EP=1's cpu results", "[mpi][cuda][expert_parallel]") {
  check_matches_single_process(mpi_world(), my_gpu());
}

TEST_CASE("mpi cuda expert parallel: weights on GPUs gather into the single block's and load back",
          "[mpi][cuda][expert_parallel][state]") {
  check_weights_round_trip(mpi_world(), my_gpu());
}

TEST_CASE("nccl expert parallel: weights on GPUs gather into the single block's and load back",
          "[nccl][expert_parallel][state]") {
  check_weights_round_trip(nccl_world(), my_gpu());
}

TEST_CASE("nccl all_to_all: uneven and empty blocks reach their ranks, gradients come back", "[nccl][all_to_all]") {
  CHECK(nccl_world()->name() == "nccl");
  CHECK(nccl_world()->rank() == mpi_world()->rank());
  check_uneven_exchange(nccl_world(), my_gpu());
}

TEST_CASE("nccl all_reduce_sum: the same sum on every rank, for cuda and cpu tensors", "[nccl]") {
  const int64_t ranks = nccl_world()->size(), me = nccl_world()->rank();
  for (Device device : {my_gpu(), Device::cpu()}) {
    INFO(device.str());
    Tensor t = from_vector(std::vector<double>{1.0 + static_cast<double>(me), 2.0}, {2}).to(device);
    nccl_world()->all_reduce_sum(t);
    CHECK(t.device() == device);
    CHECK(host_values(t) == std::vector<double>{static_cast<double>(ranks * (ranks + 1) / 2), 2.0 * ranks});
  }
}

TEST_CASE("nccl expert parallel: EP=N between GPUs gives EP=1's cpu results", "[nccl][expert_parallel]") {
  check_matches_single_process(nccl_world(), my_gpu());
}
