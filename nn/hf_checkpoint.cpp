#include "nn/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/hf_layer.h"

namespace tinymoe::nn {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kOp = "hf_checkpoint";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";

bool starts_with(const std::string& text, const std::string& start) { return text.compare(0, start.size(), start) == 0; }

// A hub snapshot directory's checkpoint file: the sharded index, else the single file.
std::string checkpoint_file(const std::string& path) {
  std::error_code error;
  if (!fs::is_directory(path, error)) return path;
  for (const char* name : {kIndexName, kSingleFileName})
    if (fs::is_regular_file(fs::path(path) / name, error)) return (fs::path(path) / name).string();
  fail(kOp, "the directory '", path, "' holds neither ", kIndexName, " nor ", kSingleFileName);
}

// What a user could pass as --prefix: the MoE layers' prefixes, or else the first names.
std::string prefix_suggestions(const std::vector<std::string>& names) {
  const std::set<std::string> layers = hf_layer_prefixes(names);
  std::ostringstream text;
  size_t shown = 0;
  if (!layers.empty()) {
    text << "its MoE layers' prefixes are";
    for (auto it = layers.begin(); it != layers.end() && shown < 3; ++it, ++shown) text << " '" << *it << "'";
    if (layers.size() > shown) text << " ... (" << layers.size() << " in all)";
    return text.str();
  }
  text << "its names are";
  for (size_t i = 0; i < names.size() && i < 3; ++i) text << " '" << names[i] << "'";
  if (names.size() > 3) text << " ...";
  return text.str();
}

// Before any data is read: the prefix must select something, and one MoE layer at most (an empty
// or cut-short prefix of a whole checkpoint would read every layer, gigabytes, only to fail).
void check_selection(const std::vector<std::string>& selected, const std::vector<std::string>& all_names,
                     const std::string& path, const std::string& prefix) {
  TINYMOE_CHECK(!selected.empty(), kOp, "no tensor of '", path, "' starts with the prefix '", prefix, "'; ",
                prefix_suggestions(all_names));
  const std::set<std::string> layers = hf_layer_prefixes(selected);
  TINYMOE_CHECK(layers.size() <= 1, kOp, "the prefix '", prefix, "' selects tensors of ", layers.size(),
                " MoE layers of '", path, "': pass one layer's whole prefix; ", prefix_suggestions(selected));
}

json read_index(const std::string& path) {
  std::ifstream file(path);
  TINYMOE_CHECK(file.good(), kOp, "cannot read '", path, "'");
  json index;
  try {
    index = json::parse(file);
  } catch (const json::exception& error) {
    fail(kOp, "'", path, "' is not valid JSON: ", error.what());
  }
  TINYMOE_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), kOp, "'", path,
                "' must be an object with a \"weight_map\" object (a sharded checkpoint's index)");
  return index;
}

// A shard must be a plain file name: the index's directory is where shards are, and a name with a
// directory part could point anywhere. And a safetensors one: a pytorch_model.bin.index.json maps
// to pickles, which tinymoe does not read.
void check_shard_name(const std::string& shard, const std::string& tensor, const std::string& path) {
  const fs::path as_path(shard);
  TINYMOE_CHECK(!shard.empty() && as_path.filename() == as_path && shard != "." && shard != "..", kOp, "'", path,
                "' maps '", tensor, "' to '", shard, "', which is not a file name beside the index");
  TINYMOE_CHECK(as_path.extension() == ".safetensors", kOp, "'", path, "' maps '", tensor, "' to '", shard,
                "', which is not a .safetensors shard (tinymoe reads safetensors checkpoints only)");
}

// The index's tensors under the prefix, grouped by shard, after checking the whole weight map.
std::map<std::string, std::set<std::string>> shards_for_prefix(const json& weight_map, const std::string& prefix,
                                                               const std::string& path,
                                                               std::vector<std::string>* all_names) {
  std::map<std::string, std::set<std::string>> shards;
  for (auto item = weight_map.begin(); item != weight_map.end(); ++item) {
    TINYMOE_CHECK(item.value().is_string(), kOp, "'", path, "' maps '", item.key(), "' to ", item.value().dump(),
                  ", not a shard file name");
    const std::string shard = item.value().get<std::string>();
    check_shard_name(shard, item.key(), path);
    all_names->push_back(item.key());
    if (starts_with(item.key(), prefix)) shards[shard].insert(item.key());
  }
  return shards;
}

TensorMap load_from_index(const std::string& path, const std::string& prefix) {
  std::vector<std::string> all_names, selected;
  const auto shards = shards_for_prefix(read_index(path)["weight_map"], prefix, path, &all_names);
  for (const auto& shard : shards) selected.insert(selected.end(), shard.second.begin(), shard.second.end());
  check_selection(selected, all_names, path, prefix);
  const fs::path directory = fs::path(path).parent_path();
  TensorMap tensors;
  for (const auto& [shard, wanted] : shards) {
    const std::string shard_path = (directory / shard).string();
    TensorMap found = load_safetensors_where(shard_path, [&wanted](const std::string& name) { return wanted.count(name) > 0; });
    for (const std::string& name : wanted)
      TINYMOE_CHECK(found.count(name), kOp, "'", path, "' maps '", name, "' to '", shard, "', which has no such tensor");
    tensors.insert(found.begin(), found.end());
  }
  return tensors;
}

TensorMap load_from_file(const std::string& path, const std::string& prefix) {
  std::vector<std::string> all_names, selected;
  for (const SafetensorsTensorInfo& info : read_safetensors_header(path)) {
    all_names.push_back(info.name);
    if (starts_with(info.name, prefix)) selected.push_back(info.name);
  }
  check_selection(selected, all_names, path, prefix);
  return load_safetensors_where(path, [&prefix](const std::string& name) { return starts_with(name, prefix); });
}

}  // namespace

TensorMap load_hf_weights(const std::string& path, const std::string& prefix) {
  const std::string file = checkpoint_file(path);
  const std::string json_suffix = ".json";
  const bool index = file.size() >= json_suffix.size() &&
                     file.compare(file.size() - json_suffix.size(), json_suffix.size(), json_suffix) == 0;
  return index ? load_from_index(file, prefix) : load_from_file(file, prefix);
}

}  // namespace tinymoe::nn
