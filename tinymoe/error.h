// tinymoe::Error: the one exception type the library throws for bad input.
// Every message names the op and states what was expected and what came, e.g.
//   "index_select: index 9 out of range for dim 0 of size 8".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tinymoe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename First, typename... Rest>
void append_all(std::ostringstream& out, const First& first, const Rest&... rest) {
  out << first;
  append_all(out, rest...);
}
}  // namespace detail

// Builds "op: part1part2..." from streamable parts.
template <typename... Parts>
std::string error_message(const char* op, const Parts&... parts) {
  std::ostringstream out;
  out << op << ": ";
  detail::append_all(out, parts...);
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(const char* op, const Parts&... parts) {
  throw Error(error_message(op, parts...));
}

}  // namespace tinymoe

// TINYMOE_CHECK(cond, "op", parts...) throws tinymoe::Error("op: parts...") when cond is false.
#define TINYMOE_CHECK(cond, op, ...)          \
  do {                                        \
    if (!(cond)) ::tinymoe::fail(op, __VA_ARGS__); \
  } while (0)
