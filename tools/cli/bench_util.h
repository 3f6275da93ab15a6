// Shared pieces of the `tinymoe bench ...` commands: their common options, a lap timer for the
// cpu or a cuda device, a median-of-repeats timer and a report that prints each measurement as a
// table row or as one JSON object per line.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "ops/gemm.h"
#include "tinymoe/dtype.h"

namespace CLI {
class App;
}

namespace tinymoe::cli {

class CudaEventClock;

// The options every bench takes.
struct BenchOptions {
  bool json = false;
  int threads = 1;
  int repeats = 5;
  bool quick = false;
  std::string device = "cpu";     // "cpu", "cuda" or "cuda:N" (Device::parse)
  bool skip_without_gpu = false;  // an unusable device: exit 77 "SKIPPED: <reason>", not an error

  Device parsed_device() const { return Device::parse(device); }
};

// Adds --json, --threads, --repeats, --quick, --device and --skip-without-gpu to `command`,
// writing into `options` (which must outlive the command's parse).
void add_bench_options(CLI::App& command, BenchOptions& options);

// The device to run on: checked usable (require_usable_device, tools/cli/bench_device.h: an
// Error, or CommandSkipped with --skip-without-gpu), BLAS threads set.
Device prepare_bench_device(const BenchOptions& options);

// Elapsed time in laps. On the cpu, steady_clock. On cuda, CUDA events on the device's stream
// (tools/cli/bench_device.h): a lap ends when the device has finished the work launched before
// lap(), so asynchronous kernels are counted where they run, and the host's launch gaps too.
class LapTimer {
 public:
  // Waits for the work already queued on the device (so it is not counted), then starts a lap.
  explicit LapTimer(Device device = Device::cpu());
  ~LapTimer();
  LapTimer(const LapTimer&) = delete;
  LapTimer& operator=(const LapTimer&) = delete;

  // Ends the current lap and starts the next.
  void lap();
  // Seconds of each lap ended so far, in order; waits for the device.
  std::vector<double> seconds() const;

 private:
  std::vector<std::chrono::steady_clock::time_point> marks_;  // cpu
  std::unique_ptr<CudaEventClock> events_;                    // cuda
};

// The median of values (the mean of the two middle ones for an even count); values not empty.
double median(std::vector<double> values);

// Seconds of each of `runs`, `repeats` times: after `warmup` untimed rounds (first-touch page
// faults, BLAS buffers; on cuda, loading cuBLAS and filling the caching allocator), each round
// runs every function once, in turn, each timed by its own LapTimer on `device`. Interleaving
// puts the runs that are compared side by side in time, so a load change on the machine hits
// them alike. Result: one vector of `repeats` samples per run.
std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>>& runs,
                                                     int repeats, int warmup = 1, Device device = Device::cpu());

// Median seconds of `repeats` timed calls of `run` after `warmup` untimed ones. The median
// ignores a run that another process on the machine slowed down.
double median_seconds(const std::function<void()>& run, int repeats, int warmup = 1, Device device = Device::cpu());

// The cpu GEMM path of `backend` for a report's path column: "cblas openblas/SkylakeX" or "eigen".
std::string gemm_path_name(GemmBackend backend);
// Where GEMMs run on `device` now: the cpu's current path (gemm_path_name), or on cuda
// "cublas f32, <card>" or "cublas tf32, <card>" by the TF32 switch (Tf32Guard).
std::string gemm_path(Device device);

// GFLOP/s of `flops` floating-point operations done in `seconds`.
inline double gflops_per_second(double flops, double seconds) { return flops / seconds * 1e-9; }

// What a measurement should reach: nothing, at most a bound, or at least a bound.
struct Target {
  enum class Kind { none, at_most, at_least };
  Kind kind = Kind::none;
  double bound = 0;

  static Target at_most(double bound) { return {Kind::at_most, bound}; }
  static Target at_least(double bound) { return {Kind::at_least, bound}; }
  bool defined() const { return kind != Kind::none; }
  bool met(double value) const;
  std::string str() const;  // "<= 1", ">= 0.9", or "" when none
};

struct Measurement {
  std::string bench;   // what was measured: "tape", "grouped_matmul", "gemm_f32"
  std::string metric;  // which quantity: "forward+backward", "recording overhead per op"
  double value = 0;
  std::string unit;    // "us", "GFLOP/s", "x"
  std::string shape;   // the sizes it ran at
  std::string path;    // the GEMM path and kernel, when one matters ("cblas openblas/SkylakeX")
  Target target;
};

// Prints measurements as they come. Table mode writes a header once and one aligned row per
// measurement, the target and whether it was met next to the value; JSON mode writes one
// object per line: {"bench", "metric", "value", "unit", "shape"} plus "path", "target" and
// "target_met" when those apply.
class Report {
 public:
  Report(std::ostream& out, bool json);
  // A line of context (threads, repeats, BLAS kernel) in table mode; nothing in JSON mode, so
  // every JSON line stays a measurement.
  void note(const std::string& text);
  void add(const Measurement& measurement);

 private:
  void add_row(const Measurement& measurement);
  void add_json(const Measurement& measurement);

  std::ostream& out_;
  bool json_;
  bool header_written_ = false;
};

}  // namespace tinymoe::cli
