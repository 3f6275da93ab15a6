#include "tinymoe/random.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "tinymoe/error.h"

namespace tinymoe {

double Generator::normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u1 = 0.0;
  while (u1 <= 0.0) u1 = uniform();  // log(0) would be -inf
  double u2 = uniform();
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * M_PI * u2;
  spare_normal_ = radius * std::sin(angle);
  has_spare_normal_ = true;
  return radius * std::cos(angle);
}

int64_t Generator::integer(int64_t low, int64_t high) {
  TINYMOE_CHECK(low < high, "Generator::integer", "expected low < high, got [", low, ", ", high, ")");
  uint64_t range = static_cast<uint64_t>(high - low);
  uint64_t limit = UINT64_MAX - UINT64_MAX % range;  // reject the biased tail
  uint64_t draw = engine_();
  while (draw >= limit) draw = engine_();
  return low + static_cast<int64_t>(draw % range);
}

namespace {

// The engine's words in the standard library's textual representation ([rand.req.eng]: `os << e`
// writes the state, `is >> e` restores it).
std::vector<uint64_t> engine_words(const std::mt19937_64& engine) {
  std::stringstream text;
  text << engine;
  std::vector<uint64_t> words;
  uint64_t word = 0;
  while (text >> word) words.push_back(word);
  return words;
}

std::string engine_text(const std::vector<uint64_t>& words, size_t count) {
  std::ostringstream text;
  for (size_t i = 0; i < count; ++i) text << (i ? " " : "") << words[i];
  return text.str();
}

}  // namespace

std::vector<uint64_t> Generator::state() const {
  std::vector<uint64_t> words = engine_words(engine_);
  uint64_t spare_bits = 0;
  std::memcpy(&spare_bits, &spare_normal_, sizeof spare_bits);
  words.push_back(has_spare_normal_ ? 1 : 0);
  words.push_back(spare_bits);
  return words;
}

void Generator::set_state(const std::vector<uint64_t>& state) {
  const char* op = "Generator::set_state";
  const size_t engine_size = engine_words(engine_).size();
  TINYMOE_CHECK(state.size() == engine_size + 2, op, "expected ", engine_size + 2, " words (", engine_size,
                " of std::mt19937_64 and 2 of the normal spare), got ", state.size());
  const uint64_t has_spare = state[engine_size], spare_bits = state[engine_size + 1];
  TINYMOE_CHECK(has_spare <= 1, op, "the spare flag must be 0 or 1, got ", has_spare);
  std::mt19937_64 engine;
  std::istringstream text(engine_text(state, engine_size));
  text >> engine;
  TINYMOE_CHECK(!text.fail() && engine_words(engine) == std::vector<uint64_t>(state.begin(), state.begin() + engine_size),
                op, "the engine words are not a std::mt19937_64 state this standard library wrote");
  engine_ = engine;
  has_spare_normal_ = has_spare == 1;
  std::memcpy(&spare_normal_, &spare_bits, sizeof spare_bits);
}

Generator& default_generator() {
  static thread_local Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace tinymoe
