// Seeded random numbers. std::mt19937_64 is specified exactly by the C++ standard and the
// conversions below are our own (the standard distributions are not), so a seed reproduces a
// run bit for bit on any platform.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace tinymoe {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t seed) {
    engine_.seed(seed);
    has_spare_normal_ = false;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Standard normal by the Box-Muller transform (one pair per two calls).
  double normal();
  // Uniform integer in [low, high), without modulo bias.
  int64_t integer(int64_t low, int64_t high);
  uint64_t next() { return engine_(); }

  // The whole state, for training checkpoints (nn/checkpoint.h): the engine's words as the
  // standard library writes std::mt19937_64 out (libstdc++: its 312 words and its position),
  // then the Box-Muller spare (a 0/1 flag and the double's bits). A generator given this state
  // by set_state draws exactly what this one draws next. The layout belongs to the standard
  // library: a state moves between builds that use the same one.
  std::vector<uint64_t> state() const;
  // Restores a state() of this build; an Error naming "Generator::set_state" when `state` has
  // another length, an engine position past its 312 words, the all-zero engine state (it draws
  // only zeros), a flag that is not 0 or 1, or a pending spare that is not finite. Nothing
  // changes on an Error.
  void set_state(const std::vector<uint64_t>& state);

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// The generator factories use when none is given.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace tinymoe
