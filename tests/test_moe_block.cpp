// nn/moe_block.h: SparseMoEBlock against a slow per-token reference loop, with routing rules
// written here from ops (Mixtral top-k, per-sequence capacity, expert choice, an expert left
// out): every expert kind, shared experts gated and ungated, [T, d] and [B, S, d] inputs;
// gradchecks of the whole block, dropless and with capacity; argument errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "moe_reference.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using namespace tinymoe::testing;

// The block's errors name it and say what was wrong.
#define CHECK_BLOCK_ERROR(expr, text) \
  CHECK_THROWS_WITH(expr, Catch::Contains("SparseMoEBlock") && Catch::Contains(text))

namespace {

// ---- Routing rules from ops: test fixtures, not library code. ----

// A selection [rows, n] read as pairs, row-major: token choice has a row per token (the entries
// are experts), expert choice a row per expert (the entries are tokens). Weights: [rows, n].
Routing selection_pairs(const Tensor& logits, const Tensor& scores, const TopK& selection, const Tensor& weights,
                        bool rows_are_tokens) {
  const int64_t rows = selection.indices.size(0), per_row = selection.indices.size(1), pairs = rows * per_row;
  std::vector<int64_t> row_of_pair(pairs);
  for (int64_t p = 0; p < pairs; ++p) row_of_pair[p] = p / per_row;
  Tensor row = from_vector(row_of_pair, {pairs}), chosen = selection.indices.reshape({pairs});
  Routing routing;
  routing.router_logits = logits;
  routing.scores = scores;
  routing.expert_index = selection.indices;
  routing.pair_token = rows_are_tokens ? row : chosen;
  routing.pair_expert = rows_are_tokens ? chosen : row;
  routing.pair_weight = weights.reshape({pairs});
  routing.routed_pairs = pairs;
  return routing;
}

// Mixtral (HF MixtralSparseMoeBlock): p = softmax(l), top-k of p, renormalised over the k.
RoutingRule mixtral_rule(int64_t k) {
  return [k](const Tensor& logits, const RoutingContext&) {
    Tensor probs = softmax(logits, -1);
    TopK top = topk(probs, k, -1);
    return selection_pairs(logits, probs, top, div(top.values, sum(top.values, -1, true)), true);
  };
}

// Switch-style capacity on Mixtral's choice: within each sequence of context.sequence_length
// tokens, an expert keeps its first `capacity` pairs in pair (token) order; later ones drop.
RoutingRule capacity_rule(int64_t k, int64_t capacity) {
  RoutingRule choose = mixtral_rule(k);
  return [choose, capacity](const Tensor& logits, const RoutingContext& context) {
    Routing routing = choose(logits, context);
    std::vector<int64_t> tokens = routing.pair_token.to_vector<int64_t>();
    std::vector<int64_t> experts = routing.pair_expert.to_vector<int64_t>();
    std::map<std::pair<int64_t, int64_t>, int64_t> taken;  // (sequence, expert) -> pairs kept
    std::vector<int64_t> kept;
    for (size_t p = 0; p < tokens.size(); ++p)
      if (taken[{tokens[p] / context.sequence_length, experts[p]}]++ < capacity) kept.push_back(static_cast<int64_t>(p));
    Tensor index = from_vector(kept, {static_cast<int64_t>(kept.size())});
    routing.pair_token = index_select(routing.pair_token, index);
    routing.pair_expert = index_select(routing.pair_expert, index);
    routing.pair_weight = index_select(routing.pair_weight, index);
    routing.dropped_pairs = routing.routed_pairs - static_cast<int64_t>(kept.size());
    return routing;
  };
}

// Expert choice (Zhou et al. 2022): expert e takes the `capacity` tokens of highest softmax
// score, weighted by that score; pairs come grouped by expert, a token may get none or several.
RoutingRule expert_choice_rule(int64_t capacity) {
  return [capacity](const Tensor& logits, const RoutingContext&) {
    Tensor probs = softmax(logits, -1);
    TopK top = topk(transpose(probs), capacity, -1);  // [E, C]
    return selection_pairs(logits, probs, top, top.values, false);
  };
}

// Mixtral over experts 0 .. E-2: the last expert never gets a token.
RoutingRule skip_last_expert_rule(int64_t k) {
  RoutingRule choose = mixtral_rule(k);
  return [choose](const Tensor& logits, const RoutingContext& context) {
    Routing routing = choose(slice(logits, 1, 0, logits.size(1) - 1), context);
    routing.router_logits = logits;
    return routing;
  };
}

// Mixtral's routing, then `corrupt` applied to it (mostly for the consistency errors).
RoutingRule broken_rule(std::function<void(Routing&)> corrupt) {
  RoutingRule choose = mixtral_rule(2);
  return [choose, corrupt](const Tensor& logits, const RoutingContext& context) {
    Routing routing = choose(logits, context);
    corrupt(routing);
    return routing;
  };
}

// ---- The slow reference (tests/moe_reference.h) with the block's own rule on loop logits. ----

// The whole block, slowly: logits by loops, the block's rule on them, then for each token and
// each kept pair of it, weight * expert(x_t); plus the shared expert.
std::vector<double> reference_block(const SparseMoEBlock& block, const Tensor& x) {
  ReferenceWeights w = reference_weights(block);
  std::vector<double> xs = values(x);
  const int64_t tokens = x.numel() / w.d;
  RoutingContext context;
  context.num_experts = w.experts;
  context.sequence_length = x.size(-2);
  Routing routing = block.rule()(from_vector(reference_logits(w, xs), {tokens, w.experts}).to(x.dtype()), context);
  std::vector<int64_t> pair_token = routing.pair_token.to_vector<int64_t>();
  std::vector<int64_t> pair_expert = routing.pair_expert.to_vector<int64_t>();
  std::vector<double> pair_weight = values(routing.pair_weight);
  std::vector<ReferencePair> pairs;
  for (size_t p = 0; p < pair_token.size(); ++p) pairs.push_back({pair_token[p], pair_expert[p], pair_weight[p]});
  return reference_combine(w, xs, pairs);
}

// ---- Blocks. ----

const char* kind_name(ExpertKind kind) {
  return kind == ExpertKind::swiglu ? "swiglu" : kind == ExpertKind::relu ? "relu" : "gelu";
}

SparseMoEConfig make_config(RoutingRule rule, ExpertKind kind = ExpertKind::swiglu,
                            SharedExpertKind shared = SharedExpertKind::none, DType dtype = DType::f64,
                            int64_t d = 6, int64_t f = 5) {
  SparseMoEConfig config;
  config.num_experts = 4;
  config.hidden_size = d;
  config.intermediate_size = f;
  config.expert_kind = kind;
  config.shared.kind = shared;
  config.shared.count = shared == SharedExpertKind::ungated ? 2 : 1;
  config.shared.intermediate_size = 3;
  config.rule = std::move(rule);
  config.dtype = dtype;
  return config;
}

// A block assembled from `params` (gate, experts, shared expert, shared gate: the order of
// named_parameters), the way gradcheck needs: autograd must reach those very tensors.
SparseMoEBlock block_from(const SparseMoEConfig& config, const TensorList& params) {
  MoEParts parts;
  parts.gate = std::make_shared<Router>(config.rule, params[0]);
  add_expert_parts(parts, config, params, 1);
  return SparseMoEBlock(parts);
}

// gradcheck of the block output w.r.t. x and every parameter of a block built from `config`.
GradcheckResult gradcheck_block(const SparseMoEConfig& config, const Shape& x_shape, uint64_t seed) {
  Generator generator(seed);
  SparseMoEBlock block(config, &generator);
  TensorList inputs = {randn(x_shape, DType::f64, &generator).requires_grad_()};
  for (const Tensor& parameter : block.parameters()) inputs.push_back(parameter);
  return gradcheck(
      [&config](const TensorList& in) {
        SparseMoEBlock copy = block_from(config, TensorList(in.begin() + 1, in.end()));
        REQUIRE(copy.parameters().size() == in.size() - 1);  // every parameter is checked
        return copy.forward(in[0]).output;
      },
      inputs);
}

std::vector<std::string> parameter_names(const SparseMoEBlock& block) {
  std::vector<std::string> names;
  for (const auto& named : block.named_parameters()) names.push_back(named.first);
  return names;
}

}  // namespace

TEST_CASE("moe_block: matches the per-token reference for every expert kind and shared expert", "[moe_block]") {
  for (ExpertKind kind : {ExpertKind::swiglu, ExpertKind::relu, ExpertKind::gelu}) {
    for (SharedExpertKind shared : {SharedExpertKind::none, SharedExpertKind::ungated, SharedExpertKind::sigmoid_gated}) {
      INFO(kind_name(kind) << " experts, shared kind " << static_cast<int>(shared));
      Generator generator(100 + static_cast<int>(kind) * 3 + static_cast<int>(shared));
      SparseMoEBlock block(make_config(mixtral_rule(2), kind, shared), &generator);
      for (const Shape& shape : {Shape{9, 6}, Shape{2, 5, 6}}) {
        Tensor x = randn(shape, DType::f64, &generator);
        MoEOutput out = block.forward(x);
        REQUIRE(out.output.shape() == shape);
        check_close(values(out.output), reference_block(block, x), 1e-12);
        const int64_t tokens = x.numel() / 6;
        CHECK(out.routing.router_logits.shape() == Shape{tokens, 4});
        CHECK(out.routing.pair_token.numel() == tokens * 2);
        std::vector<int64_t> load = out.tokens_per_expert.to_vector<int64_t>();
        CHECK(load.size() == 4);
        CHECK(load[0] + load[1] + load[2] + load[3] == tokens * 2);
      }
    }
  }
}

TEST_CASE("moe_block: router logits are x gate^T, filled in when the rule leaves them out", "[moe_block]") {
  Generator generator(9);
  SparseMoEBlock block(make_config(broken_rule([](Routing& routing) { routing.router_logits = Tensor(); })), &generator);
  Tensor x = randn({2, 3, 6}, DType::f64, &generator);
  std::vector<double> logits = values(block.forward(x).routing.router_logits);
  std::vector<double> xs = values(x), gate = values(block.gate()->weight());
  for (int64_t t = 0; t < 6; ++t)
    for (int64_t e = 0; e < 4; ++e) {
      double expected = 0;
      for (int64_t i = 0; i < 6; ++i) expected += xs[t * 6 + i] * gate[e * 6 + i];
      CHECK(logits[t * 4 + e] == Approx(expected).epsilon(1e-12).margin(1e-12));
    }
}

TEST_CASE("moe_block: capacity drops pairs, a token with every pair dropped gets zero", "[moe_block]") {
  Generator generator(31);
  SparseMoEBlock block(make_config(capacity_rule(1, 1)), &generator);
  Tensor x = randn({2, 8, 6}, DType::f64, &generator);
  MoEOutput out = block.forward(x);
  check_close(values(out.output), reference_block(block, x), 1e-12);
  // Top-1 with capacity 1 per expert per sequence of 8 tokens: at most 4 kept per sequence.
  const int64_t kept = out.routing.pair_token.numel();
  CHECK(kept <= 8);
  CHECK(out.routing.dropped_pairs == 16 - kept);
  for (int64_t load : out.tokens_per_expert.to_vector<int64_t>()) CHECK(load <= 2);
  std::vector<int64_t> kept_tokens = out.routing.pair_token.to_vector<int64_t>();
  std::vector<double> y = values(out.output);
  int64_t zero_rows = 0;
  for (int64_t t = 0; t < 16; ++t) {
    bool has_pair = std::find(kept_tokens.begin(), kept_tokens.end(), t) != kept_tokens.end();
    double magnitude = 0;
    for (int64_t m = 0; m < 6; ++m) magnitude += std::abs(y[t * 6 + m]);
    CHECK((magnitude == 0.0) == !has_pair);
    zero_rows += magnitude == 0.0;
  }
  CHECK(zero_rows >= 8);
}

TEST_CASE("moe_block: capacity with shared experts, [B, S, d] counts capacity per sequence", "[moe_block]") {
  for (SharedExpertKind shared : {SharedExpertKind::ungated, SharedExpertKind::sigmoid_gated}) {
    Generator generator(40 + static_cast<int>(shared));
    SparseMoEBlock block(make_config(capacity_rule(2, 2), ExpertKind::gelu, shared), &generator);
    Tensor x = randn({3, 4, 6}, DType::f64, &generator);
    MoEOutput batched = block.forward(x);
    check_close(values(batched.output), reference_block(block, x), 1e-12);
    // The same rows as one sequence of 12 tokens: capacity now counts over all 12, so more drop.
    MoEOutput flat = block.forward(x.reshape({12, 6}));
    check_close(values(flat.output), reference_block(block, x.reshape({12, 6})), 1e-12);
    CHECK(batched.routing.dropped_pairs < flat.routing.dropped_pairs);
  }
}

TEST_CASE("moe_block: no pair kept at all leaves only the shared expert", "[moe_block]") {
  Generator generator(12);
  SparseMoEBlock routed_only(make_config(capacity_rule(2, 0)), &generator);
  Tensor x = randn({5, 6}, DType::f64, &generator).requires_grad_();
  MoEOutput out = routed_only.forward(x);
  CHECK(out.routing.pair_token.numel() == 0);
  for (double v : values(out.output)) CHECK(v == 0.0);
  SparseMoEBlock with_shared(make_config(capacity_rule(2, 0), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated),
                             &generator);
  MoEOutput shared_out = with_shared.forward(x);
  check_close(values(shared_out.output), reference_block(with_shared, x), 1e-12);
  sum(shared_out.output).backward();
  CHECK(x.grad().defined());
}

TEST_CASE("moe_block: expert-choice pairs, grouped by expert", "[moe_block]") {
  Generator generator(55);
  SparseMoEBlock block(make_config(expert_choice_rule(3), ExpertKind::relu, SharedExpertKind::none), &generator);
  Tensor x = randn({8, 6}, DType::f64, &generator);
  MoEOutput out = block.forward(x);
  CHECK(out.tokens_per_expert.to_vector<int64_t>() == std::vector<int64_t>{3, 3, 3, 3});
  check_close(values(out.output), reference_block(block, x), 1e-12);
}

TEST_CASE("moe_block: an expert no token reaches gives nothing and gets zero gradients", "[moe_block]") {
  Generator generator(77);
  SparseMoEBlock block(make_config(skip_last_expert_rule(2)), &generator);
  Tensor x = randn({7, 6}, DType::f64, &generator).requires_grad_();
  MoEOutput out = block.forward(x);
  CHECK(out.tokens_per_expert.to_vector<int64_t>()[3] == 0);
  check_close(values(out.output), reference_block(block, x), 1e-12);
  Tensor grad_output = randn({7, 6}, DType::f64, &generator);
  sum(mul(out.output, grad_output)).backward();
  auto experts = std::dynamic_pointer_cast<SwiGLUExperts>(block.experts());
  for (const Tensor& w : {experts->w1(), experts->w3(), experts->w2()}) {
    for (double g : values(expert_weight_to_hf(w.grad(), 3))) CHECK(g == 0.0);
    double used = 0;
    for (double g : values(expert_weight_to_hf(w.grad(), 0))) used += std::abs(g);
    CHECK(used > 0);
  }
  // The routing weights carry gradient into the gate rows the rule looked at, and only those.
  std::vector<double> gate_grad = values(block.gate()->weight().grad());
  double seen = 0;
  for (int64_t i = 0; i < 3 * 6; ++i) seen += std::abs(gate_grad[i]);
  CHECK(seen > 0);
  for (int64_t i = 3 * 6; i < 4 * 6; ++i) CHECK(gate_grad[i] == 0.0);
}

TEST_CASE("moe_block: [B, S, d] and its [T, d] rows give the same dropless output", "[moe_block]") {
  Generator generator(3);
  SparseMoEBlock block(make_config(mixtral_rule(2), ExpertKind::swiglu, SharedExpertKind::ungated), &generator);
  Tensor x = randn({3, 4, 6}, DType::f64, &generator);
  std::vector<double> batched = values(block.forward(x).output);
  std::vector<double> flat = values(block.forward(x.reshape({12, 6})).output);
  CHECK(batched == flat);
}

TEST_CASE("moe_block: the rule's context: experts, sequence length, mode, generator", "[moe_block]") {
  std::vector<RoutingContext> seen;
  RoutingRule choose = mixtral_rule(2);
  RoutingRule recording = [&seen, choose](const Tensor& logits, const RoutingContext& context) {
    seen.push_back(context);
    return choose(logits, context);
  };
  SparseMoEBlock block(make_config(recording));
  Generator routing_generator(1);
  block.forward(zeros({2, 5, 6}, DType::f64));
  block.eval();
  block.set_routing_generator(&routing_generator);
  block.forward(zeros({7, 6}, DType::f64));
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].num_experts == 4);
  CHECK(seen[0].sequence_length == 5);
  CHECK(seen[0].training);
  CHECK(seen[0].generator == nullptr);
  CHECK(seen[1].sequence_length == 7);
  CHECK_FALSE(seen[1].training);
  CHECK(seen[1].generator == &routing_generator);
}

TEST_CASE("moe_block: an f32 block agrees with the f64 reference", "[moe_block]") {
  Generator generator(61);
  SparseMoEBlock block(make_config(mixtral_rule(2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated, DType::f32,
                                   32, 48),
                       &generator);
  Tensor x = randn({4, 16, 32}, DType::f32, &generator);
  MoEOutput out = block.forward(x);
  CHECK(out.output.dtype() == DType::f32);
  check_close(values(out.output), reference_block(block, x), 1e-5);
}

TEST_CASE("moe_block: parameter names follow HF", "[moe_block]") {
  SparseMoEBlock plain(make_config(mixtral_rule(2)));
  CHECK(parameter_names(plain) == std::vector<std::string>{"gate.weight", "experts.w1", "experts.w3", "experts.w2"});
  SparseMoEBlock switch_like(make_config(mixtral_rule(1), ExpertKind::relu));
  CHECK(parameter_names(switch_like) == std::vector<std::string>{"gate.weight", "experts.wi", "experts.wo"});
  SparseMoEBlock deepseek_like(make_config(mixtral_rule(2), ExpertKind::swiglu, SharedExpertKind::ungated));
  CHECK(parameter_names(deepseek_like) ==
        std::vector<std::string>{"gate.weight", "experts.w1", "experts.w3", "experts.w2",
                                 "shared_experts.gate_proj.weight", "shared_experts.up_proj.weight",
                                 "shared_experts.down_proj.weight"});
  CHECK(deepseek_like.shared_expert()->intermediate_size() == 6);  // count 2 x 3
  SparseMoEBlock qwen_like(make_config(mixtral_rule(2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated));
  CHECK(parameter_names(qwen_like) ==
        std::vector<std::string>{"gate.weight", "experts.w1", "experts.w3", "experts.w2",
                                 "shared_expert.gate_proj.weight", "shared_expert.up_proj.weight",
                                 "shared_expert.down_proj.weight", "shared_expert_gate.weight"});
  CHECK(qwen_like.state_dict().at("gate.weight").shape() == Shape{4, 6});
  CHECK(qwen_like.state_dict().at("shared_expert_gate.weight").shape() == Shape{1, 6});
}

TEST_CASE("moe_block: gradcheck of the whole block, dropless", "[moe_block][gradcheck]") {
  SparseMoEConfig gated = make_config(mixtral_rule(2), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated, DType::f64, 4, 3);
  GradcheckResult result = gradcheck_block(gated, {5, 4}, 7);
  INFO(result.report);
  CHECK(result.passed());
  SparseMoEConfig expert_choice = make_config(expert_choice_rule(2), ExpertKind::relu, SharedExpertKind::none, DType::f64, 4, 3);
  GradcheckResult choice_result = gradcheck_block(expert_choice, {2, 3, 4}, 8);
  INFO(choice_result.report);
  CHECK(choice_result.passed());
}

TEST_CASE("moe_block: gradcheck of the whole block with capacity drops", "[moe_block][gradcheck]") {
  SparseMoEConfig config = make_config(capacity_rule(2, 1), ExpertKind::gelu, SharedExpertKind::ungated, DType::f64, 4, 3);
  // Top-2 of 4 experts with capacity 1 per sequence of 4 tokens: 8 pairs, at most 4 kept.
  GradcheckResult result = gradcheck_block(config, {2, 4, 4}, 19);
  INFO(result.report);
  CHECK(result.passed());
  SparseMoEConfig swiglu = make_config(capacity_rule(1, 1), ExpertKind::swiglu, SharedExpertKind::sigmoid_gated,
                                       DType::f64, 4, 3);
  GradcheckResult swiglu_result = gradcheck_block(swiglu, {6, 4}, 23);
  INFO(swiglu_result.report);
  CHECK(swiglu_result.passed());
}

TEST_CASE("moe_block: bad inputs and inconsistent routings name SparseMoEBlock", "[moe_block][errors]") {
  SparseMoEBlock block(make_config(mixtral_rule(2)));
  CHECK_BLOCK_ERROR(block.forward(zeros({5, 7}, DType::f64)), "[T, 6]");
  CHECK_BLOCK_ERROR(block.forward(zeros({6}, DType::f64)), "[B, S, 6]");
  CHECK_BLOCK_ERROR(block.forward(zeros({1, 2, 3, 6}, DType::f64)), "[1, 2, 3, 6]");
  CHECK_BLOCK_ERROR(block.forward(zeros({5, 6})), "f32");
  CHECK_THROWS_WITH(block.forward(Tensor()), Catch::Contains("SparseMoEBlock"));

  struct Case {
    const char* what;
    std::function<void(Routing&)> corrupt;
  };
  std::vector<Case> cases = {
      {"pair_expert[1] = 4", [](Routing& r) { r.pair_expert = r.pair_expert.clone(); r.pair_expert.data<int64_t>()[1] = 4; }},
      {"pair_expert[0] = -1", [](Routing& r) { r.pair_expert = r.pair_expert.clone(); r.pair_expert.data<int64_t>()[0] = -1; }},
      {"pair_token[2] = 5", [](Routing& r) { r.pair_token = r.pair_token.clone(); r.pair_token.data<int64_t>()[2] = 5; }},
      {"pair_weight", [](Routing& r) { r.pair_weight = slice(r.pair_weight, 0, 0, 3); }},
      {"pair_expert", [](Routing& r) { r.pair_expert = r.pair_expert.reshape({-1, 2}); }},
      {"i64", [](Routing& r) { r.pair_token = r.pair_token.to(DType::f64); }},
      {"dtype f64", [](Routing& r) { r.pair_weight = r.pair_weight.to(DType::f32); }},
      {"no pair_weight", [](Routing& r) { r.pair_weight = Tensor(); }},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    SparseMoEBlock broken(make_config(broken_rule(c.corrupt)));
    CHECK_BLOCK_ERROR(broken.forward(zeros({5, 6}, DType::f64)), c.what);
  }
}

TEST_CASE("moe_block: bad configurations and parts name SparseMoEBlock", "[moe_block][errors]") {
  CHECK_THROWS_WITH(SparseMoEBlock(make_config(RoutingRule())),
                    Catch::Contains("Router") && Catch::Contains("empty RoutingRule"));
  SparseMoEConfig other_router = make_config(mixtral_rule(1));
  other_router.router = mixtral(5, 2);
  CHECK_BLOCK_ERROR(SparseMoEBlock{other_router}, "routes to 5 experts");
  SparseMoEConfig no_experts = make_config(mixtral_rule(1));
  no_experts.num_experts = 0;
  CHECK_BLOCK_ERROR(SparseMoEBlock{no_experts}, "positive");
  SparseMoEConfig integer = make_config(mixtral_rule(1));
  integer.dtype = DType::i64;
  CHECK_BLOCK_ERROR(SparseMoEBlock{integer}, "i64");
  SparseMoEConfig empty_shared = make_config(mixtral_rule(1), ExpertKind::swiglu, SharedExpertKind::ungated);
  empty_shared.shared.intermediate_size = 0;
  CHECK_BLOCK_ERROR(SparseMoEBlock{empty_shared}, "shared");

  auto experts = std::make_shared<SwiGLUExperts>(4, 6, 5);
  auto gate = std::make_shared<Router>(mixtral(4, 1), 6);
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{gate, nullptr, nullptr, nullptr}), "no experts");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{nullptr, experts, nullptr, nullptr}), "no gate");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{std::make_shared<Router>(mixtral(3, 1), 6), experts, nullptr, nullptr}),
                    "[4, 6]");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{std::make_shared<Router>(mixtral(4, 1), 6, nullptr, DType::f64), experts,
                                            nullptr, nullptr}),
                    "gate");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{gate, experts, std::make_shared<SharedExpert>(5, 3), nullptr}),
                    "hidden size 6");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{gate, experts, nullptr, std::make_shared<Linear>(6, 1, false)}),
                    "needs a shared_expert");
  CHECK_BLOCK_ERROR(SparseMoEBlock(MoEParts{gate, experts, std::make_shared<SharedExpert>(6, 3),
                                            std::make_shared<Linear>(6, 2, false)}),
                    "[1, 6]");
}
