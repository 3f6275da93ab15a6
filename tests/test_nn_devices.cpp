// The device plumbing of nn on the cpu: Module::to (a no-op that keeps every handle on the
// device a module is on; an unusable device moves nothing), the in-place writes behind loads and
// optimizer steps (nn/in_place.h), and the id range check of routings (nn/id_range.h). The moves
// to a GPU and back are in tests/cuda/test_cuda_nn.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "nn/diagnostics.h"
#include "nn/id_range.h"
#include "nn/in_place.h"
#include "nn/moe_block.h"
#include "nn/router_presets.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;
using Catch::Contains;

namespace {

SparseMoEConfig small_deepseek_block() {
  SparseMoEConfig config;
  config.num_experts = 4;
  config.hidden_size = 3;
  config.intermediate_size = 2;
  config.shared = {SharedExpertKind::ungated, 1, 2};
  config.router = deepseek_v3(4, 2, 2, 1);
  return config;
}

std::vector<const Storage*> storages_of(const StateDict& state) {
  std::vector<const Storage*> out;
  for (const auto& entry : state) out.push_back(entry.second.storage().get());
  return out;
}

std::vector<double> values(const Tensor& t) { return t.detach().to(DType::f64).to_vector<double>(); }

}  // namespace

TEST_CASE("nn_devices: to(cpu) on a cpu module keeps every tensor, storage and gradient", "[nn_devices]") {
  Generator generator(1);
  SparseMoEBlock block(small_deepseek_block(), &generator);
  NamedTensors parameters = block.named_parameters();
  Tensor gradient = ones_like(parameters[0].second);
  parameters[0].second.set_grad(gradient);
  std::vector<const Storage*> before = storages_of(block.state_dict());
  block.to(Device::cpu());
  CHECK(storages_of(block.state_dict()) == before);
  NamedTensors after = block.named_parameters();
  REQUIRE(after.size() == parameters.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].first == parameters[i].first);
    CHECK(after[i].second.impl() == parameters[i].second.impl());
    CHECK(after[i].second.requires_grad());
    CHECK(after[i].second.is_leaf());
  }
  CHECK(parameters[0].second.grad().impl() == gradient.impl());
  CHECK(block.device() == Device::cpu());
}

TEST_CASE("nn_devices: to() a device that cannot be used moves nothing and names Module::to", "[nn_devices][errors]") {
  Generator generator(2);
  SparseMoEBlock block(small_deepseek_block(), &generator);
  StateDict before = block.state_dict();
  std::vector<std::vector<double>> values_before;
  for (const auto& entry : before) values_before.push_back(values(entry.second));
  // No build has a 100th card: an Error whether tinymoe was built with CUDA or not.
  CHECK_THROWS_WITH(block.to(Device::cuda(99)), Contains("Module::to") && Contains("cuda:99") &&
                                                    Contains("nothing was moved"));
  CHECK(storages_of(block.state_dict()) == storages_of(before));
  size_t i = 0;
  for (const auto& entry : block.state_dict()) {
    CHECK(entry.second.device() == Device::cpu());
    CHECK(values(entry.second) == values_before[i++]);
  }
  Tensor x = randn({5, 3}, DType::f32, &generator);
  CHECK(block.forward(x).output.shape() == x.shape());
}

TEST_CASE("nn_devices: write_values writes a range in place, copy_bytes moves host bytes", "[nn_devices]") {
  Tensor destination = zeros({2, 3}, DType::f64);
  void* storage = destination.raw_data();
  write_values(destination, from_vector(std::vector<double>{1, 2}, {2}), "test", 1);
  write_values(destination, from_vector(std::vector<double>{7}, {1}), "test", 5);
  CHECK(values(destination) == std::vector<double>{0, 1, 2, 0, 0, 7});
  CHECK(destination.raw_data() == storage);
  // A tensor written from a view of itself (a module loading its own state_dict): unchanged.
  write_values(destination, destination.flatten(), "test");
  CHECK(values(destination) == std::vector<double>{0, 1, 2, 0, 0, 7});
  // Overlapping host ranges: memmove semantics.
  double* data = destination.data<double>();
  copy_bytes(data + 1, Device::cpu(), data, Device::cpu(), 5 * sizeof(double), "test");
  CHECK(values(destination) == std::vector<double>{0, 0, 1, 2, 0, 0});

  CHECK_THROWS_WITH(write_values(destination, ones({2}, DType::f64), "load", 5), Contains("load") &&
                                                                                    Contains("element 5"));
  CHECK_THROWS_WITH(write_values(destination, ones({1}, DType::f32), "load"), Contains("load") && Contains("f32"));
  CHECK_THROWS_WITH(write_values(destination, ones({1}, DType::f64), "load", -1), Contains("load"));
  CHECK_THROWS_WITH(write_values(Tensor(), ones({1}, DType::f64), "load"), Contains("load"));
}

TEST_CASE("nn_devices: check_id_range names the op, the tensor and the first bad id", "[nn_devices][errors]") {
  Tensor ids = from_vector(std::vector<int64_t>{0, 3, 1, 2}, {2, 2});
  CHECK_NOTHROW(check_id_range(ids, 4, "ids", "an expert", "op"));
  CHECK_NOTHROW(check_id_range(zeros({0}, DType::i64), 0, "ids", "an expert", "op"));
  CHECK_THROWS_WITH(check_id_range(ids, 3, "routing ids", "an expert", "op"),
                    Contains("op") && Contains("routing ids[1] = 3 out of range") && Contains("an expert in [0, 3)"));
  CHECK_THROWS_WITH(check_id_range(from_vector(std::vector<int64_t>{-1}, {1}), 3, "ids", "a token", "op"),
                    Contains("ids[0] = -1 out of range"));
  CHECK_THROWS_WITH(check_id_range(ones({2}, DType::f32), 3, "ids", "a token", "op"), Contains("op") && Contains("i64"));
}

TEST_CASE("nn_devices: the router entropy counts scores <= 0 as 0, the rule its device path follows",
          "[nn_devices][diagnostics]") {
  Routing routing;
  routing.pair_expert = from_vector(std::vector<int64_t>{0, 1}, {2});
  // Row 0: (0.5, -1, 0.5) -> q = (1/2, 0, 1/2), entropy log 2; row 1: nothing positive -> 0.
  routing.scores = from_vector(std::vector<double>{0.5, -1.0, 0.5, -0.5, 0.0, -2.0}, {2, 3});
  CHECK(diagnose(routing).router_entropy == Approx(std::log(2.0) / 2));
}
