// The small models the tests build: a SparseMoEBlock config of given widths, and the
// MoETransformer of the CPU and MPI tests (d = 8, f = 6, two heads).
#pragma once

#include <cstdint>

#include "nn/moe_transformer.h"
#include "nn/router_presets.h"

namespace tinymoe::testing {

// A block routed by `router` (E from it) with experts of width d -> f, and a shared expert of
// `shared_width` when `shared` asks for one.
inline nn::SparseMoEConfig small_block_config(const nn::RouterConfig& router, nn::ExpertKind kind,
                                              nn::SharedExpertKind shared, DType dtype, int64_t hidden_size,
                                              int64_t intermediate_size, int64_t shared_width) {
  nn::SparseMoEConfig config;
  config.num_experts = router.num_experts;
  config.hidden_size = hidden_size;
  config.intermediate_size = intermediate_size;
  config.expert_kind = kind;
  config.shared = {shared, 1, shared_width};
  config.router = router;
  config.dtype = dtype;
  return config;
}

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
