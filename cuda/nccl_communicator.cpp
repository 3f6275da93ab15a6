// The NCCL engine of tinymoe/communicator.h (compiled when TINYMOE_WITH_NCCL). Rows travel GPU to
// GPU with grouped ncclSend / ncclRecv (NCCL's all-to-all with uneven blocks), sums with
// ncclAllReduce, both on the legacy default stream every kernel of the backend uses
// (cuda/runtime.h), so they are ordered after the kernels that wrote their input and before
// those that read their output. Host values (counts, NCCL's unique id) go over the bootstrap
// communicator. Every NCCL call is checked and a failure becomes a tinymoe::Error naming the call
// and NCCL's reason.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
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
  // ncclCommDestroy is a collective among the ranks of a machine (it finalizes the communicator,
  // waiting for its pending work): fine when every rank lets go of its communicator in step. A
  // communicator dropped while an exception unwinds may have peers stuck in an unmatched call, so
  // it is aborted instead, which waits for nobody.
  ~NcclCommunicator() override {
    try {
      cuda::DeviceGuard guard(device_);
      const cuda::NcclLibrary& nccl = cuda::nccl_library();
      if (std::uncaught_exceptions() > 0) nccl.comm_abort(comm_);
      else nccl.comm_destroy(comm_);
    } catch (...) {  // a destructor does not throw
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
    // The group is closed whatever happens inside it (an open group would swallow every later
    // NCCL call of this thread); the first failure is thrown after.
    check_nccl(nccl.group_start(), "ncclGroupStart", comm_);
    ncclResult_t first_failure = ncclSuccess;
    const char* failed_call = "";
    auto keep_first = [&](ncclResult_t result, const char* call) {
      if (first_failure != ncclSuccess || result == ncclSuccess) return;
      first_failure = result;
      failed_call = call;
    };
    for (int peer = 0; peer < size() && first_failure == ncclSuccess; ++peer) {
      const size_t sending = static_cast<size_t>(send_rows[peer]) * row_size;
      const size_t receiving = static_cast<size_t>(recv_rows[peer]) * row_size;
      if (sending > 0) keep_first(nccl.send(send_bytes, sending, ncclUint8, peer, comm_, kBackendStream), "ncclSend");
      if (receiving > 0) keep_first(nccl.recv(recv_bytes, receiving, ncclUint8, peer, comm_, kBackendStream), "ncclRecv");
      send_bytes += sending;
      recv_bytes += receiving;
    }
    const ncclResult_t group_end = nccl.group_end();
    check_nccl(first_failure, failed_call, comm_);
    check_nccl(group_end, "ncclGroupEnd", comm_);
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

// uuids: every rank's GPU UUID, kUuidWords words each, in rank order.
void check_one_gpu_per_rank(const std::vector<int64_t>& uuids, int ranks) {
  auto uuid_of = [&](int r) { return uuids.begin() + static_cast<std::ptrdiff_t>(r * kUuidWords); };
  for (int r = 0; r < ranks; ++r)
    for (int q = r + 1; q < ranks; ++q)
      TINYMOE_CHECK(!std::equal(uuid_of(r), uuid_of(r + 1), uuid_of(q)),
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
  std::vector<int64_t> words(kUniqueIdWords, 0);
  std::memcpy(words.data(), &id, sizeof(id));
  std::vector<int64_t> all = gather_on_every_rank(bootstrap, words, problem, kOp);
  std::memcpy(&id, all.data(), sizeof(id));  // rank 0's block
  return id;
}

}  // namespace

bool nccl_available() { return true; }

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> bootstrap, Device device) {
  TINYMOE_CHECK(bootstrap != nullptr, kOp, "no bootstrap communicator");
  cudaUUID_t uuid{};
  const std::string problem = rank_problem(device, uuid);
  std::vector<int64_t> words(kUuidWords, 0);
  std::memcpy(words.data(), &uuid, sizeof(uuid));
  check_one_gpu_per_rank(gather_on_every_rank(*bootstrap, words, problem, kOp), bootstrap->size());
  const ncclUniqueId id = unique_id_from_rank_0(*bootstrap);
  // ncclCommInitRank is a collective of its own: a rank that fails here leaves the others in it
  // until NCCL's bootstrap gives up, as MPI_Init would.
  cuda::DeviceGuard guard(device);
  const cuda::NcclLibrary& nccl = cuda::nccl_library();
  ncclComm_t comm = nullptr;
  const ncclResult_t result = nccl.comm_init_rank(&comm, bootstrap->size(), id, bootstrap->rank());
  if (result != ncclSuccess && comm != nullptr) nccl.comm_abort(comm);
  check_nccl(result, "ncclCommInitRank");
  return std::make_shared<NcclCommunicator>(std::move(bootstrap), device, comm);
}

}  // namespace tinymoe
