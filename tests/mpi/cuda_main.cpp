// tinymoe_mpi_cuda_tests: the expert-parallel checks with cuda tensors, on every rank of
// `mpirun -np N`. Like tinymoe_mpi_tests (main.cpp) the ranks agree on the worst result at the
// end. Before any test they agree whether to run at all: every rank needs a GPU, and when the
// selection holds [nccl] tests, NCCL and a GPU of its own on its machine. Otherwise every rank
// prints why and returns 77, which CTest reports as skipped (SKIP_RETURN_CODE).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "tests/catch_selection.h"
#include "tinymoe/communicator.h"

namespace {

constexpr int kSkipReturnCode = 77;

bool selects_nccl_tests(Catch::Session& session) {
  std::vector<Catch::TestCase> selected = test_selection::selected_tests(session);
  return std::any_of(selected.begin(), selected.end(),
                     [](const Catch::TestCase& test) { return test_selection::has_tag(test, "nccl"); });
}

// Why this rank cannot run the selection ("" when it can). Never throws: every rank must reach
// the all_gather that follows.
std::string missing_here(tinymoe::Communicator& comm, bool needs_nccl) {
  const int machine_rank = tinymoe::node_local_rank(comm);
  try {
    if (!tinymoe::cuda_available()) return tinymoe::cuda_unavailable_reason();
    if (needs_nccl && !tinymoe::nccl_available()) return "this build has no NCCL engine";
    if (needs_nccl && machine_rank >= tinymoe::cuda_device_count())
      return "NCCL needs a GPU per rank, and this machine has " + std::to_string(tinymoe::cuda_device_count()) +
             " for more ranks";
  } catch (const tinymoe::Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

void release_test_communicators();  // test_mpi_cuda_expert_parallel.cpp

int main(int argc, char** argv) {
  tinymoe::MpiSession mpi(&argc, &argv);
  Catch::Session session;
  int status = session.applyCommandLine(argc, argv);
  if (status != 0 || test_selection::is_listing(argc, argv)) return status != 0 ? status : session.run();
  auto comm = tinymoe::mpi_communicator();
  const std::string missing = missing_here(*comm, selects_nccl_tests(session));
  std::vector<int64_t> skipping = comm->all_gather({missing.empty() ? 0 : 1});
  if (std::find(skipping.begin(), skipping.end(), 1) != skipping.end()) {
    if (!missing.empty()) std::cout << "SKIPPED: rank " << comm->rank() << ": " << missing << std::endl;
    return kSkipReturnCode;
  }
  int failed = session.run();
  release_test_communicators();
  std::vector<int64_t> all = comm->all_gather({failed});
  return static_cast<int>(*std::max_element(all.begin(), all.end()));
}
