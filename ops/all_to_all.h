// all_to_all: the token exchange of expert parallelism (GShard, Lepikhin et al. 2020, section
// 3.2; Megatron-LM's token dispatcher), a collective over a Communicator (tinymoe/communicator.h).
//
//   all_to_all(x, send_splits, recv_splits, comm)
//     x [N, ...] on any device: its rows in comm.size() consecutive blocks, send_splits[j] rows
//     for rank j (sum = N). Returns the blocks received, in rank order: [sum(recv_splits), ...],
//     recv_splits[i] rows from rank i. recv_splits[i] must equal rank i's send_splits[this
//     rank]: exchange_splits computes it.
//   Backward: the reverse exchange, all_to_all(g, recv_splits, send_splits): each row's gradient
//   goes back to the rank the row came from. x gets a gradient (floating x); any dtype moves.
//   The result is on x's device; an engine that does not reach it moves a copy (Communicator).
//
// Every rank calls it in the same order (a collective), and every rank must then run backward
// through it too: a rank whose loss does not depend on the output would leave the others waiting.
// With autograd recording (grad_enabled()) a floating exchange is recorded whether or not x
// requires grad, so the ranks agree on the backward exchanges; grad mode must agree across ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tinymoe/communicator.h"
#include "tinymoe/tensor.h"

namespace tinymoe {

Tensor all_to_all(const Tensor& x, const std::vector<int64_t>& send_splits, const std::vector<int64_t>& recv_splits,
                  const std::shared_ptr<Communicator>& comm);

// What every rank sends to this one, given what this rank sends to each: recv[i] = rank i's
// send_splits[rank()]. A collective; send_splits has comm.size() non-negative entries.
std::vector<int64_t> exchange_splits(const std::vector<int64_t>& send_splits, Communicator& comm);

}  // namespace tinymoe
