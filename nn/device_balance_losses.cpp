#include "nn/device_balance_losses.h"

#include <vector>

#include "nn/balance_losses.h"
#include "nn/id_range.h"
#include "nn/routing_parts.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace tinymoe::nn {
namespace {

void check_arguments(const Tensor& probs, const Tensor& expert_index, int64_t num_devices, const char* op) {
  check_probs_and_index(probs, expert_index, op);
  TINYMOE_CHECK(num_devices >= 1 && probs.size(1) % num_devices == 0, op, "expected a number of devices >= 1 dividing E = ",
                probs.size(1), ", got ", num_devices);
}

// sum_d f[d] * P'_d over one sequence's probs, P'_d = the sum over device d's experts of the
// mean probability: the shape both losses share. f is a constant.
Tensor device_term(const Tensor& probs, const std::vector<double>& f) {
  const int64_t devices = static_cast<int64_t>(f.size()), experts = probs.size(1);
  Tensor device_probs = sum(mean(probs, 0).reshape({devices, experts / devices}), 1);  // [D]
  return sum(mul(device_probs, from_vector(f, {devices}).to(probs.dtype()).to(probs.device())));
}

// f'_d of one sequence: the mean over device d's experts of f_i = E count_i / (k T).
std::vector<double> device_loads(const std::vector<int64_t>& ids, int64_t tokens, int64_t k, int64_t experts,
                                 int64_t devices) {
  const int64_t per_device = experts / devices;
  std::vector<double> f(static_cast<size_t>(devices), 0.0);
  for (int64_t id : ids) f[id / per_device] += static_cast<double>(experts) / (static_cast<double>(k * tokens) * per_device);
  return f;
}

// f''_d of one sequence: D / (M T) times the tokens with an expert on device d.
std::vector<double> device_traffic(const std::vector<int64_t>& ids, int64_t tokens, int64_t k, int64_t experts,
                                   int64_t devices, int64_t max_devices) {
  const int64_t per_device = experts / devices;
  const double scale = static_cast<double>(devices) / static_cast<double>(max_devices * tokens);
  std::vector<double> f(static_cast<size_t>(devices), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<bool> reached(static_cast<size_t>(devices), false);
    for (int64_t j = 0; j < k; ++j) reached[ids[t * k + j] / per_device] = true;
    for (int64_t d = 0; d < devices; ++d) f[d] += reached[d] ? scale : 0.0;
  }
  return f;
}

// The mean over the sequences of device_term with each sequence's f (from its ids).
template <typename Loads>
Tensor per_sequence(const Tensor& probs, const Tensor& expert_index, int64_t sequence_length, const char* op,
                    Loads loads) {
  const int64_t tokens = probs.size(0), experts = probs.size(1), k = expert_index.size(1);
  const int64_t sequences = sequence_count(tokens, sequence_length, op);
  if (tokens == 0) return mul(sum(probs), 0.0);
  check_id_range(expert_index, experts, "expert_index", "an expert", op);
  const std::vector<int64_t> ids = expert_index.to(Device::cpu()).to_vector<int64_t>();
  const int64_t length = tokens / sequences;
  Tensor total;
  for (int64_t b = 0; b < sequences; ++b) {
    const std::vector<int64_t> sequence_ids(ids.begin() + b * length * k, ids.begin() + (b + 1) * length * k);
    Tensor term = device_term(slice(probs, 0, b * length, (b + 1) * length), loads(sequence_ids, length, k, experts));
    total = total.defined() ? add(total, term) : term;
  }
  return mul(total, 1.0 / static_cast<double>(sequences));
}

}  // namespace

Tensor device_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices,
                           int64_t sequence_length) {
  const char* op = "device_balance_loss";
  check_arguments(probs, expert_index, num_devices, op);
  return per_sequence(probs, expert_index, sequence_length, op,
                      [&](const std::vector<int64_t>& ids, int64_t tokens, int64_t k, int64_t experts) {
                        return device_loads(ids, tokens, k, experts, num_devices);
                      });
}

Tensor communication_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices,
                                  int64_t max_devices_per_token, int64_t sequence_length) {
  const char* op = "communication_balance_loss";
  check_arguments(probs, expert_index, num_devices, op);
  TINYMOE_CHECK(max_devices_per_token >= 1 && max_devices_per_token <= num_devices, op,
                "expected 1 <= the devices a token may reach <= ", num_devices, ", got ", max_devices_per_token);
  return per_sequence(probs, expert_index, sequence_length, op,
                      [&](const std::vector<int64_t>& ids, int64_t tokens, int64_t k, int64_t experts) {
                        return device_traffic(ids, tokens, k, experts, num_devices, max_devices_per_token);
                      });
}

}  // namespace tinymoe::nn
