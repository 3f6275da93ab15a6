// The small language model with expert-parallel MoE layers (MoETransformerConfig::expert_parallel)
// under mpirun, against the single-process model on the whole batch: each rank's logits and
// next-token loss, and, once the replicated gradients are summed over the ranks, every gradient;
// DeepSeek-V3's bias and ReMoE's L1 coefficient move as the single model's do.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "nn/expert_parallel_state.h"
#include "nn/moe_transformer.h"
#include "nn/optim.h"
#include "nn/router_presets.h"
#include "ops/loss.h"
#include "ops/shape.h"
#include "tests/small_configs.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

namespace {

MoETransformerConfig small_config(const RouterConfig& router, int64_t vocabulary, int64_t length) {
  return tinymoe::testing::tiny_lm_config(router, DType::f64, 2, vocabulary, length);
}

// Non-fatal, as in test_mpi_expert_parallel.cpp: every rank must reach every collective.
void check_close(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  CHECK((actual.defined() && actual.shape() == expected.shape()));
  if (!actual.defined() || actual.shape() != expected.shape()) return;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  size_t mismatches = 0;
  for (size_t i = 0; i < a.size(); ++i) mismatches += a[i] == Approx(e[i]).epsilon(1e-11).margin(1e-13) ? 0 : 1;
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("mpi moe transformer: expert-parallel layers give the single model's logits, loss and gradients",
          "[mpi][moe_transformer]") {
  std::shared_ptr<Communicator> comm = mpi_communicator();
  const int64_t ranks = comm->size(), me = comm->rank(), per_rank = 2, length = 6, vocabulary = 9;
  for (const RouterConfig& router : {mixtral(2 * ranks, 2), deepseek_v3(2 * ranks, 2, 2, 1), remoe(2 * ranks, 1)}) {
    INFO(router.name << ", rank " << me << " of " << ranks);
    MoETransformerConfig config = small_config(router, vocabulary, length);
    Generator single_generator(97), parallel_generator(97);
    MoETransformer single(config, &single_generator);
    config.expert_parallel = comm;
    MoETransformer parallel(config, &parallel_generator);

    Generator data(98);
    Tensor ids = randint(0, vocabulary, {ranks * per_rank, length}, &data);
    Tensor targets = randint(0, vocabulary, {ranks * per_rank, length}, &data);
    auto mine = [&](const Tensor& t) { return slice(t, 0, me * per_rank, (me + 1) * per_rank); };

    LMOutput whole = single(ids), local = parallel(mine(ids), mine(targets));
    check_close(local.logits, mine(whole.logits).detach(), "logits");
    // The single model's loss is the sum of every rank's next-token loss, so its gradients are
    // the sums the ranks reach after all_reduce_gradients.
    Tensor single_loss;
    for (int64_t r = 0; r < ranks; ++r) {
      Tensor logits = slice(whole.logits, 0, r * per_rank, (r + 1) * per_rank).reshape({per_rank * length, vocabulary});
      Tensor loss = cross_entropy(logits, slice(targets, 0, r * per_rank, (r + 1) * per_rank).reshape({per_rank * length}));
      if (r == me) check_close(local.loss, loss.detach(), "loss");
      single_loss = single_loss.defined() ? add(single_loss, loss) : loss;
    }
    single_loss.backward();
    local.loss.backward();
    all_reduce_gradients(parallel.replicated_parameters(), *comm);

    NamedTensors expected = single.named_parameters(), actual = parallel.named_parameters();
    CHECK(actual.size() == expected.size());
    for (size_t i = 0; i < expected.size() && i < actual.size(); ++i) {
      const auto& [name, parameter] = expected[i];
      CHECK(actual[i].first == name);
      Tensor gradient = parameter.grad();
      if (name.find(".experts.") != std::string::npos) {  // this rank's slice of the layer's experts
        const int64_t local_experts = router.num_experts / ranks;
        gradient = slice(gradient, 0, me * local_experts, (me + 1) * local_experts);
      }
      check_close(actual[i].second.grad(), gradient, "gradient of " + name);
    }
    // The replicated parameters are everything but the experts.
    CHECK(parallel.replicated_parameters().size() == expected.size() - 2 * 3);
    CHECK(parallel.local_expert_parameters().size() == 2 * 3);
    // Clipping over the ranks sees the single model's norm and scales alike.
    double single_norm = clip_grad_norm(single.parameters(), 0.1);
    double parallel_norm =
        clip_grad_norm(parallel.replicated_parameters(), parallel.local_expert_parameters(), 0.1, *comm);
    CHECK(parallel_norm == Approx(single_norm).epsilon(1e-11));
    CHECK(single_norm > 0.1);  // so both did scale
    check_close(parallel.named_parameters()[0].second.grad(), single.named_parameters()[0].second.grad(),
                "clipped gradient of " + expected[0].first);
    // DeepSeek-V3's bias moves by the loads of every rank's tokens, as the single model's does.
    single.update_router_biases(whole, 0.01);
    parallel.update_router_biases(local, 0.01);
    for (size_t l = 0; l < 2; ++l) {
      Tensor bias = parallel.layer(l).expert_parallel_moe()->gate()->e_score_correction_bias();
      Tensor expected_bias = single.layer(l).block_sparse_moe()->gate()->e_score_correction_bias();
      CHECK(bias.defined() == expected_bias.defined());
      if (bias.defined() && expected_bias.defined()) {
        CHECK(bias.to_vector<float>() == expected_bias.to_vector<float>());
        CHECK(sum(mul(bias, bias)).item<double>() > 0);  // it did move
      }
    }
    // ReMoE's lambda moves by the mean over layers of each layer's sparsity over every rank's tokens.
    if (router.l1_loss.enabled) {
      for (size_t l = 0; l < 2; ++l) {
        const double sparsity = parallel.layer(l).expert_parallel_moe()->routing_sparsity(local.layers[l]);  // a collective
        CHECK(sparsity == Approx(whole.layers[l].routing.sparsity()).epsilon(1e-14));
      }
      single.update_router_l1_coefficients(whole);
      parallel.update_router_l1_coefficients(local);
      for (size_t l = 0; l < 2; ++l) {
        const double lambda = parallel.layer(l).expert_parallel_moe()->gate()->l1_coefficient();
        CHECK(lambda == single.layer(l).block_sparse_moe()->gate()->l1_coefficient());
        CHECK(lambda != 1e-8);  // it did move
      }
    }
  }
}

TEST_CASE("mpi moe transformer: weights gather into the single model's and load back on any number of ranks",
          "[mpi][moe_transformer][state]") {
  std::shared_ptr<Communicator> comm = mpi_communicator();
  const int64_t ranks = comm->size(), me = comm->rank(), length = 5, vocabulary = 7;
  for (const RouterConfig& router : {mixtral(2 * ranks, 2), deepseek_v3(2 * ranks, 2, 2, 1)}) {
    INFO(router.name << ", rank " << me << " of " << ranks);
    MoETransformerConfig config = small_config(router, vocabulary, length);
    Generator single_generator(61), parallel_generator(61), other_generator(62);
    MoETransformer single(config, &single_generator);
    config.expert_parallel = comm;
    MoETransformer parallel(config, &parallel_generator);

    // Built from one seed, the split model gathers into the single model, exactly.
    StateDict expected = single.state_dict(), gathered = gather_expert_parallel_state(parallel);
    CHECK(gathered.size() == expected.size());
    for (const auto& [name, tensor] : expected) {
      INFO(name);
      CHECK((gathered.count(name) && gathered.at(name).shape() == tensor.shape()));
      if (gathered.count(name) && gathered.at(name).shape() == tensor.shape())
        CHECK(gathered.at(name).to(DType::f64).to_vector<double>() == tensor.to(DType::f64).to_vector<double>());
    }

    // Another single model's weights load into the split one: it then computes what that model
    // computes on this rank's sequences, and gathers into its weights.
    MoETransformer other(small_config(router, vocabulary, length), &other_generator);
    load_expert_parallel_state(parallel, other.state_dict());
    Generator data(63);
    Tensor ids = randint(0, vocabulary, {ranks, length}, &data);
    Tensor mine = slice(ids, 0, me, me + 1);
    check_close(parallel(mine).logits, slice(other(ids).logits, 0, me, me + 1).detach(), "logits after loading");
    StateDict regathered = gather_expert_parallel_state(parallel);
    const std::string w1 = "layers.1.block_sparse_moe.experts.w1";
    CHECK(regathered.at(w1).to_vector<double>() == other.state_dict().at(w1).to_vector<double>());

    // An expert tensor that does not hold all E experts: an Error, and nothing is loaded.
    StateDict broken = other.state_dict();
    broken[w1] = slice(broken.at(w1), 0, 0, router.num_experts - 1);
    std::vector<double> before = parallel.state_dict().at("lm_head.weight").to_vector<double>();
    const std::string w2 = "layers.0.block_sparse_moe.experts.w2";
    broken.erase(w2);
    // Each problem once, with the whole model's shape (what the file must hold), not a rank's slice.
    const std::string experts = std::to_string(router.num_experts);
    CHECK_THROWS_WITH(load_expert_parallel_state(parallel, broken),
                      Catch::Contains("load_expert_parallel_state: 2 problems, nothing was loaded") &&
                          Catch::Contains("'" + w1 + "' expects f64 [" + experts + ", 8, 6], got f64 [" +
                                          std::to_string(router.num_experts - 1) + ", 8, 6]") &&
                          Catch::Contains("missing '" + w2 + "' (f64 [" + experts + ", 6, 8])"));
    CHECK(parallel.state_dict().at("lm_head.weight").to_vector<double>() == before);
  }
}
