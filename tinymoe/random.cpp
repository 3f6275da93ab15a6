#include "tinymoe/random.h"

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

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

// What makes `words` (engine_words' layout) a state std::mt19937_64 can be in, or "" when they are:
// the n = 312 words x, then (libstdc++) the position p <= n. x must not be the degenerate state
// that outputs only zeros: the recurrence reads only the upper w - r = 33 bits of the oldest
// word, so x is degenerate when those bits and every other word are zero (the rule
// mersenne_twister_engine::seed uses, [rand.eng.mers]).
std::string engine_problem(const std::vector<uint64_t>& words, size_t count) {
  constexpr size_t n = std::mt19937_64::state_size;
  constexpr uint64_t upper_mask = ~((uint64_t{1} << std::mt19937_64::mask_bits) - 1);
  if (count != n && count != n + 1) return "this standard library writes std::mt19937_64 in an unexpected layout";
  if (count == n + 1 && words[n] > n)
    return "the engine's position " + std::to_string(words[n]) + " is past its " + std::to_string(n) + " words";
  bool degenerate = (words[0] & upper_mask) == 0;
  for (size_t i = 1; i < n && degenerate; ++i) degenerate = words[i] == 0;
  return degenerate ? "the engine words are all zero, a state that draws only zeros" : "";
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
  std::string problem = engine_problem(state, engine_size);
  TINYMOE_CHECK(problem.empty(), op, problem);
  const uint64_t has_spare = state[engine_size], spare_bits = state[engine_size + 1];
  TINYMOE_CHECK(has_spare <= 1, op, "the spare flag must be 0 or 1, got ", has_spare);
  double spare = 0.0;
  std::memcpy(&spare, &spare_bits, sizeof spare);
  TINYMOE_CHECK(has_spare == 0 || std::isfinite(spare), op, "the spare normal is ", spare, ", not a finite number");
  std::mt19937_64 engine;
  std::istringstream text(engine_text(state, engine_size));
  text >> engine;
  TINYMOE_CHECK(!text.fail(), op, "the standard library did not read the engine words back");
  engine_ = engine;
  has_spare_normal_ = has_spare == 1;
  spare_normal_ = spare;
}

Generator& default_generator() {
  static thread_local Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace tinymoe
