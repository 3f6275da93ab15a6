// Helpers shared by the test files.
#pragma once

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ops/gemm.h"
#include "tinymoe/gradcheck.h"

namespace tinymoe::testing {

// A path in the temporary directory, unique to this process (test binaries may run side by side).
inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name)).string();
}

// Runs gradcheck with the default (torch) tolerances and reports `what` and the result on failure.
inline void check_gradients(const std::string& what, const GradcheckFn& fn, const TensorList& inputs) {
  GradcheckResult result = gradcheck(fn, inputs);
  INFO(what << ": " << result.report);
  CHECK(result.passed());
}

// Selects a GEMM backend for its lifetime and restores the previous one.
class BackendScope {
 public:
  explicit BackendScope(GemmBackend backend) : previous_(gemm_backend()) { set_gemm_backend(backend); }
  ~BackendScope() { set_gemm_backend(previous_); }
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;

 private:
  GemmBackend previous_;
};

// The GEMM paths this build has: Eigen always, CBLAS when OpenBLAS was found.
inline std::vector<GemmBackend> available_backends() {
  std::vector<GemmBackend> backends = {GemmBackend::eigen};
  if (cblas_available()) backends.push_back(GemmBackend::cblas);
  return backends;
}

}  // namespace tinymoe::testing
