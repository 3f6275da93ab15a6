#include "tinymoe/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "ops/copy.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace tinymoe {
namespace {

size_t byte_size(const Tensor& tensor) { return static_cast<size_t>(tensor.numel()) * element_size(tensor.dtype()); }

void check_blocks(const Tensor& tensor, const std::vector<int64_t>& rows, const Communicator& comm, const char* name) {
  const char* op = "all_to_all";
  check_defined(tensor, op, name);
  TINYMOE_CHECK(tensor.dim() >= 1, op, "expected ", name, " with a row dimension, got a 0-dimensional tensor");
  TINYMOE_CHECK(static_cast<int>(rows.size()) == comm.size(), op, "expected ", comm.size(), " ", name,
                " blocks (one per rank), got ", rows.size());
  int64_t total = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    TINYMOE_CHECK(rows[r] >= 0, op, name, " block ", r, " has a negative row count: ", rows[r]);
    total += rows[r];
  }
  TINYMOE_CHECK(total == tensor.size(0), op, "the ", name, " blocks hold ", total, " rows but ", name, " has ",
                tensor.size(0));
}

// An uninitialised tensor shaped like `tensor`, on `device`.
Tensor empty_on(const Tensor& tensor, Device device) { return Tensor::empty(tensor.shape(), tensor.dtype(), device); }

// A copy of `tensor` on `device`, outside autograd (the collectives record nothing themselves).
Tensor copy_to(const Tensor& tensor, Device device, const char* op) {
  Tensor copy = empty_on(tensor, device);
  copy_bytes(copy.raw_data(), device, tensor.raw_data(), tensor.device(), byte_size(tensor), op);
  return copy;
}

// Writes `staged` (a copy made by copy_to, or the engine's result) into `destination`'s storage.
void copy_back(const Tensor& destination, const Tensor& staged, const char* op) {
  copy_bytes(destination.raw_data(), destination.device(), staged.raw_data(), staged.device(), byte_size(staged), op);
}

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "local"; }
  bool reaches(Device) const override { return true; }
  Device staging_device() const override { return Device::cpu(); }

  std::vector<int64_t> all_gather(const std::vector<int64_t>& values) override { return values; }

 protected:
  void exchange_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                     const std::vector<int64_t>& recv_rows) override {
    TINYMOE_CHECK(send_rows[0] == recv_rows[0], "all_to_all", "a local communicator has one rank: it receives the ",
                  send_rows[0], " rows it sends, not ", recv_rows[0]);
    copy_back(recv, send, "all_to_all");
  }
  void sum_in_place(const Tensor&) override {}
};

// A host name as int64 words, zero-padded to a fixed count, so all_gather can compare names.
constexpr size_t kHostNameWords = 9;  // 72 bytes: Linux host names have at most 64

std::vector<int64_t> host_name_words() {
  char name[kHostNameWords * sizeof(int64_t)] = {};
  TINYMOE_CHECK(gethostname(name, sizeof(name) - 1) == 0, "node_local_rank", "gethostname failed: ",
                std::strerror(errno));
  std::vector<int64_t> words(kHostNameWords);
  std::memcpy(words.data(), name, sizeof(name));
  return words;
}

}  // namespace

int64_t Communicator::row_bytes(const Tensor& tensor) {
  return shape_numel(Shape(tensor.shape().begin() + 1, tensor.shape().end())) *
         static_cast<int64_t>(element_size(tensor.dtype()));
}

void Communicator::all_to_all_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                                   const std::vector<int64_t>& recv_rows) {
  check_blocks(send, send_rows, *this, "send");
  check_blocks(recv, recv_rows, *this, "recv");
  TINYMOE_CHECK(send.dtype() == recv.dtype() && send.device() == recv.device(), "all_to_all",
                "expected send and recv of one dtype and device, got ", dtype_name(send.dtype()), " on ",
                send.device().str(), " and ", dtype_name(recv.dtype()), " on ", recv.device().str());
  TINYMOE_CHECK(Shape(send.shape().begin() + 1, send.shape().end()) == Shape(recv.shape().begin() + 1, recv.shape().end()),
                "all_to_all", "expected rows of one shape, got send ", shape_str(send.shape()), " and recv ",
                shape_str(recv.shape()));
  if (reaches(send.device())) return exchange_rows(send, send_rows, recv, recv_rows);
  Tensor staged_recv = empty_on(recv, staging_device());
  exchange_rows(copy_to(send, staging_device(), "all_to_all"), send_rows, staged_recv, recv_rows);
  copy_back(recv, staged_recv, "all_to_all");
}

void Communicator::all_reduce_sum(const Tensor& tensor) {
  check_defined(tensor, "all_reduce_sum", "tensor");
  TINYMOE_CHECK(tensor.dtype() == DType::f32 || tensor.dtype() == DType::f64, "all_reduce_sum",
                "sums f32 or f64 tensors, got ", dtype_name(tensor.dtype()));
  if (reaches(tensor.device())) return sum_in_place(tensor);
  Tensor staged = copy_to(tensor, staging_device(), "all_reduce_sum");
  sum_in_place(staged);
  copy_back(tensor, staged, "all_reduce_sum");
}

std::shared_ptr<Communicator> local_communicator() { return std::make_shared<LocalCommunicator>(); }

std::vector<int64_t> gather_on_every_rank(Communicator& comm, const std::vector<int64_t>& words,
                                          const std::string& own_problem, const char* op) {
  std::vector<int64_t> reported = {own_problem.empty() ? 0 : 1};
  reported.insert(reported.end(), words.begin(), words.end());
  const std::vector<int64_t> all = comm.all_gather(reported);
  if (!own_problem.empty()) fail(op, "rank ", comm.rank(), ": ", own_problem);
  std::vector<int64_t> gathered;
  for (int r = 0; r < comm.size(); ++r) {
    const auto block = all.begin() + static_cast<std::ptrdiff_t>(r * reported.size());
    TINYMOE_CHECK(*block == 0, op, "rank ", r, " cannot go on (its own error says why)");
    gathered.insert(gathered.end(), block + 1, block + static_cast<std::ptrdiff_t>(reported.size()));
  }
  return gathered;
}

int node_local_rank(Communicator& comm) {
  const std::vector<int64_t> mine = host_name_words();
  const std::vector<int64_t> all = comm.all_gather(mine);
  int local = 0;
  for (int r = 0; r < comm.rank(); ++r)
    if (std::equal(mine.begin(), mine.end(), all.begin() + r * kHostNameWords)) ++local;
  return local;
}

Device rank_cuda_device(Communicator& comm) {
  const int local = node_local_rank(comm);
  int devices = 0;
  std::string problem;
#ifdef TINYMOE_WITH_CUDA
  try {
    devices = cuda_device_count();
    if (devices == 0) problem = "no CUDA device: " + cuda_unavailable_reason();
  } catch (const Error& error) {
    problem = error.what();
  }
#else
  problem = "this build has no CUDA backend";
#endif
  gather_on_every_rank(comm, {}, problem, "rank_cuda_device");
  return Device::cuda(local % devices);
}

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

#ifndef TINYMOE_WITH_NCCL
bool nccl_available() { return false; }

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator>, Device) {
  fail("nccl_communicator", "this build has no NCCL engine (it needs the CUDA backend and nccl.h at build time)");
}
#endif

}  // namespace tinymoe
