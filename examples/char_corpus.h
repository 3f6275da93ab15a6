// A text as character tokens, for train_tiny_lm and compare_routers: its alphabet (the distinct bytes, sorted), the
// text as ids into it, random training windows, and decoding a model's continuation of a prompt.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "nn/moe_transformer.h"
#include "tinymoe/tinymoe.h"

namespace tiny_lm {

using namespace tinymoe;

struct CharacterCorpus {
  std::string alphabet;
  std::vector<int64_t> ids;
  const char* program;  // what errors name

  // `window`: the training windows' length; the text must hold at least one window and its target.
  CharacterCorpus(const std::string& text, int64_t window, const char* program_name) : program(program_name) {
    TINYMOE_CHECK(static_cast<int64_t>(text.size()) >= window + 1, program, "the text has ", text.size(),
                  " characters; a training window needs ", window + 1);
    // Keyed by byte value, so the alphabet's order does not depend on whether char is signed.
    std::map<unsigned char, int64_t> index;
    for (char c : text) index.emplace(static_cast<unsigned char>(c), 0);
    TINYMOE_CHECK(index.size() >= 2, program, "the text has ", index.size(),
                  " distinct character(s); there is nothing to predict with fewer than 2");
    for (auto& [c, id] : index) id = static_cast<int64_t>(alphabet.size()), alphabet.push_back(static_cast<char>(c));
    for (char c : text) ids.push_back(index.at(static_cast<unsigned char>(c)));
  }

  int64_t id_of(char c) const {
    size_t found = alphabet.find(c);
    TINYMOE_CHECK(found != std::string::npos, program, "the character '", std::string(1, c),
                  "' (byte ", static_cast<int>(static_cast<unsigned char>(c)), ") is not in the text's alphabet");
    return static_cast<int64_t>(found);
  }

  // The alphabet as byte values ("10,32,65"): a checkpoint's note (any bytes; metadata is UTF-8).
  std::string alphabet_note() const {
    std::string note;
    for (char c : alphabet) note += (note.empty() ? "" : ",") + std::to_string(static_cast<unsigned char>(c));
    return note;
  }
};

inline std::string read_text_file(const std::string& path, const char* program) {
  constexpr std::uintmax_t kMaxBytes = 64u << 20;  // a character-level toy: 64 MiB is plenty
  std::error_code error;
  TINYMOE_CHECK(std::filesystem::is_regular_file(path, error), program, "the text '", path,
                "' is not a file that can be read (missing, a directory or a device)");
  TINYMOE_CHECK(std::filesystem::file_size(path, error) <= kMaxBytes, program, "the text '", path,
                "' is larger than ", kMaxBytes, " bytes");
  std::ifstream file(path, std::ios::binary);
  TINYMOE_CHECK(file.good(), program, "cannot read the text file '", path, "'");
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// `batch` windows of length+1 characters at random places: ids are the first `length`, targets
// the `length` after them (each position predicts the next character).
inline std::pair<Tensor, Tensor> sample_batch(const CharacterCorpus& corpus, int64_t batch, int64_t length,
                                              Generator& generator, Device device) {
  std::vector<int64_t> ids, targets;
  const int64_t last_start = static_cast<int64_t>(corpus.ids.size()) - length - 1;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t start = randint(0, last_start + 1, {}, &generator).item<int64_t>();
    for (int64_t s = 0; s < length; ++s) {
      ids.push_back(corpus.ids[start + s]);
      targets.push_back(corpus.ids[start + s + 1]);
    }
  }
  return {from_vector(ids, {batch, length}).to(device), from_vector(targets, {batch, length}).to(device)};
}

// The next character from the last position's logits: the most likely one (temperature 0), or a
// draw from softmax(logits / temperature).
inline int64_t next_id(const std::vector<double>& logits, double temperature, Generator& generator) {
  auto best = std::max_element(logits.begin(), logits.end());
  if (temperature <= 0.0) return static_cast<int64_t>(best - logits.begin());
  std::vector<double> weights;
  double total = 0.0;
  for (double l : logits) total += weights.emplace_back(std::exp((l - *best) / temperature));
  double draw = generator.uniform() * total;
  for (size_t v = 0; v < weights.size(); ++v)
    if ((draw -= weights[v]) < 0.0) return static_cast<int64_t>(v);
  return static_cast<int64_t>(best - logits.begin());  // rounding left a sliver: the likeliest
}

// The prompt and `count` characters the model appends to it, one forward per character over the
// last max_sequence_length characters.
inline std::string generate(const nn::MoETransformer& model, const CharacterCorpus& corpus, const std::string& prompt,
                            int64_t count, double temperature, Generator& generator) {
  NoGradGuard no_grad;
  std::vector<int64_t> context;
  for (char c : prompt) context.push_back(corpus.id_of(c));
  TINYMOE_CHECK(!context.empty(), corpus.program, "the prompt is empty");
  std::string text = prompt;
  const int64_t window = model.config().max_sequence_length, vocabulary = model.config().vocab_size;
  for (int64_t n = 0; n < count; ++n) {
    int64_t start = std::max<int64_t>(0, static_cast<int64_t>(context.size()) - window);
    std::vector<int64_t> recent(context.begin() + start, context.end());
    int64_t length = static_cast<int64_t>(recent.size());
    Tensor logits = model(from_vector(recent, {1, length}).to(model.device())).logits;
    std::vector<double> all = logits.to(Device::cpu()).to(DType::f64).to_vector<double>();
    std::vector<double> last(all.end() - vocabulary, all.end());
    int64_t id = next_id(last, temperature, generator);
    context.push_back(id);
    text.push_back(corpus.alphabet[static_cast<size_t>(id)]);
  }
  return text;
}

}  // namespace tiny_lm
