// Helpers shared by the test files.
#pragma once

#include <catch2/catch.hpp>

#include "tinymoe/gradcheck.h"

namespace tinymoe::testing {

// Runs gradcheck with the default (torch) tolerances and reports `what` and the result on failure.
inline void check_gradients(const std::string& what, const GradcheckFn& fn, const TensorList& inputs) {
  GradcheckResult result = gradcheck(fn, inputs);
  INFO(what << ": " << result.report);
  CHECK(result.passed());
}

}  // namespace tinymoe::testing
