// safetensors: a hand-assembled fixture (interop, BF16/F16 decoding), exact writer bytes, round
// trips, one test per class of malformed file, and a seeded mutation fuzzer.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::temp_path;
using nn::parse_safetensors;
using nn::serialize_safetensors;
using Bytes = std::vector<uint8_t>;

namespace {

void append_u64_le(Bytes& bytes, uint64_t value) {
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// A file from a header string and a data buffer, laid out by hand (no library code involved).
Bytes file_from(const std::string& header, const Bytes& buffer) {
  Bytes bytes;
  append_u64_le(bytes, header.size());
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), buffer.begin(), buffer.end());
  return bytes;
}

// A one-tensor header: {"name":{"dtype":..,"shape":..,"data_offsets":..}}.
std::string one_entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"t\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
}

std::string rejection(const Bytes& bytes) {
  try {
    parse_safetensors(bytes);
  } catch (const Error& error) {
    return error.what();
  }
  return "(accepted)";
}

// The fixture: five tensors whose data lies in an order other than name order.
//   bf BF16 [4]   bytes [0, 8):   1.0, -2.5, +inf, 0.33203125
//   h  F16  [2,4] bytes [8, 24):  1.0, -2.0, 0.333251953125, 65504, 2^-24, -0.0, +inf, nan
//   f  F32  [2]   bytes [24, 32): 1.5, -0.1f
//   d  F64  [1]   bytes [32, 40): 3.141592653589793
//   i  I64  [2]   bytes [40, 56): -2, 2^40 + 5
Bytes hand_made_fixture() {
  std::string header =
      "{\"__metadata__\":{\"format\":\"pt\",\"source\":\"by hand\"},"
      "\"bf\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
      "\"h\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[8,24]},"
      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
      "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[32,40]},"
      "\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[40,56]}}";
  Bytes buffer = {
      0x80, 0x3F, 0x20, 0xC0, 0x80, 0x7F, 0xAA, 0x3E,                                  // bf
      0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35, 0xFF, 0x7B, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7C,  // h
      0x00, 0x7E,                                                                        // h
      0x00, 0x00, 0xC0, 0x3F, 0xCD, 0xCC, 0xCC, 0xBD,                                    // f
      0x18, 0x2D, 0x44, 0x54, 0xFB, 0x21, 0x09, 0x40,                                    // d
      0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};  // i
  return file_from(header, buffer);
}

}  // namespace

TEST_CASE("safetensors: reads a hand-assembled file, BF16 and F16 exactly", "[safetensors]") {
  nn::SafetensorsMetadata metadata;
  nn::TensorMap tensors = parse_safetensors(hand_made_fixture(), &metadata);
  CHECK(metadata == nn::SafetensorsMetadata{{"format", "pt"}, {"source", "by hand"}});
  REQUIRE(tensors.size() == 5);

  Tensor bf = tensors.at("bf");
  CHECK(bf.dtype() == DType::f32);
  CHECK(bf.shape() == Shape{4});
  CHECK(bf.to_vector<float>() == std::vector<float>{1.0f, -2.5f, INFINITY, 0.33203125f});

  Tensor h = tensors.at("h");
  CHECK(h.dtype() == DType::f32);
  CHECK(h.shape() == Shape{2, 4});
  std::vector<float> halves = h.to_vector<float>();
  CHECK(halves[0] == 1.0f);
  CHECK(halves[1] == -2.0f);
  CHECK(halves[2] == 0.333251953125f);
  CHECK(halves[3] == 65504.0f);
  CHECK(halves[4] == std::ldexp(1.0f, -24));  // the smallest subnormal
  CHECK(halves[5] == 0.0f);
  CHECK(std::signbit(halves[5]));
  CHECK(halves[6] == INFINITY);
  CHECK(std::isnan(halves[7]));

  CHECK(tensors.at("f").to_vector<float>() == std::vector<float>{1.5f, -0.1f});
  CHECK(tensors.at("d").dtype() == DType::f64);
  CHECK(tensors.at("d").to_vector<double>() == std::vector<double>{3.141592653589793});
  CHECK(tensors.at("i").dtype() == DType::i64);
  CHECK(tensors.at("i").to_vector<int64_t>() == std::vector<int64_t>{-2, (int64_t(1) << 40) + 5});
}

TEST_CASE("safetensors: F16 subnormals and the largest subnormal", "[safetensors]") {
  // 0x03FF = 1023 * 2^-24; 0x0400 = 2^-14, the smallest normal; 0x8001 = -2^-24.
  Bytes bytes = file_from(one_entry("\"F16\"", "[3]", "[0,6]"), {0xFF, 0x03, 0x00, 0x04, 0x01, 0x80});
  std::vector<float> values = parse_safetensors(bytes).at("t").to_vector<float>();
  CHECK(values == std::vector<float>{1023.0f * std::ldexp(1.0f, -24), std::ldexp(1.0f, -14), -std::ldexp(1.0f, -24)});
}

TEST_CASE("safetensors: writes the reference layout byte for byte", "[safetensors]") {
  nn::TensorMap tensors = {{"b", from_vector(std::vector<int64_t>{-2}, {})},
                           {"a", from_vector(std::vector<float>{1.5f, -0.1f}, {2})}};
  Bytes written = serialize_safetensors(tensors, {{"format", "pt"}});
  std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes expected = file_from(header, {0x00, 0x00, 0xC0, 0x3F, 0xCD, 0xCC, 0xCC, 0xBD,    // a
                                      0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});  // b
  CHECK(written == expected);
  CHECK((written.size() - 16) % 8 == 0);
  // Without metadata the key is left out.
  Bytes plain = serialize_safetensors({{"a", zeros({1})}});
  CHECK(std::string(plain.begin() + 8, plain.end() - 4).find("__metadata__") == std::string::npos);
}

TEST_CASE("safetensors: round trip of every dtype, scalars and empty tensors", "[safetensors]") {
  Generator generator(5);
  nn::TensorMap tensors = {{"weights.f32", randn({3, 4}, DType::f32, &generator)},
                           {"weights.f64", randn({2, 2, 2}, DType::f64, &generator)},
                           {"ids", randint(-1000, 1000, {5}, &generator)},
                           {"scalar", scalar(2.5, DType::f64)},
                           {"empty", zeros({0, 3})}};
  nn::SafetensorsMetadata metadata_in = {{"step", "12"}, {"note", "ünïcode"}};
  nn::SafetensorsMetadata metadata_out;
  std::string path = temp_path("tinymoe_test_safetensors_roundtrip.safetensors");
  nn::save_safetensors(path, tensors, metadata_in);
  nn::TensorMap loaded = nn::load_safetensors(path, &metadata_out);
  std::remove(path.c_str());
  CHECK(metadata_out == metadata_in);
  REQUIRE(loaded.size() == tensors.size());
  for (const auto& entry : tensors) {
    const Tensor& back = loaded.at(entry.first);
    CHECK(back.shape() == entry.second.shape());
    CHECK(back.dtype() == entry.second.dtype());
    // Same bytes: compare the serialized forms of each tensor alone.
    CHECK(serialize_safetensors({{"x", back}}) == serialize_safetensors({{"x", entry.second}}));
  }
}

TEST_CASE("safetensors: the header alone names the tensors load_safetensors would load", "[safetensors]") {
  std::string path = temp_path("tinymoe_test_header_only.safetensors");
  const Bytes fixture = hand_made_fixture();
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(fixture.data()), static_cast<std::streamsize>(fixture.size()));
  nn::SafetensorsMetadata metadata, loaded_metadata;
  std::vector<nn::SafetensorsTensorInfo> infos = nn::read_safetensors_header(path, &metadata);
  nn::TensorMap loaded = nn::load_safetensors(path, &loaded_metadata);
  CHECK(metadata == loaded_metadata);
  REQUIRE(infos.size() == loaded.size());
  for (const nn::SafetensorsTensorInfo& info : infos) {
    INFO(info.name);
    REQUIRE(loaded.count(info.name) == 1);
    CHECK(info.shape == loaded.at(info.name).shape());
  }
  // The file's own dtype names (BF16 and F16 load as f32).
  std::vector<std::string> dtypes;
  for (const auto& info : infos) dtypes.push_back(info.dtype);
  CHECK(std::find(dtypes.begin(), dtypes.end(), "BF16") != dtypes.end());
  // The offsets are checked against the file's size: one byte short is refused.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  CHECK_THROWS_WITH(nn::read_safetensors_header(path), Catch::StartsWith("safetensors: ") && Catch::Contains(path));
  std::remove(path.c_str());
}

TEST_CASE("safetensors: load_safetensors_where reads the chosen tensors, after checking the whole header",
          "[safetensors]") {
  std::string path = temp_path("tinymoe_test_where.safetensors");
  Bytes fixture = hand_made_fixture();
  auto write = [&path](const Bytes& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  };
  write(fixture);
  nn::SafetensorsMetadata metadata;
  nn::TensorMap chosen =
      nn::load_safetensors_where(path, [](const std::string& name) { return name == "bf" || name == "i"; }, &metadata);
  nn::TensorMap all = nn::load_safetensors(path);
  REQUIRE(chosen.size() == 2);
  CHECK(chosen.at("bf").to_vector<float>() == all.at("bf").to_vector<float>());
  CHECK(chosen.at("i").to_vector<int64_t>() == all.at("i").to_vector<int64_t>());
  CHECK(metadata.at("source") == "by hand");
  CHECK(nn::load_safetensors_where(path, [](const std::string&) { return false; }).empty());
  // A tensor the choice skips still makes the file invalid: one byte short of the last tensor.
  fixture.pop_back();
  write(fixture);
  CHECK_THROWS_WITH(nn::load_safetensors_where(path, [](const std::string& name) { return name == "bf"; }),
                    Catch::StartsWith("safetensors: ") && Catch::Contains(path));
  std::remove(path.c_str());
}

TEST_CASE("safetensors: a tensor of a dtype tinymoe does not read blocks only its own read", "[safetensors]") {
  // An MXFP4-style checkpoint: U8 blocks beside an F32 bias, and a packed F4 pair.
  const std::string header =
      "{\"blocks\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]},"
      "\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
      "\"packed\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[8,9]}}";
  Bytes buffer = {1, 2, 3, 4, 0x00, 0x00, 0xC0, 0x3F, 0x21};
  std::string path = temp_path("tinymoe_test_mxfp4.safetensors");
  Bytes bytes = file_from(header, buffer);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  nn::TensorMap bias = nn::load_safetensors_where(path, [](const std::string& name) { return name == "bias"; });
  CHECK(bias.at("bias").to_vector<float>() == std::vector<float>{1.5f});
  CHECK_THROWS_WITH(nn::load_safetensors_where(path, [](const std::string& name) { return name != "bias"; }),
                    Catch::Contains("tensor 'blocks' has dtype U8, which tinymoe does not read"));
  CHECK_THROWS_WITH(nn::load_safetensors(path), Catch::Contains("does not read"));  // the whole file: refused
  std::vector<std::string> dtypes;
  for (const nn::SafetensorsTensorInfo& info : nn::read_safetensors_header(path)) dtypes.push_back(info.dtype);
  CHECK(dtypes == std::vector<std::string>{"F32", "U8", "F4"});  // name order: bias, blocks, packed
  // Their bytes are checked all the same: three F4 values do not fill whole bytes.
  CHECK(rejection(file_from(one_entry("\"F4\"", "[3]", "[0,2]"), Bytes(2))).find("does not fill whole bytes") !=
        std::string::npos);
  CHECK(rejection(file_from(one_entry("\"U8\"", "[3]", "[0,4]"), Bytes(4))).find("needs 3") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("safetensors: file errors name the path", "[safetensors][errors]") {
  std::string missing = temp_path("tinymoe_no_such_file.safetensors");
  CHECK_THROWS_WITH(nn::load_safetensors(missing), Catch::Contains("safetensors") &&
                                                       Catch::Contains("is not a file that can be read") &&
                                                       Catch::Contains(missing));
  // A directory is refused before its "size" (what tellg reports for one) is allocated.
  std::string directory = std::filesystem::temp_directory_path().string();
  CHECK_THROWS_WITH(nn::load_safetensors(directory), Catch::Contains("is not a file that can be read"));
  std::string corrupt = temp_path("tinymoe_test_corrupt.safetensors");
  std::ofstream(corrupt, std::ios::binary) << "abc";
  CHECK_THROWS_WITH(nn::load_safetensors(corrupt), Catch::Contains("fewer than the 8-byte") && Catch::Contains(corrupt));
  std::remove(corrupt.c_str());
}

TEST_CASE("safetensors: rejects each kind of malformed file", "[safetensors][errors]") {
  const Bytes eight = {0, 0, 0, 0, 0, 0, 0, 0};
  auto rejects = [](const Bytes& bytes, const std::string& problem) {
    std::string message = rejection(bytes);
    INFO(message);
    CHECK_THAT(message, Catch::StartsWith("safetensors: ") && Catch::Contains(problem));
  };
  // Nesting a million deep (printing or freeing it would overflow the stack), in the metadata and
  // in a shape; and a zero dimension does not hide an overflowing product of the others.
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  rejects(file_from("{\"__metadata__\":{\"a\":" + deep + "}}", {}), "nests deeper than 8 levels");
  rejects(file_from(one_entry("\"F32\"", deep, "[0,0]"), {}), "nests deeper than 8 levels");
  rejects(file_from(one_entry("\"F32\"", "[0,4611686018427387904,4611686018427387904]", "[0,0]"), {}),
          "the element count overflows");
  // Lengths.
  rejects({1, 2, 3}, "fewer than the 8-byte header length");
  Bytes past_end;
  append_u64_le(past_end, 100);
  past_end.push_back('{');
  rejects(past_end, "runs past the end of the file");
  Bytes huge;
  append_u64_le(huge, uint64_t(1) << 63);
  rejects(huge, "exceeds the limit");
  // JSON structure.
  rejects(file_from("{\"t\":", {}), "not valid JSON");
  rejects(file_from("", {}), "not valid JSON");
  rejects(file_from("[1, 2]", {}), "must be a JSON object");
  rejects(file_from("{\"t\": 3}", {}), "must be described by an object");
  rejects(file_from("{\"t\":{\"shape\":[],\"data_offsets\":[0,0]}}", {}), "has no \"dtype\"");
  rejects(file_from("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}", {}), "has no \"shape\"");
  rejects(file_from("{\"t\":{\"dtype\":\"F32\",\"shape\":[]}}", {}), "has no \"data_offsets\"");
  rejects(file_from("{\"__metadata__\":[]}", {}), "\"__metadata__\" must be an object");
  rejects(file_from("{\"__metadata__\":{\"step\":3}}", {}), "must be a string");
  // Duplicates: a repeated tensor name, a repeated field.
  std::string entry = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
  rejects(file_from("{\"t\":" + entry + ",\"t\":" + entry + "}", Bytes(4)), "duplicate tensor name 't'");
  rejects(file_from("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", Bytes(4)),
          "duplicate key 'dtype'");
  // dtypes.
  rejects(file_from(one_entry("\"F31\"", "[1]", "[0,4]"), Bytes(4)), "unknown dtype 'F31'");
  rejects(file_from(one_entry("\"I32\"", "[1]", "[0,4]"), Bytes(4)), "does not read");
  rejects(file_from(one_entry("32", "[1]", "[0,4]"), Bytes(4)), "dtype must be a string");
  // Shapes.
  rejects(file_from(one_entry("\"F32\"", "[-1]", "[0,4]"), Bytes(4)), "non-negative integers");
  rejects(file_from(one_entry("\"F32\"", "[1.0]", "[0,4]"), Bytes(4)), "non-negative integers");
  rejects(file_from(one_entry("\"F32\"", "[\"1\"]", "[0,4]"), Bytes(4)), "non-negative integers");
  rejects(file_from(one_entry("\"F32\"", "4", "[0,4]"), Bytes(4)), "shape must be an array");
  rejects(file_from(one_entry("\"F32\"", "[9223372036854775808]", "[0,4]"), Bytes(4)), "is too large");
  rejects(file_from(one_entry("\"F32\"", "[4294967296,4294967296]", "[0,4]"), Bytes(4)), "element count overflows");
  rejects(file_from(one_entry("\"F32\"", "[4611686018427387904]", "[0,4]"), Bytes(4)), "byte size overflows");
  // Offsets.
  rejects(file_from(one_entry("\"F32\"", "[1]", "[0]"), Bytes(4)), "two non-negative integers");
  rejects(file_from(one_entry("\"F32\"", "[1]", "[-4,0]"), Bytes(4)), "two non-negative integers");
  rejects(file_from(one_entry("\"F32\"", "[1]", "[4,0]"), Bytes(4)), "begin after they end");
  rejects(file_from(one_entry("\"F32\"", "[1]", "[0,8]"), Bytes(4)), "run past the data buffer of 4 bytes");
  rejects(file_from(one_entry("\"F32\"", "[3]", "[0,8]"), Bytes(8)), "hold 8 bytes but F32 [3] needs 12");
  // Coverage of the buffer.
  auto two = [](const std::string& a, const std::string& b) {
    return "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + a +
           "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + b + "}}";
  };
  rejects(file_from(two("[0,8]", "[4,12]"), Bytes(12)), "overlaps");
  rejects(file_from(two("[0,8]", "[0,8]"), Bytes(8)), "overlaps");
  rejects(file_from(two("[0,8]", "[12,20]"), Bytes(20)), "bytes [8, 12) of the data buffer belong to no tensor");
  rejects(file_from(two("[0,8]", "[8,16]"), Bytes(20)), "the data buffer has 20 bytes but the tensors cover 16");
  rejects(file_from("{}", eight), "has 8 bytes but the tensors cover 0");
  // Nothing half-loaded: a failure leaves the caller's metadata alone.
  nn::SafetensorsMetadata metadata = {{"kept", "yes"}};
  CHECK_THROWS_AS(parse_safetensors(file_from("{\"__metadata__\":{\"a\":\"b\"},\"t\":[]}", {}), &metadata), Error);
  CHECK(metadata == nn::SafetensorsMetadata{{"kept", "yes"}});
}

TEST_CASE("safetensors: accepts what the spec allows", "[safetensors]") {
  // Zero-size tensors sharing an offset, trailing-space padding, an empty file.
  std::string header =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"b\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
      "\"c\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}     ";
  nn::TensorMap tensors = parse_safetensors(file_from(header, Bytes(8)));
  CHECK(tensors.at("b").shape() == Shape{0, 5});
  CHECK(tensors.at("c").item() == 0.0);
  CHECK(parse_safetensors(file_from("{}", {})).empty());
}

TEST_CASE("safetensors: writer errors", "[safetensors][errors]") {
  CHECK_THROWS_WITH(serialize_safetensors({{"__metadata__", zeros({1})}}),
                    Catch::Contains("safetensors") && Catch::Contains("__metadata__"));
  CHECK_THROWS_WITH(serialize_safetensors({{"t", Tensor()}}),
                    Catch::Contains("safetensors") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(serialize_safetensors({{std::string("bad\xff"), zeros({1})}}),
                    Catch::Contains("safetensors") && Catch::Contains("UTF-8"));
  CHECK_THROWS_WITH(nn::save_safetensors("/nonexistent-dir/x.safetensors", {{"t", zeros({1})}}),
                    Catch::Contains("safetensors") && Catch::Contains("cannot open"));
}

// Mutates valid files and requires every result to parse into consistent tensors or to be
// rejected with tinymoe::Error; anything else (another exception, a crash, an ASan report)
// fails. CI also runs this under AddressSanitizer and UndefinedBehaviorSanitizer.
TEST_CASE("safetensors: fuzzed files parse consistently or throw Error", "[safetensors][fuzz]") {
  Generator generator(2024);
  std::vector<Bytes> seeds = {hand_made_fixture(),
                              serialize_safetensors({{"w", randn({3, 2}, DType::f32, &generator)},
                                                     {"ids", arange(4)},
                                                     {"s", scalar(1.0, DType::f64)}},
                                                    {{"format", "pt"}}),
                              file_from(one_entry("\"F16\"", "[2]", "[0,4]"), {1, 2, 3, 4})};
  const std::vector<std::string> tokens = {"F32", "F16", "BF16", "I64", "F64", "I32", "[", "]", "{", "}",
                                           ",", ":", "\"", "0", "-1", "8", "99999999999999999999", "1e3",
                                           "__metadata__", "shape", "data_offsets", "dtype"};
  auto random_index = [&](size_t size) { return static_cast<size_t>(generator.integer(0, int64_t(size))); };
  auto set_header_length = [](Bytes& bytes, uint64_t length) {
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(length >> (8 * i));
  };
  auto header_length = [](const Bytes& bytes) {
    uint64_t length = 0;
    for (int i = 0; i < 8; ++i) length |= uint64_t(bytes[i]) << (8 * i);
    return length;
  };

  int accepted = 0, rejected = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    Bytes bytes = seeds[random_index(seeds.size())];
    size_t header_end = 8 + header_length(bytes);
    int mutations = 1 + int(generator.integer(0, 3));
    for (int m = 0; m < mutations && bytes.size() > 8; ++m) {
      switch (generator.integer(0, 6)) {
        case 0:  // flip a byte anywhere
          bytes[random_index(bytes.size())] ^= static_cast<uint8_t>(1 + generator.integer(0, 255));
          break;
        case 1:  // truncate
          bytes.resize(random_index(bytes.size()));
          break;
        case 2:  // change the header length a little, or to anything
          set_header_length(bytes, generator.integer(0, 2) ? header_length(bytes) + generator.integer(-9, 10)
                                                           : generator.next());
          break;
        case 3: {  // replace a header character with a JSON token, keeping the length field right
          size_t at = 8 + random_index(std::min(bytes.size(), header_end) - 8);
          const std::string& token = tokens[random_index(tokens.size())];
          bytes.erase(bytes.begin() + at);
          bytes.insert(bytes.begin() + at, token.begin(), token.end());
          header_end += token.size() - 1;
          set_header_length(bytes, header_end - 8);
          break;
        }
        case 4: {  // change one digit of the header (offsets, shapes)
          size_t at = 8 + random_index(std::min(bytes.size(), header_end) - 8);
          if (bytes[at] >= '0' && bytes[at] <= '9') bytes[at] = static_cast<uint8_t>('0' + generator.integer(0, 10));
          break;
        }
        default:  // grow or shrink the data buffer
          if (generator.integer(0, 2)) bytes.resize(bytes.size() + 1 + random_index(16), 0x41);
          else bytes.resize(bytes.size() - std::min<size_t>(bytes.size() - 8, 1 + random_index(8)));
          break;
      }
    }
    try {
      nn::TensorMap tensors = parse_safetensors(bytes);
      size_t total_bytes = 0;
      for (const auto& entry : tensors) {
        const Tensor& tensor = entry.second;
        for (int64_t extent : tensor.shape()) REQUIRE(extent >= 0);
        total_bytes += tensor.nbytes();
        // Every accepted tensor survives a write and a read unchanged.
        Bytes again = serialize_safetensors({{"x", tensor}});
        REQUIRE(serialize_safetensors(parse_safetensors(again)) == again);
      }
      REQUIRE(total_bytes <= 2 * bytes.size());  // BF16/F16 widen to f32: at most twice the file
      ++accepted;
    } catch (const Error& error) {
      REQUIRE_THAT(error.what(), Catch::StartsWith("safetensors: "));
      ++rejected;
    }
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);
}
