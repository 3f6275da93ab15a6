// nn::ExpertParallelMoEBlock: the sparse MoE block with its experts split across the ranks of a
// Communicator (expert parallelism: GShard, Lepikhin et al. 2020; Megatron-LM's EP). N ranks hold
// E / N experts each; every rank routes its own tokens and sends each (token, expert) pair's row
// to the rank holding the expert:
//
//   every rank r:  its tokens x [T_r, d]; the gate and any shared expert (replicated);
//                  experts r*L .. r*L + L-1 of the E, L = E / N
//   routing = gate(x)                              as SparseMoEBlock, on this rank's tokens
//   x_perm  = x[sorted_token]                      pairs sorted by expert, so by rank     [P, d]
//   x_recv  = all_to_all(x_perm)                   the rows for this rank's experts, by source
//   y_recv  = experts(x_recv regrouped by expert)  grouped GEMMs, then back in source order
//   y_perm  = all_to_all(y_recv), reversed         every pair's output back on its token's rank
//   y       = scatter_add(sorted_weight * y_perm)  (+ the shared expert)                [T_r, d]
//
// Built from the same config and seed on every rank, it draws exactly the parameters of
// SparseMoEBlock(config, generator) and keeps its own slice of the experts. EP=N then computes
// what EP=1 computes on the concatenated batch, up to float rounding, forward and backward (the
// outputs for this rank's tokens, the gradients of this rank's experts), whenever a token's
// routing does not depend on which rank holds the other tokens:
//   - per-token rules (top-k, sigmoid, group-limited), in eval mode for rules that draw jitter
//     or noise (each rank draws for its own tokens);
//   - capacity and expert choice when each rank holds whole sequences of a [B, S, d] input
//     (they count per sequence); over a [T, d] input they count this rank's T tokens, as
//     Sinkhorn's training-time balancing does in every case.
// The replicated gate and shared expert get gradients from this rank's tokens only;
// all_reduce_gradients sums them (as data parallelism does). Routing losses and diagnostics
// describe this rank's tokens, but for RouterConfig::aux_loss_global_batch, whose aux loss counts
// the experts' load over every rank's tokens (load_balancing_loss_with_batch); update_bias sums
// the loads over the ranks first, and update_l1_coefficient counts the sparsity over them.
//
// Parameter names are SparseMoEBlock's; experts.* hold this rank's L experts (global expert
// first_expert() + i at index i). It runs on any device (module.to(device)): over the mpi
// communicator cuda rows travel through host memory, over nccl from GPU to GPU.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/moe_block.h"
#include "tinymoe/communicator.h"

namespace tinymoe {
namespace nn {

class ExpertParallelMoEBlock : public Module {
 public:
  // config.num_experts must be divisible by comm->size(). Parameters are drawn from `generator`
  // (the global one when null) as SparseMoEBlock(config, generator) draws them. A collective:
  // the ranks check that they all build the same block (an Error on every rank otherwise).
  ExpertParallelMoEBlock(const SparseMoEConfig& config, std::shared_ptr<Communicator> comm,
                         Generator* generator = nullptr);

  // x [T, d] or [B, S, d]: this rank's tokens (T may differ between ranks, 0 included). A
  // collective: every rank calls it, and later runs backward through it.
  MoEOutput forward(const Tensor& x) const;
  MoEOutput operator()(const Tensor& x) const { return forward(x); }

  int64_t num_experts() const { return num_experts_; }  // E, over all ranks
  int64_t local_experts() const { return experts_->num_experts(); }
  int64_t first_expert() const { return comm_->rank() * local_experts(); }
  int64_t hidden_size() const { return experts_->hidden_size(); }
  DType dtype() const { return experts_->dtype(); }
  const std::shared_ptr<Communicator>& communicator() const { return comm_; }
  const std::shared_ptr<Router>& gate() const { return gate_; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  // DeepSeek-V3's bias balancing (SparseMoEBlock::update_bias) from the loads of every rank's
  // tokens, so the replicated bias stays the same everywhere. A collective; needs a router with
  // a selection bias.
  void update_bias(const MoEOutput& output, double rate);
  // Routing::sparsity over every rank's tokens: the share of the (token, expert) slots of the
  // whole batch without a routed pair (NaN when no rank has a token). A collective.
  double routing_sparsity(const MoEOutput& output) const;
  // ReMoE's L1 controller (Router::update_l1_coefficient) moved by routing_sparsity, so the
  // replicated lambda stays the same everywhere. A collective; needs a router with the l1 loss.
  void update_l1_coefficient(const MoEOutput& output) { gate_->update_l1_coefficient(routing_sparsity(output)); }
  // The parameters every rank holds a copy of (gate, shared expert and its gate), whose
  // gradients all_reduce_gradients sums; the experts are this rank's alone.
  TensorList replicated_parameters() const;

 private:
  int64_t num_experts_;
  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<Router> gate_;
  std::shared_ptr<Experts> experts_;
  std::shared_ptr<SharedExpert> shared_expert_;
  std::shared_ptr<Linear> shared_expert_gate_;
};

// Sums every tensor's gradient over the ranks, in place (a parameter without one counts as
// zeros and gets the sum): data parallelism's gradient step. A collective: every rank passes the
// same parameters in the same order.
void all_reduce_gradients(const TensorList& parameters, Communicator& comm);

}  // namespace nn
}  // namespace tinymoe
