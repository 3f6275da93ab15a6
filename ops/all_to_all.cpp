#include "ops/all_to_all.h"

#include "tinymoe/autograd.h"

namespace tinymoe {
namespace {

constexpr const char* kOp = "all_to_all";

int64_t checked_total(const std::vector<int64_t>& splits, const Communicator& comm, const char* name) {
  TINYMOE_CHECK(static_cast<int>(splits.size()) == comm.size(), kOp, "expected ", comm.size(), " ", name,
                " (one per rank), got ", splits.size());
  int64_t total = 0;
  for (size_t r = 0; r < splits.size(); ++r) {
    TINYMOE_CHECK(splits[r] >= 0, kOp, name, "[", r, "] is negative: ", splits[r]);
    total += splits[r];
  }
  return total;
}

// The exchange itself, without recording.
Tensor exchange_rows(const Tensor& x, const std::vector<int64_t>& send_splits, const std::vector<int64_t>& recv_splits,
                     Communicator& comm) {
  Shape shape = x.shape();
  shape[0] = checked_total(recv_splits, comm, "recv_splits");
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  comm.all_to_all_rows(x, send_splits, out, recv_splits);
  return out;
}

}  // namespace

Tensor all_to_all(const Tensor& x, const std::vector<int64_t>& send_splits, const std::vector<int64_t>& recv_splits,
                  const std::shared_ptr<Communicator>& comm) {
  TINYMOE_CHECK(comm != nullptr, kOp, "no communicator");
  check_defined(x, kOp, "x");
  TINYMOE_CHECK(x.dim() >= 1, kOp, "expected x with a row dimension, got a 0-dimensional tensor");
  const int64_t sent = checked_total(send_splits, *comm, "send_splits");
  TINYMOE_CHECK(sent == x.size(0), kOp, "send_splits sum to ", sent, " rows but x has ", x.size(0));
  checked_total(recv_splits, *comm, "recv_splits");
  Tensor out = exchange_rows(x, send_splits, recv_splits, *comm);
  // Recorded whenever autograd records at all, even for an x without gradient: the exchange's
  // backward is a collective, so whether it runs must not depend on one rank's x. (A rank
  // without tokens, whose empty x requires nothing, still sends the others their gradients.)
  if (grad_enabled() && is_floating(x.dtype())) {
    record(kOp, {x}, {out}, [send_splits, recv_splits, comm](const TensorList& grads) -> TensorList {
      return {all_to_all(grads[0], recv_splits, send_splits, comm)};
    });
  }
  return out;
}

std::vector<int64_t> exchange_splits(const std::vector<int64_t>& send_splits, Communicator& comm) {
  checked_total(send_splits, comm, "send_splits");
  // Row i of the gathered [size, size] matrix is rank i's send_splits; this rank's column is
  // what each rank sends here.
  std::vector<int64_t> matrix = comm.all_gather(send_splits);
  std::vector<int64_t> recv(static_cast<size_t>(comm.size()));
  for (int i = 0; i < comm.size(); ++i) recv[i] = matrix[static_cast<size_t>(i * comm.size() + comm.rank())];
  return recv;
}

}  // namespace tinymoe
