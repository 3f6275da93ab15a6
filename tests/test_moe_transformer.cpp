// nn/moe_transformer.h: the small MoE language model: names and shapes, its losses, causality
// with a per-token router, a gradcheck of the training loss through every parameter, learning a
// pattern with AdamW, DeepSeek-V3 bias updates, and errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "ops/loss.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

// The errors name the model and say what was wrong.
#define CHECK_MODEL_ERROR(expr, text) \
  CHECK_THROWS_WITH(expr, Catch::Contains("MoETransformer") && Catch::Contains(text))

namespace {

MoETransformerConfig tiny_config(const RouterConfig& router, DType dtype, int64_t layers = 2) {
  return tinymoe::testing::tiny_lm_config(router, dtype, layers);
}

Tensor ids_of(const std::vector<int64_t>& values, int64_t batch) {
  return from_vector(values, {batch, static_cast<int64_t>(values.size()) / batch});
}

}  // namespace

TEST_CASE("moe_transformer: parameter names and shapes follow Mixtral's", "[moe_transformer]") {
  MoETransformer model(tiny_config(mixtral(4, 2), DType::f32, 1));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : model.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{
                     "embed_tokens.weight", "embed_positions.weight", "layers.0.input_layernorm.weight",
                     "layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight",
                     "layers.0.self_attn.v_proj.weight", "layers.0.self_attn.o_proj.weight",
                     "layers.0.post_attention_layernorm.weight", "layers.0.block_sparse_moe.gate.weight",
                     "layers.0.block_sparse_moe.experts.w1", "layers.0.block_sparse_moe.experts.w3",
                     "layers.0.block_sparse_moe.experts.w2", "norm.weight", "lm_head.weight"});
  StateDict state = model.state_dict();
  CHECK(state.at("embed_tokens.weight").shape() == Shape{7, 8});
  CHECK(state.at("embed_positions.weight").shape() == Shape{6, 8});
  CHECK(state.at("lm_head.weight").shape() == Shape{7, 8});
  CHECK(model.layer(0).self_attn()->num_heads() == 2);
}

TEST_CASE("moe_transformer: logits, the next-token loss and the routing losses", "[moe_transformer]") {
  Generator generator(70);
  MoETransformer model(tiny_config(mixtral(4, 2), DType::f64), &generator);
  Tensor ids = ids_of({1, 2, 3, 4, 5, 6, 0, 1, 2, 3}, 2);
  Tensor targets = ids_of({2, 3, 4, 5, -100, 1, 2, 3, 4, 5}, 2);
  LMOutput out = model(ids, targets);
  CHECK(out.logits.shape() == Shape{2, 5, 7});
  CHECK(out.layers.size() == 2);
  double expected = cross_entropy(out.logits.reshape({10, 7}), targets.reshape({10})).item<double>();
  CHECK(out.loss.item<double>() == expected);
  double routing = 0;
  for (const MoEOutput& layer : out.layers) {
    CHECK(layer.tokens_per_expert.shape() == Shape{4});
    routing += layer.routing.weighted_loss().item<double>();
  }
  CHECK(routing > 0);  // Mixtral's aux loss, in training
  CHECK(out.aux_loss.item<double>() == Approx(routing).epsilon(1e-14));
  CHECK(out.total_loss().item<double>() == Approx(expected + routing).epsilon(1e-14));
  // Without targets there is no loss to take.
  LMOutput plain = model(ids);
  CHECK_FALSE(plain.loss.defined());
  CHECK(plain.logits.to_vector<double>() == out.logits.to_vector<double>());
  CHECK_THROWS_WITH(plain.total_loss(), Catch::Contains("total_loss") && Catch::Contains("targets"));
}

TEST_CASE("moe_transformer: with a per-token router, later tokens never change earlier logits", "[moe_transformer]") {
  Generator generator(71);
  MoETransformer model(tiny_config(mixtral(4, 2), DType::f64), &generator);
  std::vector<int64_t> values = {3, 1, 4, 1, 5, 2};
  std::vector<double> before = model(ids_of(values, 1)).logits.to_vector<double>();
  values[3] = 6;
  std::vector<double> after = model(ids_of(values, 1)).logits.to_vector<double>();
  for (int64_t s = 0; s < 6; ++s) {
    double largest_change = 0;
    for (int64_t v = 0; v < 7; ++v) largest_change = std::max(largest_change, std::abs(before[s * 7 + v] - after[s * 7 + v]));
    INFO("position " << s << " changed by " << largest_change);
    if (s < 3) CHECK(largest_change < 1e-12);
    else CHECK(largest_change > 1e-6);
  }
}

TEST_CASE("moe_transformer: gradcheck of the training loss through every parameter", "[moe_transformer][gradcheck]") {
  for (const auto& [name, router] : {std::pair<const char*, RouterConfig>{"mixtral", mixtral(4, 2)},
                                     {"deepseek_v3", deepseek_v3(4, 2, 2, 1, 2.5, true, 1e-2)}}) {
    INFO(name);
    Generator generator(72);
    MoETransformer model(tiny_config(router, DType::f64, 1), &generator);
    Tensor ids = ids_of({1, 5, 2, 0, 6, 3, 3, 4}, 2), targets = ids_of({5, 2, 0, 6, 3, 3, 4, 1}, 2);
    GradcheckResult result =
        gradcheck_in_place([&] { return model(ids, targets).total_loss(); }, model.parameters());
    INFO(result.report);
    CHECK(result.passed());
  }
}

TEST_CASE("moe_transformer: AdamW learns a repeating sequence", "[moe_transformer][optim]") {
  Generator generator(73);
  MoETransformer model(tiny_config(mixtral(4, 2), DType::f32), &generator);
  AdamW optimizer(model.parameters(), AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.0});
  // Windows of the cycle 0 1 2 3 4 5 6 0 1 ... starting at every offset: the next token is
  // always (id + 1) mod 7, which a model can only get right by reading the current token.
  std::vector<int64_t> ids, targets;
  for (int64_t start = 0; start < 7; ++start)
    for (int64_t s = 0; s < 6; ++s) {
      ids.push_back((start + s) % 7);
      targets.push_back((start + s + 1) % 7);
    }
  Tensor batch_ids = ids_of(ids, 7), batch_targets = ids_of(targets, 7);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    model.zero_grad();
    LMOutput out = model(batch_ids, batch_targets);
    out.total_loss().backward();
    optimizer.step();
    (step == 0 ? first : last) = out.loss.item<double>();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 1.0);   // about log 7 = 1.95 at the start
  CHECK(last < 0.05);
}

TEST_CASE("moe_transformer: DeepSeek-V3 router biases move with the loads, others are left alone",
          "[moe_transformer]") {
  Generator generator(74);
  MoETransformer deepseek(tiny_config(deepseek_v3(4, 2, 2, 1), DType::f32), &generator);
  Tensor ids = ids_of({1, 2, 3, 4, 5, 6}, 1);
  LMOutput out = deepseek(ids);
  deepseek.update_router_biases(out, 0.1);
  for (size_t l = 0; l < 2; ++l) {
    // b_i = 0 + rate * sign(mean load - load_i), the layer's own loads.
    std::vector<int64_t> loads = out.layers[l].tokens_per_expert.to_vector<int64_t>();
    std::vector<float> bias = deepseek.layer(l).block_sparse_moe()->gate()->e_score_correction_bias().to_vector<float>();
    for (size_t e = 0; e < loads.size(); ++e) {
      double sign = loads[e] < 3 ? 1.0 : loads[e] > 3 ? -1.0 : 0.0;  // 6 tokens x top-2 over 4 experts: mean 3
      CHECK(bias[e] == Approx(0.1 * sign));
    }
  }
  MoETransformer plain(tiny_config(mixtral(4, 2), DType::f32), &generator);
  LMOutput plain_out = plain(ids);
  CHECK_NOTHROW(plain.update_router_biases(plain_out, 0.1));
  LMOutput truncated = out;
  truncated.layers.pop_back();
  CHECK_THROWS_WITH(deepseek.update_router_biases(truncated, 0.1), Catch::Contains("update_router_biases"));
}

TEST_CASE("moe_transformer: bad configurations and inputs name MoETransformer", "[moe_transformer][errors]") {
  MoETransformerConfig config = tiny_config(mixtral(4, 2), DType::f32);
  config.num_heads = 3;
  CHECK_MODEL_ERROR(MoETransformer(config), "num_heads");
  config = tiny_config(mixtral(4, 2), DType::f32);
  config.vocab_size = 0;
  CHECK_MODEL_ERROR(MoETransformer(config), "vocab_size");
  config = tiny_config(mixtral(4, 2), DType::f32);
  config.moe.num_experts = 5;  // the router routes to 4
  CHECK_THROWS_WITH(MoETransformer(config), Catch::Contains("SparseMoEBlock"));

  MoETransformer model(tiny_config(mixtral(4, 2), DType::f32));
  CHECK_MODEL_ERROR(model(ids_of({1, 2, 3, 4, 5, 6, 1}, 1)), "max_sequence_length");
  CHECK_MODEL_ERROR(model(from_vector(std::vector<int64_t>{1, 2}, {2})), "[B, S]");
  CHECK_MODEL_ERROR(model(ones({1, 2})), "i64");
  CHECK_MODEL_ERROR(model(Tensor()), "ids");
  CHECK_THROWS_WITH(model(ids_of({1, 9}, 1)), Catch::Contains("embedding") && Catch::Contains("9"));
  CHECK_MODEL_ERROR(model(ids_of({1, 2}, 1), ids_of({1, 2, 3}, 1)), "targets");
  CHECK_THROWS_WITH(model(ids_of({1, 2}, 1), ids_of({1, 7}, 1)), Catch::Contains("cross_entropy"));
}
