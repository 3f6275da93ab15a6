// Shared pieces of the `tinymoe bench ...` commands: a median-of-repeats timer and a report that
// prints each measurement as a table row or as one JSON object per line.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace tinymoe::cli {

// The median of values (the mean of the two middle ones for an even count); values not empty.
double median(std::vector<double> values);

// Wall-clock seconds of each of `runs`, `repeats` times: after `warmup` untimed rounds (first-touch
// page faults, BLAS buffers), each round runs every function once, in turn. Interleaving puts
// the runs that are compared side by side in time, so a load change on the machine hits them
// alike. Result: one vector of `repeats` samples per run.
std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>>& runs,
                                                     int repeats, int warmup = 1);

// Median wall-clock seconds of `repeats` timed calls of `run` after `warmup` untimed ones. The
// median ignores a run that another process on the machine slowed down.
double median_seconds(const std::function<void()>& run, int repeats, int warmup = 1);

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
