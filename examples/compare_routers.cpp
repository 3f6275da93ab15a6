// Trains train_tiny_lm's small MoE language model once per router, each from the same weights'
// seed and on the same batches, and prints one table to compare them: the loss, how evenly the
// experts are loaded, dead experts, experts per token, dropped pairs and the time per step. A rule
// of your own sits in the table next to the presets: "temperature_topk" is the rule of
// custom_routing_rule (examples/temperature_topk.h); add yours to `candidate` below.
//
//   compare_routers                                          # mixtral, switch, deepseek_v3, remoe, temperature_topk
//   compare_routers --routers mixtral,top_p,sinkhorn --steps 300
//   compare_routers --json > routers.jsonl                  # one JSON object per router instead of the table
//
// The routing figures are means over the layers and over the last tenth of the steps (at least
// one), so that one lucky batch does not decide; the loss is the next-token loss over the same
// steps, without the routing losses. The time per step is a median, on this machine, for the
// whole step (forward, backward, optimizer, balancing updates), the first step left out: compare
// it between rows of one run.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "examples/char_corpus.h"
#include "examples/temperature_topk.h"
#include "examples/tiny_lm_models.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using namespace tiny_lm;

namespace {

struct Options {
  std::vector<std::string> routers = {"mixtral", "switch", "deepseek_v3", "remoe", "temperature_topk"};
  int64_t steps = 200, batch = 16;
  uint64_t seed = 0;
  double lr = 3e-3;
  std::string device = "cpu", text;
  bool json = false;
};

// The model a router name stands for: a preset, or a rule of your own.
MoETransformerConfig candidate(const std::string& name, int64_t vocab_size) {
  if (name != "temperature_topk") return tiny_lm_model(router_by_name(name), vocab_size);
  MoETransformerConfig config = tiny_lm_model(RouterConfig(), vocab_size);  // no preset: the rule routes
  config.moe.rule = temperature_topk(2, 0.5, 1e-3);
  return config;
}

std::vector<std::string> candidate_names() {
  std::vector<std::string> names = router_names();
  names.push_back("temperature_topk");
  return names;
}

// What one router's run leaves: means over the measured steps (and layers), the median step time.
struct Summary {
  double loss = 0, load_cv = 0, max_over_mean = 0, dead_experts = 0, experts_per_token = 0, dropped = 0;
  double step_ms = 0;
};

void add_step(Summary& sum, const LMOutput& out, double share) {
  sum.loss += out.loss.item<double>() * share;
  const double per_layer = share / static_cast<double>(out.layers.size());
  for (const MoEOutput& layer : out.layers) {
    const RoutingDiagnostics& d = layer.diagnostics;
    sum.load_cv += d.coefficient_of_variation * per_layer;
    sum.max_over_mean += (d.mean_load > 0 ? d.max_load / d.mean_load : 0.0) * per_layer;
    sum.dead_experts += static_cast<double>(d.dead_experts) * per_layer;
    sum.experts_per_token += d.experts_per_token * per_layer;
    sum.dropped += d.dropped_fraction * per_layer;
  }
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2.0;
}

Summary train(const std::string& router, const Options& o, const CharacterCorpus& corpus, Device device) {
  Generator weights(o.seed), batches(o.seed + 1);
  default_generator().seed(o.seed + 2);  // noisy routers and Switch's jitter draw from it
  MoETransformer model(candidate(router, static_cast<int64_t>(corpus.alphabet.size())), &weights);
  model.to(device);
  AdamW optimizer(model.parameters(), AdamWOptions{o.lr, 0.9, 0.95, 1e-8, 0.01});
  std::shared_ptr<Communicator> local = local_communicator();
  const int64_t measured = std::max<int64_t>(1, o.steps / 10);
  Summary summary;
  std::vector<double> step_ms;
  for (int64_t step = 1; step <= o.steps; ++step) {
    auto [ids, targets] = sample_batch(corpus, o.batch, kWindow, batches, device);
    const auto start = std::chrono::steady_clock::now();
    LMOutput out = train_on_batch(model, optimizer, *local, ids, targets);
    const double loss = out.loss.item<double>();  // waits for a GPU's work
    // The first step also pays for warming the allocator and the caches: left out unless alone.
    if (step > 1 || o.steps == 1)
      step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    TINYMOE_CHECK(std::isfinite(loss), "compare_routers", "router ", router, ": the loss is ", loss, " at step ", step);
    if (step > o.steps - measured) add_step(summary, out, 1.0 / static_cast<double>(measured));
  }
  summary.step_ms = median(step_ms);
  return summary;
}

void print_row(const std::string& router, const Summary& s, bool json) {
  if (json) {
    nlohmann::ordered_json row = {{"router", router},          {"loss", s.loss},
                                  {"load_cv", s.load_cv},        {"max_over_mean", s.max_over_mean},
                                  {"dead_experts", s.dead_experts}, {"experts_per_token", s.experts_per_token},
                                  {"dropped_fraction", s.dropped}, {"ms_per_step", s.step_ms}};
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
    return;
  }
  std::printf("%-17s %7.3f %8.3f %9.2f %6.2f %14.2f %8.1f%% %8.1f\n", router.c_str(), s.loss, s.load_cv,
              s.max_over_mean, s.dead_experts, s.experts_per_token, 100.0 * s.dropped, s.step_ms);
  std::fflush(stdout);
}

void print_header(const Options& o, Device device) {
  std::printf("tinymoe: %zu routers, %lld steps each of %lld windows of %lld characters, 2 layers of 8 experts, on %s\n"
              "means over the last %lld steps and the layers; ms per step is the median\n\n",
              o.routers.size(), static_cast<long long>(o.steps), static_cast<long long>(o.batch),
              static_cast<long long>(kWindow), device.str().c_str(),
              static_cast<long long>(std::max<int64_t>(1, o.steps / 10)));
  std::printf("%-17s %7s %8s %9s %6s %14s %9s %8s\n", "router", "loss", "load CV", "max/mean", "dead",
              "experts/token", "dropped", "ms/step");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train the small MoE language model once per router and compare them in one table."};
  Options o;
  app.add_option("--routers", o.routers, "routers to compare, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(candidate_names()));
  app.add_option("--steps", o.steps, "training steps per router")->check(CLI::Range(1, 1000000));
  app.add_option("--batch", o.batch, "sequences per step (at most 4096)")->check(CLI::Range(1, 4096));
  app.add_option("--seed", o.seed, "seed of the weights and the batches (the same for every router)");
  app.add_option("--lr", o.lr, "AdamW's learning rate")->check(CLI::PositiveNumber);
  app.add_option("--device", o.device, "cpu, cuda or cuda:N");
  app.add_option("--text", o.text, "train on this file's text instead of the built-in paragraph");
  app.add_flag("--json", o.json, "one JSON object per router (the table's columns) instead of the table");
  CLI11_PARSE(app, argc, argv);

  try {
    TINYMOE_CHECK(std::isfinite(o.lr), "compare_routers", "--lr must be a finite number");  // CLI11 lets NaN through
    const Device device = Device::parse(o.device);
    zeros({1}).to(device);  // an unusable device is an Error before the table starts
    const CharacterCorpus corpus(o.text.empty() ? std::string(kText) : read_text_file(o.text, "compare_routers"), kWindow,
                                 "compare_routers");
    if (!o.json) print_header(o, device);
    for (const std::string& router : o.routers) print_row(router, train(router, o, corpus, device), o.json);
    return 0;
  } catch (const std::exception& error) {  // tinymoe::Error, and std's (bad_alloc, filesystem_error)
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
