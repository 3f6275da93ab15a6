#include "nn/state_problems.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "tinymoe/error.h"

namespace tinymoe {
namespace nn {

std::string describe(const Tensor& tensor) {
  return std::string(dtype_name(tensor.dtype())) + " " + shape_str(tensor.shape());
}

std::string load_problem(const std::string& name, const Tensor& expected, const Tensor& source) {
  if (!source.defined()) return "'" + name + "' is an undefined tensor";
  if (source.dtype() != expected.dtype() || source.shape() != expected.shape())
    return "'" + name + "' expects " + describe(expected) + ", got " + describe(source);
  return "";
}

int64_t canonical_count(const std::string& text) {
  if (text.empty() || text.size() > 19) return -1;
  for (char c : text)
    if (c < '0' || c > '9') return -1;
  errno = 0;
  long long value = std::strtoll(text.c_str(), nullptr, 10);
  if (errno == ERANGE) return -1;
  return std::to_string(value) == text ? static_cast<int64_t>(value) : -1;
}

void throw_if_problems(const char* op, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::ostringstream message;
  message << problems.size() << (problems.size() == 1 ? " problem" : " problems") << ", nothing was loaded:";
  for (const auto& problem : problems) message << "\n  - " << problem;
  fail(op, message.str());
}

}  // namespace nn
}  // namespace tinymoe
