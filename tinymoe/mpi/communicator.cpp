// The MPI engine of tinymoe/communicator.h (compiled when TINYMOE_WITH_MPI). Every MPI call is
// checked and a failure becomes a tinymoe::Error naming the call and MPI's message.
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "tinymoe/communicator.h"

namespace tinymoe {
namespace {

void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, message, &length);
  fail("mpi", call, " failed: ", std::string(message, static_cast<size_t>(length)));
}

// MPI counts are int: a block past INT_MAX rows is refused rather than truncated.
std::vector<int> int_counts(const std::vector<int64_t>& rows, const char* what) {
  std::vector<int> counts;
  for (int64_t count : rows) {
    TINYMOE_CHECK(count >= 0 && count <= INT_MAX, "all_to_all", what, " block of ", count,
                  " rows is out of MPI's int range");
    counts.push_back(static_cast<int>(count));
  }
  return counts;
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> starts(counts.size(), 0);
  int64_t start = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    TINYMOE_CHECK(start <= INT_MAX, "all_to_all", "more rows than MPI's int offsets reach");
    starts[i] = static_cast<int>(start);
    start += counts[i];
  }
  return starts;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    int code = MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    if (code == MPI_SUCCESS) code = MPI_Comm_rank(comm_, &rank_);
    if (code == MPI_SUCCESS) code = MPI_Comm_size(comm_, &size_);
    if (code != MPI_SUCCESS) {
      MPI_Comm_free(&comm_);
      check_mpi(code, "MPI_Comm_set_errhandler / MPI_Comm_rank / MPI_Comm_size");
    }
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  bool reaches(Device device) const override { return device.is_cpu(); }
  Device staging_device() const override { return Device::cpu(); }

  std::vector<int64_t> all_gather(const std::vector<int64_t>& values) override {
    std::vector<int64_t> gathered(values.size() * static_cast<size_t>(size_));
    check_mpi(MPI_Allgather(values.data(), static_cast<int>(values.size()), MPI_INT64_T, gathered.data(),
                            static_cast<int>(values.size()), MPI_INT64_T, comm_),
              "MPI_Allgather");
    return gathered;
  }

 protected:
  void exchange_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                     const std::vector<int64_t>& recv_rows) override {
    const int64_t row_size = row_bytes(send);
    if (row_size == 0) return;  // rows without columns: nothing travels
    TINYMOE_CHECK(row_size <= INT_MAX, "all_to_all", "a row of ", row_size, " bytes is out of MPI's int range");
    std::vector<int> send_counts = int_counts(send_rows, "a send"), recv_counts = int_counts(recv_rows, "a receive");
    std::vector<int> send_starts = displacements(send_counts), recv_starts = displacements(recv_counts);
    // One row is one element of a contiguous datatype, so the counts are rows, not bytes.
    MPI_Datatype row;
    check_mpi(MPI_Type_contiguous(static_cast<int>(row_size), MPI_BYTE, &row), "MPI_Type_contiguous");
    int code = MPI_Type_commit(&row);
    if (code != MPI_SUCCESS) {
      MPI_Type_free(&row);
      check_mpi(code, "MPI_Type_commit");
    }
    code = MPI_Alltoallv(send.raw_data(), send_counts.data(), send_starts.data(), row, recv.raw_data(),
                         recv_counts.data(), recv_starts.data(), row, comm_);
    MPI_Type_free(&row);
    check_mpi(code, "MPI_Alltoallv");
  }

  void sum_in_place(const Tensor& tensor) override {
    TINYMOE_CHECK(tensor.numel() <= INT_MAX, "all_reduce_sum", "a tensor of ", tensor.numel(),
                  " values is out of MPI's int range");
    MPI_Datatype type = tensor.dtype() == DType::f64 ? MPI_DOUBLE : MPI_FLOAT;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, tensor.raw_data(), static_cast<int>(tensor.numel()), type, MPI_SUM, comm_),
              "MPI_Allreduce");
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

}  // namespace

bool mpi_available() { return true; }

MpiSession::MpiSession(int* argc, char*** argv) {
  TINYMOE_CHECK(!mpi_running(), "MpiSession", "MPI is already running: construct one MpiSession, once");
  int provided = 0;
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    fail("MpiSession", "MPI offers thread level ", provided, ", below MPI_THREAD_FUNNELED (", MPI_THREAD_FUNNELED,
         "): OpenBLAS threads may not share the process with it");
  }
}

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest if it ever did
}

MpiSession::~MpiSession() {
  if (mpi_running()) MPI_Finalize();
}

std::shared_ptr<Communicator> mpi_communicator() {
  TINYMOE_CHECK(mpi_running(), "mpi_communicator", "MPI is not running: construct a tinymoe::MpiSession in main first");
  return std::make_shared<MpiCommunicator>();
}

}  // namespace tinymoe
