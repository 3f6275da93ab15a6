// Communicator: the collectives expert parallelism needs, over one group of processes (ranks).
// Expert parallelism splits the experts across ranks; each rank routes its own tokens, sends each
// token row to the rank that holds its expert with all_to_all, and takes the results back with
// the reverse one (ops/all_to_all.h, nn/expert_parallel.h).
//
// Engines:
//   local_communicator()  one rank, no other process: EP=1, and programs that run either way;
//   MpiSession / mpi_communicator()  every process of `mpirun -np N` (OpenMPI; cpu tensors).
// A collective must be called by every rank of the group, in the same order, or it waits forever:
// that is MPI's contract, and autograd keeps it as long as every rank runs backward through the
// same ops.
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
  virtual std::string name() const = 0;  // "local", "mpi"

  // Sends rows: block j of `send` (send_rows[j] rows of row_bytes bytes, blocks one after
  // another) goes to rank j, and block i of `recv` (recv_rows[i] rows) comes from rank i. Both
  // lists have size() entries; recv_rows[i] must equal what rank i sends here.
  virtual void all_to_all_rows(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                               const std::vector<int64_t>& recv_rows, int64_t row_bytes) = 0;
  // Every rank's `values` (the same count on every rank), concatenated in rank order.
  virtual std::vector<int64_t> all_gather(const std::vector<int64_t>& values) = 0;
  // Sums an f32 or f64 cpu tensor over the ranks, in place, the same on every rank.
  virtual void all_reduce_sum(const Tensor& tensor) = 0;
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

}  // namespace tinymoe
