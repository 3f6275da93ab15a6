#include "tools/cli/bench_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ops/gemm.h"
#include "tinymoe/error.h"
#include "tools/cli/bench_device.h"

namespace tinymoe::cli {
namespace {

// Enough digits to compare runs, not more: 0.213, 12.4, 1843.
std::string format_number(double value) {
  std::ostringstream text;
  double magnitude = std::fabs(value);
  text << std::fixed << std::setprecision(magnitude < 10 ? 3 : magnitude < 1000 ? 1 : 0) << value;
  return text.str();
}

std::string target_cell(const Measurement& m) {
  if (!m.target.defined()) return "";
  return "target " + m.target.str() + " " + m.unit + (m.target.met(m.value) ? "  ok" : "  MISSED");
}

constexpr int kBenchWidth = 16, kMetricWidth = 34, kValueWidth = 18, kTargetWidth = 26, kPathWidth = 28;

}  // namespace

double median(std::vector<double> values) {
  TINYMOE_CHECK(!values.empty(), "bench", "median of no values");
  std::sort(values.begin(), values.end());
  size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

void add_bench_options(CLI::App& command, BenchOptions& options) {
  command.add_flag("--json", options.json, "One JSON object per line instead of a table");
  command.add_option("--threads", options.threads, "BLAS threads (set_blas_threads)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command.add_option("--repeats", options.repeats, "Timed runs per measurement; the median is reported")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command.add_flag("--quick", options.quick, "Small shapes, for a smoke test");
  command
      .add_option("--device", options.device, "Where to run: cpu, cuda or cuda:N (timed with CUDA events on cuda)")
      ->check(CLI::Validator(
          [](std::string& text) {
            try {
              Device::parse(text);
              return std::string();
            } catch (const Error& error) {
              return std::string(error.what());
            }
          },
          "DEVICE"))
      ->capture_default_str();
  command.add_flag("--skip-without-gpu", options.skip_without_gpu,
                   "When the device cannot be used, print SKIPPED: <reason> and exit 77 (CTest's skip code)");
}

Device prepare_bench_device(const BenchOptions& options) {
  Device device = options.parsed_device();
  require_usable_device(device, options.skip_without_gpu);
  set_blas_threads(options.threads);
  return device;
}

std::string gemm_path_name(GemmBackend backend) {
  return backend == GemmBackend::cblas ? "cblas " + blas_core_name() : "eigen";
}

std::string gemm_path(Device device) {
  if (device.is_cpu()) return gemm_path_name(gemm_backend());
  return std::string("cublas ") + (tf32_enabled() ? "tf32" : "f32") + ", " + cuda_device_name(device);
}

LapTimer::LapTimer(Device device) {
  synchronize(device);
  if (device.is_cuda()) {
    events_ = std::make_unique<CudaEventClock>(device);
    events_->record();
  } else {
    marks_.push_back(std::chrono::steady_clock::now());
  }
}

LapTimer::~LapTimer() = default;

void LapTimer::lap() {
  if (events_) events_->record();
  else marks_.push_back(std::chrono::steady_clock::now());
}

std::vector<double> LapTimer::seconds() const {
  if (events_) return events_->intervals();
  std::vector<double> laps;
  for (size_t i = 1; i < marks_.size(); ++i)
    laps.push_back(std::chrono::duration<double>(marks_[i] - marks_[i - 1]).count());
  return laps;
}

std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>>& runs,
                                                     int repeats, int warmup, Device device) {
  TINYMOE_CHECK(repeats >= 1, "bench", "expected at least 1 repeat, got ", repeats);
  for (int round = 0; round < warmup; ++round)
    for (const auto& run : runs) run();
  std::vector<std::vector<double>> seconds(runs.size());
  for (int round = 0; round < repeats; ++round) {
    for (size_t i = 0; i < runs.size(); ++i) {
      LapTimer timer(device);
      runs[i]();
      timer.lap();
      seconds[i].push_back(timer.seconds().front());
    }
  }
  return seconds;
}

double median_seconds(const std::function<void()>& run, int repeats, int warmup, Device device) {
  return median(interleaved_seconds({run}, repeats, warmup, device).front());
}

bool Target::met(double value) const {
  switch (kind) {
    case Kind::at_most: return value <= bound;
    case Kind::at_least: return value >= bound;
    default: return true;
  }
}

std::string Target::str() const {
  if (kind == Kind::none) return "";
  std::ostringstream text;
  text << (kind == Kind::at_most ? "<= " : ">= ") << bound;
  return text.str();
}

Report::Report(std::ostream& out, bool json) : out_(out), json_(json) {}

void Report::note(const std::string& text) {
  if (!json_) out_ << text << "\n";
}

void Report::add(const Measurement& measurement) {
  if (json_) add_json(measurement);
  else add_row(measurement);
  out_.flush();  // a long bench shows each result as soon as it exists
}

void Report::add_row(const Measurement& m) {
  if (!header_written_) {
    out_ << std::left << std::setw(kBenchWidth) << "bench" << std::setw(kMetricWidth) << "metric"
         << std::right << std::setw(kValueWidth) << "value" << "  " << std::left << std::setw(kTargetWidth)
         << "target" << std::setw(kPathWidth) << "path" << "shape\n";
    header_written_ = true;
  }
  out_ << std::left << std::setw(kBenchWidth) << m.bench << std::setw(kMetricWidth) << m.metric << std::right
       << std::setw(kValueWidth) << (format_number(m.value) + " " + m.unit) << "  " << std::left
       << std::setw(kTargetWidth) << target_cell(m) << std::setw(kPathWidth) << m.path << m.shape << "\n";
}

void Report::add_json(const Measurement& m) {
  nlohmann::ordered_json line = {
      {"bench", m.bench}, {"metric", m.metric}, {"value", m.value}, {"unit", m.unit}, {"shape", m.shape}};
  if (!m.path.empty()) line["path"] = m.path;
  if (m.target.defined()) {
    line["target"] = m.target.str();
    line["target_met"] = m.target.met(m.value);
  }
  out_ << line.dump() << "\n";
}

}  // namespace tinymoe::cli
