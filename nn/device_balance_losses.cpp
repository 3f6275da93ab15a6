#include "nn/device_balance_losses.h"

#include <vector>

#include "nn/balance_losses.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace tinymoe::nn {
namespace {

void check_arguments(const Tensor& probs, const Tensor& expert_index, int64_t num_devices, const char* op) {
  check_probs_and_index(probs, expert_index, op);
  TINYMOE_CHECK(num_devices >= 1 && probs.size(1) % num_devices == 0, op, "expected a number of devices >= 1 dividing E = ",
                probs.size(1), ", got ", num_devices);
}

// sum_d f[d] * P'_d, P'_d = the sum over device d's experts of the mean probability: the shape
// both losses share. f is a constant.
Tensor device_term(const Tensor& probs, const std::vector<double>& f) {
  const int64_t devices = static_cast<int64_t>(f.size()), experts = probs.size(1);
  Tensor device_probs = sum(mean(probs, 0).reshape({devices, experts / devices}), 1);  // [D]
  return sum(mul(device_probs, from_vector(f, {devices}).to(probs.dtype()).to(probs.device())));
}

}  // namespace

Tensor device_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices) {
  const char* op = "device_balance_loss";
  check_arguments(probs, expert_index, num_devices, op);
  const int64_t tokens = probs.size(0), experts = probs.size(1), k = expert_index.size(1);
  if (tokens == 0) return mul(sum(probs), 0.0);
  const std::vector<double> counts = expert_pair_counts(expert_index, experts);  // checks the ids
  const int64_t per_device = experts / num_devices;
  std::vector<double> f(static_cast<size_t>(num_devices), 0.0);
  for (int64_t i = 0; i < experts; ++i)  // f'_d = mean over the device of f_i = E count_i / (k T)
    f[i / per_device] += static_cast<double>(experts) * counts[i] / (static_cast<double>(k * tokens) * per_device);
  return device_term(probs, f);
}

Tensor communication_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices,
                                  int64_t max_devices_per_token) {
  const char* op = "communication_balance_loss";
  check_arguments(probs, expert_index, num_devices, op);
  TINYMOE_CHECK(max_devices_per_token >= 1 && max_devices_per_token <= num_devices, op,
                "expected 1 <= the devices a token may reach <= ", num_devices, ", got ", max_devices_per_token);
  const int64_t tokens = probs.size(0), experts = probs.size(1), k = expert_index.size(1);
  if (tokens == 0) return mul(sum(probs), 0.0);
  expert_pair_counts(expert_index, experts);  // checks the ids
  const std::vector<int64_t> ids = expert_index.to(Device::cpu()).to_vector<int64_t>();
  const int64_t per_device = experts / num_devices;
  std::vector<double> f(static_cast<size_t>(num_devices), 0.0);
  const double scale = static_cast<double>(num_devices) / static_cast<double>(max_devices_per_token * tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<bool> reached(static_cast<size_t>(num_devices), false);
    for (int64_t j = 0; j < k; ++j) reached[ids[t * k + j] / per_device] = true;
    for (int64_t d = 0; d < num_devices; ++d) f[d] += reached[d] ? scale : 0.0;
  }
  return device_term(probs, f);
}

}  // namespace tinymoe::nn
