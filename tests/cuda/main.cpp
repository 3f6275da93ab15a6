// The CUDA tests' main. Listing (--list-*, as catch_discover_tests does at build time) always
// works. Without a usable device it prints "SKIPPED: <reason>" and returns 77 (CTest's
// SKIP_RETURN_CODE), unless every selected test is tagged [nodevice] (argument checks and the
// runtime's answers without a GPU), which then run normally.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <iostream>

#include "cuda/runtime.h"

namespace {

constexpr int kSkipReturnCode = 77;

bool is_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return true;
  return false;
}

bool tagged_nodevice(const Catch::TestCase& test) {
  const std::vector<std::string>& tags = test.getTestCaseInfo().lcaseTags;
  return std::find(tags.begin(), tags.end(), "nodevice") != tags.end();
}

bool selection_runs_without_device(Catch::Session& session) {
  const Catch::Config& config = session.config();
  std::vector<Catch::TestCase> selected =
      Catch::filterTests(Catch::getAllTestCasesSorted(config), config.testSpec(), config);
  return std::all_of(selected.begin(), selected.end(), tagged_nodevice);
}

}  // namespace

int main(int argc, char** argv) {
  Catch::Session session;
  int status = session.applyCommandLine(argc, argv);
  if (status != 0) return status;
  if (is_listing(argc, argv) || tinymoe::cuda_available() || selection_runs_without_device(session))
    return session.run();
  std::cout << "SKIPPED: " << tinymoe::cuda_unavailable_reason() << std::endl;
  return kSkipReturnCode;
}
