#include "nn/expert_parallel_state.h"

#include <functional>
#include <string>
#include <vector>

#include "nn/expert_parallel.h"
#include "nn/state_problems.h"
#include "ops/shape.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace nn {
namespace {

struct BlockAt {
  std::string experts_prefix;  // "layers.0.block_sparse_moe.experts."
  const ExpertParallelMoEBlock* block;
};

// Every expert-parallel block under `module`, depth first in registration order (the order of
// named_parameters, the same on every rank).
void find_blocks(const Module& module, const std::string& prefix, std::vector<BlockAt>* blocks) {
  if (auto* block = dynamic_cast<const ExpertParallelMoEBlock*>(&module)) {
    blocks->push_back({prefix + "experts.", block});
    return;
  }
  for (const auto& [name, child] : module.named_children()) find_blocks(*child, prefix + name + ".", blocks);
}

std::vector<BlockAt> blocks_of(const Module& model) {
  std::vector<BlockAt> blocks;
  find_blocks(model, "", &blocks);
  return blocks;
}

// Every rank's [L, ...] rows, in rank order: [N * L, ...]. all_to_all_rows with this rank's rows
// sent to every rank.
Tensor gather_rows(const Tensor& local, Communicator& comm) {
  const int64_t ranks = comm.size(), rows = local.size(0);
  Shape whole = local.shape();
  whole[0] = rows * ranks;
  Tensor send = concat(TensorList(static_cast<size_t>(ranks), local.detach()), 0);
  Tensor recv = Tensor::empty(whole, local.dtype(), local.device());
  std::vector<int64_t> counts(static_cast<size_t>(ranks), rows);
  comm.all_to_all_rows(send, counts, recv, counts);
  return recv;
}

}  // namespace

StateDict gather_expert_parallel_state(const Module& model) {
  NoGradGuard no_grad;
  StateDict state = model.state_dict();
  for (const BlockAt& at : blocks_of(model))
    for (const auto& [name, tensor] : at.block->experts()->state_dict()) {
      auto entry = state.find(at.experts_prefix + name);
      TINYMOE_CHECK(entry != state.end(), "gather_expert_parallel_state", "the model's state_dict has no '",
                    at.experts_prefix + name, "' for its block's experts");
      entry->second = gather_rows(tensor, *at.block->communicator());
    }
  return state;
}

void load_expert_parallel_state(Module& model, const StateDict& full_state) {
  const char* op = "load_expert_parallel_state";
  StateDict local = full_state;
  std::vector<std::string> problems;
  for (const BlockAt& at : blocks_of(model)) {
    const int64_t experts = at.block->num_experts(), first = at.block->first_expert(), count = at.block->local_experts();
    for (const auto& entry : at.block->experts()->state_dict()) {
      // Checked against the whole model's shape, [E, ...], which is what the file must hold.
      const std::string name = at.experts_prefix + entry.first;
      Shape whole_shape = entry.second.shape();
      whole_shape[0] = experts;
      const Tensor expected = Tensor::empty(whole_shape, entry.second.dtype());
      auto found = local.find(name);
      std::string problem = found == local.end() ? "missing '" + name + "' (" + describe(expected) + ")"
                                                 : load_problem(name, expected, found->second);
      if (!problem.empty()) {
        problems.push_back(problem);
        // The module's own tensor stands in, so the check below does not report it again (with
        // this rank's slice shape); nothing loads when there is a problem.
        local[name] = entry.second;
        continue;
      }
      found->second = slice(found->second.detach(), 0, first, first + count);
    }
  }
  for (const std::string& problem : model.state_dict_problems(local)) problems.push_back(problem);
  throw_if_problems(op, problems);
  model.load_state_dict(local);
}

}  // namespace nn
}  // namespace tinymoe
