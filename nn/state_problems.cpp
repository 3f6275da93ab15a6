#include "nn/state_problems.h"

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

void throw_if_problems(const char* op, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::ostringstream message;
  message << problems.size() << (problems.size() == 1 ? " problem" : " problems") << ", nothing was loaded:";
  for (const auto& problem : problems) message << "\n  - " << problem;
  fail(op, message.str());
}

}  // namespace nn
}  // namespace tinymoe
