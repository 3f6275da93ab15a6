// Training checkpoints (nn/checkpoint.h) and what they are made of: Generator::state and
// Optimizer::state_dict. The central check: a run saved halfway and continued from the file
// ends bit for bit where the uninterrupted run ends.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>

#include "nn/checkpoint.h"
#include "nn/moe_transformer.h"
#include "nn/router_presets.h"
#include "test_helpers.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using tinymoe::testing::temp_path;

namespace {

// ---- generators ----

std::vector<double> draws(Generator& generator) {
  // An odd number of normals leaves a Box-Muller spare pending: the state must carry it.
  return {generator.uniform(), generator.normal(), static_cast<double>(generator.integer(0, 1000)),
          generator.normal(), generator.normal()};
}

}  // namespace

TEST_CASE("checkpoint: a generator's state makes another draw the same numbers", "[checkpoint]") {
  Generator original(11);
  draws(original);  // leaves a spare normal
  std::vector<uint64_t> state = original.state();
  Generator copy(99);
  copy.set_state(state);
  CHECK(draws(copy) == draws(original));
  CHECK(copy.state() == original.state());
}

TEST_CASE("checkpoint: Generator::set_state refuses what is not a state and changes nothing", "[checkpoint][errors]") {
  Generator generator(12);
  std::vector<uint64_t> good = generator.state(), before = generator.state();
  std::vector<uint64_t> short_state(good.begin(), good.end() - 1);
  CHECK_THROWS_WITH(generator.set_state(short_state),
                    Catch::StartsWith("Generator::set_state: expected") && Catch::Contains("words"));
  std::vector<uint64_t> bad_flag = good;
  bad_flag[bad_flag.size() - 2] = 2;
  CHECK_THROWS_WITH(generator.set_state(bad_flag), Catch::Contains("spare flag must be 0 or 1, got 2"));
  // The all-zero engine draws only zeros (normal() would never return): not a state.
  std::vector<uint64_t> zeros_state(good.size(), 0);
  CHECK_THROWS_WITH(generator.set_state(zeros_state), Catch::Contains("all zero"));
  std::vector<uint64_t> far_position = good;
  far_position[std::mt19937_64::state_size] = 100000;  // libstdc++ writes the position after the words
  if (good.size() == std::mt19937_64::state_size + 3)
    CHECK_THROWS_WITH(generator.set_state(far_position), Catch::Contains("position 100000 is past its 312 words"));
  std::vector<uint64_t> nan_spare = good;
  double nan = std::nan("");
  nan_spare[nan_spare.size() - 2] = 1;
  std::memcpy(&nan_spare.back(), &nan, sizeof nan);
  CHECK_THROWS_WITH(generator.set_state(nan_spare), Catch::Contains("spare normal is nan, not a finite number"));
  CHECK(generator.state() == before);
}

// ---- optimizers ----

namespace {

// Two parameters; the second only gets a gradient from the third step on, so a state saved
// earlier has a parameter without state.
struct TinyProblem {
  Tensor a, b;
  TinyProblem(const Tensor& a_values, const Tensor& b_values)
      : a(a_values.detach().clone().requires_grad_()), b(b_values.detach().clone().requires_grad_()) {}
  TinyProblem()
      : TinyProblem(from_vector(std::vector<double>{1.0, -2.0, 0.5}, {3}), from_vector(std::vector<double>{0.25, 4.0}, {2})) {}
  TensorList parameters() const { return {a, b}; }
  void set_gradients(int step) {
    a.set_grad(from_vector(std::vector<double>{0.5 + step, -0.25, 0.125 * step}, {3}));
    if (step > 1) b.set_grad(from_vector(std::vector<double>{-1.0 * step, 0.75}, {2}));
  }
};

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(const TensorList&)>;

// Steps `saved_after` times, hands the state to a fresh optimizer over copies of the parameters,
// then steps both until step 5: every value must agree exactly.
void check_continues_exactly(const MakeOptimizer& make, int saved_after) {
  TinyProblem original;
  std::unique_ptr<Optimizer> optimizer = make(original.parameters());
  for (int step = 0; step < saved_after; ++step) {
    original.set_gradients(step);
    optimizer->step();
  }
  TinyProblem resumed(original.a, original.b);
  std::unique_ptr<Optimizer> fresh = make(resumed.parameters());
  fresh->load_state_dict(optimizer->state_dict());
  for (int step = saved_after; step < 5; ++step) {
    original.set_gradients(step);
    resumed.set_gradients(step);
    optimizer->step();
    fresh->step();
  }
  CHECK(resumed.a.to_vector<double>() == original.a.to_vector<double>());
  CHECK(resumed.b.to_vector<double>() == original.b.to_vector<double>());
}

std::vector<std::string> keys_of(const StateDict& state) {
  std::vector<std::string> keys;
  for (const auto& entry : state) keys.push_back(entry.first);
  return keys;
}

const AdamWOptions kAdamW{0.1, 0.8, 0.95, 1e-8, 0.05};

// AdamW over `problem`, stepped `steps` times with the first step's gradients.
std::unique_ptr<AdamW> stepped_adamw(TinyProblem& problem, int steps) {
  auto adam = std::make_unique<AdamW>(problem.parameters(), kAdamW);
  problem.set_gradients(0);
  for (int step = 0; step < steps; ++step) adam->step();
  return adam;
}

MakeOptimizer adamw(AdamWOptions options) {
  return [options](const TensorList& parameters) { return std::make_unique<AdamW>(parameters, options); };
}

MakeOptimizer sgd(SGDOptions options) {
  return [options](const TensorList& parameters) { return std::make_unique<SGD>(parameters, options); };
}

}  // namespace

TEST_CASE("checkpoint: an optimizer loaded from state_dict continues the run exactly", "[checkpoint][optim]") {
  for (int saved_after : {0, 1, 2, 3}) {
    INFO("saved after " << saved_after << " steps");
    check_continues_exactly(adamw(kAdamW), saved_after);
    check_continues_exactly(sgd({0.1, 0.9, 0.01}), saved_after);
  }
}

TEST_CASE("checkpoint: an optimizer's state_dict names its options and each parameter's slots", "[checkpoint][optim]") {
  TinyProblem problem;
  auto adam = stepped_adamw(problem, 2);
  StateDict state = adam->state_dict();
  CHECK(keys_of(state) == std::vector<std::string>{"0.exp_avg", "0.exp_avg_sq", "0.step", "beta1", "beta2", "eps",
                                                   "lr", "weight_decay"});
  CHECK(state.at("0.step").item<int64_t>() == 2);
  CHECK(state.at("beta2").item<double>() == 0.95);
  CHECK(state.at("0.exp_avg").shape() == Shape{3});

  SGD plain(problem.parameters(), {0.1});  // no momentum: no per-parameter state
  plain.step();
  CHECK(keys_of(plain.state_dict()) == std::vector<std::string>{"lr", "momentum", "weight_decay"});
  // lr is state (schedules change it): it comes back with the rest.
  AdamW other(problem.parameters(), {0.5, 0.8, 0.95, 1e-8, 0.05});
  other.load_state_dict(state);
  CHECK(other.lr() == 0.1);
  CHECK(other.step_count(0) == 2);
  CHECK(other.step_count(1) == 0);
}

TEST_CASE("checkpoint: Optimizer::load_state_dict lists every problem and loads nothing", "[checkpoint][optim][errors]") {
  TinyProblem problem;
  auto source = stepped_adamw(problem, 1);
  StateDict state = source->state_dict();
  state["beta2"] = full({}, 0.999, DType::f64);                 // another setup
  state["0.exp_avg_sq"] = zeros({2}, DType::f64);              // the wrong shape
  state.erase("0.step");                                       // a slot missing
  state["7.exp_avg"] = zeros({3}, DType::f64);                 // no parameter 7
  state["01.exp_avg"] = zeros({3}, DType::f64);                // not how an index is spelled
  state["lr"] = full({}, -1.0, DType::f64);                    // not a learning rate

  AdamW target(problem.parameters(), {0.5, 0.8, 0.95, 1e-8, 0.05});
  StateDict before = target.state_dict();
  std::string message;
  try {
    target.load_state_dict(state);
  } catch (const Error& error) {
    message = error.what();
  }
  INFO(message);
  CHECK_THAT(message, Catch::StartsWith("AdamW::load_state_dict: 6 problems, nothing was loaded"));
  CHECK_THAT(message, Catch::Contains("'beta2' is 0.999 in the state but 0.95 in this AdamW"));
  CHECK_THAT(message, Catch::Contains("'0.exp_avg_sq' expects f64 [3], got f64 [2]"));
  CHECK_THAT(message, Catch::Contains("missing '0.step'"));
  CHECK_THAT(message, Catch::Contains("unexpected '7.exp_avg'"));
  CHECK_THAT(message, Catch::Contains("unexpected '01.exp_avg'"));
  CHECK_THAT(message, Catch::Contains("'lr' must be finite and >= 0"));
  CHECK(keys_of(target.state_dict()) == keys_of(before));
  CHECK(target.lr() == 0.5);
  // Another optimizer's state: its options are missing and its slots unknown.
  SGD sgd_target(problem.parameters(), {0.1, 0.9});
  CHECK_THROWS_WITH(sgd_target.load_state_dict(source->state_dict()),
                    Catch::Contains("SGD::load_state_dict") && Catch::Contains("missing 'momentum'") &&
                        Catch::Contains("unexpected '0.exp_avg'"));
}

TEST_CASE("checkpoint: an optimizer's state_dict is a snapshot, and loading copies it", "[checkpoint][optim]") {
  TinyProblem problem;
  auto adam = stepped_adamw(problem, 1);
  StateDict snapshot = adam->state_dict();
  std::vector<double> moments = snapshot.at("0.exp_avg").to_vector<double>();
  adam->step();  // the cpu step updates its moments in place: the snapshot must not follow
  CHECK(snapshot.at("0.exp_avg").to_vector<double>() == moments);
  CHECK(snapshot.at("0.step").item<int64_t>() == 1);
  // Loaded values are copies: writing into the source afterwards changes nothing.
  AdamW other(problem.parameters(), kAdamW);
  other.load_state_dict(snapshot);
  snapshot.at("0.exp_avg").data<double>()[0] = 1e9;
  CHECK(other.state_dict().at("0.exp_avg").to_vector<double>() == moments);
}

TEST_CASE("checkpoint: step counts load exactly, up to the one that would overflow", "[checkpoint][optim][errors]") {
  TinyProblem problem;
  auto adam = stepped_adamw(problem, 1);
  StateDict state = adam->state_dict();
  const int64_t beyond_double = (int64_t{1} << 53) + 1;  // not a double: must not pass through one
  state["0.step"] = from_vector(std::vector<int64_t>{beyond_double}, {});
  AdamW other(problem.parameters(), kAdamW);
  other.load_state_dict(state);
  CHECK(other.step_count(0) == beyond_double);
  CHECK(other.state_dict().at("0.step").item<int64_t>() == beyond_double);
  state["0.step"] = from_vector(std::vector<int64_t>{std::numeric_limits<int64_t>::max()}, {});
  CHECK_THROWS_WITH(other.load_state_dict(state), Catch::Contains("'0.step' must be in [1, 9223372036854775807)"));
  state["0.step"] = from_vector(std::vector<int64_t>{0}, {});
  CHECK_THROWS_WITH(other.load_state_dict(state), Catch::Contains("got 0"));
}

TEST_CASE("checkpoint: SGD without momentum refuses a momentum buffer", "[checkpoint][optim][errors]") {
  TinyProblem problem;
  SGD with_momentum(problem.parameters(), {0.1, 0.9});
  problem.set_gradients(0);
  with_momentum.step();
  StateDict state = with_momentum.state_dict();
  state["momentum"] = full({}, 0.0, DType::f64);
  SGD plain(problem.parameters(), {0.1, 0.0});
  CHECK_THROWS_WITH(plain.load_state_dict(state), Catch::Contains("unexpected '0.momentum_buffer'"));
}

// ---- checkpoints of a training run ----

namespace {

MoETransformerConfig tiny_config(const RouterConfig& router) { return tinymoe::testing::tiny_lm_config(router); }

// A training run as train_tiny_lm runs it: random batches from `batches`, router noise from the
// default generator, AdamW, DeepSeek-V3's bias update.
struct Run {
  Generator weights, batches;
  MoETransformer model;
  AdamW optimizer;
  int64_t step = 0;

  Run(const RouterConfig& router, uint64_t seed)
      : weights(seed), batches(seed + 1), model(tiny_config(router), &weights),
        optimizer(model.parameters(), AdamWOptions{1e-2, 0.9, 0.95, 1e-8, 0.01}) {}

  TrainingState state() {
    TrainingState state(&model, &optimizer, {{"batches", &batches}, {"default", &default_generator()}});
    state.step = step;
    return state;
  }

  double train(int64_t steps) {
    double loss = 0;
    for (int64_t n = 0; n < steps; ++n) {
      Tensor ids = randint(0, 7, {3, 6}, &batches), targets = randint(0, 7, {3, 6}, &batches);
      model.zero_grad();
      LMOutput out = model(ids, targets);
      out.total_loss().backward();
      clip_grad_norm(model.parameters(), 1.0);
      optimizer.step();
      model.update_router_biases(out, 1e-2);
      loss = out.loss.item<double>();
      ++step;
    }
    return loss;
  }
};

// Every parameter and buffer, exactly.
void check_same_model(const Module& resumed, const Module& original) {
  StateDict expected = original.state_dict(), got = resumed.state_dict();
  REQUIRE(keys_of(got) == keys_of(expected));
  for (const auto& entry : expected) {
    INFO(entry.first);
    CHECK(got.at(entry.first).to(DType::f64).to_vector<double>() == entry.second.to(DType::f64).to_vector<double>());
  }
}

bool same_model(const Module& a, const Module& b) {
  StateDict x = a.state_dict(), y = b.state_dict();
  for (const auto& entry : x)
    if (y.at(entry.first).to(DType::f64).to_vector<double>() != entry.second.to(DType::f64).to_vector<double>())
      return false;
  return true;
}

}  // namespace

TEST_CASE("checkpoint: a run continued from its checkpoint ends where the uninterrupted run ends", "[checkpoint]") {
  // Mixtral's aux loss, noisy top-k's noise from the default generator, DeepSeek-V3's bias buffer,
  // Switch's jitter and capacity, GShard's second-expert coin, expert choice.
  RouterConfig gshard_with_coin = gshard(4, 2.0);
  gshard_with_coin.gshard_random_second_choice = true;
  for (const auto& [name, router] :
       {std::pair<const char*, RouterConfig>{"mixtral", mixtral(4, 2)}, {"noisy_topk", noisy_topk(4, 2)},
        {"deepseek_v3", deepseek_v3(4, 2, 2, 1)}, {"switch", switch_transformer(4, CapacityConfig::factor(1.0))},
        {"gshard_coin", gshard_with_coin}, {"expert_choice", expert_choice(4, 2.0)}}) {
    INFO(name);
    std::string path = temp_path(std::string("tinymoe_test_checkpoint_") + name + ".safetensors");
    manual_seed(5);
    Run uninterrupted(router, 40);
    double final_loss = uninterrupted.train(6);

    manual_seed(5);
    Run first_half(router, 40);
    first_half.train(3);
    save_checkpoint(path, first_half.state());

    manual_seed(123);  // the default generator moves on, as in a new process
    Run second_half(router, 77);
    TrainingState state = second_half.state();
    load_checkpoint(path, state);
    CHECK(state.step == 3);
    second_half.step = state.step;
    CHECK(second_half.train(3) == final_loss);
    check_same_model(second_half.model, uninterrupted.model);
    CHECK(second_half.optimizer.step_count(0) == 6);
    std::remove(path.c_str());
  }
}

TEST_CASE("checkpoint: without the generators' states the continued run differs", "[checkpoint]") {
  // The same test with the batches' generator left out of the checkpoint: proof that the test
  // above can fail, and that the generators are what makes it pass.
  std::string path = temp_path("tinymoe_test_checkpoint_no_generators.safetensors");
  manual_seed(5);
  Run uninterrupted(mixtral(4, 2), 40);
  uninterrupted.train(4);
  manual_seed(5);
  Run first_half(mixtral(4, 2), 40);
  first_half.train(2);
  TrainingState saved{&first_half.model, &first_half.optimizer};
  save_checkpoint(path, saved);
  Run second_half(mixtral(4, 2), 40);  // its batches generator starts from the beginning again
  TrainingState state{&second_half.model, &second_half.optimizer};
  load_checkpoint(path, state);
  second_half.train(2);
  CHECK_FALSE(same_model(second_half.model, uninterrupted.model));
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: the file holds the step, the rank and the program's notes", "[checkpoint]") {
  std::string path = temp_path("tinymoe_test_checkpoint_notes.safetensors");
  Run run(mixtral(4, 2), 3);
  run.train(1);
  TrainingState saved = run.state();
  saved.rank = 1;
  saved.ranks = 2;
  saved.notes = {{"router", "mixtral"}, {"first_loss", "1.95"}};
  save_checkpoint(path, saved);
  SafetensorsMetadata metadata;
  TensorMap tensors = load_safetensors(path, &metadata);
  CHECK(metadata.at("format") == "tinymoe-checkpoint");
  CHECK(metadata.at("step") == "1");
  CHECK(metadata.at("optimizer") == "AdamW");
  CHECK(metadata.at("rank") == "1");
  CHECK(metadata.at("note.router") == "mixtral");
  CHECK(tensors.count("model.lm_head.weight"));
  CHECK(tensors.count("optimizer.0.exp_avg"));
  CHECK(tensors.at("generator.batches").dtype() == DType::i64);
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));

  Run other(mixtral(4, 2), 4);
  TrainingState state = other.state();
  state.rank = 1;
  state.ranks = 2;
  load_checkpoint(path, state);
  CHECK(state.notes == saved.notes);
  CHECK(state.step == 1);
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: any step count saves and loads", "[checkpoint]") {
  std::string path = temp_path("tinymoe_test_checkpoint_step.safetensors");
  Run run(mixtral(4, 2), 3);
  for (int64_t step : {int64_t{0}, int64_t{1000000000000000000}, std::numeric_limits<int64_t>::max()}) {
    TrainingState saved = run.state();
    saved.step = step;
    save_checkpoint(path, saved);
    TrainingState loaded = run.state();
    load_checkpoint(path, loaded);
    CHECK(loaded.step == step);
  }
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: only the model, to sample from a trained one", "[checkpoint]") {
  std::string path = temp_path("tinymoe_test_checkpoint_model_only.safetensors");
  Run run(deepseek_v3(4, 2, 2, 1), 6);
  run.train(2);
  save_checkpoint(path, run.state());
  MoETransformer model(tiny_config(deepseek_v3(4, 2, 2, 1)));
  TrainingState state{&model};
  load_checkpoint(path, state);
  check_same_model(model, run.model);  // the bias buffer included
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: load_checkpoint lists every problem and changes nothing", "[checkpoint][errors]") {
  std::string path = temp_path("tinymoe_test_checkpoint_errors.safetensors");
  Run run(mixtral(4, 2), 8);
  run.train(1);
  save_checkpoint(path, run.state());

  // Another model (more experts), a generator the file lacks: every problem in one Error.
  Run other(mixtral(6, 2), 9);
  other.train(1);
  StateDict model_before = other.model.state_dict(), optimizer_before = other.optimizer.state_dict();
  std::vector<uint64_t> batches_before = other.batches.state();
  for (auto& entry : model_before) entry.second = entry.second.clone();
  TrainingState state = other.state();
  Generator extra(1);
  state.generators["extra"] = &extra;
  std::string message;
  try {
    load_checkpoint(path, state);
  } catch (const Error& error) {
    message = error.what();
  }
  INFO(message);
  CHECK_THAT(message, Catch::StartsWith("load_checkpoint '" + path + "':") && Catch::Contains("nothing was loaded"));
  CHECK_THAT(message, Catch::Contains("model: 'layers.0.block_sparse_moe.gate.weight' expects f32 [6, 8], got f32 [4, 8]"));
  CHECK_THAT(message, Catch::Contains("optimizer: '"));
  CHECK_THAT(message, Catch::Contains("missing generator 'extra'"));
  CHECK(state.step == 1);
  for (const auto& entry : other.model.state_dict())
    CHECK(entry.second.to_vector<float>() == model_before.at(entry.first).to_vector<float>());
  CHECK(other.optimizer.state_dict().at("0.exp_avg").to_vector<float>() ==
        optimizer_before.at("0.exp_avg").to_vector<float>());
  CHECK(other.batches.state() == batches_before);

  // Another rank's file, another optimizer, a file that is not a checkpoint, a damaged one.
  Run same(mixtral(4, 2), 8);
  TrainingState wrong_rank = same.state();
  wrong_rank.ranks = 2;
  CHECK_THROWS_WITH(load_checkpoint(path, wrong_rank), Catch::Contains("the file is rank 0 of 1 ranks, loading into rank 0 of 2"));
  SGD sgd(same.model.parameters(), {0.1});
  TrainingState wrong_optimizer{&same.model, &sgd};
  CHECK_THROWS_WITH(load_checkpoint(path, wrong_optimizer), Catch::Contains("the file holds AdamW state, loading into SGD"));
  std::string plain = temp_path("tinymoe_test_checkpoint_plain.safetensors");
  save_safetensors(plain, same.model.state_dict());
  TrainingState model_only{&same.model};
  CHECK_THROWS_WITH(load_checkpoint(plain, model_only), Catch::Contains("not a tinymoe checkpoint"));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  CHECK_THROWS_WITH(load_checkpoint(path, model_only), Catch::StartsWith("load_checkpoint '" + path + "': safetensors:"));
  TrainingState no_model;
  CHECK_THROWS_WITH(save_checkpoint(path, no_model), Catch::Contains("save_checkpoint: TrainingState::model is null"));
  std::remove(path.c_str());
  std::remove(plain.c_str());
}

namespace {

// Everything a load may change, as values: the model's and the optimizer's tensors, the generators.
struct Snapshot {
  std::map<std::string, std::vector<double>> model, optimizer;
  std::vector<uint64_t> batches, default_words;
  explicit Snapshot(Run& run) {
    for (const auto& entry : run.model.state_dict())
      model[entry.first] = entry.second.to(DType::f64).to_vector<double>();
    for (const auto& entry : run.optimizer.state_dict())
      optimizer[entry.first] = entry.second.to(DType::f64).to_vector<double>();
    batches = run.batches.state();
    default_words = default_generator().state();
  }
  bool operator==(const Snapshot& other) const {
    return model == other.model && optimizer == other.optimizer && batches == other.batches &&
           default_words == other.default_words;
  }
};

}  // namespace

// Damages a valid checkpoint the ways a checkpoint is damaged in meaning (entries missing,
// renamed, reshaped, retyped; metadata changed; generator words changed), well-formed as a file,
// and requires every load to succeed or to throw tinymoe::Error and change nothing. The byte-level
// damage is test_safetensors.cpp's fuzzer.
TEST_CASE("checkpoint: damaged checkpoints load whole or throw Error and change nothing", "[checkpoint][fuzz]") {
  Run source(deepseek_v3(4, 2, 2, 1), 30);
  source.train(2);
  std::string path = temp_path("tinymoe_test_checkpoint_fuzz.safetensors");
  save_checkpoint(path, source.state());
  SafetensorsMetadata good_metadata;
  const TensorMap good = load_safetensors(path, &good_metadata);
  std::vector<std::string> names;
  for (const auto& entry : good) names.push_back(entry.first);
  const std::vector<std::string> metadata_keys = {"format", "version", "step", "rank", "ranks", "optimizer"};
  const std::vector<std::string> values = {"", "-1", "0", "1", "2", "01", "1.5", "99999999999999999999",
                                           "AdamW", "SGD", "tinymoe-checkpoint", "abc"};
  Generator generator(31);
  auto pick = [&](size_t size) { return static_cast<size_t>(generator.integer(0, static_cast<int64_t>(size))); };

  Run target(deepseek_v3(4, 2, 2, 1), 32);
  target.train(1);
  int loaded = 0, rejected = 0;
  for (int iteration = 0; iteration < 300; ++iteration) {
    TensorMap tensors = good;
    SafetensorsMetadata metadata = good_metadata;
    for (int m = 0, mutations = 1 + static_cast<int>(generator.integer(0, 2)); m < mutations; ++m) {
      const std::string name = names[pick(names.size())];
      switch (generator.integer(0, 6)) {
        case 0: tensors.erase(name); break;
        case 1: {  // another shape and dtype
          Shape shape;
          for (int64_t d = 0, dims = generator.integer(0, 3); d < dims; ++d) shape.push_back(generator.integer(0, 4));
          const DType dtypes[] = {DType::f32, DType::f64, DType::i64};
          tensors[name] = full(shape, 1.0, dtypes[pick(3)]);
          break;
        }
        case 2:  // renamed, or moved out of its section
          if (tensors.count(name)) {
            Tensor value = tensors.at(name);
            tensors.erase(name);
            tensors[generator.integer(0, 2) ? name + "x" : name.substr(name.find('.') + 1)] = value;
          }
          break;
        case 3: metadata[metadata_keys[pick(metadata_keys.size())]] = values[pick(values.size())]; break;
        case 4: metadata.erase(metadata_keys[pick(metadata_keys.size())]); break;
        default: {  // a generator's words changed or cut
          std::string key = generator.integer(0, 2) ? "generator.batches" : "generator.default";
          std::vector<int64_t> words = tensors.at(key).to_vector<int64_t>();
          if (generator.integer(0, 2)) words.resize(pick(words.size() + 1));
          else if (!words.empty()) words[pick(words.size())] = generator.integer(-3, 4);
          tensors[key] = from_vector(words, {static_cast<int64_t>(words.size())});
        }
      }
    }
    save_safetensors(path, tensors, metadata);
    Snapshot before(target);
    TrainingState state = target.state();
    try {
      load_checkpoint(path, state);
      ++loaded;
    } catch (const Error& error) {
      ++rejected;
      INFO(error.what());
      REQUIRE(Snapshot(target) == before);
      REQUIRE(state.step == target.step);
    }
  }
  INFO(loaded << " loaded, " << rejected << " rejected");
  CHECK(rejected > 200);
  CHECK(loaded > 0);  // metadata values that are still right, generator words still a state
  std::remove(path.c_str());
}
