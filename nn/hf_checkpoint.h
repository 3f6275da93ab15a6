// nn/hf_checkpoint.h: one layer's tensors straight out of a HuggingFace checkpoint, for
// `tinymoe moe --weights` (docs/hf_check.md): only the tensors under the layer's prefix are read,
// so checking a layer of a model of many gigabytes reads a few megabytes.
//
// `path` may be
//   - a .safetensors file (a single-file checkpoint, or a file holding just the layer);
//   - a sharded checkpoint's index, `model.safetensors.index.json`:
//       {"metadata": {...}, "weight_map": {"<tensor name>": "<shard file>", ...}}
//     whose shards sit in the index's directory;
//   - a directory holding `model.safetensors.index.json` or else `model.safetensors` (a hub
//     snapshot).
// Errors name "hf_checkpoint" (or "safetensors" for a shard that does not parse) and the path:
// an index that is not such an object, a shard name that is not a plain .safetensors file name
// (no directory part: shards sit beside their index), a shard missing a tensor its index maps to
// it, a directory with neither file, no tensor under the prefix, or tensors of several MoE layers
// under it (an empty or cut-short prefix of a whole checkpoint). The last two are found from the
// index or headers before any data is read, and list the checkpoint's MoE layer prefixes.
#pragma once

#include <string>

#include "nn/safetensors.h"

namespace tinymoe::nn {

// The tensors of `path` whose names start with `prefix`, under their full names (every tensor when
// the prefix is empty).
TensorMap load_hf_weights(const std::string& path, const std::string& prefix);

}  // namespace tinymoe::nn
