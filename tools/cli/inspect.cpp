// `tinymoe inspect FILE`: what a safetensors file holds, from its header alone (a file larger than
// memory is fine): its metadata, its tensors grouped by the first part of their names, and for a
// training checkpoint (nn/checkpoint.h) the step, optimizer and rank. --tensors lists every tensor
// with its dtype as the file spells it.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tools/cli/commands.h"

namespace tinymoe::cli {
namespace {

struct Group {
  int64_t tensors = 0, elements = 0;
};

// "layers.0.mlp.w1" -> "layers"; a name without a dot is its own group.
std::string group_of(const std::string& name) { return name.substr(0, name.find('.')); }

void print_checkpoint_line(const nn::SafetensorsMetadata& metadata) {
  auto value = [&](const char* key) {
    auto found = metadata.find(key);
    return found == metadata.end() ? std::string("-") : found->second;
  };
  if (value("format") != "tinymoe-checkpoint") return;
  std::cout << "tinymoe checkpoint (version " << value("version") << "): step " << value("step") << ", optimizer "
            << value("optimizer") << ", rank " << value("rank") << " of " << value("ranks") << "\n";
}

void run_inspect(const std::string& path, bool list_tensors) {
  nn::SafetensorsMetadata metadata;
  std::vector<nn::SafetensorsTensorInfo> tensors = nn::read_safetensors_header(path, &metadata);
  std::map<std::string, Group> groups;
  Group total;
  for (const nn::SafetensorsTensorInfo& tensor : tensors) {
    for (Group* group : {&groups[group_of(tensor.name)], &total}) {
      group->tensors += 1;
      group->elements += shape_numel(tensor.shape);
    }
  }
  std::cout << path << ": " << std::filesystem::file_size(path) << " bytes, " << total.tensors << " tensors, "
            << total.elements << " elements\n";
  print_checkpoint_line(metadata);
  if (!metadata.empty()) std::cout << "metadata:\n";
  for (const auto& [key, value] : metadata) std::cout << "  " << key << ": " << value << "\n";
  std::cout << "tensors by group:\n";
  for (const auto& [name, group] : groups)
    std::cout << "  " << std::left << std::setw(28) << name << std::right << std::setw(6) << group.tensors
              << " tensors " << std::setw(12) << group.elements << " elements\n";
  if (!list_tensors) return;
  std::cout << "tensors:\n";
  for (const nn::SafetensorsTensorInfo& tensor : tensors)
    std::cout << "  " << std::left << std::setw(48) << tensor.name << " " << tensor.dtype << " "
              << shape_str(tensor.shape) << "\n";
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* command = app.add_subcommand("inspect", "Show what a safetensors file holds (weights, checkpoints)");
  auto path = std::make_shared<std::string>();
  auto list_tensors = std::make_shared<bool>(false);
  command->add_option("file", *path, "a .safetensors file")->required();
  command->add_flag("--tensors", *list_tensors, "list every tensor with its dtype and shape");
  command->callback([path, list_tensors] { run_inspect(*path, *list_tensors); });
}

}  // namespace tinymoe::cli
