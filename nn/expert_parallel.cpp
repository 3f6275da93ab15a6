#include "nn/expert_parallel.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "nn/balance_losses.h"
#include "nn/dispatch.h"
#include "nn/gpt_oss_experts.h"
#include "nn/router_presets.h"
#include "ops/all_to_all.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/shape.h"

namespace tinymoe {
namespace nn {
namespace {

constexpr const char* kOp = "ExpertParallelMoEBlock";

// Experts first .. first+count-1 of a stacked weight [E, in, out] (or bias [E, n]), as a new leaf.
Tensor expert_slice(const Tensor& stacked, int64_t first, int64_t count) {
  return slice(stacked.detach(), 0, first, first + count);
}

// This rank's slice of the full block's experts, of the same kind.
std::shared_ptr<Experts> local_slice(const Experts& full, int64_t first, int64_t count) {
  if (auto swiglu = dynamic_cast<const SwiGLUExperts*>(&full))
    return std::make_shared<SwiGLUExperts>(expert_slice(swiglu->w1(), first, count),
                                           expert_slice(swiglu->w3(), first, count),
                                           expert_slice(swiglu->w2(), first, count));
  if (auto gpt_oss = dynamic_cast<const GptOssExperts*>(&full))
    return std::make_shared<GptOssExperts>(
        expert_slice(gpt_oss->w1(), first, count), expert_slice(gpt_oss->w3(), first, count),
        expert_slice(gpt_oss->w2(), first, count), expert_slice(gpt_oss->b1(), first, count),
        expert_slice(gpt_oss->b3(), first, count), expert_slice(gpt_oss->b2(), first, count), gpt_oss->limit(),
        gpt_oss->alpha());
  const auto& mlp = dynamic_cast<const MLPExperts&>(full);
  return std::make_shared<MLPExperts>(expert_slice(mlp.wi(), first, count), expert_slice(mlp.wo(), first, count),
                                      mlp.activation());
}

// A double's bits as an int64, so that a fingerprint tells any two values apart.
int64_t bits_of(double value) {
  int64_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Every rank must build the same block: one built with another width, expert count or routing
// would exchange rows of another size or gather another number of counts, which MPI and NCCL do
// not detect (undefined behaviour, often a hang). A collective; every rank sees every rank's
// fingerprint, so a difference anywhere is an Error everywhere.

void check_same_block_on_every_rank(const SparseMoEConfig& config, Communicator& comm) {
  const std::vector<int64_t> mine = {config.num_experts,
                                     config.hidden_size,
                                     config.intermediate_size,
                                     config.router.top_k,
                                     static_cast<int64_t>(config.dtype),
                                     static_cast<int64_t>(config.expert_kind),
                                     static_cast<int64_t>(config.shared.kind),
                                     config.router.aux_loss_global_batch ? 1 : 0,
                                     bits_of(config.router.top_p),
                                     config.router.weight_on_expert_input ? 1 : 0,
                                     config.router.select_on_logits ? 1 : 0,
                                     config.router.gate_bias ? 1 : 0,
                                     static_cast<int64_t>(config.router.score_function),
                                     static_cast<int64_t>(config.router.selection),
                                     config.router.relu_target_k,
                                     config.router.l1_loss.enabled ? 1 : 0,
                                     bits_of(config.router.l1_loss.coefficient),
                                     bits_of(config.router.l1_coefficient_multiplier)};
  const std::vector<int64_t> all = comm.all_gather(mine);
  for (int r = 0; r < comm.size(); ++r)
    TINYMOE_CHECK(std::equal(mine.begin(), mine.end(), all.begin() + static_cast<std::ptrdiff_t>(r * mine.size())),
                  kOp, "rank ", r, " built another block than rank ", comm.rank(),
                  " (num_experts, hidden_size, intermediate_size, top_k, dtype, expert or shared-expert kind, "
                  "global-batch balancing, top_p, where the weights apply, what selects, the gate's bias, the score "
                  "function, the selection or ReLU routing's target or l1 loss differ): every rank must build it from the same config");
}

int64_t checked_experts(const SparseMoEConfig& config, const std::shared_ptr<Communicator>& comm) {
  TINYMOE_CHECK(comm != nullptr, kOp, "no communicator");
  TINYMOE_CHECK(config.num_experts > 0 && config.num_experts % comm->size() == 0, kOp, "expected num_experts (",
                config.num_experts, ") divisible by the ", comm->size(), " ranks of the ", comm->name(),
                " communicator");
  check_same_block_on_every_rank(config, *comm);
  return config.num_experts;
}

// Where the rows this rank receives go for the grouped GEMM. They arrive source-major (from rank
// 0: its rows for local expert 0, then 1, ...; then from rank 1, ...); the experts want them
// expert-major. counts[i * L + l]: rows from rank i for local expert l.
struct Regroup {
  Tensor expert_major;  // i64 [R]: received row of each expert-major position
  Tensor source_major;  // i64 [R]: the inverse, expert-major position of each received row
  Tensor offsets;       // i64 [L+1]: the local experts' row ranges, expert-major
};

Regroup regroup_received(const std::vector<int64_t>& counts, int64_t sources, int64_t local, Device device) {
  std::vector<int64_t> source_start(counts.size() + 1, 0);  // first received row of (source, expert)
  for (size_t k = 0; k < counts.size(); ++k) source_start[k + 1] = source_start[k] + counts[k];
  const int64_t rows = source_start.back();
  std::vector<int64_t> expert_major, source_major(rows), offsets = {0};
  for (int64_t l = 0; l < local; ++l) {
    for (int64_t i = 0; i < sources; ++i)
      for (int64_t row = source_start[i * local + l]; row < source_start[i * local + l + 1]; ++row) {
        source_major[row] = static_cast<int64_t>(expert_major.size());
        expert_major.push_back(row);
      }
    offsets.push_back(static_cast<int64_t>(expert_major.size()));
  }
  return {from_vector(expert_major, {rows}).to(device), from_vector(source_major, {rows}).to(device),
          from_vector(offsets, {local + 1}).to(device)};
}

// What global-batch balancing (RouterConfig::aux_loss_global_batch) shares: this rank's pairs per
// expert as the aux loss counts them, then its token count; empty when the router does not ask.
std::vector<int64_t> global_batch_share(const RouterConfig& config, const Routing& routing, int64_t tokens) {
  if (!config.aux_loss_global_batch) return {};
  std::vector<int64_t> share;
  for (double count : expert_pair_counts(aux_loss_counted_index(config, routing.expert_index), config.num_experts))
    share.push_back(static_cast<int64_t>(count));
  share.push_back(tokens);
  return share;
}

// Replaces routing's aux loss by the one whose f_i counts every rank's tokens. gathered: each
// rank's `stride` shared values, its last E + 1 the aux-loss counts and the token count.
// The loss (a mean over this rank's tokens) is scaled by N T_r / T, so that the mean over the N
// ranks, which summed gradients divided by N follow, is the whole batch's loss, E sum_i f_i P_i
// with P_i the mean over all T tokens, for ranks of any sizes (the scale is 1 for equal ones).
void use_global_batch_aux_loss(const RouterConfig& config, const std::vector<int64_t>& gathered, size_t stride,
                               Routing& routing) {
  const int64_t experts = config.num_experts;
  std::vector<double> batch_counts(static_cast<size_t>(experts), 0.0);
  int64_t batch_tokens = 0;
  for (size_t start = 0; start < gathered.size(); start += stride) {
    const size_t counts_start = start + stride - static_cast<size_t>(experts) - 1;
    for (int64_t e = 0; e < experts; ++e) batch_counts[e] += static_cast<double>(gathered[counts_start + e]);
    batch_tokens += gathered[start + stride - 1];
  }
  const int64_t counted_per_token = aux_loss_counted_index(config, routing.expert_index).size(1);
  Tensor loss = load_balancing_loss_with_batch(balance_probabilities(config, routing.scores), counted_per_token,
                                               config.aux_loss_form, batch_counts, batch_tokens);
  const double ranks = static_cast<double>(gathered.size() / stride), tokens = static_cast<double>(routing.scores.size(0));
  routing.losses["aux_loss"] = batch_tokens > 0 ? mul(loss, ranks * tokens / static_cast<double>(batch_tokens)) : loss;
}

}  // namespace

ExpertParallelMoEBlock::ExpertParallelMoEBlock(const SparseMoEConfig& config, std::shared_ptr<Communicator> comm,
                                               Generator* generator)
    : num_experts_(checked_experts(config, comm)), comm_(std::move(comm)) {
  // The whole block, drawn as a single process draws it; this rank keeps what it holds.
  SparseMoEBlock full(config, generator);
  const int64_t local = num_experts_ / comm_->size();
  gate_ = register_module("gate", full.gate());
  experts_ = register_module("experts", local_slice(*full.experts(), comm_->rank() * local, local));
  if (full.shared_expert())
    shared_expert_ = register_module(full.shared_expert_gate() ? "shared_expert" : "shared_experts",
                                     full.shared_expert());
  if (full.shared_expert_gate()) shared_expert_gate_ = register_module("shared_expert_gate", full.shared_expert_gate());
}

TensorList ExpertParallelMoEBlock::replicated_parameters() const {
  TensorList parameters = gate_->parameters();
  for (const Module* module : {static_cast<const Module*>(shared_expert_.get()),
                               static_cast<const Module*>(shared_expert_gate_.get())})
    if (module != nullptr)
      for (const Tensor& parameter : module->parameters()) parameters.push_back(parameter);
  return parameters;
}

MoEOutput ExpertParallelMoEBlock::forward(const Tensor& x) const {
  const int64_t local = local_experts(), ranks = comm_->size();
  Tensor tokens = moe_block_tokens(x, hidden_size(), dtype(), gate_->weight().device(), kOp);
  const int64_t tokens_count = tokens.size(0);

  Routing routing = gate_->forward(tokens, x.size(-2));
  check_weight_placement(routing, *experts_, kOp);
  DispatchPlan plan = plan_dispatch(routing, tokens_count, num_experts_, x.dtype(), kOp);

  // Pairs per (rank, expert) on every rank: [N, E]. Rank j's experts are a contiguous block of the
  // sorted pairs, so this rank sends block j to rank j. Global-batch balancing rides along in the
  // same all_gather: each rank's aux-loss counts and token count after its pairs.
  const std::vector<int64_t> batch_share = global_batch_share(gate_->config(), routing, tokens_count);
  std::vector<int64_t> shared = plan.tokens_per_expert.to(Device::cpu()).to_vector<int64_t>();
  shared.insert(shared.end(), batch_share.begin(), batch_share.end());
  std::vector<int64_t> gathered = comm_->all_gather(shared);
  std::vector<int64_t> counts;
  for (int64_t r = 0; r < ranks; ++r) {
    const auto block = gathered.begin() + static_cast<std::ptrdiff_t>(r * shared.size());
    counts.insert(counts.end(), block, block + num_experts_);
  }
  if (!batch_share.empty()) use_global_batch_aux_loss(gate_->config(), gathered, shared.size(), routing);
  std::vector<int64_t> send_splits(ranks, 0), recv_splits(ranks, 0), received_counts;
  for (int64_t j = 0; j < ranks; ++j)
    for (int64_t l = 0; l < local; ++l) {
      send_splits[j] += counts[comm_->rank() * num_experts_ + j * local + l];
      int64_t from_j = counts[j * num_experts_ + comm_->rank() * local + l];
      recv_splits[j] += from_j;
      received_counts.push_back(from_j);
    }

  Tensor x_recv = all_to_all(dispatch_tokens(tokens, plan), send_splits, recv_splits, comm_);
  Regroup regroup = regroup_received(received_counts, ranks, local, tokens.device());
  Tensor y_local = experts_->forward(index_select(x_recv, regroup.expert_major), regroup.offsets);
  Tensor y_perm = all_to_all(index_select(y_local, regroup.source_major), recv_splits, send_splits, comm_);
  Tensor y = combine_outputs(y_perm, plan);
  if (shared_expert_) y = add(y, shared_expert_output(*shared_expert_, shared_expert_gate_.get(), tokens));
  RoutingDiagnostics diagnostics = diagnose(routing, gate_->e_score_correction_bias());
  return {y.reshape(x.shape()), std::move(routing), plan.tokens_per_expert, std::move(diagnostics)};
}

void ExpertParallelMoEBlock::update_bias(const MoEOutput& output, double rate) {
  check_defined(output.tokens_per_expert, "ExpertParallelMoEBlock::update_bias", "output.tokens_per_expert");
  std::vector<int64_t> all = comm_->all_gather(output.tokens_per_expert.to(Device::cpu()).to_vector<int64_t>());
  std::vector<int64_t> loads(static_cast<size_t>(num_experts_), 0);
  for (size_t i = 0; i < all.size(); ++i) loads[i % loads.size()] += all[i];
  gate_->update_bias(loads, rate);
}

double ExpertParallelMoEBlock::routing_sparsity(const MoEOutput& output) const {
  check_defined(output.routing.scores, "ExpertParallelMoEBlock::routing_sparsity", "output.routing.scores");
  std::vector<int64_t> all = comm_->all_gather({output.routing.routed_pairs, output.routing.scores.numel()});
  double pairs = 0.0, slots = 0.0;
  for (size_t r = 0; r < all.size(); r += 2) {
    pairs += static_cast<double>(all[r]);
    slots += static_cast<double>(all[r + 1]);
  }
  return slots > 0.0 ? 1.0 - pairs / slots : std::numeric_limits<double>::quiet_NaN();
}

void all_reduce_gradients(const TensorList& parameters, Communicator& comm) {
  for (const Tensor& parameter : parameters) {
    check_defined(parameter, "all_reduce_gradients", "parameter");
    if (!parameter.grad().defined()) parameter.impl()->grad = zeros_like(parameter);
    comm.all_reduce_sum(parameter.grad());
  }
}

}  // namespace nn
}  // namespace tinymoe
