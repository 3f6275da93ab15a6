#include "nn/lr_schedule.h"

#include <cmath>

#include "tinymoe/error.h"

namespace tinymoe {
namespace nn {
namespace {
const char* kOp = "WarmupCosineSchedule";
}

WarmupCosineSchedule::WarmupCosineSchedule(double peak_lr, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : peak_lr_(peak_lr), min_lr_(min_lr), warmup_steps_(warmup_steps), total_steps_(total_steps) {
  TINYMOE_CHECK(std::isfinite(peak_lr) && peak_lr >= 0.0, kOp, "expected a finite peak_lr >= 0, got ", peak_lr);
  TINYMOE_CHECK(min_lr >= 0.0 && min_lr <= peak_lr, kOp, "expected 0 <= min_lr <= peak_lr (", peak_lr, "), got ",
                min_lr);
  TINYMOE_CHECK(total_steps >= 1, kOp, "expected total_steps >= 1, got ", total_steps);
  TINYMOE_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps, kOp, "expected 0 <= warmup_steps <= total_steps (",
                total_steps, "), got ", warmup_steps);
}

double WarmupCosineSchedule::lr(int64_t step) const {
  TINYMOE_CHECK(step >= 1, kOp, "steps count from 1, got ", step);
  if (step <= warmup_steps_) return peak_lr_ * static_cast<double>(step) / static_cast<double>(warmup_steps_);
  if (step > total_steps_) return min_lr_;
  double progress = static_cast<double>(step - warmup_steps_) / static_cast<double>(total_steps_ - warmup_steps_);
  return min_lr_ + (peak_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace nn
}  // namespace tinymoe
