// safetensors: HuggingFace's tensor file format (https://github.com/huggingface/safetensors).
//
// Layout: 8 bytes, little-endian u64 N; N bytes of UTF-8 JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// (offsets relative to the data buffer); then the data buffer, little-endian, row-major.
//
// Reading accepts F32, F64 and I64 (kept as f32, f64, i64) and BF16 and F16 (widened to f32,
// exactly). The other valid dtypes (U8, I32, BOOL, F8_*, F4, ...) are checked like any tensor but
// cannot be read: loading such a tensor is an Error, while read_safetensors_header lists it and
// load_safetensors_where reads the file's other tensors. A malformed file is rejected whole with
// a tinymoe::Error naming "safetensors" and the problem; the header is parsed and validated
// completely before any tensor is created:
//   - the path is not a regular file (missing, a directory, a device);
//   - the file is shorter than 8 bytes, or N runs past its end or exceeds 100,000,000 bytes
//     (the reference implementation's limit);
//   - the header is not valid JSON, not an object, nests deeper than 8 levels (a valid header
//     nests 3; deeper input could overflow the stack), or repeats a key (a duplicate tensor name);
//   - "__metadata__" is not an object of strings;
//   - an entry lacks dtype/shape/data_offsets, has an unknown dtype (or, when read, an unsupported
//     one), a shape that is not an array of non-negative integers, or offsets that are not two
//     non-negative integers;
//   - the element count or byte size overflows, begin > end, end is past the buffer, or
//     end - begin disagrees with shape x dtype size;
//   - the tensors overlap, or leave a hole, or leave bytes at the end of the buffer (the spec
//     requires the buffer to be covered exactly).
// Writing supports every tinymoe dtype (F32, F64, I64): tensors are laid out in name order, the
// header is compact JSON with "__metadata__" first, padded with spaces to a multiple of 8 bytes
// as the reference implementation does. Tensors on other devices are copied to the cpu first.
// save_safetensors writes '<path>.partial', flushes it to the disk (fsync) and renames it over
// `path`: a save interrupted by a crash of the process or the machine leaves the old file whole.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tinymoe/tensor.h"

namespace tinymoe {
namespace nn {

using TensorMap = std::map<std::string, Tensor>;
using SafetensorsMetadata = std::map<std::string, std::string>;

// Parses a whole file held in memory. When `metadata` is given it receives "__metadata__".
TensorMap parse_safetensors(const std::vector<uint8_t>& bytes, SafetensorsMetadata* metadata = nullptr);
// Reads and parses the file at `path`; errors also name the path.
TensorMap load_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// What the file at `path` holds, without reading its data: each tensor's name, dtype as the file
// spells it ("F32", "BF16", ...) and shape, in name order, after the same checks of the whole
// header as load_safetensors (offsets against the file's size). For files too large to load.
struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;
  Shape shape;
};
std::vector<SafetensorsTensorInfo> read_safetensors_header(const std::string& path,
                                                           SafetensorsMetadata* metadata = nullptr);
// Reads only the tensors whose names `select` accepts, after the same checks of the whole header
// as load_safetensors: a layer's few tensors out of a checkpoint shard of many gigabytes.
TensorMap load_safetensors_where(const std::string& path, const std::function<bool(const std::string&)>& select,
                                 SafetensorsMetadata* metadata = nullptr);

// The bytes of a file holding `tensors` and `metadata` (omitted from the header when empty).
std::vector<uint8_t> serialize_safetensors(const TensorMap& tensors, const SafetensorsMetadata& metadata = {});
void save_safetensors(const std::string& path, const TensorMap& tensors, const SafetensorsMetadata& metadata = {});

}  // namespace nn
}  // namespace tinymoe
