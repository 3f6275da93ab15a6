// nn/device_balance_losses.h: DeepSeek-V2's balance losses over groups of experts (DeepSeek-AI
// 2024, "DeepSeek-V2", arXiv 2405.04434, sec. 2.2.3: the device-level loss, eqs. 26-28, and the
// communication loss, eqs. 29-31). Under expert parallelism the experts are split into D devices,
// E / D contiguous experts each (tinymoe's ExpertParallelMoEBlock places them that way, and
// group-limited routing's groups are the same blocks). Next to the expert-level loss (eqs. 23-25,
// sequence_aux_loss), the paper adds, per sequence of T tokens:
//
//   device-level balance loss        L_dev  = sum_d f'_d P'_d,
//       f'_d = (1 / |E_d|) sum_{i in E_d} f_i,  f_i = E count_i / (k T),  P'_d = sum_{i in E_d} P_i;
//   communication balance loss       L_comm = sum_d f''_d P''_d,
//       f''_d = D / (M T) * (tokens that send to device d: at least one of their experts is in E_d),
//       P''_d = sum_{i in E_d} P_i,  M = the most devices a token reaches.
//
// P_i is the mean over the sequence's tokens of probs[t, i]. As the paper says ("T denotes the
// number of tokens in a sequence"), both are taken per sequence and averaged over the B sequences
// (sequence_length S; 0 means one sequence of all T rows): a batch whose sequences are each
// lopsided in opposite directions is not balanced. Perfectly balanced routing gives 1 for both
// (each token reaching exactly M devices for L_comm). The paper's coefficients for DeepSeek-V2:
// 0.05 and 0.02 (expert level: 0.003). As the other losses: 0-dim, probs' dtype, gradient to
// probs only (the counts are constants); T = 0 gives 0. Errors name the loss.
#pragma once

#include <cstdint>

#include "tinymoe/tensor.h"

namespace tinymoe::nn {

// probs [T, E] floating, expert_index i64 [T, k] with ids in [0, E); E divisible by num_devices;
// T divisible by sequence_length.
Tensor device_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices,
                           int64_t sequence_length = 0);
// As above; 1 <= max_devices_per_token <= num_devices.
Tensor communication_balance_loss(const Tensor& probs, const Tensor& expert_index, int64_t num_devices,
                                  int64_t max_devices_per_token, int64_t sequence_length = 0);

}  // namespace tinymoe::nn
