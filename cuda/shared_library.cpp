#include "cuda/shared_library.h"

namespace tinymoe {
namespace cuda {

void* open_shared_library(const char* library, const std::vector<std::string>& candidates) {
  std::string reasons;  // each name tried, with dlerror's reason
  for (const std::string& candidate : candidates) {
    if (candidate.empty()) continue;
    if (void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    const char* error = dlerror();
    reasons += (reasons.empty() ? "" : "; ") + std::string(error != nullptr ? error : candidate + ": unknown dlopen error");
  }
  fail(library, "cannot open the library: ", reasons.empty() ? std::string("no name to try") : reasons);
}

}  // namespace cuda
}  // namespace tinymoe
