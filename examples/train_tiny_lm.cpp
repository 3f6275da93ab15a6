// Trains a small MoE language model (nn/moe_transformer.h) on a built-in text (or --text FILE), one
// character per token, then continues a prompt with it (--prompt, by default "A router " or the
// text's first characters; --sample-length; greedy, or drawn at --temperature). Every few steps it
// prints the losses and each layer's routing: how evenly the experts are loaded (coefficient of
// variation), dead experts, dropped pairs, experts per token and router entropy. At the end it
// shows what each expert reads: its commonest characters. Try another router to see balancing at
// work:
//
//   train_tiny_lm                         # Mixtral top-2 over 8 experts, 300 steps on the CPU
//   train_tiny_lm --router deepseek_v3    # sigmoid routing balanced by its bias, no aux loss
//   train_tiny_lm --router switch --steps 500 --device cuda
//   mpirun -np 2 train_tiny_lm --expert-parallel     # each layer's 8 experts split over 2 processes
//   mpirun -np 2 train_tiny_lm --expert-parallel --device cuda --communicator nccl   # a GPU each
//
// With --expert-parallel every rank trains on its own batches, holds its share of each layer's
// experts and a copy of the rest, and sums the copies' gradients with the other ranks before
// each step (nn/expert_parallel.h); rank 0 prints. With --device cuda each rank takes a GPU of
// its machine in turn (rank_cuda_device); rows travel over MPI through host memory, or GPU to GPU
// with --communicator nccl. --global-balance counts the aux loss's expert loads over every rank's
// batch instead of each rank's own.
//
// --decay-steps N warms the learning rate up over N/10 steps and then decays it along a cosine to
// a tenth at step N (nn/lr_schedule.h); without it the rate stays constant.
//
// --save PATH writes a checkpoint (nn/checkpoint.h) after the last step (with no step to take, of
// what it holds), and every N steps with --save-every N; --resume PATH continues a saved run up to
// --steps, drawing the batches and the routers' noise the uninterrupted run would have drawn, so
// it ends with the same numbers. With --expert-parallel each rank writes its own file,
// PATH.rank<r>.
//
// --export PATH writes the whole model's weights after training to one safetensors file (with
// --expert-parallel, every rank's experts gathered on every rank, written by rank 0), with the
// router and the alphabet as metadata; --init PATH starts from such a file (not a checkpoint),
// with the same router and alphabet, on 1, 2, 4 or 8 processes: train on two, sample on one:
//
//   mpirun -np 2 train_tiny_lm --expert-parallel --export weights.safetensors
//   train_tiny_lm --init weights.safetensors --steps 0
//
// --log PATH writes one JSON object per step and line (the loss, the rate and each layer's routing:
// loads, CV, experts per token, entropy, losses and coefficients), for plotting; a resumed run
// keeps its lines up to the checkpoint's step and writes on from there.
//
// It exits with status 1 when the final loss is not below the first one (not checked with
// --steps 0).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "examples/char_corpus.h"
#include "examples/tiny_lm_models.h"
#include "nn/checkpoint.h"
#include "nn/diagnostics.h"
#include "nn/expert_parallel_state.h"
#include "nn/lr_schedule.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using namespace tiny_lm;

namespace {

void print_routing(const LMOutput& out) {
  for (size_t l = 0; l < out.layers.size(); ++l) {
    const RoutingDiagnostics& d = out.layers[l].diagnostics;
    std::printf("    layer %zu: load CV %.3f, dead experts %lld, dropped %.1f%%, experts per token %.2f, router entropy %.2f\n",
                l, d.coefficient_of_variation, static_cast<long long>(d.dead_experts), 100.0 * d.dropped_fraction,
                d.experts_per_token, d.router_entropy);
    const auto& coefficients = out.layers[l].routing.loss_coefficients;
    if (coefficients.count("l1_loss"))  // ReMoE: the controller's lambda this step
      std::printf("             l1 coefficient %.3g, sparsity %.3f\n", coefficients.at("l1_loss"),
                  out.layers[l].routing.sparsity());
  }
}

// A double as text that reads back as the same double.
std::string exact_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// --log: one JSON object per step and line (JSON lines), for plotting: the step, the next-token
// loss, the weighted routing losses, the learning rate, and each layer's routing as
// nn::routing_json writes it (loads, CV, experts per token, entropy, each loss with its
// coefficient, sparsity, ...). Non-finite numbers are written as null.
class StepLog {
 public:
  // A new log, or with resumed_step >= 0 the log of a resumed run: the lines of the steps the
  // checkpoint holds are kept and later ones (from a run that went on past that checkpoint, or
  // was cut short) dropped, so that each step appears once and in order.
  StepLog(const std::string& path, int64_t resumed_step) {
    std::vector<std::string> kept = resumed_step >= 0 ? lines_up_to(path, resumed_step) : std::vector<std::string>();
    file_.open(path, std::ios::trunc);
    TINYMOE_CHECK(file_.is_open(), "train_tiny_lm", "cannot open the log '", path, "' for writing");
    for (const std::string& line : kept) file_ << line << '\n';
    file_.flush();
  }

  void write(int64_t step, const LMOutput& out, double lr) {
    nlohmann::ordered_json line = {{"step", step},
                                   {"loss", out.loss.item<double>()},
                                   {"routing_loss", out.aux_loss.item<double>()},
                                   {"lr", lr},
                                   {"layers", nlohmann::ordered_json::array()}};
    for (const MoEOutput& layer : out.layers)
      line["layers"].push_back(nlohmann::ordered_json::parse(routing_json(layer.routing, layer.diagnostics)));
    file_ << line.dump() << '\n';
    file_.flush();  // a run cut short keeps every finished step
    TINYMOE_CHECK(file_.good(), "train_tiny_lm", "writing the log failed at step ", step);
  }

 private:
  // The lines of an existing log whose step is at most `step` (none when there is no file). A
  // line that is not one of this program's is an Error, but for a last line cut short mid-write.
  static std::vector<std::string> lines_up_to(const std::string& path, int64_t step) {
    std::vector<std::string> lines, kept;
    std::ifstream file(path);
    for (std::string line; std::getline(file, line);) lines.push_back(line);
    for (size_t i = 0; i < lines.size(); ++i) {
      nlohmann::json parsed = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
      const bool ours = parsed.is_object() && parsed.contains("step") && parsed["step"].is_number_integer();
      if (!ours && i + 1 == lines.size()) break;
      TINYMOE_CHECK(ours, "train_tiny_lm", "line ", i + 1, " of the log '", path,
                    "' is not a step of train_tiny_lm's --log; give another --log to resume with");
      if (parsed["step"].get<int64_t>() <= step) kept.push_back(lines[i]);
    }
    return kept;
  }

  std::ofstream file_;
};

// FNV-1a, 64 bits: a fingerprint of settings, texts and weights, for the ranks to compare.
uint64_t fingerprint(const void* data, size_t size, uint64_t hash = 14695981039346656037ull) {
  const unsigned char* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return hash;
}

uint64_t fingerprint(const std::string& text) { return fingerprint(text.data(), text.size()); }

// Every rank must run the same program: a rank with other settings, or resumed from another run
// or step, would stop meeting the others' collectives (a hang) or train another model silently.
// A collective: an Error on every rank when any rank's `value` differs from rank 0's.
void check_ranks_agree(Communicator& comm, uint64_t value, const char* what) {
  std::vector<int64_t> all = comm.all_gather({static_cast<int64_t>(value)});
  for (size_t r = 1; r < all.size(); ++r)
    TINYMOE_CHECK(all[r] == all[0], "train_tiny_lm", "rank ", r, " has another ", what, " than rank 0");
}

// Each rank of an expert-parallel run saves its own experts: one file per rank.
std::string rank_file(const std::string& path, const Communicator& comm) {
  return comm.size() == 1 ? path : path + ".rank" + std::to_string(comm.rank());
}

void check_same_settings(const SafetensorsMetadata& saved, const SafetensorsMetadata& now, const std::string& path) {
  for (const auto& [key, value] : now) {
    auto found = saved.find(key);
    std::string was = found == saved.end() ? "(none)" : found->second;
    TINYMOE_CHECK(was == value, "train_tiny_lm", "'", path, "' was trained with ", key, " ", was, ", this run has ",
                  value, ": use the settings of the run that wrote it");
  }
}

double note_number(const SafetensorsMetadata& notes, const std::string& key, const std::string& path) {
  auto found = notes.find(key);
  char* end = nullptr;
  double value = found == notes.end() ? 0.0 : std::strtod(found->second.c_str(), &end);
  TINYMOE_CHECK(found != notes.end() && end != found->second.c_str() && *end == '\0', "train_tiny_lm", "'", path,
                "' has no number under note '", key, "': it was not written by train_tiny_lm");
  return value;
}

// Everything the command line sets.
struct Options {
  int64_t steps = 300, batch = 16, save_every = 0, decay_steps = 0, sample_length = 120;
  std::string router = "mixtral", device = "cpu", communicator = "mpi";
  uint64_t seed = 0;
  bool expert_parallel = false, global_balance = false;
  double lr = 3e-3, temperature = 0.0;
  std::string save, resume, init, export_path, text, prompt, log;
};

// Registers every flag; returns --prompt, whose default depends on the text.
CLI::Option* add_options(CLI::App& app, Options& o) {
  app.add_option("--steps", o.steps, "training steps (0: only write the sample)")->check(CLI::NonNegativeNumber);
  // Bounded: a batch of 64-character windows is built in memory at once.
  app.add_option("--batch", o.batch, "sequences per step (at most 4096)")->check(CLI::Range(1, 4096));
  app.add_option("--router", o.router, "routing preset")->check(CLI::IsMember(router_names()));
  app.add_option("--device", o.device, "cpu, cuda or cuda:N");
  app.add_option("--seed", o.seed, "seed of the weights and the batches");
  auto* parallel = app.add_flag("--expert-parallel", o.expert_parallel,
                                "split each layer's experts over the processes of mpirun");
  app.add_option("--communicator", o.communicator, "how expert-parallel ranks exchange rows: mpi, or nccl (cuda)")
      ->check(CLI::IsMember({"mpi", "nccl"}))
      ->needs(parallel);
  app.add_flag("--global-balance", o.global_balance,
               "count the aux loss's expert loads over every rank's batch (global-batch balancing; mixtral, "
               "qwen2_moe, gshard)")
      ->needs(parallel);
  app.add_option("--lr", o.lr, "AdamW's learning rate (the peak, with --decay-steps)")->check(CLI::PositiveNumber);
  app.add_option("--decay-steps", o.decay_steps,
                 "warm the rate up over the first tenth of N steps, then cosine-decay it to a tenth (0: constant)")
      ->check(CLI::NonNegativeNumber);
  auto* save = app.add_option("--save", o.save,
                              "write a checkpoint here after the last step (PATH.rank<r> with --expert-parallel)");
  app.add_option("--save-every", o.save_every, "also write it every N steps")->check(CLI::PositiveNumber)->needs(save);
  auto* resume = app.add_option(
      "--resume", o.resume, "continue the run saved in this checkpoint, up to --steps (PATH.rank<r> with --expert-parallel)");
  app.add_option("--init", o.init, "start from these weights (a file --export wrote, from any number of processes)")
      ->excludes(resume);
  app.add_option("--export", o.export_path, "after training, write the whole model's weights to one file (rank 0)");
  app.add_option("--text", o.text, "train on this file's text instead of the built-in paragraph");
  app.add_option("--log", o.log,
                 "write one JSON object per step to this file: loss, rate and each layer's routing (rank 0's tokens; "
                 "a resumed run keeps the lines up to its checkpoint's step)");
  auto* prompt = app.add_option(
      "--prompt", o.prompt, "what the sample starts from, characters of the text (\"A router \", or --text's first 9)");
  app.add_option("--sample-length", o.sample_length, "characters to write after the prompt")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--temperature", o.temperature, "0: the likeliest character each time; > 0: draw from softmax(logits / t)")
      ->check(CLI::NonNegativeNumber);
  return prompt;
}

// The model of the run (tiny_lm_model) over the text's alphabet.
MoETransformerConfig model_config(const Options& o, const CharacterCorpus& corpus,
                                  const std::shared_ptr<Communicator>& comm) {
  MoETransformerConfig config = tiny_lm_model(router_by_name(o.router), static_cast<int64_t>(corpus.alphabet.size()));
  config.moe.router.aux_loss_global_batch = o.global_balance;
  if (o.expert_parallel) config.expert_parallel = comm;
  return config;
}

// One process's part of a run, in the order of its phases: start (from --init or --resume),
// train (saving as asked), finish (--export, the sample).
class TrainingRun {
 public:
  TrainingRun(const Options& options, std::shared_ptr<Communicator> comm, Device device)
      : o_(options), comm_(std::move(comm)), device_(device),
        text_(o_.text.empty() ? std::string(kText) : read_text_file(o_.text, "train_tiny_lm")),
        corpus_(text_, kWindow, "train_tiny_lm"),
        weights_(o_.seed), batches_(o_.seed + 1 + static_cast<uint64_t>(comm_->rank())),  // the same weights everywhere
        model_(model_config(o_, corpus_, comm_), &weights_) {
    model_.to(device_);
    optimizer_ = std::make_unique<AdamW>(model_.parameters(), AdamWOptions{o_.lr, 0.9, 0.95, 1e-8, 0.01});
    // Everything random in a step: the batches, and the noise of routers that draw it (noisy
    // top-k, Switch's jitter) from the default generator.
    training_ = TrainingState(&model_, optimizer_.get(), {{"batches", &batches_}, {"default", &default_generator()}});
    training_.rank = comm_->rank();
    training_.ranks = comm_->size();
  }

  const CharacterCorpus& corpus() const { return corpus_; }
  const std::string& text() const { return text_; }
  bool printing() const { return comm_->rank() == 0; }

  // The settings a resumed run must share with the run it continues (the checkpoint itself checks
  // the model's shapes, the optimizer and the number of ranks).
  SafetensorsMetadata settings() const {
    return {{"alphabet", corpus_.alphabet_note()},
            {"text_fnv1a", std::to_string(fingerprint(text_))},
            {"seed", std::to_string(o_.seed)},
            {"router", o_.router},
            {"lr", exact_text(o_.lr)},
            {"decay_steps", std::to_string(o_.decay_steps)},
            {"batch", std::to_string(o_.batch)},
            {"length", std::to_string(kWindow)},
            {"global_balance", o_.global_balance ? "1" : "0"}};
  }

  // What an exported weights file records, and --init checks.
  SafetensorsMetadata export_notes() const { return {{"router", o_.router}, {"alphabet", corpus_.alphabet_note()}}; }

  void start() {
    if (!o_.init.empty()) load_initial_weights();
    if (!o_.resume.empty()) resume();
    if (printing() && !o_.log.empty()) log_ = std::make_unique<StepLog>(o_.log, o_.resume.empty() ? -1 : training_.step);
    if (printing())
      std::printf("tinymoe: %lld-layer MoE LM, %zu characters, router %s, 8 experts over %d process(es) (%s), on %s%s\n",
                  static_cast<long long>(model_.config().num_layers), corpus_.alphabet.size(), o_.router.c_str(),
                  comm_->size(), comm_->name().c_str(), device_.str().c_str(),
                  o_.resume.empty() ? "" : (", from step " + std::to_string(training_.step)).c_str());
  }

  void train() {
    const int64_t first_step = training_.step + 1;
    for (int64_t step = first_step; step <= o_.steps; ++step) {
      train_step(step);
      if (!o_.save.empty() && (step == o_.steps || (o_.save_every > 0 && step % o_.save_every == 0))) save(step);
    }
    // A run with no step to take (--steps 0, or resumed at --steps) still writes what it holds.
    if (!o_.save.empty() && first_step > o_.steps) save(training_.step);
  }

  // --export, then the sample; false when the loss did not fall.
  bool finish() {
    if (!o_.export_path.empty()) {
      StateDict whole = gather_expert_parallel_state(model_);  // a collective: every rank takes part
      if (printing()) save_safetensors(o_.export_path, whole, export_notes());
    }
    print_expert_characters();
    write_sample();
    // One step's loss is measured before its update: the loss can fall only over two or more.
    if (o_.steps >= 2 && !(loss_ < first_loss_)) {
      std::printf("tinymoe: rank %d: the loss did not fall (%.3f -> %.3f)\n", comm_->rank(), first_loss_, loss_);
      return false;
    }
    return true;
  }

 private:
  // Each rank takes its own experts' slice of the whole model's weights (nn/expert_parallel_state.h).
  void load_initial_weights() {
    SafetensorsMetadata exported;
    StateDict initial = load_safetensors(o_.init, &exported);
    // Another router (mixtral, gshard) or another text of as many characters has the same
    // tensors: an exported file says which it was (a state_dict saved otherwise has no notes).
    for (const auto& [key, value] : export_notes())
      if (exported.count(key)) check_same_settings(exported, {{key, value}}, o_.init);
    load_expert_parallel_state(model_, initial);
  }

  void resume() {
    load_checkpoint(rank_file(o_.resume, *comm_), training_);
    check_same_settings(training_.notes, settings(), o_.resume);
    TINYMOE_CHECK(training_.step <= o_.steps, "train_tiny_lm", "'", o_.resume, "' is at step ", training_.step,
                  ", past --steps ", o_.steps);
    TINYMOE_CHECK(training_.step < std::numeric_limits<int64_t>::max(), "train_tiny_lm", "'", o_.resume,
                  "' is at the last step there can be");
    first_loss_ = note_number(training_.notes, "first_loss", o_.resume);
    loss_ = note_number(training_.notes, "last_loss", o_.resume);
    // The ranks' files must come from one run at one step (each file's settings, seed included,
    // were checked against the command line above).
    check_ranks_agree(*comm_, static_cast<uint64_t>(training_.step), "checkpoint step");
  }

  void train_step(int64_t step) {
    auto [ids, targets] = sample_batch(corpus_, o_.batch, kWindow, batches_, device_);
    if (o_.decay_steps > 0) optimizer_->set_lr(schedule_.lr(step));
    LMOutput out = train_on_batch(model_, *optimizer_, *comm_, ids, targets);
    loss_ = out.loss.item<double>();
    if (step == 1) first_loss_ = loss_;
    if (log_) log_->write(step, out, optimizer_->lr());
    if (printing() && (step == 1 || step % 50 == 0 || step == o_.steps)) {
      std::printf("step %4lld  loss %.6f  routing losses %.6f\n", static_cast<long long>(step), loss_,
                  out.aux_loss.item<double>());
      print_routing(out);
    }
  }

  // Every rank writes its file beside the old one, and renames it once every rank has written: a
  // failed save leaves the previous checkpoint set whole, never a mix of steps.
  void save(int64_t step) {
    training_.step = step;
    training_.notes = settings();
    training_.notes["first_loss"] = exact_text(first_loss_);
    training_.notes["last_loss"] = exact_text(loss_);
    const std::string file = rank_file(o_.save, *comm_);
    save_checkpoint(file + ".staged", training_);
    check_ranks_agree(*comm_, static_cast<uint64_t>(step), "saved step");
    std::filesystem::rename(file + ".staged", file);
  }

  // What each expert reads: the text's first windows (at most 16) in eval mode, and for every
  // layer and expert the characters routed to it most often, with their share of its tokens. A
  // router that specialises its experts shows it here (spaces to one, vowels to another). Every
  // rank runs the forward (the expert-parallel layers exchange rows); rank 0 prints.
  void print_expert_characters() {
    model_.eval();
    NoGradGuard no_grad;
    const int64_t windows = std::min<int64_t>(16, static_cast<int64_t>(corpus_.ids.size()) / kWindow);
    std::vector<int64_t> ids(corpus_.ids.begin(), corpus_.ids.begin() + windows * kWindow);
    LMOutput out = model_(from_vector(ids, {windows, kWindow}).to(device_));
    if (!printing()) return;
    std::printf("\nwhat each expert reads (the text's first %lld characters, eval mode): its tokens and its "
                "most frequent characters\n", static_cast<long long>(windows * kWindow));
    for (size_t l = 0; l < out.layers.size(); ++l) {
      const Routing& routing = out.layers[l].routing;
      std::vector<int64_t> token = routing.pair_token.to(Device::cpu()).to_vector<int64_t>();
      std::vector<int64_t> expert = routing.pair_expert.to(Device::cpu()).to_vector<int64_t>();
      const int64_t experts = model_.config().moe.num_experts;
      std::vector<std::map<int64_t, int64_t>> counts(static_cast<size_t>(experts));
      for (size_t p = 0; p + routing.padded_pairs < token.size(); ++p) ++counts[expert[p]][ids[token[p]]];
      for (int64_t e = 0; e < experts; ++e) print_expert_line(l, e, counts[e]);
    }
  }

  void print_expert_line(size_t layer, int64_t expert, const std::map<int64_t, int64_t>& counts) const {
    std::vector<std::pair<int64_t, int64_t>> ranked;  // (count, character id)
    int64_t total = 0;
    for (const auto& [id, count] : counts) ranked.emplace_back(count, id), total += count;
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::printf("  layer %zu expert %lld: %5lld tokens", layer, static_cast<long long>(expert), static_cast<long long>(total));
    for (size_t i = 0; i < std::min<size_t>(ranked.size(), 5); ++i) {
      const char c = corpus_.alphabet[static_cast<size_t>(ranked[i].second)];
      const std::string shown = c == '\n' ? "\\n" : (std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?");
      std::printf("  '%s' %2.0f%%", shown.c_str(), 100.0 * static_cast<double>(ranked[i].first) / static_cast<double>(total));
    }
    std::printf("\n");
  }

  // Every rank decodes (the expert-parallel layers exchange rows, so every rank makes the same
  // forwards, with the same draws); rank 0 prints, with fwrite since the text may hold NUL bytes.
  void write_sample() {
    model_.eval();
    Generator sampling(o_.seed + 2);
    std::string sample = generate(model_, corpus_, o_.prompt, o_.sample_length, o_.temperature, sampling);
    if (!printing()) return;
    if (o_.temperature == 0.0) std::printf("\ngreedy sample: ");
    else std::printf("\nsample at temperature %g: ", o_.temperature);
    std::fwrite(sample.data(), 1, sample.size(), stdout);
    std::printf("\n");
  }

  const Options& o_;
  std::shared_ptr<Communicator> comm_;
  Device device_;
  std::string text_;
  CharacterCorpus corpus_;
  Generator weights_, batches_;
  MoETransformer model_;
  std::unique_ptr<AdamW> optimizer_;
  // Stateless: a resumed run takes its rates from the step alone (nn/lr_schedule.h).
  WarmupCosineSchedule schedule_{o_.lr, o_.decay_steps / 10, std::max<int64_t>(o_.decay_steps, 1), o_.lr / 10};
  TrainingState training_;
  double first_loss_ = 0, loss_ = 0;
  std::unique_ptr<StepLog> log_;  // rank 0 with --log
};

// The prompt (by default "A router ", or the text's first characters) must be made of the text's
// characters, and every rank must run the same command line on the same text: checked before any
// training.
void check_before_training(Options& o, bool prompt_given, const TrainingRun& run, Communicator& comm) {
  if (!prompt_given) o.prompt = o.text.empty() ? "A router " : run.text().substr(0, 9);
  TINYMOE_CHECK(!o.prompt.empty(), "train_tiny_lm", "the prompt is empty");
  for (char c : o.prompt) run.corpus().id_of(c);
  // CLI11's range checks let NaN through.
  TINYMOE_CHECK(std::isfinite(o.temperature) && std::isfinite(o.lr), "train_tiny_lm",
                "--temperature and --lr must be finite numbers");
  const std::string agreed = o.router + "|" + std::to_string(o.steps) + "|" + std::to_string(o.batch) + "|" +
                             std::to_string(o.seed) + "|" + exact_text(o.lr) + "|" + std::to_string(o.decay_steps) +
                             "|" + std::to_string(o.global_balance) + "|" + std::to_string(o.save_every) + "|" +
                             std::to_string(!o.save.empty()) + std::to_string(!o.resume.empty()) +
                             std::to_string(!o.export_path.empty()) + "|" + o.init + "|" + o.prompt + "|" +
                             std::to_string(o.sample_length) + "|" + exact_text(o.temperature) + "|" +
                             std::to_string(fingerprint(run.text()));
  check_ranks_agree(comm, fingerprint(agreed), "command line or text");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a small MoE language model on a text (built in, or --text FILE), one character per token."};
  Options options;
  CLI::Option* prompt = add_options(app, options);
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<MpiSession> mpi;
  try {
    std::shared_ptr<Communicator> comm = local_communicator();
    Device device = Device::parse(options.device);
    if (options.expert_parallel) {
      mpi = std::make_unique<MpiSession>(&argc, &argv);
      comm = mpi_communicator();
      if (options.device == "cuda") device = rank_cuda_device(*comm);  // no index given: a GPU per rank
      if (options.communicator == "nccl") comm = nccl_communicator(comm, device);
    }
    TrainingRun run(options, comm, device);
    check_before_training(options, prompt->count() > 0, run, *comm);
    run.start();
    run.train();
    return run.finish() ? 0 : 1;
  } catch (const std::exception& error) {  // tinymoe::Error, and std's (bad_alloc, filesystem_error)
    std::fprintf(stderr, "%s\n", error.what());
    if (mpi) MpiSession::abort(1);  // the other ranks may be waiting in a collective
    return 1;
  }
}
