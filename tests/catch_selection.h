// What a Catch2 run is about to do, for the mains that decide before running whether to skip:
// whether it only lists tests, and which of the selected test cases carry a tag.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace test_selection {

// --list-tests and friends, as catch_discover_tests runs at build time: always answered.
inline bool is_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return true;
  return false;
}

inline bool has_tag(const Catch::TestCase& test, const std::string& tag) {
  const std::vector<std::string>& tags = test.getTestCaseInfo().lcaseTags;
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

// The test cases the session's command line selects.
inline std::vector<Catch::TestCase> selected_tests(Catch::Session& session) {
  const Catch::Config& config = session.config();
  return Catch::filterTests(Catch::getAllTestCasesSorted(config), config.testSpec(), config);
}

}  // namespace test_selection
