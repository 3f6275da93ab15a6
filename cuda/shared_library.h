// Opening a CUDA library with dlopen on first use, and taking its functions by name: the pattern
// of cublas_library.h and nccl_library.h, written once.
#pragma once

#include <dlfcn.h>

#include <string>
#include <vector>

#include "tinymoe/error.h"

namespace tinymoe {
namespace cuda {

// The first of `candidates` (sonames or paths; empty ones are skipped) that dlopen opens. Never
// closed: handles and streams of it live until the process ends. An Error naming `library`,
// every name tried and dlerror's reason when none opens.
void* open_shared_library(const char* library, const std::vector<std::string>& candidates);

// `function` = the symbol `name` of `handle`, or null when it has none (a newer function).
template <typename Function>
void bind_optional(void* handle, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(handle, name));
}

// The same for a function tinymoe cannot do without: an Error naming `library` when missing.
template <typename Function>
void bind_required(void* handle, const char* library, const char* name, Function& function) {
  bind_optional(handle, name, function);
  TINYMOE_CHECK(function != nullptr, library, "the library opened has no function ", name);
}

}  // namespace cuda
}  // namespace tinymoe
