// nn/hf_checkpoint.h: a layer's tensors read out of a single-file or sharded HF checkpoint (only
// those under the prefix), run as `tinymoe moe` runs them, and every class of bad index.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/hf_checkpoint.h"
#include "nn/hf_layer.h"
#include "nn/safetensors.h"
#include "ops/elementwise.h"
#include "test_helpers.h"

using namespace tinymoe;
using namespace tinymoe::nn;
namespace fs = std::filesystem;

namespace {

const std::string kCase = std::string(TINYMOE_TEST_DATA_DIR) + "/hf/mixtral_prefixed/";
const std::string kPrefix = "model.layers.0.block_sparse_moe.";

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

bool same_values(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, tensor] : a)
    if (!b.count(name) || tensor.to_vector<float>() != b.at(name).to_vector<float>()) return false;
  return true;
}

// A checkpoint of two shards beside their index: the layer's tensors split over both, with an
// embedding and another layer (layer 1, the same names under its own prefix, other values).
struct ShardedCheckpoint {
  fs::path directory;
  TensorMap layer;  // the fixture's layer-0 tensors, as the checkpoint holds them
  nlohmann::json weight_map;

  explicit ShardedCheckpoint(const std::string& name) : directory(testing::temp_path(name)) {
    fs::remove_all(directory);
    fs::create_directories(directory);
    layer = load_safetensors(kCase + "layer.safetensors");
    TensorMap first{{"model.embed_tokens.weight", ones({5, 8})}}, second;
    bool to_first = true;
    for (const auto& [full_name, tensor] : layer) {
      (to_first ? first : second)[full_name] = tensor;
      second["model.layers.1.block_sparse_moe." + full_name.substr(kPrefix.size())] = mul(tensor, 2.0);
      to_first = !to_first;
    }
    write_shard("model-00001-of-00002.safetensors", first);
    write_shard("model-00002-of-00002.safetensors", second);
    write_index(weight_map);
  }
  ~ShardedCheckpoint() { fs::remove_all(directory); }

  void write_shard(const std::string& shard, const TensorMap& tensors) {
    save_safetensors((directory / shard).string(), tensors, {{"format", "pt"}});
    for (const auto& item : tensors) weight_map[item.first] = shard;
  }
  void write_index(const nlohmann::json& map) const {
    write_text(index(), nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump(1));
  }
  std::string index() const { return (directory / "model.safetensors.index.json").string(); }
};

}  // namespace

TEST_CASE("hf_checkpoint: a sharded checkpoint gives exactly the layer under the prefix", "[hf_checkpoint]") {
  ShardedCheckpoint checkpoint("sharded");
  TensorMap read = load_hf_weights(checkpoint.index(), kPrefix);
  CHECK(same_values(read, checkpoint.layer));
  // A hub snapshot directory finds its index.
  CHECK(same_values(load_hf_weights(checkpoint.directory.string(), kPrefix), checkpoint.layer));
  // The layer runs as `tinymoe moe` runs it and matches HuggingFace.
  HFLayerConfig config = parse_hf_layer_config(read_text(kCase + "config.json"));
  TensorMap result = run_hf_layer(config, read, load_safetensors(kCase + "input.safetensors"), {}, kPrefix);
  TensorMap expected = load_safetensors(kCase + "expected.safetensors");
  CHECK(compare_tensor_maps({{"output", result.at("output")}}, {{"output", expected.at("output")}})[0].passed);
  // The other layer is there too, under its own prefix.
  CHECK(load_hf_weights(checkpoint.index(), "model.layers.1.block_sparse_moe.").size() == checkpoint.layer.size());
  // A prefix that selects both layers is refused before anything is read, naming them.
  for (const char* loose : {"", "model.layers."})
    CHECK_THROWS_WITH(load_hf_weights(checkpoint.index(), loose),
                      Catch::Contains("selects tensors of 2 MoE layers") &&
                          Catch::Contains("'model.layers.0.block_sparse_moe.' 'model.layers.1.block_sparse_moe.'"));
}

TEST_CASE("hf_checkpoint: a single file gives only the tensors under the prefix", "[hf_checkpoint]") {
  const std::string path = testing::temp_path("whole_model.safetensors");
  TensorMap model = load_safetensors(kCase + "layer.safetensors");
  model["model.norm.weight"] = ones({8});
  save_safetensors(path, model);
  TensorMap read = load_hf_weights(path, kPrefix);
  CHECK(read.size() == model.size() - 1);
  CHECK_FALSE(read.count("model.norm.weight"));
  CHECK(load_hf_weights(path, "").size() == model.size());  // no prefix: every tensor
  // A directory with model.safetensors.
  const fs::path directory = testing::temp_path("snapshot");
  fs::create_directories(directory);
  fs::copy_file(path, directory / "model.safetensors", fs::copy_options::overwrite_existing);
  CHECK(load_hf_weights(directory.string(), kPrefix).size() == read.size());
  // A prefix nothing starts with names the layers' prefixes.
  CHECK_THROWS_WITH(load_hf_weights(path, "model.layers.7.mlp."),
                    Catch::Contains("hf_checkpoint") && Catch::Contains("no tensor of") &&
                        Catch::Contains("prefixes are 'model.layers.0.block_sparse_moe.'"));
  fs::remove_all(directory);
  fs::remove(path);
}

TEST_CASE("hf_checkpoint: bad indexes, shards and directories are Errors naming the problem",
          "[hf_checkpoint][errors]") {
  ShardedCheckpoint checkpoint("bad_index");
  const std::string index = checkpoint.index();
  auto load = [&] { return load_hf_weights(index, kPrefix); };

  write_text(index, "{\"weight_map\": {");
  CHECK_THROWS_WITH(load(), Catch::Contains("hf_checkpoint") && Catch::Contains("not valid JSON"));
  write_text(index, "{\"metadata\": {}}");
  CHECK_THROWS_WITH(load(), Catch::Contains("\"weight_map\" object"));
  write_text(index, "[1]");
  CHECK_THROWS_WITH(load(), Catch::Contains("\"weight_map\" object"));

  nlohmann::json map = checkpoint.weight_map;
  map[kPrefix + "gate.weight"] = 3;
  checkpoint.write_index(map);
  CHECK_THROWS_WITH(load(), Catch::Contains("not a shard file name"));
  // Shards sit beside the index: a directory part is refused, even for another layer's tensor.
  for (const char* outside : {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/shard.safetensors", ".."}) {
    map = checkpoint.weight_map;
    map["model.embed_tokens.weight"] = outside;
    checkpoint.write_index(map);
    CHECK_THROWS_WITH(load(), Catch::Contains("not a file name beside the index"));
  }
  map = checkpoint.weight_map;
  map["model.embed_tokens.weight"] = "pytorch_model-00001-of-00002.bin";
  checkpoint.write_index(map);
  CHECK_THROWS_WITH(load(), Catch::Contains("not a .safetensors shard"));
  map = checkpoint.weight_map;
  map[kPrefix + "gate.weight"] = "model-00009-of-00002.safetensors";
  checkpoint.write_index(map);
  CHECK_THROWS_WITH(load(), Catch::Contains("safetensors") && Catch::Contains("model-00009-of-00002"));
  // The index sends a tensor to the shard that lacks it.
  map = checkpoint.weight_map;
  const std::string moved = kPrefix + "gate.weight";
  map[moved] = map[moved] == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                  : "model-00001-of-00002.safetensors";
  checkpoint.write_index(map);
  CHECK_THROWS_WITH(load(), Catch::Contains("maps '" + moved + "'") && Catch::Contains("has no such tensor"));
  // A shard that does not parse is rejected whole.
  checkpoint.write_index(checkpoint.weight_map);
  write_text(checkpoint.directory / "model-00002-of-00002.safetensors", "not a safetensors file");
  CHECK_THROWS_WITH(load(), Catch::Contains("safetensors") && Catch::Contains("model-00002-of-00002"));

  const fs::path empty = testing::temp_path("empty_snapshot");
  fs::create_directories(empty);
  CHECK_THROWS_WITH(load_hf_weights(empty.string(), kPrefix), Catch::Contains("holds neither"));
  fs::remove_all(empty);
}
