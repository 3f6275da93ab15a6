// The CUDA tests' main. Listing (--list-*, as catch_discover_tests does at build time) always
// works. Without a usable device it prints "SKIPPED: <reason>" and returns 77 (CTest's
// SKIP_RETURN_CODE), unless every selected test is tagged [nodevice] (argument checks and the
// runtime's answers without a GPU), which then run normally.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <iostream>

#include "cuda/runtime.h"
#include "tests/catch_selection.h"

namespace {

constexpr int kSkipReturnCode = 77;

bool selection_runs_without_device(Catch::Session& session) {
  std::vector<Catch::TestCase> selected = test_selection::selected_tests(session);
  return std::all_of(selected.begin(), selected.end(),
                     [](const Catch::TestCase& test) { return test_selection::has_tag(test, "nodevice"); });
}

}  // namespace

int main(int argc, char** argv) {
  Catch::Session session;
  int status = session.applyCommandLine(argc, argv);
  if (status != 0) return status;
  if (test_selection::is_listing(argc, argv) || tinymoe::cuda_available() || selection_runs_without_device(session))
    return session.run();
  std::cout << "SKIPPED: " << tinymoe::cuda_unavailable_reason() << std::endl;
  return kSkipReturnCode;
}
