#include "tools/cli/bench_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinymoe/error.h"

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

std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>>& runs,
                                                     int repeats, int warmup) {
  TINYMOE_CHECK(repeats >= 1, "bench", "expected at least 1 repeat, got ", repeats);
  for (int round = 0; round < warmup; ++round)
    for (const auto& run : runs) run();
  std::vector<std::vector<double>> seconds(runs.size());
  for (int round = 0; round < repeats; ++round) {
    for (size_t i = 0; i < runs.size(); ++i) {
      auto start = std::chrono::steady_clock::now();
      runs[i]();
      seconds[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return seconds;
}

double median_seconds(const std::function<void()>& run, int repeats, int warmup) {
  return median(interleaved_seconds({run}, repeats, warmup).front());
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
