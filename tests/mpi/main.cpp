// tinymoe_mpi_tests: Catch2 tests that run on every rank of `mpirun -np N` (N >= 2). MPI lives
// for the whole session. The tests check with CHECK, never REQUIRE, so every rank runs every
// collective; at the end the ranks agree on the worst result, so a failure on any rank makes
// every rank, and so mpirun, exit non-zero.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "tinymoe/communicator.h"

int main(int argc, char** argv) {
  tinymoe::MpiSession mpi(&argc, &argv);
  int failed = Catch::Session().run(argc, argv);
  std::vector<int64_t> all = tinymoe::mpi_communicator()->all_gather({failed});
  return static_cast<int>(*std::max_element(all.begin(), all.end()));
}
