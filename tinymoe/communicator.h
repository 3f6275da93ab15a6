// Communicator: the collectives expert parallelism needs, over one group of processes (ranks).
// Expert parallelism splits the experts across ranks; each rank routes its own tokens, sends each
// token row to the rank that holds its expert with all_to_all, and takes the results back with
// the reverse one (ops/all_to_all.h, nn/expert_parallel.h).
//
// Engines:
//   local_communicator()  one rank, no other process: EP=1, and programs that run either way;
//                         tensors on any device.
//   MpiSession / mpi_communicator()  every process of `mpirun -np N` (OpenMPI). It moves host
//                         memory: cuda tensors travel through a host copy, so any number of
//                         ranks may share one GPU.
//   nccl_communicator(bootstrap, device)  NCCL between GPUs, one GPU per rank, over the ranks of
//                         another communicator (which carries NCCL's unique id and the small
//                         host-side exchanges). cpu tensors travel through the rank's GPU.
// A collective must be called by every rank of the group, in the same order, or it waits forever:
// that is MPI's and NCCL's contract, and autograd keeps it as long as every rank runs backward
// through the same ops.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "local", "mpi", "nccl"
  // Whether the engine moves memory on `device` itself. A tensor on another device travels
  // through staging_device(): a copy there before the collective and back after.
  virtual bool reaches(Device device) const = 0;
  virtual Device staging_device() const = 0;

  // Sends rows: block j of `send` (send_rows[j] rows, blocks one after another along dim 0) goes
  // to rank j, and block i of `recv` (recv_rows[i] rows) comes from rank i. Both lists have
  // size() non-negative entries summing to the tensors' row counts; recv_rows[i] must equal what
  // rank i sends here. send and recv: contiguous, of one dtype, row shape and device.
  void all_to_all_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                       const std::vector<int64_t>& recv_rows);
  // Sums an f32 or f64 tensor over the ranks, in place, the same on every rank.
  void all_reduce_sum(const Tensor& tensor);
  // Every rank's host `values` (the same count on every rank), concatenated in rank order.
  virtual std::vector<int64_t> all_gather(const std::vector<int64_t>& values) = 0;

 protected:
  // The engines' parts, called with checked arguments on a device the engine reaches.
  virtual void exchange_rows(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                             const std::vector<int64_t>& recv_rows) = 0;
  virtual void sum_in_place(const Tensor& tensor) = 0;
  // Bytes of one row (along dim 0) of `tensor`.
  static int64_t row_bytes(const Tensor& tensor);
};

// One rank: all_to_all_rows copies, all_gather returns its input, all_reduce_sum leaves it.
std::shared_ptr<Communicator> local_communicator();

// True when this build has MPI (TINYMOE_MPI and an MPI library found).
bool mpi_available();

// Starts MPI for its lifetime (MPI_Init_thread, MPI_THREAD_FUNNELED) and ends it (MPI_Finalize):
// construct one at the top of main, before anything calls mpi_communicator(). An Error in a
// build without MPI.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  // Ends every process of the job with `code` (MPI_Abort). For errors: a rank that returns from
  // main while the others wait in a collective would leave the job hanging in MPI_Finalize.
  [[noreturn]] static void abort(int code);
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// Every process of the MPI job (a duplicate of MPI_COMM_WORLD, so tinymoe's messages never mix
// with the program's own). Itself a collective: every rank calls it. Needs a live MpiSession; an
// Error otherwise or without MPI.
std::shared_ptr<Communicator> mpi_communicator();

// Every rank's `words` (the same count on every rank), concatenated in rank order, once every
// rank has reported whether it can go on: `own_problem` empty, or why not. When any rank has a
// problem, every rank throws an Error naming `op` (the failing rank's names its problem, the
// others the failing rank): a rank that threw alone would leave the others waiting in their next
// collective. A collective.
std::vector<int64_t> gather_on_every_rank(Communicator& comm, const std::vector<int64_t>& words,
                                          const std::string& own_problem, const char* op);

// This rank's place among the ranks of its machine (ranks with the same host name, in rank
// order): 0 .. (ranks on the machine) - 1. A collective over `comm`.
int node_local_rank(Communicator& comm);

// The GPU for this rank: cuda:(node_local_rank mod the machine's device count), so the ranks of
// one machine take its GPUs in turn. A collective; an Error on every rank when any rank has no
// CUDA device.
Device rank_cuda_device(Communicator& comm);

// True when this build has the NCCL engine (the CUDA backend, with nccl.h found at build time).
// libnccl.so.2 itself is opened by the first nccl_communicator().
bool nccl_available();

// NCCL over the ranks of `bootstrap` (mpi_communicator(), or local_communicator() for one rank),
// moving tensors on `device`, this rank's GPU (rank_cuda_device picks one). Rank 0 draws NCCL's
// unique id and the bootstrap's all_gather hands it to every rank; counts and other host values
// keep travelling over the bootstrap. A collective over `bootstrap`. NCCL needs a GPU per rank:
// ranks that share one are an Error naming them (mpi_communicator() serves that case). An Error
// without CUDA, NCCL or the device.
std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> bootstrap, Device device);

}  // namespace tinymoe
