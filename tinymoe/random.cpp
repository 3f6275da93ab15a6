#include "tinymoe/random.h"

#include <cmath>

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

Generator& default_generator() {
  static thread_local Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace tinymoe
