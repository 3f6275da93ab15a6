// Moving weights between an expert-parallel model and the single-process model it splits: each
// ExpertParallelMoEBlock holds experts first_expert() .. first_expert() + L - 1 of E under the
// single-process names (nn/expert_parallel.h), so the single-process state_dict is every rank's
// expert tensors concatenated along the expert dimension in rank order, plus the replicated rest.
//
// With these a model trained under `mpirun -np N` is saved as one file that a single process, or
// any other number of ranks, loads: gather, save on one rank, and load with load_state_dict (one
// process) or load_expert_parallel_state (any N dividing E). The per-rank checkpoints of
// nn/checkpoint.h stay the way to resume a run exactly; they hold each rank's optimizer and
// generators too, which do not move between numbers of ranks.
#pragma once

#include "nn/module.h"

namespace tinymoe {
namespace nn {

// The state_dict of the single-process model, on every rank: each expert-parallel block's
// expert tensors gathered from every rank ([L, ...] each -> [E, ...], on their device), the
// other tensors as this rank holds them (the replicated ones are the same on every rank while
// the ranks sum their gradients and step alike). A collective: every rank calls it with the same
// model. A model without expert-parallel blocks gives its own state_dict. Memory: every rank ends
// up holding all E experts (and sends N copies of its own while gathering), for a model small
// enough for one process to hold, as tinymoe's are.
StateDict gather_expert_parallel_state(const Module& model);

// Loads a single-process state_dict (every block's E experts) into `model`: each expert-parallel
// block takes its own experts' slice, everything else loads as load_state_dict loads it (strict,
// in place, any device). Checks everything first and loads nothing on a problem; the Error
// (naming "load_expert_parallel_state") lists them all, such as an expert tensor whose first
// dimension is not E (messages give the whole model's shapes, which the file must hold). Not a
// collective: every rank loads the same state on its own, so every rank meets the same problems;
// but a rank that fails to read the file, when the others did, leaves them waiting at their next
// collective, so end the job on an Error (MpiSession::abort, as train_tiny_lm does).
void load_expert_parallel_state(Module& model, const StateDict& full_state);

}  // namespace nn
}  // namespace tinymoe
