// Training checkpoints: everything a run needs to go on as if it had never stopped, in one
// safetensors file (nn/safetensors.h), so any safetensors reader can look inside:
//
//   model.<name>        the model's state_dict (parameters and buffers, such as DeepSeek-V3's bias)
//   optimizer.<name>    the optimizer's state_dict (nn/optim.h: "lr", options, "<i>.exp_avg", ...)
//   generator.<name>    each named Generator's state (i64 words, Generator::state)
//   __metadata__        format "tinymoe-checkpoint", version "1", step, optimizer (its name),
//                       rank and ranks, and the program's own notes as "note.<key>"
//
// A run that saves after step n and a run that loads that file and goes on draw the same batches
// and noise and compute the same numbers, bit for bit, when every source of randomness the run
// uses is among the generators: routers draw their noise (jitter, noisy top-k, GShard's coin) from
// default_generator(), which is per thread, unless given their own (Router::set_generator), and
// then that one must be listed. tests/test_checkpoint.cpp trains a model both ways and compares.
//
// Expert parallelism: each rank holds other experts, so each rank saves its own file; the file
// records the rank, and loading it into another rank or another number of ranks is an Error.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tinymoe/random.h"

namespace tinymoe {
namespace nn {

// What a checkpoint holds, by pointer to the live objects it is saved from and loaded into.
struct TrainingState {
  TrainingState() = default;
  explicit TrainingState(Module* model, Optimizer* optimizer = nullptr,
                         std::map<std::string, Generator*> generators = {})
      : model(model), optimizer(optimizer), generators(std::move(generators)) {}

  Module* model = nullptr;                        // required
  Optimizer* optimizer = nullptr;                 // optional
  std::map<std::string, Generator*> generators;  // optional; names of letters, digits and '_'
  int64_t step = 0;                               // the steps taken so far
  int rank = 0, ranks = 1;                        // expert parallelism: which file of how many
  SafetensorsMetadata notes;                      // the program's own strings (its settings, ...)
};

// Writes `state` to `path`. The file is written beside `path`, flushed to the disk and renamed
// over it, so an interrupted save leaves the previous checkpoint whole. Errors name
// "save_checkpoint".
void save_checkpoint(const std::string& path, const TrainingState& state);

// Loads the checkpoint at `path` into `state`'s model, optimizer and generators, and sets its
// step and notes. Everything is checked before anything changes, and the Error names
// "load_checkpoint" and lists every problem: a file that is not a tinymoe checkpoint or has
// another version; a rank or number of ranks other than state's; the model's state_dict not
// matching exactly (strict); with an optimizer, no optimizer state in the file, another optimizer,
// or state that does not fit it (Optimizer::state_dict_problems); a generator missing from the
// file or a state it cannot take. The whole file must parse, but parts that `state` does not ask
// for (the optimizer and generators when only the model is given, to sample from a trained model)
// are not checked against anything. After the checks only a failing device copy (out of memory)
// could stop a load part-way.
void load_checkpoint(const std::string& path, TrainingState& state);

}  // namespace nn
}  // namespace tinymoe
