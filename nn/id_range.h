// The range check of the i64 ids a routing hands to the block (token ids, expert ids), on the
// device the ids live on: ids address memory in index_select and the grouped GEMMs, so a bad one
// must be an Error before any kernel reads with it.
#pragma once

#include <cstdint>

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

// Every entry of the i64 tensor `ids` (any shape) lies in [0, limit). `name` says which tensor
// ("routing pair_token"), `what` what an entry is, with its article ("a token"). The Error names
// op and the first bad entry: on the cpu "op: name[3] = 9 out of range: expected a token in
// [0, 8)", found by a loop; on a cuda device "op: name: index 9 (position 3) out of range
// [0, 8)", found on the device, which reads one flag back (and so waits for the queued work).
void check_id_range(const Tensor& ids, int64_t limit, const char* name, const char* what, const char* op);

}  // namespace nn
}  // namespace tinymoe
