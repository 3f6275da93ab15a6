// Seeded random numbers. std::mt19937_64 is specified exactly by the C++ standard and the
// conversions below are our own (the standard distributions are not), so a seed reproduces a
// run bit for bit on any platform.
#pragma once

#include <cstdint>
#include <random>

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

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// The generator factories use when none is given.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace tinymoe
