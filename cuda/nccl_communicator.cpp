// The NCCL engine of tinymoe/communicator.h (compiled when TINYMOE_WITH_NCCL). Rows travel GPU to
// GPU with grouped ncclSend / ncclRecv (NCCL's all-to-all with uneven blocks), sums with
// ncclAllReduce, both on the legacy default stream every kernel of the backend uses
// (cuda/runtime.h), so they are ordered after the kernels that wrote their input and before
// those that read their output. Host values (counts, NCCL's unique id) go over the bootstrap
// communicator. Every NCCL call is checked and a failure becomes a tinymoe::Error naming the call
// and NCCL's reason.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/nccl_library.h"
#include "cuda/runtime.h"
#include "tinymoe/communicator.h"

namespace tinymoe {
namespace {

constexpr const char* kOp = "nccl_communicator";
constexpr size_t kUniqueIdWords = sizeof(ncclUniqueId) / sizeof(int64_t);
static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0, "NCCL's unique id travels as int64 words");
constexpr size_t kUuidWords = sizeof(cudaUUID_t) / sizeof(int64_t);
static_assert(sizeof(cudaUUID_t) == 2 * sizeof(int64_t), "a GPU's UUID travels as two int64 words");

// The legacy default stream: the one every kernel, copy and cuBLAS call of the backend runs on.
const cudaStream_t kBackendStream = nullptr;

void check_nccl(ncclResult_t result, const char* call, ncclComm_t comm = nullptr) {
  if (result == ncclSuccess) return;
  const cuda::NcclLibrary& nccl = cuda::nccl_library();
  const char* detail = nccl.last_error(comm);
  fail("nccl", call, " failed: ", nccl.error_string(result), detail != nullptr && *detail ? " (" : "",
       detail != nullptr ? detail : "", detail != nullptr && *detail ? ")" : "");
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, Device device, ncclComm_t comm)
      : bootstrap_(std::move(bootstrap)), device_(device), comm_(comm) {}
  ~NcclCommunicator() override {
    try {
      cuda::DeviceGuard guard(device_);
      cuda::nccl_library().comm_destroy(comm_);
    } catch (const Error&) {  // a destructor does not throw; the process is ending its GPU work anyway
    }
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  std::string name() const override { return "nccl"; }
  bool reaches(Device device) const override { return device == device_; }
  Device staging_device() const override { return device_; }

  std::vector<int64_t> all_gather(const std::vector<int64_t>& values) override { return bootstrap_->all_gather(values); }

 protected:
  void exchange_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                     const std::vector<int64_t>& recv_rows) override {
    const size_t row_size = static_cast<size_t>(row_bytes(send));
    if (row_size == 0) return;  // rows without columns: nothing travels
    const cuda::NcclLibrary& nccl = cuda::nccl_library();
    cuda::DeviceGuard guard(device_);
    const char* send_bytes = static_cast<const char*>(send.raw_data());
    char* recv_bytes = static_cast<char*>(recv.raw_data());
    // One group: NCCL starts every pair's transfer together, so no pair waits on another's order.
    check_nccl(nccl.group_start(), "ncclGroupStart", comm_);
    for (int peer = 0; peer < size(); ++peer) {
      const size_t sending = static_cast<size_t>(send_rows[peer]) * row_size;
      const size_t receiving = static_cast<size_t>(recv_rows[peer]) * row_size;
      if (sending > 0) check_nccl(nccl.send(send_bytes, sending, ncclUint8, peer, comm_, kBackendStream), "ncclSend", comm_);
      if (receiving > 0)
        check_nccl(nccl.recv(recv_bytes, receiving, ncclUint8, peer, comm_, kBackendStream), "ncclRecv", comm_);
      send_bytes += sending;
      recv_bytes += receiving;
    }
    check_nccl(nccl.group_end(), "ncclGroupEnd", comm_);
  }

  void sum_in_place(const Tensor& tensor) override {
    if (tensor.numel() == 0) return;
    cuda::DeviceGuard guard(device_);
    const ncclDataType_t type = tensor.dtype() == DType::f64 ? ncclFloat64 : ncclFloat32;
    check_nccl(cuda::nccl_library().all_reduce(tensor.raw_data(), tensor.raw_data(), static_cast<size_t>(tensor.numel()),
                                               type, ncclSum, comm_, kBackendStream),
               "ncclAllReduce", comm_);
  }

 private:
  std::shared_ptr<Communicator> bootstrap_;
  Device device_;
  ncclComm_t comm_;
};

// What keeps this rank out of an NCCL communicator on `device` ("" when nothing does), and the
// device's UUID. Caught rather than thrown: every rank reports before any rank fails, so no rank
// is left waiting in a collective.
std::string rank_problem(Device device, cudaUUID_t& uuid) {
  try {
    TINYMOE_CHECK(device.is_cuda(), kOp, "NCCL moves cuda tensors: expected a cuda device, got ", device.str());
    cuda::check_device(device, kOp);
    cudaDeviceProp properties{};
    TINYMOE_CUDA_CHECK(cudaGetDeviceProperties(&properties, device.index));
    uuid = properties.uuid;
    cuda::nccl_library();  // opens libnccl now, on every rank
    return "";
  } catch (const Error& error) {
    std::string message = error.what();
    const std::string own_prefix = std::string(kOp) + ": ";  // said once, by the caller's Error
    return message.rfind(own_prefix, 0) == 0 ? message.substr(own_prefix.size()) : message;
  }
}

// All ranks' words for one question, failing on every rank alike when any rank reported a
// problem (words[0] != 0 in its block).
std::vector<int64_t> gather_or_fail(Communicator& bootstrap, const std::vector<int64_t>& words,
                                    const std::string& own_problem, const char* stage) {
  std::vector<int64_t> all = bootstrap.all_gather(words);
  if (!own_problem.empty()) fail(kOp, "rank ", bootstrap.rank(), ": ", own_problem);
  for (int r = 0; r < bootstrap.size(); ++r)
    TINYMOE_CHECK(all[static_cast<size_t>(r) * words.size()] == 0, kOp, "rank ", r, " failed ", stage,
                  " (its own error names the cause)");
  return all;
}

void check_one_gpu_per_rank(const std::vector<int64_t>& all, size_t words, int ranks) {
  for (int r = 0; r < ranks; ++r)
    for (int q = r + 1; q < ranks; ++q)
      TINYMOE_CHECK(!std::equal(all.begin() + r * words + 1, all.begin() + (r + 1) * words, all.begin() + q * words + 1),
                    kOp, "ranks ", r, " and ", q, " share one GPU, and NCCL needs a GPU per rank: give each rank "
                    "its own (rank_cuda_device), or use mpi_communicator(), which moves cuda tensors through host memory");
}

ncclUniqueId unique_id_from_rank_0(Communicator& bootstrap) {
  ncclUniqueId id{};
  std::string problem;
  if (bootstrap.rank() == 0) {
    try {
      check_nccl(cuda::nccl_library().get_unique_id(&id), "ncclGetUniqueId");
    } catch (const Error& error) {
      problem = error.what();
    }
  }
  std::vector<int64_t> words(1 + kUniqueIdWords, 0);
  words[0] = problem.empty() ? 0 : 1;
  std::memcpy(words.data() + 1, &id, sizeof(id));
  std::vector<int64_t> all = gather_or_fail(bootstrap, words, problem, "to draw NCCL's unique id");
  std::memcpy(&id, all.data() + 1, sizeof(id));  // rank 0's block
  return id;
}

}  // namespace

bool nccl_available() { return true; }

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> bootstrap, Device device) {
  TINYMOE_CHECK(bootstrap != nullptr, kOp, "no bootstrap communicator");
  cudaUUID_t uuid{};
  const std::string problem = rank_problem(device, uuid);
  std::vector<int64_t> words(1 + kUuidWords, 0);
  words[0] = problem.empty() ? 0 : 1;
  std::memcpy(words.data() + 1, &uuid, sizeof(uuid));
  check_one_gpu_per_rank(gather_or_fail(*bootstrap, words, problem, "to reach its GPU or NCCL"), words.size(),
                         bootstrap->size());
  const ncclUniqueId id = unique_id_from_rank_0(*bootstrap);
  cuda::DeviceGuard guard(device);
  ncclComm_t comm = nullptr;
  check_nccl(cuda::nccl_library().comm_init_rank(&comm, bootstrap->size(), id, bootstrap->rank()), "ncclCommInitRank");
  return std::make_shared<NcclCommunicator>(std::move(bootstrap), device, comm);
}

}  // namespace tinymoe
