// Trains a small MoE language model (nn/moe_transformer.h) on a built-in text (or --text FILE), one
// character per token, then continues a prompt with it (--prompt, by default "A router " or the
// text's first characters; --sample-length; greedy, or drawn at --temperature). Every few steps it
// prints the losses and each layer's routing: how evenly the experts are loaded (coefficient of
// variation), dead experts, dropped pairs, experts per token and router entropy. Try another
// router to see balancing at work:
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
// It exits with status 1 when the final loss is not below the first one (not checked with
// --steps 0).
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "examples/char_corpus.h"
#include "nn/checkpoint.h"
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

const char* kText =
    "A mixture of experts replaces one wide feed-forward layer with many narrow ones. A router "
    "looks at each token and sends it to a few experts; the others never see it. The model holds "
    "the knowledge of all its experts but pays, for each token, only for the few it uses. The hard "
    "part is balance. A router left alone sends most tokens to the experts that are already good, "
    "they get better, and the rest starve. Switch adds a loss that rewards even loads and caps how "
    "many tokens an expert may take. Mixtral renormalises the weights of its two chosen experts. "
    "DeepSeek-V3 keeps a bias for each expert, raised when the expert is idle and lowered when it "
    "is busy, and needs no balancing loss at all. Expert choice turns the question around: each "
    "expert picks the tokens it wants. Watch the loads below while the model learns this text.\n";

// E = 8 experts, each preset with the knobs its paper or HuggingFace config uses.
RouterConfig router_by_name(const std::string& name) {
  const std::map<std::string, RouterConfig> presets = {
      {"mixtral", mixtral(8, 2)},
      {"switch", switch_transformer(8, CapacityConfig::factor(1.25))},
      {"deepseek_v3", deepseek_v3(8, 2, 4, 2)},
      {"qwen2_moe", qwen2_moe(8, 2, true)},
      {"gshard", gshard(8, 2.0)},
      {"noisy_topk", noisy_topk(8, 2)},
      {"expert_choice", expert_choice(8, 2.0)},
      {"sinkhorn", sinkhorn(8, 1)},
      {"top_p", top_p(8, 0.4)},
  };
  return presets.at(name);
}

void print_routing(const LMOutput& out) {
  for (size_t l = 0; l < out.layers.size(); ++l) {
    const RoutingDiagnostics& d = out.layers[l].diagnostics;
    std::printf("    layer %zu: load CV %.3f, dead experts %lld, dropped %.1f%%, experts per token %.2f, router entropy %.2f\n",
                l, d.coefficient_of_variation, static_cast<long long>(d.dead_experts), 100.0 * d.dropped_fraction,
                d.experts_per_token, d.router_entropy);
  }
}

// A double as text that reads back as the same double.
std::string exact_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

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

// The settings a resumed run must share with the run it continues (the checkpoint itself checks
// the model's shapes, the optimizer and the number of ranks).
SafetensorsMetadata run_settings(const std::string& text, const std::string& alphabet, const std::string& router,
                                 uint64_t seed, int64_t batch, int64_t length, bool global_balance,
                                 double peak_lr, int64_t decay_steps) {
  return {{"alphabet", alphabet},
          {"text_fnv1a", std::to_string(fingerprint(text))},
          {"seed", std::to_string(seed)},
          {"router", router},
          {"lr", exact_text(peak_lr)},
          {"decay_steps", std::to_string(decay_steps)},
          {"batch", std::to_string(batch)},
          {"length", std::to_string(length)},
          {"global_balance", global_balance ? "1" : "0"}};
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a small MoE language model on a text (built in, or --text FILE), one character per token."};
  int64_t steps = 300, batch = 16, length = 64;
  std::string router = "mixtral", device_name = "cpu", communicator = "mpi";
  uint64_t seed = 0;
  bool expert_parallel = false, global_balance = false;
  std::string save_path, resume_path, init_path, export_path, text_path, prompt;
  int64_t sample_length = 120;
  double temperature = 0.0;
  int64_t save_every = 0, decay_steps = 0;
  double peak_lr = 3e-3;
  app.add_option("--steps", steps, "training steps (0: only write the sample)")->check(CLI::NonNegativeNumber);
  // Bounded: a batch of 64-character windows is built in memory at once.
  app.add_option("--batch", batch, "sequences per step (at most 4096)")->check(CLI::Range(1, 4096));
  app.add_option("--router", router, "routing preset")
      ->check(CLI::IsMember({"mixtral", "switch", "deepseek_v3", "qwen2_moe", "gshard", "noisy_topk", "expert_choice", "sinkhorn", "top_p"}));
  app.add_option("--device", device_name, "cpu, cuda or cuda:N");
  app.add_option("--seed", seed, "seed of the weights and the batches");
  auto* parallel_flag =
      app.add_flag("--expert-parallel", expert_parallel, "split each layer's experts over the processes of mpirun");
  app.add_option("--communicator", communicator, "how expert-parallel ranks exchange rows: mpi, or nccl (cuda)")
      ->check(CLI::IsMember({"mpi", "nccl"}))
      ->needs(parallel_flag);
  app.add_flag("--global-balance", global_balance,
               "count the aux loss's expert loads over every rank's batch (global-batch balancing; mixtral, qwen2_moe, gshard)")
      ->needs(parallel_flag);
  app.add_option("--lr", peak_lr, "AdamW's learning rate (the peak, with --decay-steps)")->check(CLI::PositiveNumber);
  app.add_option("--decay-steps", decay_steps,
                 "warm the rate up over the first tenth of N steps, then cosine-decay it to a tenth (0: constant)")
      ->check(CLI::NonNegativeNumber);
  auto* save_option = app.add_option(
      "--save", save_path, "write a checkpoint here after the last step (PATH.rank<r> with --expert-parallel)");
  app.add_option("--save-every", save_every, "also write it every N steps")->check(CLI::PositiveNumber)->needs(save_option);
  auto* resume_option =
      app.add_option("--resume", resume_path,
                     "continue the run saved in this checkpoint, up to --steps (PATH.rank<r> with --expert-parallel)");
  app.add_option("--init", init_path, "start from these weights (a file --export wrote, from any number of processes)")
      ->excludes(resume_option);
  app.add_option("--export", export_path, "after training, write the whole model's weights to one file (rank 0)");
  app.add_option("--text", text_path, "train on this file's text instead of the built-in paragraph");
  auto* prompt_option = app.add_option(
      "--prompt", prompt, "what the sample starts from, characters of the text (\"A router \", or --text's first 9)");
  app.add_option("--sample-length", sample_length, "characters to write after the prompt")->check(CLI::Range(0, 1000000));
  app.add_option("--temperature", temperature, "0: the likeliest character each time; > 0: draw from softmax(logits / t)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<MpiSession> mpi;
  try {
    std::shared_ptr<Communicator> comm = local_communicator();
    Device device = Device::parse(device_name);
    if (expert_parallel) {
      mpi = std::make_unique<MpiSession>(&argc, &argv);
      comm = mpi_communicator();
      if (device_name == "cuda") device = rank_cuda_device(*comm);  // no index given: a GPU per rank
      if (communicator == "nccl") comm = nccl_communicator(comm, device);
    }
    const bool printing = comm->rank() == 0;
    const std::string text = text_path.empty() ? std::string(kText) : read_text_file(text_path);
    const CharacterCorpus corpus(text, length);
    if (prompt_option->count() == 0) prompt = text_path.empty() ? "A router " : text.substr(0, 9);
    const SafetensorsMetadata exporting_notes = {{"router", router}, {"alphabet", corpus.alphabet_note()}};
    TINYMOE_CHECK(!prompt.empty(), "train_tiny_lm", "the prompt is empty");
    for (char c : prompt) corpus.id_of(c);  // before training, not after it
    // CLI11's range checks let NaN through.
    TINYMOE_CHECK(std::isfinite(temperature) && std::isfinite(peak_lr), "train_tiny_lm",
                  "--temperature and --lr must be finite numbers");
    const std::string agreed = router + "|" + std::to_string(steps) + "|" + std::to_string(batch) + "|" +
                               std::to_string(seed) + "|" + exact_text(peak_lr) + "|" + std::to_string(decay_steps) +
                               "|" + std::to_string(global_balance) + "|" + std::to_string(save_every) + "|" +
                               std::to_string(!save_path.empty()) + std::to_string(!resume_path.empty()) +
                               std::to_string(!export_path.empty()) + "|" + init_path + "|" + prompt + "|" +
                               std::to_string(sample_length) + "|" + exact_text(temperature) + "|" +
                               std::to_string(fingerprint(text));
    check_ranks_agree(*comm, fingerprint(agreed), "command line or text");
    MoETransformerConfig config;
    config.vocab_size = static_cast<int64_t>(corpus.alphabet.size());
    config.max_sequence_length = length;
    config.num_layers = 2;
    config.num_heads = 4;
    config.moe.num_experts = 8;
    config.moe.hidden_size = 64;
    config.moe.intermediate_size = 64;
    config.moe.router = router_by_name(router);
    if (expert_parallel) config.expert_parallel = comm;
    config.moe.router.aux_loss_global_batch = global_balance;
    Generator weights(seed), batches(seed + 1 + static_cast<uint64_t>(comm->rank()));  // the same weights everywhere
    MoETransformer model(config, &weights);
    model.to(device);
    // Each rank takes its own experts' slice of the whole model's weights (nn/expert_parallel_state.h).
    if (!init_path.empty()) {
      SafetensorsMetadata exported;
      StateDict initial = load_safetensors(init_path, &exported);
      // Another router (mixtral, gshard) or another text of as many characters has the same
      // tensors: an exported file says which it was (a state_dict saved otherwise has no notes).
      for (const auto& [key, value] : exporting_notes)
        if (exported.count(key)) check_same_settings(exported, {{key, value}}, init_path);
      load_expert_parallel_state(model, initial);
    }
    AdamW optimizer(model.parameters(), AdamWOptions{peak_lr, 0.9, 0.95, 1e-8, 0.01});
    // Stateless: a resumed run takes its rates from the step alone (nn/lr_schedule.h).
    const WarmupCosineSchedule schedule(peak_lr, decay_steps / 10, std::max<int64_t>(decay_steps, 1), peak_lr / 10);
    // Everything random in a step: the batches, and the noise of routers that draw it (noisy
    // top-k, Switch's jitter) from the default generator.
    TrainingState training(&model, &optimizer, {{"batches", &batches}, {"default", &default_generator()}});
    training.rank = comm->rank();
    training.ranks = comm->size();
    const SafetensorsMetadata settings = run_settings(text, corpus.alphabet_note(), router, seed, batch, length, global_balance, peak_lr, decay_steps);
    double first_loss = 0, loss = 0;
    if (!resume_path.empty()) {
      load_checkpoint(rank_file(resume_path, *comm), training);
      check_same_settings(training.notes, settings, resume_path);
      TINYMOE_CHECK(training.step <= steps, "train_tiny_lm", "'", resume_path, "' is at step ", training.step,
                    ", past --steps ", steps);
      TINYMOE_CHECK(training.step < std::numeric_limits<int64_t>::max(), "train_tiny_lm", "'", resume_path,
                    "' is at the last step there can be");
      first_loss = note_number(training.notes, "first_loss", resume_path);
      loss = note_number(training.notes, "last_loss", resume_path);
      // The ranks' files must come from one run at one step (each file's settings, seed included,
      // were checked against the command line above).
      check_ranks_agree(*comm, static_cast<uint64_t>(training.step), "checkpoint step");
    }
    auto save = [&](int64_t step) {
      training.step = step;
      training.notes = settings;
      training.notes["first_loss"] = exact_text(first_loss);
      training.notes["last_loss"] = exact_text(loss);
      // Every rank writes its file beside the old one, and renames it once every rank has
      // written: a failed save leaves the previous checkpoint set whole, never a mix of steps.
      const std::string file = rank_file(save_path, *comm);
      save_checkpoint(file + ".staged", training);
      check_ranks_agree(*comm, static_cast<uint64_t>(step), "saved step");
      std::filesystem::rename(file + ".staged", file);
    };
    if (printing)
      std::printf("tinymoe: %lld-layer MoE LM, %zu characters, router %s, 8 experts over %d process(es) (%s), on %s%s\n",
                  static_cast<long long>(config.num_layers), corpus.alphabet.size(), router.c_str(), comm->size(),
                  comm->name().c_str(), device.str().c_str(),
                  resume_path.empty() ? "" : (", from step " + std::to_string(training.step)).c_str());

    const int64_t first_step = training.step + 1;
    for (int64_t step = first_step; step <= steps; ++step) {
      auto [ids, targets] = sample_batch(corpus, batch, length, batches, device);
      model.zero_grad();
      LMOutput out = model(ids, targets);
      out.total_loss().backward();
      all_reduce_gradients(model.replicated_parameters(), *comm);  // nothing to sum on one process
      // The norm of the whole model's gradients, every rank's experts included, so that every rank
      // scales its copies alike.
      clip_grad_norm(model.replicated_parameters(), model.local_expert_parameters(), 1.0, *comm);
      if (decay_steps > 0) optimizer.set_lr(schedule.lr(step));
      optimizer.step();
      model.update_router_biases(out, 1e-3);  // DeepSeek-V3's balancing; other routers have no bias
      loss = out.loss.item<double>();
      if (step == 1) first_loss = loss;
      if (printing && (step == 1 || step % 50 == 0 || step == steps)) {
        std::printf("step %4lld  loss %.6f  routing losses %.6f\n", static_cast<long long>(step), loss,
                    out.aux_loss.item<double>());
        print_routing(out);
      }
      if (!save_path.empty() && (step == steps || (save_every > 0 && step % save_every == 0))) save(step);
    }
    // A run with no step to take (--steps 0, or resumed at --steps) still writes what it holds.
    if (!save_path.empty() && first_step > steps) save(training.step);
    if (!export_path.empty()) {
      StateDict whole = gather_expert_parallel_state(model);  // a collective: every rank takes part
      if (printing) save_safetensors(export_path, whole, exporting_notes);
    }
    model.eval();
    // Every rank decodes (the expert-parallel layers exchange rows), rank 0 prints.
    // The same draws on every rank (the expert-parallel layers need every rank's forwards).
    Generator sampling(seed + 2);
    std::string sample = generate(model, corpus, prompt, sample_length, temperature, sampling);
    if (printing) {
      // fwrite: the text may hold NUL bytes.
      if (temperature == 0.0) std::printf("\ngreedy sample: ");
      else std::printf("\nsample at temperature %g: ", temperature);
      std::fwrite(sample.data(), 1, sample.size(), stdout);
      std::printf("\n");
    }
    // One step's loss is measured before its update: the loss can fall only over two or more.
    if (steps >= 2 && !(loss < first_loss)) {
      std::printf("tinymoe: rank %d: the loss did not fall (%.3f -> %.3f)\n", comm->rank(), first_loss, loss);
      return 1;
    }
    return 0;
  } catch (const std::exception& error) {  // tinymoe::Error, and std's (bad_alloc, filesystem_error)
    std::fprintf(stderr, "%s\n", error.what());
    if (mpi) MpiSession::abort(1);  // the other ranks may be waiting in a collective
    return 1;
  }
}
