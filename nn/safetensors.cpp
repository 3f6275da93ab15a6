#include "nn/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace tinymoe {
namespace nn {
namespace {

using nlohmann::json;
constexpr const char* kOp = "safetensors";
// The reference implementation's MAX_HEADER_SIZE: a larger header is an attack, not a model.
constexpr uint64_t kMaxHeaderBytes = 100000000;
constexpr size_t kLengthBytes = 8;

// ---- dtypes ----
// `unsupported`: a valid safetensors dtype tinymoe has no tensor type for. Such a tensor's bytes
// are still checked (offsets, size, coverage), so a file holding one is valid, and the other
// tensors can be read (load_safetensors_where); reading it is an Error.
enum class FileDType { f32, f64, i64, bf16, f16, unsupported };

struct FileDTypeInfo {
  const char* name;
  FileDType file_dtype;
  uint64_t bits;       // per element; sub-byte types (F4, F6) pack
  DType tensor_dtype;  // what the tensor becomes in tinymoe
};

const FileDTypeInfo kFileDTypes[] = {
    {"F32", FileDType::f32, 32, DType::f32},        {"F64", FileDType::f64, 64, DType::f64},
    {"I64", FileDType::i64, 64, DType::i64},        {"BF16", FileDType::bf16, 16, DType::f32},
    {"F16", FileDType::f16, 16, DType::f32},        {"BOOL", FileDType::unsupported, 8, DType::f32},
    {"U8", FileDType::unsupported, 8, DType::f32},  {"I8", FileDType::unsupported, 8, DType::f32},
    {"I16", FileDType::unsupported, 16, DType::f32}, {"U16", FileDType::unsupported, 16, DType::f32},
    {"I32", FileDType::unsupported, 32, DType::f32}, {"U32", FileDType::unsupported, 32, DType::f32},
    {"U64", FileDType::unsupported, 64, DType::f32}, {"C64", FileDType::unsupported, 64, DType::f32},
    {"F8_E5M2", FileDType::unsupported, 8, DType::f32}, {"F8_E4M3", FileDType::unsupported, 8, DType::f32},
    {"F8_E8M0", FileDType::unsupported, 8, DType::f32}, {"F4", FileDType::unsupported, 4, DType::f32},
    {"F6_E2M3", FileDType::unsupported, 6, DType::f32}, {"F6_E3M2", FileDType::unsupported, 6, DType::f32}};

const FileDTypeInfo& file_dtype(const std::string& name, const std::string& tensor) {
  for (const FileDTypeInfo& info : kFileDTypes)
    if (name == info.name) return info;
  fail(kOp, "tensor '", tensor, "' has unknown dtype '", name, "'");
}

const char* writable_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    default: return "I64";
  }
}

// ---- little-endian bytes, independent of the host's byte order ----
template <typename Bits>
Bits load_le(const uint8_t* bytes) {
  Bits value = 0;
  for (size_t i = 0; i < sizeof(Bits); ++i) value |= static_cast<Bits>(bytes[i]) << (8 * i);
  return value;
}

template <typename Bits>
void store_le(Bits value, uint8_t* bytes) {
  for (size_t i = 0; i < sizeof(Bits); ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
}

template <typename To, typename From>
To bit_cast(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// bfloat16 is the upper half of an f32.
float bf16_to_float(uint16_t bits) { return bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// IEEE binary16 -> binary32, exact: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float f16_to_float(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits >> 15) << 31;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf, nan
  return bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

// ---- header parsing ----
struct Entry {
  std::string name;
  const FileDTypeInfo* dtype = nullptr;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// Parses the header JSON, rejecting a key repeated within one object (nlohmann would keep the
// last one silently, so a duplicate tensor name could hide a tensor).
constexpr int kMaxHeaderDepth = 8;

json parse_header_json(const uint8_t* begin, const uint8_t* end) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  int duplicate_depth = 0;
  bool too_deep = false;
  auto watch_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    // A valid header nests three levels ({"name": {"shape": [..]}}). Deeper input is refused here,
    // while parsing: printing or freeing a value nested millions deep would overflow the stack.
    if (depth > kMaxHeaderDepth) {
      too_deep = true;
      return false;
    }
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty() && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        duplicate = key;
        duplicate_depth = depth;
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, watch_keys);
  } catch (const json::exception& error) {
    TINYMOE_CHECK(!too_deep, kOp, "the header nests deeper than ", kMaxHeaderDepth, " levels");
    fail(kOp, "the header is not valid JSON: ", error.what());
  }
  TINYMOE_CHECK(!too_deep, kOp, "the header nests deeper than ", kMaxHeaderDepth, " levels");
  TINYMOE_CHECK(duplicate.empty(), kOp, duplicate_depth <= 1 ? "duplicate tensor name '" : "duplicate key '",
                duplicate, "' in the header");
  TINYMOE_CHECK(header.is_object(), kOp, "the header must be a JSON object, got ", header.type_name());
  return header;
}

const json& required_field(const json& info, const char* field, const std::string& tensor) {
  auto found = info.find(field);
  TINYMOE_CHECK(found != info.end(), kOp, "tensor '", tensor, "' has no \"", field, "\"");
  return *found;
}

// a * b, or an Error when it exceeds `limit`.
uint64_t checked_product(uint64_t a, uint64_t b, uint64_t limit, const std::string& tensor, const char* what) {
  TINYMOE_CHECK(a == 0 || b <= limit / a, kOp, "tensor '", tensor, "': ", what, " overflows");
  return a * b;
}

Shape parse_shape(const json& value, const std::string& tensor) {
  TINYMOE_CHECK(value.is_array(), kOp, "tensor '", tensor, "': shape must be an array, got ", value.dump());
  Shape shape;
  uint64_t count = 1;  // of the non-zero dimensions: a zero would hide an overflow of the others
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (const json& extent : value) {
    TINYMOE_CHECK(extent.is_number_unsigned(), kOp, "tensor '", tensor,
                  "': shape must hold non-negative integers, got ", value.dump());
    uint64_t size = extent.get<uint64_t>();
    TINYMOE_CHECK(size <= limit, kOp, "tensor '", tensor, "': dimension ", size, " is too large");
    if (size > 0) count = checked_product(count, size, limit, tensor, "the element count");
    shape.push_back(static_cast<int64_t>(size));
  }
  return shape;
}

Entry parse_entry(const std::string& name, const json& info, uint64_t buffer_bytes) {
  TINYMOE_CHECK(info.is_object(), kOp, "tensor '", name, "' must be described by an object, got ", info.type_name());
  Entry entry;
  entry.name = name;
  const json& dtype = required_field(info, "dtype", name);
  TINYMOE_CHECK(dtype.is_string(), kOp, "tensor '", name, "': dtype must be a string, got ", dtype.dump());
  entry.dtype = &file_dtype(dtype.get<std::string>(), name);
  entry.shape = parse_shape(required_field(info, "shape", name), name);

  const json& offsets = required_field(info, "data_offsets", name);
  TINYMOE_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                    offsets[1].is_number_unsigned(),
                kOp, "tensor '", name, "': data_offsets must be two non-negative integers, got ", offsets.dump());
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  TINYMOE_CHECK(entry.begin <= entry.end, kOp, "tensor '", name, "': data_offsets [", entry.begin, ", ",
                entry.end, "] begin after they end");
  TINYMOE_CHECK(entry.end <= buffer_bytes, kOp, "tensor '", name, "': data_offsets [", entry.begin, ", ",
                entry.end, "] run past the data buffer of ", buffer_bytes, " bytes");
  const uint64_t bits = checked_product(static_cast<uint64_t>(shape_numel(entry.shape)), entry.dtype->bits,
                                        std::numeric_limits<uint64_t>::max(), name, "the byte size");
  TINYMOE_CHECK(bits % 8 == 0, kOp, "tensor '", name, "': ", entry.dtype->name, " ", shape_str(entry.shape),
                " does not fill whole bytes");
  const uint64_t expected = bits / 8;
  TINYMOE_CHECK(entry.end - entry.begin == expected, kOp, "tensor '", name, "': data_offsets [", entry.begin,
                ", ", entry.end, "] hold ", entry.end - entry.begin, " bytes but ", entry.dtype->name, " ",
                shape_str(entry.shape), " needs ", expected);
  return entry;
}

void parse_metadata(const json& value, SafetensorsMetadata& metadata) {
  TINYMOE_CHECK(value.is_object(), kOp, "\"__metadata__\" must be an object, got ", value.type_name());
  for (auto item = value.begin(); item != value.end(); ++item) {
    TINYMOE_CHECK(item.value().is_string(), kOp, "\"__metadata__\" value of '", item.key(),
                  "' must be a string, got ", item.value().dump());
    metadata[item.key()] = item.value().get<std::string>();
  }
}

// The spec requires the tensors to tile the buffer: no overlap, no hole, nothing left over.
void check_coverage(std::vector<Entry> entries, uint64_t buffer_bytes) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (const Entry& entry : entries) {
    TINYMOE_CHECK(entry.begin >= covered, kOp, "tensor '", entry.name, "' at bytes [", entry.begin, ", ",
                  entry.end, ") overlaps the tensor before it, which ends at ", covered);
    TINYMOE_CHECK(entry.begin == covered, kOp, "bytes [", covered, ", ", entry.begin,
                  ") of the data buffer belong to no tensor (a hole before '", entry.name, "')");
    covered = entry.end;
  }
  TINYMOE_CHECK(covered == buffer_bytes, kOp, "the data buffer has ", buffer_bytes, " bytes but the tensors cover ",
                covered);
}

// ---- tensors ----
// A tensor of a dtype tinymoe has no type for is an Error when it is read (before any is created).
void require_readable(const Entry& entry) {
  TINYMOE_CHECK(entry.dtype->file_dtype != FileDType::unsupported, kOp, "tensor '", entry.name, "' has dtype ",
                entry.dtype->name, ", which tinymoe does not read (it reads F32, F64, I64, BF16, F16)");
}

template <typename Bits, typename T, typename Decode>
void decode_into(const uint8_t* bytes, int64_t count, T* out, Decode decode) {
  for (int64_t i = 0; i < count; ++i) out[i] = decode(load_le<Bits>(bytes + i * sizeof(Bits)));
}

Tensor make_tensor(const Entry& entry, const uint8_t* buffer) {
  Tensor tensor = Tensor::empty(entry.shape, entry.dtype->tensor_dtype);
  const uint8_t* bytes = buffer + entry.begin;
  int64_t count = tensor.numel();
  switch (entry.dtype->file_dtype) {
    case FileDType::f32:
      decode_into<uint32_t>(bytes, count, tensor.data<float>(), bit_cast<float, uint32_t>);
      break;
    case FileDType::f64:
      decode_into<uint64_t>(bytes, count, tensor.data<double>(), bit_cast<double, uint64_t>);
      break;
    case FileDType::i64:
      decode_into<uint64_t>(bytes, count, tensor.data<int64_t>(), bit_cast<int64_t, uint64_t>);
      break;
    case FileDType::bf16: decode_into<uint16_t>(bytes, count, tensor.data<float>(), bf16_to_float); break;
    case FileDType::f16: decode_into<uint16_t>(bytes, count, tensor.data<float>(), f16_to_float); break;
    case FileDType::unsupported: require_readable(entry);
  }
  return tensor;
}

template <typename Bits, typename T>
void encode_into(const T* values, int64_t count, uint8_t* out) {
  for (int64_t i = 0; i < count; ++i) store_le(bit_cast<Bits>(values[i]), out + i * sizeof(Bits));
}

void encode_tensor(const Tensor& tensor, uint8_t* out) {
  Tensor host = tensor.device().is_cpu() ? tensor : tensor.detach().to(Device::cpu());
  switch (host.dtype()) {
    case DType::f32: encode_into<uint32_t>(host.data<float>(), host.numel(), out); break;
    case DType::f64: encode_into<uint64_t>(host.data<double>(), host.numel(), out); break;
    case DType::i64: encode_into<uint64_t>(host.data<int64_t>(), host.numel(), out); break;
  }
}

// Compact JSON as the reference writes it, padded with spaces so the data starts 8-aligned.
std::string header_text(const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& item : tensors) {
    TINYMOE_CHECK(item.first != "__metadata__", kOp, "a tensor cannot be named \"__metadata__\"");
    check_defined(item.second, kOp, item.first.c_str());
    uint64_t end = offset + item.second.nbytes();
    header[item.first] = {{"dtype", writable_dtype_name(item.second.dtype())},
                          {"shape", item.second.shape()},
                          {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& error) {
    fail(kOp, "cannot write the header (names and metadata must be valid UTF-8): ", error.what());
  }
  text.append((kLengthBytes - text.size() % kLengthBytes) % kLengthBytes, ' ');
  return text;
}

// The header length from the first 8 bytes of a file of `file_bytes`, checked against the limit
// and the file's size.
uint64_t checked_header_length(const uint8_t* first_bytes, uint64_t file_bytes) {
  TINYMOE_CHECK(file_bytes >= kLengthBytes, kOp, "the file has ", file_bytes,
                " bytes, fewer than the 8-byte header length");
  uint64_t header_bytes = load_le<uint64_t>(first_bytes);
  TINYMOE_CHECK(header_bytes <= kMaxHeaderBytes, kOp, "header length ", header_bytes,
                " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  TINYMOE_CHECK(header_bytes <= file_bytes - kLengthBytes, kOp, "header length ", header_bytes,
                " runs past the end of the file (", file_bytes, " bytes)");
  return header_bytes;
}

// Every entry of the header [begin, end), validated against a data buffer of buffer_bytes.
std::vector<Entry> parse_entries(const uint8_t* begin, const uint8_t* end, uint64_t buffer_bytes,
                                 SafetensorsMetadata* metadata) {
  json header = parse_header_json(begin, end);
  SafetensorsMetadata parsed_metadata;
  std::vector<Entry> entries;
  for (auto item = header.begin(); item != header.end(); ++item) {
    if (item.key() == "__metadata__") parse_metadata(item.value(), parsed_metadata);
    else entries.push_back(parse_entry(item.key(), item.value(), buffer_bytes));
  }
  check_coverage(entries, buffer_bytes);
  if (metadata) *metadata = std::move(parsed_metadata);
  return entries;
}

// A regular file's size, or an Error that names the path.
uint64_t regular_file_size(const std::string& path) {
  std::error_code error_code;
  TINYMOE_CHECK(std::filesystem::is_regular_file(path, error_code), kOp, "'", path,
                "' is not a file that can be read (missing, a directory or a device)");
  uint64_t size = std::filesystem::file_size(path, error_code);
  TINYMOE_CHECK(!error_code, kOp, "cannot read the size of '", path, "'");
  return size;
}

}  // namespace

TensorMap parse_safetensors(const std::vector<uint8_t>& bytes, SafetensorsMetadata* metadata) {
  uint64_t header_bytes = checked_header_length(bytes.data(), bytes.size());
  const uint8_t* header_begin = bytes.data() + kLengthBytes;
  const uint8_t* buffer = header_begin + header_bytes;
  // Validate everything before creating any tensor.
  SafetensorsMetadata parsed_metadata;
  std::vector<Entry> entries = parse_entries(header_begin, buffer, bytes.size() - kLengthBytes - header_bytes,
                                             &parsed_metadata);
  for (const Entry& entry : entries) require_readable(entry);
  TensorMap tensors;
  for (const Entry& entry : entries) tensors.emplace(entry.name, make_tensor(entry, buffer));
  if (metadata) *metadata = std::move(parsed_metadata);
  return tensors;
}

namespace {

// A file's header, read and validated whole without its data, and where its data buffer starts.
struct FileHeader {
  std::vector<Entry> entries;
  uint64_t buffer_start = 0;
};

FileHeader read_file_header(std::ifstream& file, uint64_t file_bytes, SafetensorsMetadata* metadata) {
  uint8_t length[kLengthBytes] = {};
  file.read(reinterpret_cast<char*>(length), file_bytes >= kLengthBytes ? kLengthBytes : 0);
  uint64_t header_bytes = checked_header_length(length, file_bytes);
  std::vector<uint8_t> header(static_cast<size_t>(header_bytes));
  file.read(reinterpret_cast<char*>(header.data()), static_cast<std::streamsize>(header_bytes));
  TINYMOE_CHECK(static_cast<uint64_t>(file.gcount()) == header_bytes, kOp, "cannot read the header");
  return {parse_entries(header.data(), header.data() + header.size(), file_bytes - kLengthBytes - header_bytes,
                        metadata),
          kLengthBytes + header_bytes};
}

// One tensor's bytes, read from the file at its offsets (checked against the file's size).
Tensor read_tensor(std::ifstream& file, const FileHeader& header, Entry entry) {
  std::vector<uint8_t> bytes(static_cast<size_t>(entry.end - entry.begin));
  file.seekg(static_cast<std::streamoff>(header.buffer_start + entry.begin));
  file.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  TINYMOE_CHECK(static_cast<uint64_t>(file.gcount()) == bytes.size(), kOp, "cannot read tensor '", entry.name, "'");
  entry.end -= entry.begin, entry.begin = 0;
  return make_tensor(entry, bytes.data());
}

// Runs `read` on the opened file; its Errors also name the path.
template <typename Read>
auto with_open_file(const std::string& path, Read read) {
  const uint64_t file_bytes = regular_file_size(path);
  std::ifstream file(path, std::ios::binary);
  TINYMOE_CHECK(file.good(), kOp, "cannot open '", path, "' for reading");
  try {
    return read(file, file_bytes);
  } catch (const Error& error) {
    throw Error(std::string(error.what()) + " (in '" + path + "')");
  }
}

}  // namespace

std::vector<SafetensorsTensorInfo> read_safetensors_header(const std::string& path, SafetensorsMetadata* metadata) {
  return with_open_file(path, [&](std::ifstream& file, uint64_t file_bytes) {
    std::vector<SafetensorsTensorInfo> infos;
    for (const Entry& entry : read_file_header(file, file_bytes, metadata).entries)
      infos.push_back({entry.name, entry.dtype->name, entry.shape});
    return infos;
  });
}

TensorMap load_safetensors_where(const std::string& path, const std::function<bool(const std::string&)>& select,
                                 SafetensorsMetadata* metadata) {
  return with_open_file(path, [&](std::ifstream& file, uint64_t file_bytes) {
    const FileHeader header = read_file_header(file, file_bytes, metadata);
    std::vector<const Entry*> chosen;
    for (const Entry& entry : header.entries)
      if (select(entry.name)) chosen.push_back(&entry);
    for (const Entry* entry : chosen) require_readable(*entry);  // the others may be of any dtype
    TensorMap tensors;
    for (const Entry* entry : chosen) tensors.emplace(entry->name, read_tensor(file, header, *entry));
    return tensors;
  });
}

std::vector<uint8_t> serialize_safetensors(const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  std::string header = header_text(tensors, metadata);
  size_t data_bytes = 0;
  for (const auto& item : tensors) data_bytes += item.second.nbytes();
  std::vector<uint8_t> bytes(kLengthBytes + header.size() + data_bytes);
  store_le<uint64_t>(header.size(), bytes.data());
  std::copy(header.begin(), header.end(), bytes.begin() + kLengthBytes);
  uint8_t* out = bytes.data() + kLengthBytes + header.size();
  for (const auto& item : tensors) {  // std::map: name order, as the header's offsets
    encode_tensor(item.second, out);
    out += item.second.nbytes();
  }
  return bytes;
}

TensorMap load_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  regular_file_size(path);  // a directory's "size" is not to be allocated
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  TINYMOE_CHECK(file.good(), kOp, "cannot open '", path, "' for reading");
  std::streamoff size = file.tellg();
  TINYMOE_CHECK(size >= 0, kOp, "cannot read the size of '", path, "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  file.seekg(0);
  file.read(reinterpret_cast<char*>(bytes.data()), size);
  TINYMOE_CHECK(file.gcount() == size, kOp, "cannot read '", path, "'");
  try {
    return parse_safetensors(bytes, metadata);
  } catch (const Error& error) {
    throw Error(std::string(error.what()) + " (in '" + path + "')");
  }
}

namespace {

// fsync: the bytes are on the disk before the rename makes them the file, so a machine that
// stops right after the rename does not leave an empty or partial file under the name.
bool flushed_to_disk(const std::string& path) {
  int descriptor = ::open(path.c_str(), O_RDONLY);
  if (descriptor < 0) return false;
  bool synced = ::fsync(descriptor) == 0;
  return ::close(descriptor) == 0 && synced;
}

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  std::vector<uint8_t> bytes = serialize_safetensors(tensors, metadata);
  // Written beside the target and renamed over it (atomic on POSIX file systems): a reader, or
  // the next run after a crash, sees the old file or the new one, never half of one.
  const std::string partial = path + ".partial";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  TINYMOE_CHECK(file.good(), kOp, "cannot open '", partial, "' for writing");
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  file.close();
  if (file.fail() || !flushed_to_disk(partial) || std::rename(partial.c_str(), path.c_str()) != 0) {
    std::remove(partial.c_str());
    fail(kOp, "cannot write '", path, "'");
  }
}

}  // namespace nn
}  // namespace tinymoe
