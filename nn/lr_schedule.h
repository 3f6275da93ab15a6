// Learning-rate schedules: the rate as a function of the step, applied before each update with
// optimizer.set_lr(schedule.lr(step)). A schedule keeps no state, so a run resumed from a
// checkpoint (nn/checkpoint.h) gets its rates from the saved step alone.
#pragma once

#include <cstdint>

namespace tinymoe {
namespace nn {

// Linear warm-up, then cosine decay (Loshchilov & Hutter, "SGDR", ICLR 2017, without restarts),
// the schedule of GPT-3, Switch-style MoE training recipes and nanoGPT. For steps counted from 1:
//   step <= warmup_steps:              lr = peak_lr * step / warmup_steps
//   warmup_steps < step <= total_steps: lr = min_lr + (peak_lr - min_lr) * (1 + cos(pi * r)) / 2,
//                                       r = (step - warmup_steps) / (total_steps - warmup_steps)
//   step > total_steps:                lr = min_lr
// With warmup_steps = 0 the decay starts at step 1 (at peak_lr * (1 + cos(pi / total)) / 2 and
// so on; with total_steps = 1 that first step already runs at min_lr); with warmup_steps =
// total_steps the rate only warms up.
class WarmupCosineSchedule {
 public:
  // Errors name "WarmupCosineSchedule": peak_lr must be finite and >= 0, 0 <= min_lr <= peak_lr,
  // 0 <= warmup_steps <= total_steps, total_steps >= 1.
  WarmupCosineSchedule(double peak_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  // The rate for `step` (>= 1; an Error otherwise).
  double lr(int64_t step) const;

 private:
  double peak_lr_, min_lr_;
  int64_t warmup_steps_, total_steps_;
};

}  // namespace nn
}  // namespace tinymoe
