// The small MoETransformer the CPU and MPI tests build: d = 8, f = 6, two heads, the router's E.
#pragma once

#include <cstdint>

#include "nn/moe_transformer.h"
#include "nn/router_presets.h"

namespace tinymoe::testing {

inline nn::MoETransformerConfig tiny_lm_config(const nn::RouterConfig& router, DType dtype = DType::f32,
                                               int64_t layers = 2, int64_t vocabulary = 7, int64_t length = 6) {
  nn::MoETransformerConfig config;
  config.vocab_size = vocabulary;
  config.max_sequence_length = length;
  config.num_layers = layers;
  config.num_heads = 2;
  config.moe.num_experts = router.num_experts;
  config.moe.hidden_size = 8;
  config.moe.intermediate_size = 6;
  config.moe.router = router;
  config.moe.dtype = dtype;
  return config;
}

}  // namespace tinymoe::testing
