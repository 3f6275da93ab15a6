#include "nn/checkpoint.h"

#include <cctype>
#include <cstring>
#include <vector>

#include "nn/state_problems.h"
#include "tinymoe/error.h"

namespace tinymoe {
namespace nn {
namespace {

const char* kFormat = "tinymoe-checkpoint";
const char* kVersion = "1";
const std::string kModel = "model.", kOptimizer = "optimizer.", kGenerator = "generator.", kNote = "note.";

bool starts_with(const std::string& text, const std::string& prefix) { return text.compare(0, prefix.size(), prefix) == 0; }

// The entries of `tensors` under `prefix`, without it.
StateDict section(const TensorMap& tensors, const std::string& prefix) {
  StateDict out;
  for (const auto& entry : tensors)
    if (starts_with(entry.first, prefix)) out.emplace(entry.first.substr(prefix.size()), entry.second);
  return out;
}

// A generator's words as an i64 tensor (bit for bit) and back.
Tensor words_tensor(const std::vector<uint64_t>& words) {
  std::vector<int64_t> values(words.size());
  std::memcpy(values.data(), words.data(), words.size() * sizeof(uint64_t));
  return from_vector(values, {static_cast<int64_t>(values.size())});
}

std::vector<uint64_t> tensor_words(const Tensor& tensor) {
  std::vector<int64_t> values = tensor.to_vector<int64_t>();
  std::vector<uint64_t> words(values.size());
  std::memcpy(words.data(), values.data(), values.size() * sizeof(uint64_t));
  return words;
}

// A count in the metadata (canonical_count), or -1 when it is missing or not one.
int64_t parse_count(const SafetensorsMetadata& metadata, const std::string& key) {
  auto found = metadata.find(key);
  return found == metadata.end() ? -1 : canonical_count(found->second);
}

void check_state(const TrainingState& state, const char* op) {
  TINYMOE_CHECK(state.model != nullptr, op, "TrainingState::model is null: a checkpoint always holds the model");
  TINYMOE_CHECK(state.ranks >= 1 && state.rank >= 0 && state.rank < state.ranks, op, "rank ", state.rank,
                " is not one of ", state.ranks, " ranks");
  for (const auto& generator : state.generators) {
    TINYMOE_CHECK(generator.second != nullptr, op, "generator '", generator.first, "' is null");
    bool plain = !generator.first.empty();
    for (char c : generator.first) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    TINYMOE_CHECK(plain, op, "generator name '", generator.first, "' must be letters, digits and '_'");
  }
}

// Which file of how many, and the format: problems that make the rest of the file meaningless.
std::vector<std::string> identity_problems(const SafetensorsMetadata& metadata, const TrainingState& state) {
  auto value = [&](const std::string& key) {
    auto found = metadata.find(key);
    return found == metadata.end() ? std::string("(none)") : found->second;
  };
  if (value("format") != kFormat) return {"not a tinymoe checkpoint (metadata format is " + value("format") + ")"};
  if (value("version") != kVersion)
    return {"checkpoint version " + value("version") + ", this build reads version " + kVersion};
  std::vector<std::string> problems;
  if (parse_count(metadata, "step") < 0) problems.push_back("metadata step '" + value("step") + "' is not a count");
  if (parse_count(metadata, "rank") != state.rank || parse_count(metadata, "ranks") != state.ranks)
    problems.push_back("the file is rank " + value("rank") + " of " + value("ranks") + " ranks, loading into rank " +
                       std::to_string(state.rank) + " of " + std::to_string(state.ranks));
  return problems;
}

std::vector<std::string> optimizer_problems(const TensorMap& tensors, const SafetensorsMetadata& metadata,
                                            const Optimizer& optimizer) {
  auto name = metadata.find("optimizer");
  if (name == metadata.end()) return {"the file holds no optimizer state"};
  if (name->second != optimizer.name())
    return {"the file holds " + name->second + " state, loading into " + optimizer.name()};
  std::vector<std::string> problems;
  for (const std::string& problem : optimizer.state_dict_problems(section(tensors, kOptimizer)))
    problems.push_back("optimizer: " + problem);
  return problems;
}

std::vector<std::string> generator_problems(const TensorMap& tensors, const TrainingState& state) {
  std::vector<std::string> problems;
  for (const auto& generator : state.generators) {
    auto found = tensors.find(kGenerator + generator.first);
    if (found == tensors.end()) {
      problems.push_back("missing generator '" + generator.first + "'");
    } else if (found->second.dtype() != DType::i64 || found->second.dim() != 1) {
      problems.push_back("generator '" + generator.first + "' expects i64 words, got " + describe(found->second));
    } else {
      try {
        Generator probe;
        probe.set_state(tensor_words(found->second));
      } catch (const Error& error) {
        problems.push_back("generator '" + generator.first + "': " + error.what());
      }
    }
  }
  return problems;
}

}  // namespace

void save_checkpoint(const std::string& path, const TrainingState& state) {
  const char* op = "save_checkpoint";
  check_state(state, op);
  TINYMOE_CHECK(state.step >= 0, op, "step must be >= 0, got ", state.step);
  TensorMap tensors;
  for (const auto& entry : state.model->state_dict()) tensors.emplace(kModel + entry.first, entry.second);
  SafetensorsMetadata metadata = {{"format", kFormat},
                                  {"version", kVersion},
                                  {"step", std::to_string(state.step)},
                                  {"rank", std::to_string(state.rank)},
                                  {"ranks", std::to_string(state.ranks)}};
  if (state.optimizer) {
    metadata.emplace("optimizer", state.optimizer->name());
    for (const auto& entry : state.optimizer->state_dict()) tensors.emplace(kOptimizer + entry.first, entry.second);
  }
  for (const auto& generator : state.generators)
    tensors.emplace(kGenerator + generator.first, words_tensor(generator.second->state()));
  for (const auto& note : state.notes) metadata.emplace(kNote + note.first, note.second);
  try {
    save_safetensors(path, tensors, metadata);
  } catch (const Error& error) {
    fail(op, error.what());
  }
}

void load_checkpoint(const std::string& path, TrainingState& state) {
  const std::string op = "load_checkpoint '" + path + "'";
  check_state(state, op.c_str());
  SafetensorsMetadata metadata;
  TensorMap tensors;
  try {
    tensors = load_safetensors(path, &metadata);
  } catch (const Error& error) {
    fail(op.c_str(), error.what());
  }
  std::vector<std::string> problems = identity_problems(metadata, state);
  if (problems.empty()) {
    for (const auto& entry : tensors)
      if (!starts_with(entry.first, kModel) && !starts_with(entry.first, kOptimizer) &&
          !starts_with(entry.first, kGenerator))
        problems.push_back("unexpected '" + entry.first + "' (not under model., optimizer. or generator.)");
    for (const std::string& problem : state.model->state_dict_problems(section(tensors, kModel)))
      problems.push_back("model: " + problem);
    if (state.optimizer)
      for (const std::string& problem : optimizer_problems(tensors, metadata, *state.optimizer))
        problems.push_back(problem);
    for (const std::string& problem : generator_problems(tensors, state)) problems.push_back(problem);
  }
  throw_if_problems(op.c_str(), problems);

  // Everything fits: from here only a failing device copy (out of memory) could stop part-way.
  state.model->load_state_dict(section(tensors, kModel));
  if (state.optimizer) state.optimizer->load_state_dict(section(tensors, kOptimizer));
  for (auto& generator : state.generators)
    generator.second->set_state(tensor_words(tensors.at(kGenerator + generator.first)));
  state.step = parse_count(metadata, "step");
  state.notes.clear();
  for (const auto& entry : metadata)
    if (starts_with(entry.first, kNote)) state.notes.emplace(entry.first.substr(kNote.size()), entry.second);
}

}  // namespace nn
}  // namespace tinymoe
