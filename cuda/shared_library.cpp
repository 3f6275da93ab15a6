#include "cuda/shared_library.h"

namespace tinymoe {
namespace cuda {

void* open_shared_library(const char* library, const std::vector<std::string>& candidates) {
  std::string tried, reason;
  for (const std::string& candidate : candidates) {
    if (candidate.empty()) continue;
    if (void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    const char* error = dlerror();
    reason = error != nullptr ? error : "unknown dlopen error";
    tried += (tried.empty() ? "" : ", ") + candidate;
  }
  fail(library, "cannot open ", tried.empty() ? std::string("any library (no name to try)") : tried, ": ", reason);
}

}  // namespace cuda
}  // namespace tinymoe
