// tinymoe_mpi_tests: Catch2 tests that run on every rank of `mpirun -np N` (N >= 2). MPI lives
// for the whole session; a failure on any rank makes that rank, and so mpirun, exit non-zero.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tinymoe/communicator.h"

int main(int argc, char** argv) {
  tinymoe::MpiSession mpi(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
