// The checks shared by everything that loads saved state (Module::load_state_dict,
// Optimizer::load_state_dict, load_checkpoint): collect every problem first, then either load
// everything or throw one Error that lists them all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

// "f32 [2, 3]": how messages describe a tensor.
std::string describe(const Tensor& tensor);

// What is wrong with loading `source` into a tensor like `expected` under `name` (undefined, or
// another dtype or shape), or "" when nothing is.
std::string load_problem(const std::string& name, const Tensor& expected, const Tensor& source);

// The value of `text` when it is a non-negative int64_t spelled as std::to_string spells it (no
// sign, no leading zeros, no spaces), else -1: how saved state writes counts and indices.
int64_t canonical_count(const std::string& text);

// Throws "op: N problems, nothing was loaded:" followed by one line per problem, unless there are none.
void throw_if_problems(const char* op, const std::vector<std::string>& problems);

}  // namespace nn
}  // namespace tinymoe
