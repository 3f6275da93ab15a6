#include "tinymoe/communicator.h"

#include <cstdlib>
#include <cstring>

namespace tinymoe {
namespace {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "local"; }

  void all_to_all_rows(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                       const std::vector<int64_t>& recv_rows, int64_t row_bytes) override {
    TINYMOE_CHECK(send_rows.size() == 1 && recv_rows.size() == 1 && send_rows[0] == recv_rows[0], "all_to_all",
                  "a local communicator has one rank: expected one block sent to itself and received, got ",
                  send_rows.size(), " and ", recv_rows.size(), " blocks");
    if (send_rows[0] > 0) std::memcpy(recv, send, static_cast<size_t>(send_rows[0] * row_bytes));
  }

  std::vector<int64_t> all_gather(const std::vector<int64_t>& values) override { return values; }

  void all_reduce_sum(const Tensor&) override {}
};

}  // namespace

std::shared_ptr<Communicator> local_communicator() { return std::make_shared<LocalCommunicator>(); }

#ifndef TINYMOE_WITH_MPI
bool mpi_available() { return false; }

MpiSession::MpiSession(int*, char***) {
  fail("MpiSession", "this build has no MPI (install libopenmpi-dev and configure with TINYMOE_MPI=ON)");
}
MpiSession::~MpiSession() = default;
void MpiSession::abort(int code) { std::exit(code); }

std::shared_ptr<Communicator> mpi_communicator() {
  fail("mpi_communicator", "this build has no MPI (install libopenmpi-dev and configure with TINYMOE_MPI=ON)");
}
#endif

}  // namespace tinymoe
