// nn::Module (names, modes, state_dict and its loading) and nn::Linear.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <memory>

#include "nn/linear.h"
#include "nn/module.h"
#include "nn/safetensors.h"
#include "test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::temp_path;
using nn::Linear;

namespace {

// A SwiGLU expert with HF Mixtral names: w1, w2, w3.
struct Expert : nn::Module {
  std::shared_ptr<Linear> w1, w2, w3;
  Expert(int64_t hidden, int64_t ffn, Generator* generator)
      : w1(register_module("w1", std::make_shared<Linear>(hidden, ffn, false, generator))),
        w2(register_module("w2", std::make_shared<Linear>(ffn, hidden, false, generator))),
        w3(register_module("w3", std::make_shared<Linear>(hidden, ffn, false, generator))) {}
};

// A miniature MoE block: an own parameter, a router with a buffer, a list of experts.
struct Block : nn::Module {
  Tensor scale;
  std::shared_ptr<Linear> gate;
  std::shared_ptr<nn::ModuleList> experts;
  explicit Block(uint64_t seed, int64_t experts_count = 2) {
    Generator generator(seed);
    scale = register_parameter("scale", rand({4}, DType::f32, &generator));
    gate = register_module("gate", std::make_shared<Linear>(4, experts_count, false, &generator));
    gate->register_buffer("e_score_correction_bias", zeros({experts_count}));
    experts = register_module("experts", std::make_shared<nn::ModuleList>());
    for (int64_t e = 0; e < experts_count; ++e) experts->push_back(std::make_shared<Expert>(4, 3, &generator));
  }
};

std::vector<std::string> names_of(const nn::NamedTensors& named) {
  std::vector<std::string> names;
  for (const auto& entry : named) names.push_back(entry.first);
  return names;
}

std::vector<std::string> keys_of(const nn::StateDict& state) {
  std::vector<std::string> names;
  for (const auto& entry : state) names.push_back(entry.first);
  return names;
}

}  // namespace

TEST_CASE("module: dotted names of nested modules", "[module]") {
  Block block(1);
  CHECK(names_of(block.named_parameters()) ==
        std::vector<std::string>{"scale", "gate.weight", "experts.0.w1.weight", "experts.0.w2.weight",
                                 "experts.0.w3.weight", "experts.1.w1.weight", "experts.1.w2.weight",
                                 "experts.1.w3.weight"});
  CHECK(names_of(block.named_buffers()) == std::vector<std::string>{"gate.e_score_correction_bias"});
  CHECK(keys_of(block.state_dict()) ==
        std::vector<std::string>{"experts.0.w1.weight", "experts.0.w2.weight", "experts.0.w3.weight",
                                 "experts.1.w1.weight", "experts.1.w2.weight", "experts.1.w3.weight",
                                 "gate.e_score_correction_bias", "gate.weight", "scale"});
  for (const Tensor& parameter : block.parameters()) {
    CHECK(parameter.is_leaf());
    CHECK(parameter.requires_grad());
  }
  CHECK_FALSE(block.named_buffers()[0].second.requires_grad());
  CHECK(block.experts->size() == 2);
  CHECK(block.experts->at<Expert>(1)->w2->weight().shape() == Shape{4, 3});
  CHECK(names_of(block.gate->named_parameters()) == std::vector<std::string>{"weight"});
  // The parameter is the registered handle: writing through it changes the module.
  block.scale.data<float>()[0] = 7.0f;
  CHECK(block.named_parameters()[0].second.data<float>()[0] == 7.0f);
}

TEST_CASE("module: state_dict shares storage but is detached", "[module]") {
  Block block(2);
  nn::StateDict state = block.state_dict();
  CHECK(state.at("scale").raw_data() == block.scale.raw_data());
  CHECK_FALSE(state.at("scale").requires_grad());
}

TEST_CASE("module: tied parameters are listed once, saved under every name", "[module]") {
  struct Tied : nn::Module {
    std::shared_ptr<Linear> encoder, decoder;
    Tied() {
      encoder = register_module("encoder", std::make_shared<Linear>(3, 3, false));
      decoder = register_module("decoder", std::make_shared<Linear>(encoder->weight()));
    }
  } tied;
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"encoder.weight"});
  CHECK(keys_of(tied.state_dict()) == std::vector<std::string>{"decoder.weight", "encoder.weight"});
}

TEST_CASE("module: registration errors", "[module][errors]") {
  nn::Module module;
  module.register_parameter("weight", zeros({2}));
  CHECK_THROWS_WITH(module.register_parameter("weight", zeros({2})),
                    Catch::Contains("register_parameter") && Catch::Contains("already registered"));
  CHECK_THROWS_WITH(module.register_buffer("weight", zeros({2})),
                    Catch::Contains("register_buffer") && Catch::Contains("already registered"));
  CHECK_THROWS_WITH(module.register_module("weight", std::make_shared<nn::Module>()),
                    Catch::Contains("register_module") && Catch::Contains("already registered"));
  CHECK_THROWS_WITH(module.register_parameter("a.b", zeros({2})),
                    Catch::Contains("register_parameter") && Catch::Contains("'.'"));
  CHECK_THROWS_WITH(module.register_parameter("", zeros({2})),
                    Catch::Contains("register_parameter") && Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(module.register_parameter("index", zeros({2}, DType::i64)),
                    Catch::Contains("register_parameter") && Catch::Contains("floating"));
  CHECK_THROWS_WITH(module.register_parameter("undefined", Tensor()),
                    Catch::Contains("register_parameter") && Catch::Contains("undefined"));
  Tensor leaf = ones({2}).requires_grad_();
  CHECK_THROWS_WITH(module.register_parameter("derived", mul(leaf, 2.0)),
                    Catch::Contains("register_parameter") && Catch::Contains("leaf"));
  CHECK_THROWS_WITH(module.register_buffer("tracked", ones({2}).requires_grad_()),
                    Catch::Contains("register_buffer") && Catch::Contains("requires grad"));
  CHECK_THROWS_WITH(module.register_module("child", std::shared_ptr<nn::Module>()),
                    Catch::Contains("register_module") && Catch::Contains("null"));
  nn::ModuleList list;
  list.push_back(std::make_shared<nn::Module>());
  CHECK_THROWS_WITH(list.at(1), Catch::Contains("ModuleList") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(list.at<Linear>(0), Catch::Contains("ModuleList") && Catch::Contains("type"));
}

TEST_CASE("module: train and eval reach every descendant", "[module]") {
  Block block(3);
  CHECK(block.is_training());
  block.eval();
  CHECK_FALSE(block.is_training());
  CHECK_FALSE(block.gate->is_training());
  CHECK_FALSE(block.experts->is_training());
  CHECK_FALSE(block.experts->at<Expert>(1)->w3->is_training());
  block.train();
  CHECK(block.experts->at<Expert>(0)->w1->is_training());
  block.experts->train(false);
  CHECK(block.is_training());
  CHECK_FALSE(block.experts->at<Expert>(0)->w1->is_training());
}

TEST_CASE("module: zero_grad drops every gradient", "[module]") {
  Block block(4);
  Tensor loss = sum(block.gate->forward(ones({1, 4}))) + sum(block.scale);
  loss.backward();
  CHECK(block.gate->weight().grad().defined());
  CHECK(block.scale.grad().defined());
  block.zero_grad();
  for (const Tensor& parameter : block.parameters()) CHECK_FALSE(parameter.grad().defined());
}

TEST_CASE("module: state_dict round trip through safetensors", "[module][safetensors]") {
  Block source(5), target(6);
  source.gate->named_buffers()[0].second.data<float>()[1] = 0.25f;
  void* target_storage = target.gate->weight().raw_data();
  std::string path = temp_path("tinymoe_test_module_roundtrip.safetensors");
  nn::save_safetensors(path, source.state_dict());
  target.load_state_dict(nn::load_safetensors(path));
  std::remove(path.c_str());

  nn::StateDict expected = source.state_dict(), loaded = target.state_dict();
  for (const auto& entry : expected) CHECK(loaded.at(entry.first).to_vector<float>() == entry.second.to_vector<float>());
  // Loaded in place: the handles an optimizer holds still see the model.
  CHECK(target.gate->weight().raw_data() == target_storage);
  CHECK(target.gate->weight().requires_grad());
}

TEST_CASE("module: load_state_dict lists every problem and loads nothing", "[module][errors]") {
  Block block(7);
  nn::StateDict state = Block(8).state_dict();
  std::vector<float> scale_before = block.scale.to_vector<float>();
  state.erase("experts.1.w2.weight");
  state["experts.0.w1.weight"] = zeros({4, 3});
  state["gate.e_score_correction_bias"] = zeros({2}, DType::f64);
  state["lm_head.weight"] = zeros({2});
  state["gate.weight"] = Tensor();

  std::string message;
  try {
    block.load_state_dict(state);
  } catch (const Error& error) {
    message = error.what();
  }
  CHECK_THAT(message, Catch::StartsWith("load_state_dict: 5 problems, nothing was loaded"));
  CHECK_THAT(message, Catch::Contains("missing 'experts.1.w2.weight' (f32 [4, 3])"));
  CHECK_THAT(message, Catch::Contains("unexpected 'lm_head.weight'"));
  CHECK_THAT(message, Catch::Contains("'experts.0.w1.weight' expects f32 [3, 4], got f32 [4, 3]"));
  CHECK_THAT(message, Catch::Contains("'gate.e_score_correction_bias' expects f32 [2], got f64 [2]"));
  CHECK_THAT(message, Catch::Contains("'gate.weight' is an undefined tensor"));
  // All or nothing: the valid entries ("scale" among them) were not copied either.
  CHECK(block.scale.to_vector<float>() == scale_before);
}

TEST_CASE("module: non-strict loading skips missing and unexpected names only", "[module][errors]") {
  Block block(9);
  Tensor new_scale = from_vector(std::vector<float>{1, 2, 3, 4}, {4});
  block.load_state_dict({{"scale", new_scale}, {"extra", zeros({1})}}, false);
  CHECK(block.scale.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK_THROWS_WITH(block.load_state_dict({{"scale", zeros({4})}, {"extra", zeros({1})}}),
                    Catch::Contains("unexpected 'extra'") && Catch::Contains("missing 'gate.weight'"));
  CHECK_THROWS_WITH(block.load_state_dict({{"scale", zeros({4})}, {"gate.weight", zeros({3})}}, false),
                    Catch::Contains("load_state_dict: 1 problem") && Catch::Contains("'gate.weight' expects"));
  CHECK(block.scale.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  // Loading a module's own state is a no-op, even though source and destination alias.
  block.load_state_dict(block.state_dict());
  CHECK(block.scale.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("linear: forward matches a hand-written loop", "[linear]") {
  Generator generator(11);
  Linear layer(4, 3, true, &generator);
  Tensor x = randn({2, 5, 4}, DType::f32, &generator);
  Tensor y = layer(x);
  REQUIRE(y.shape() == Shape{2, 5, 3});
  std::vector<float> xs = x.to_vector<float>(), ws = layer.weight().to_vector<float>(),
                     bs = layer.bias().to_vector<float>(), ys = y.to_vector<float>();
  for (int64_t row = 0; row < 10; ++row)
    for (int64_t o = 0; o < 3; ++o) {
      double expected = bs[o];
      for (int64_t i = 0; i < 4; ++i) expected += double(xs[row * 4 + i]) * ws[o * 4 + i];
      CHECK(ys[row * 3 + o] == Approx(expected).epsilon(1e-5));
    }
  Linear no_bias(4, 3, false, &generator);
  CHECK_FALSE(no_bias.bias().defined());
  CHECK(names_of(no_bias.named_parameters()) == std::vector<std::string>{"weight"});
}

TEST_CASE("linear: torch's default init, reproducible from a seed", "[linear]") {
  Generator first(3), second(3);
  Linear a(16, 8, true, &first), b(16, 8, true, &second);
  CHECK(a.weight().to_vector<float>() == b.weight().to_vector<float>());
  CHECK(a.bias().to_vector<float>() == b.bias().to_vector<float>());
  // Bound 1/sqrt(in) = 0.25 for weight and bias; a sample of 128 reaches most of it.
  double largest = 0;
  for (float w : a.weight().to_vector<float>()) largest = std::max(largest, std::abs(double(w)));
  CHECK(largest <= 0.25);
  CHECK(largest > 0.2);
  for (float value : a.bias().to_vector<float>()) CHECK(std::abs(value) <= 0.25);
  CHECK(a.weight().dtype() == DType::f32);
  CHECK(Linear(2, 2, true, nullptr, DType::f64).weight().dtype() == DType::f64);
  Linear empty(0, 3);
  CHECK(empty.bias().to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(empty(zeros({2, 0})).to_vector<float>() == std::vector<float>(6, 0.0f));
}

TEST_CASE("linear: gradcheck through the module", "[linear][gradcheck]") {
  Generator generator(21);
  auto with_bias = [](const TensorList& in) { return Linear(in[1], in[2]).forward(in[0]); };
  auto without_bias = [](const TensorList& in) { return Linear(in[1]).forward(in[0]); };
  struct Case {
    Shape x;
    int64_t out;
  };
  for (const Case& c : {Case{{1, 1}, 1}, Case{{3, 5}, 2}, Case{{2, 3, 4}, 3}, Case{{4}, 2}}) {
    int64_t in = c.x.back();
    Tensor x = randn(c.x, DType::f64, &generator).requires_grad_();
    Tensor w = randn({c.out, in}, DType::f64, &generator).requires_grad_();
    Tensor b = randn({c.out}, DType::f64, &generator).requires_grad_();
    GradcheckResult result = gradcheck(with_bias, {x, w, b});
    INFO(result.report);
    CHECK(result.passed());
    GradcheckResult no_bias_result = gradcheck(without_bias, {x, w});
    INFO(no_bias_result.report);
    CHECK(no_bias_result.passed());
  }
  // The module's own parameters receive the gradient of forward.
  Linear layer(3, 2, true, &generator, DType::f64);
  sum(layer(ones({4, 3}, DType::f64))).backward();
  CHECK(layer.bias().grad().to_vector<double>() == std::vector<double>{4, 4});
}

TEST_CASE("linear: errors", "[linear][errors]") {
  CHECK_THROWS_WITH(Linear(-1, 3), Catch::Contains("Linear") && Catch::Contains("non-negative"));
  CHECK_THROWS_WITH(Linear(2, 3, true, nullptr, DType::i64), Catch::Contains("Linear") && Catch::Contains("floating"));
  CHECK_THROWS_WITH(Linear(zeros({3})), Catch::Contains("Linear") && Catch::Contains("dimensions"));
  CHECK_THROWS_WITH(Linear(zeros({2, 3}), zeros({3})), Catch::Contains("Linear") && Catch::Contains("bias"));
  CHECK_THROWS_WITH(Linear(zeros({2, 3}), zeros({2}, DType::f64)), Catch::Contains("Linear"));
  Linear layer(4, 2);
  CHECK_THROWS_WITH(layer(zeros({3, 5})), Catch::Contains("linear") && Catch::Contains("features"));
  CHECK_THROWS_WITH(layer(zeros({3, 4}, DType::f64)), Catch::Contains("linear") && Catch::Contains("dtype"));
}
