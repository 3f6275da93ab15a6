#include "nn/routing_parts.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "nn/id_range.h"
#include "ops/counting.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/sort.h"
#include "ops/topk.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/permute.h"
#endif

namespace tinymoe::nn {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// The parts that decide one pair at a time (capacity, GShard's coin flips) run on the host: these
// copy a tensor there (from a device: explicitly, once), and put host-made ids on a device.
std::vector<double> host_values(const Tensor& t) { return t.detach().to(Device::cpu()).to(DType::f64).to_vector<double>(); }
std::vector<int64_t> host_ids(const Tensor& t) { return t.to(Device::cpu()).to_vector<int64_t>(); }
Tensor ids_on(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  return from_vector(values, shape).to(device);
}

// Keeps the choices made in its scope from gradcheck's observer (tinymoe/autograd.h): for
// selections that are no choice of the result, whose value is continuous across them.
class HiddenChoices {
 public:
  HiddenChoices() : observer_(choice_observer()) { set_choice_observer(nullptr); }
  ~HiddenChoices() { set_choice_observer(observer_); }
  HiddenChoices(const HiddenChoices&) = delete;
  HiddenChoices& operator=(const HiddenChoices&) = delete;

 private:
  ChoiceObserver* observer_;
};

void check_scores(const Tensor& scores, const char* op) {
  check_floating(scores, op, "scores");
  check_dim(scores, 2, op, "scores");
}

void check_selection(const Tensor& expert_index, int64_t tokens, const char* op) {
  check_dtype(expert_index, DType::i64, op, "expert_index");
  check_dim(expert_index, 2, op, "expert_index");
  TINYMOE_CHECK(expert_index.size(0) == tokens, op, "expected expert_index with ", tokens, " rows, got ",
                shape_str(expert_index.shape()));
}

// scores + bias (broadcast over tokens) without recording: the selection key, never differentiated.
Tensor selection_keys(const Tensor& scores, const Tensor& selection_bias, const char* op) {
  NoGradGuard no_grad;
  Tensor keys = scores.detach();
  if (!selection_bias.defined()) return keys;
  check_floating(selection_bias, op, "selection_bias");
  TINYMOE_CHECK(selection_bias.shape() == Shape{scores.size(1)}, op, "expected selection_bias of shape [",
                scores.size(1), "] (one per expert), got ", shape_str(selection_bias.shape()));
  return add(keys, selection_bias.detach().to(scores.dtype()));
}

void check_k(int64_t k, int64_t num_experts, const char* op) {
  TINYMOE_CHECK(k >= 1 && k <= num_experts, op, "expected 1 <= k <= E = ", num_experts, ", got k = ", k);
}

// Candidate (token, slot) positions t*k + j of one counting group, in the drop policy's priority.
std::vector<int64_t> priority_order(int64_t first_token, int64_t group_tokens, int64_t k,
                                    const std::vector<int64_t>& active, const std::vector<double>& weights,
                                    DropPolicy policy) {
  std::vector<int64_t> order;
  auto push = [&](int64_t t, int64_t j) {
    int64_t p = t * k + j;
    if (active.empty() || active[p]) order.push_back(p);
  };
  if (policy == DropPolicy::position) {
    for (int64_t j = 0; j < k; ++j)
      for (int64_t t = first_token; t < first_token + group_tokens; ++t) push(t, j);
  } else {
    for (int64_t t = first_token; t < first_token + group_tokens; ++t)
      for (int64_t j = 0; j < k; ++j) push(t, j);
  }
  if (policy == DropPolicy::probability)
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return weights[a] > weights[b]; });
  return order;
}

// Pairs from host-made ids, put on the weights' device.
Pairs make_pairs(const std::vector<int64_t>& tokens, const std::vector<int64_t>& experts, const Tensor& weight) {
  int64_t count = static_cast<int64_t>(tokens.size());
  return {ids_on(tokens, {count}, weight.device()), ids_on(experts, {count}, weight.device()), weight};
}

// The group-limited keys [T, E]: group g of token t keeps its keys when g is among
// kept_groups[t], else every key becomes masked_score. An index_select from the group rows plus
// one row of masked_score, so kept keys keep their exact values and any masked_score (-inf
// included) is written as is. groups: f64 [T, n_group, group_size]; kept_groups: i64 [T, topk_group].
Tensor mask_unkept_groups(const Tensor& groups, const Tensor& kept_groups, double masked_score) {
  const int64_t tokens = groups.size(0), n_group = groups.size(1), group_size = groups.size(2);
  const int64_t rows = tokens * n_group;
  const Device device = groups.device();
  Tensor candidates = concat({groups.reshape({rows, group_size}), full({1, group_size}, masked_score, DType::f64, device)}, 0);
  Tensor kept = sum(one_hot(kept_groups, n_group), 1).reshape({rows});  // i64, 1 for a kept group
  // Row r reads itself when kept, else the filler row `rows`: rows + kept * (r - rows), exact in i64.
  std::vector<int64_t> from_filler(rows);
  for (int64_t r = 0; r < rows; ++r) from_filler[r] = r - rows;
  Tensor source_row = add(mul(kept, ids_on(from_filler, {rows}, device)), full({1}, static_cast<double>(rows), DType::i64, device));
  return index_select(candidates, source_row, 0).reshape({tokens, n_group * group_size});
}

}  // namespace

Tensor largest_indices(const Tensor& keys, int64_t k) {
#ifdef TINYMOE_WITH_CUDA
  // Past the cuda top-k kernel's limits (k <= 8, rows of at most 256): a stable descending
  // argsort orders the same way (expert choice over many tokens, many experts).
  if (keys.device().is_cuda() && (k > cuda::kTopkMaxK || keys.size(-1) > cuda::kTopkMaxColumns))
    return slice(argsort(keys, -1, /*descending=*/true), keys.dim() - 1, 0, k);
#endif
  return topk(keys, k, -1).indices;
}

// ---- Score functions ----

const char* score_function_name(ScoreFunction function) {
  switch (function) {
    case ScoreFunction::softmax: return "softmax";
    case ScoreFunction::sigmoid: return "sigmoid";
    case ScoreFunction::relu: return "relu";
  }
  return "unknown";
}

Tensor apply_score_function(ScoreFunction function, const Tensor& logits) {
  check_floating(logits, "apply_score_function", "logits");
  switch (function) {
    case ScoreFunction::softmax: return softmax(logits, -1);
    case ScoreFunction::sigmoid: return sigmoid(logits);
    case ScoreFunction::relu: return relu(logits);
  }
  fail("apply_score_function", "unknown score function");
}

// ---- Noise ----

Tensor noisy_logits(const Tensor& logits, const Tensor& noise_logits, Generator* generator) {
  check_floating(logits, "noisy_logits", "logits");
  check_floating(noise_logits, "noisy_logits", "noise_logits");
  TINYMOE_CHECK(logits.shape() == noise_logits.shape() && logits.dtype() == noise_logits.dtype(), "noisy_logits",
                "expected noise_logits like logits (", dtype_name(logits.dtype()), " ", shape_str(logits.shape()),
                "), got ", dtype_name(noise_logits.dtype()), " ", shape_str(noise_logits.shape()));
  // Drawn on the host from the generator (and copied to the logits' device): the same generator
  // gives the same noise on every device.
  Tensor standard_normal = randn(logits.shape(), logits.dtype(), generator).to(logits.device());
  return add(logits, mul(standard_normal, softplus(noise_logits)));
}

Tensor multiplicative_jitter(const Tensor& x, double epsilon, Generator* generator) {
  check_floating(x, "multiplicative_jitter", "x");
  TINYMOE_CHECK(epsilon >= 0.0 && epsilon < 1.0, "multiplicative_jitter", "expected 0 <= epsilon < 1, got ",
                epsilon);
  if (epsilon == 0.0) return x;
  // Drawn on the host, as noisy_logits' noise.
  return mul(x, rand(x.shape(), x.dtype(), generator, 1.0 - epsilon, 1.0 + epsilon).to(x.device()));
}

// ---- Selections ----

Tensor select_topk(const Tensor& scores, int64_t k, const Tensor& selection_bias) {
  check_scores(scores, "select_topk");
  check_k(k, scores.size(1), "select_topk");
  return largest_indices(selection_keys(scores, selection_bias, "select_topk"), k);
}

Tensor select_group_limited_topk(const Tensor& scores, int64_t k, int64_t n_group, int64_t topk_group,
                                 const Tensor& selection_bias, double masked_score, int64_t group_score_experts) {
  const char* op = "select_group_limited_topk";
  check_scores(scores, op);
  const int64_t tokens = scores.size(0), experts = scores.size(1);
  TINYMOE_CHECK(n_group >= 1 && experts % n_group == 0, op, "expected n_group >= 1 dividing E = ", experts,
                ", got n_group = ", n_group);
  const int64_t group_size = experts / n_group;
  TINYMOE_CHECK(group_score_experts >= 1, op, "expected group_score_experts >= 1, got ", group_score_experts);
  TINYMOE_CHECK(group_score_experts <= group_size, op, "a group score sums the top ", group_score_experts,
                " experts of a group: expected E / n_group >= ", group_score_experts, ", got ", experts, " / ", n_group,
                " = ", group_size);
  TINYMOE_CHECK(topk_group >= 1 && topk_group <= n_group, op, "expected 1 <= topk_group <= n_group = ", n_group,
                ", got topk_group = ", topk_group);
  check_k(k, experts, op);
  TINYMOE_CHECK(k <= topk_group * group_size, op, "k = ", k, " experts do not fit in the ", topk_group,
                " kept groups of ", group_size, " experts");
  // Ops on the scores' device, in f64: the sum of two f32 keys is then exact.
  NoGradGuard no_grad;
  Tensor keys = selection_keys(scores, selection_bias, op).to(DType::f64);
  Tensor groups = keys.reshape({tokens, n_group, group_size});
  Tensor group_scores;
  {
    // Group score: sum of the m largest keys of the group (V3, HF: topk(2).sum; V2: max). Which m
    // is no choice worth reporting: the sum is continuous across it.
    HiddenChoices hidden;
    group_scores = sum(gather(groups, 2, largest_indices(groups, group_score_experts)), 2);  // [T, n_group]
  }
  Tensor kept_groups = largest_indices(group_scores, topk_group);  // [T, topk_group]
  return largest_indices(mask_unkept_groups(groups, kept_groups, masked_score), k);
}

int64_t expert_choice_capacity(int64_t tokens, int64_t num_experts, double capacity_factor) {
  TINYMOE_CHECK(capacity_factor > 0.0 && std::isfinite(capacity_factor), "expert_choice_capacity",
                "expected a capacity factor > 0, got ", capacity_factor);
  TINYMOE_CHECK(tokens >= 0 && num_experts >= 1, "expert_choice_capacity", "expected tokens >= 0 and E >= 1, got ",
                tokens, " and ", num_experts);
  double capacity = std::ceil(static_cast<double>(tokens) * capacity_factor / static_cast<double>(num_experts));
  return std::min<int64_t>(tokens, static_cast<int64_t>(capacity));
}

Tensor select_expert_choice(const Tensor& scores, int64_t capacity) {
  check_scores(scores, "select_expert_choice");
  const int64_t tokens = scores.size(0), experts = scores.size(1);
  TINYMOE_CHECK(capacity >= 0 && capacity <= tokens, "select_expert_choice",
                "expected 0 <= capacity <= T = ", tokens, ", got ", capacity);
  if (capacity == 0) return zeros({experts, 0}, DType::i64, scores.device());
  NoGradGuard no_grad;
  return largest_indices(transpose(scores.detach()), capacity);
}

Tensor sinkhorn_plan(const Tensor& logits, double tolerance, int64_t max_iterations) {
  const char* op = "sinkhorn_plan";
  check_scores(logits, op);
  TINYMOE_CHECK(tolerance > 0.0 && max_iterations >= 1, op, "expected tolerance > 0 and max_iterations >= 1, got ",
                tolerance, " and ", max_iterations);
  const int64_t tokens = logits.size(0), experts = logits.size(1);
  TINYMOE_CHECK(experts >= 1, op, "expected at least one expert, got logits ", shape_str(logits.shape()));
  NoGradGuard no_grad;
  if (tokens == 0) return logits.detach().clone();
  // Shift each row by its maximum, or by 0 where that is not finite (a row of -inf stays -inf, as
  // in Megatron's unshifted loop, instead of turning into NaN).
  std::vector<double> shift = host_values(max(logits.detach(), 1).values);  // [T], once per call
  for (double& value : shift) value = std::isfinite(value) ? value : 0.0;
  Tensor cost = exp(sub(logits.detach(), from_vector(shift, {tokens, 1}).to(logits.dtype()).to(logits.device())));
  const double eps = 1e-8;
  Tensor d0, d1 = ones({experts}, logits.dtype(), logits.device());
  std::vector<double> previous(static_cast<size_t>(experts), 1.0);
  for (int64_t round = 0; round < max_iterations; ++round) {
    // d0 [T, 1]: each row to 1/T; d1 [E]: each column to 1/E.
    d0 = div(full({}, 1.0 / static_cast<double>(tokens), logits.dtype(), logits.device()),
             add(sum(mul(cost, d1), 1, /*keepdim=*/true), eps));
    d1 = div(full({}, 1.0 / static_cast<double>(experts), logits.dtype(), logits.device()),
             add(sum(mul(cost, d0), 0), eps));
    std::vector<double> current = d1.to(Device::cpu()).to(DType::f64).to_vector<double>();
    double change = 0.0;
    for (size_t j = 0; j < current.size(); ++j) change += std::abs(current[j] - previous[j]);
    // A NaN or +inf logit makes the scalings NaN; the top-k of a NaN plan would send every token
    // to the first experts, so it is an Error, not a routing.
    TINYMOE_CHECK(std::isfinite(change), op, "the scalings are not finite after round ", round + 1,
                  ": the logits hold NaN or +inf");
    previous = std::move(current);
    if (change / static_cast<double>(experts) <= tolerance) break;  // the mean change of d1 (Megatron's error)
  }
  return mul(mul(cost, d0), d1);
}

// ---- Weights ----

Tensor gather_selected(const Tensor& scores, const Tensor& expert_index) {
  check_scores(scores, "gather_selected");
  check_selection(expert_index, scores.size(0), "gather_selected");
  return gather(scores, 1, expert_index);
}

Tensor WeightFunction::operator()(const Tensor& selected) const {
  check_floating(selected, "WeightFunction", "weights");
  TINYMOE_CHECK(epsilon >= 0.0 && std::isfinite(scaling_factor), "WeightFunction",
                "expected epsilon >= 0 and a finite scaling factor, got ", epsilon, " and ", scaling_factor);
  Tensor weights = selected;
  if (renormalize) {
    Tensor total = sum(weights, -1, /*keepdim=*/true);
    weights = div(weights, epsilon != 0.0 ? add(total, epsilon) : total);
  }
  return scaling_factor != 1.0 ? mul(weights, scaling_factor) : weights;
}

Tensor gshard_second_choice_mask(const Tensor& weights, Generator* generator) {
  check_floating(weights, "gshard_second_choice_mask", "weights");
  TINYMOE_CHECK(weights.dim() == 2 && weights.size(1) == 2, "gshard_second_choice_mask",
                "expected top-2 weights [T, 2], got ", shape_str(weights.shape()));
  Generator& source = generator ? *generator : default_generator();
  std::vector<double> w = host_values(weights);  // one coin per token, flipped on the host
  std::vector<int64_t> flags(w.size(), 1);
  for (size_t t = 0; t < w.size() / 2; ++t) flags[2 * t + 1] = 2.0 * w[2 * t + 1] > source.uniform() ? 1 : 0;
  return ids_on(flags, weights.shape(), weights.device());
}

Tensor top_p_active(const Tensor& selected, double p) {
  const char* op = "top_p_active";
  check_floating(selected, op, "selected");
  TINYMOE_CHECK(selected.dim() == 2, op, "expected the selected probabilities [T, k], got ",
                shape_str(selected.shape()));
  TINYMOE_CHECK(p > 0.0 && p <= 1.0, op, "expected 0 < p <= 1, got ", p);
  const int64_t tokens = selected.size(0), k = selected.size(1);
  std::vector<double> w = host_values(selected);  // decided on the host, as capacity is
  std::vector<int64_t> flags(w.size(), 0);
  // How far the sums that decided were from p: gradcheck's margin (a step across p flips a flag).
  double margin = std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < tokens; ++t) {
    double before = 0.0;  // the probability of the slots already taken
    for (int64_t j = 0; j < k && (j == 0 || before < p); ++j) {
      flags[t * k + j] = 1;
      before += w[t * k + j];
      if (j + 1 < k) margin = std::min(margin, std::abs(before - p));
    }
  }
  note_choice("top_p", flags.data(), tokens * k, margin);
  return ids_on(flags, selected.shape(), selected.device());
}

Tensor positive_active(const Tensor& selected) {
  const char* op = "positive_active";
  check_floating(selected, op, "selected");
  TINYMOE_CHECK(selected.dim() == 2, op, "expected the selected logits [T, k], got ", shape_str(selected.shape()));
  std::vector<double> logits = host_values(selected);  // decided on the host, as capacity is
  std::vector<int64_t> flags(logits.size(), 0);
  double margin = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    TINYMOE_CHECK(!std::isnan(logits[i]), op, "a selected logit is NaN (slot ", i, ")");
    flags[i] = logits[i] > 0.0 ? 1 : 0;
    margin = std::min(margin, std::abs(logits[i]));
  }
  note_choice("relu", flags.data(), static_cast<int64_t>(flags.size()), margin);
  return ids_on(flags, selected.shape(), selected.device());
}

// ---- Pairs ----

Pairs token_choice_pairs(const Tensor& expert_index, const Tensor& weights) {
  check_floating(weights, "token_choice_pairs", "weights");
  check_selection(expert_index, weights.dim() == 2 ? weights.size(0) : -1, "token_choice_pairs");
  TINYMOE_CHECK(weights.shape() == expert_index.shape(), "token_choice_pairs", "expected weights of shape ",
                shape_str(expert_index.shape()), ", got ", shape_str(weights.shape()));
  check_same_device(expert_index, weights, "token_choice_pairs");
  const int64_t tokens = expert_index.size(0), k = expert_index.size(1);
  std::vector<int64_t> token_of_pair(tokens * k);
  for (int64_t p = 0; p < tokens * k; ++p) token_of_pair[p] = p / k;
  return {ids_on(token_of_pair, {tokens * k}, weights.device()), expert_index.reshape({tokens * k}),
          weights.reshape({tokens * k})};
}

Pairs expert_choice_pairs(const Tensor& token_index, const Tensor& weights) {
  check_dtype(token_index, DType::i64, "expert_choice_pairs", "token_index");
  check_dim(token_index, 2, "expert_choice_pairs", "token_index");
  check_floating(weights, "expert_choice_pairs", "weights");
  TINYMOE_CHECK(weights.shape() == token_index.shape(), "expert_choice_pairs", "expected weights of shape ",
                shape_str(token_index.shape()), ", got ", shape_str(weights.shape()));
  check_same_device(token_index, weights, "expert_choice_pairs");
  const int64_t experts = token_index.size(0), capacity = token_index.size(1);
  std::vector<int64_t> expert_of_pair(experts * capacity);
  for (int64_t p = 0; p < experts * capacity; ++p) expert_of_pair[p] = p / capacity;
  return {token_index.reshape({experts * capacity}), ids_on(expert_of_pair, {experts * capacity}, weights.device()),
          weights.reshape({experts * capacity})};
}

// ---- Capacity ----

const char* drop_policy_name(DropPolicy policy) {
  switch (policy) {
    case DropPolicy::position: return "position";
    case DropPolicy::token_position: return "token_position";
    case DropPolicy::probability: return "probability";
  }
  return "?";
}

CapacityConfig CapacityConfig::factor(double capacity_factor, DropPolicy policy) {
  TINYMOE_CHECK(capacity_factor > 0.0 && std::isfinite(capacity_factor), "CapacityConfig",
                "expected a capacity factor > 0, got ", capacity_factor);
  CapacityConfig config;
  config.capacity_factor = capacity_factor;
  config.drop_policy = policy;
  return config;
}

CapacityConfig CapacityConfig::per_sequence_count(int64_t expert_capacity, DropPolicy policy) {
  TINYMOE_CHECK(expert_capacity >= 1, "CapacityConfig", "expected expert_capacity >= 1, got ", expert_capacity);
  CapacityConfig config;
  config.expert_capacity = expert_capacity;
  config.per_sequence = true;
  config.drop_policy = policy;
  return config;
}

int64_t capacity_from_factor(int64_t tokens, int64_t k, int64_t num_experts, double capacity_factor) {
  TINYMOE_CHECK(capacity_factor > 0.0 && std::isfinite(capacity_factor), "capacity_from_factor",
                "expected a capacity factor > 0, got ", capacity_factor);
  TINYMOE_CHECK(tokens >= 0 && k >= 1 && num_experts >= 1, "capacity_from_factor",
                "expected tokens >= 0, k >= 1, E >= 1, got ", tokens, ", ", k, ", ", num_experts);
  // Megatron-LM get_capacity: math.ceil((num_tokens / num_experts) * capacity_factor), num_tokens = T*k.
  double per_expert = static_cast<double>(tokens * k) / static_cast<double>(num_experts);
  return static_cast<int64_t>(std::ceil(per_expert * capacity_factor));
}

namespace {

// Checks a [T, k] selection (expert ids in [0, E), checked on its device), its weights, the
// config and the active flags, all on one device.
void check_capacity_inputs(const Tensor& expert_index, const Tensor& weights, int64_t num_experts,
                           const CapacityConfig& capacity, const Tensor& active, const char* op) {
  check_floating(weights, op, "weights");
  check_dim(weights, 2, op, "weights");
  check_selection(expert_index, weights.size(0), op);
  TINYMOE_CHECK(weights.shape() == expert_index.shape(), op, "expected weights of shape ",
                shape_str(expert_index.shape()), ", got ", shape_str(weights.shape()));
  check_same_device(expert_index, weights, op);
  TINYMOE_CHECK(capacity.capacity_factor >= 0.0 && capacity.expert_capacity >= 0, op,
                "expected a capacity factor > 0 or an expert capacity >= 1, got ", capacity.capacity_factor, " and ",
                capacity.expert_capacity);
  TINYMOE_CHECK(!(capacity.capacity_factor > 0.0 && capacity.expert_capacity > 0), op,
                "give either a capacity factor or an absolute expert capacity, not both");
  check_id_range(expert_index, num_experts, "expert_index", "an expert", op);
  if (active.defined()) {
    check_dtype(active, DType::i64, op, "active");
    TINYMOE_CHECK(active.shape() == expert_index.shape(), op, "expected active flags of shape ",
                  shape_str(expert_index.shape()), ", got ", shape_str(active.shape()));
    check_same_device(active, expert_index, op);
  }
}

// What capacity decided: kept flags per (token, slot), padding pairs, counts, and the margin.
struct CapacityDecisions {
  std::vector<int64_t> kept, pad_tokens, pad_experts;
  int64_t routed = 0, dropped = 0;
  double margin = kInfinity;
};

// Walks each counting group's candidates in priority order; an expert keeps a candidate while it
// has fewer than `capacity` (no limit when the config is dropless).
CapacityDecisions decide(const std::vector<int64_t>& expert_of, const std::vector<int64_t>& active_flags,
                         const std::vector<double>& w, int64_t groups, int64_t group_tokens, int64_t k,
                         int64_t num_experts, const CapacityConfig& config, int64_t capacity) {
  CapacityDecisions d;
  d.kept.assign(expert_of.size(), 0);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> load(num_experts, 0);
    std::vector<double> last_kept(num_experts, kInfinity), first_dropped(num_experts, -kInfinity);
    for (int64_t p : priority_order(g * group_tokens, group_tokens, k, active_flags, w, config.drop_policy)) {
      int64_t e = expert_of[p];
      ++d.routed;
      if (!config.enabled() || load[e] < capacity) {
        d.kept[p] = 1, ++load[e];
        if (!w.empty()) last_kept[e] = w[p];
      } else {
        ++d.dropped;
        if (!w.empty() && first_dropped[e] == -kInfinity) first_dropped[e] = w[p];
      }
    }
    for (int64_t e = 0; e < num_experts; ++e) {
      if (first_dropped[e] != -kInfinity) d.margin = std::min(d.margin, last_kept[e] - first_dropped[e]);
      if (!config.enabled() || !config.pad_to_capacity) continue;
      d.pad_tokens.insert(d.pad_tokens.end(), capacity - load[e], g * group_tokens);
      d.pad_experts.insert(d.pad_experts.end(), capacity - load[e], e);
    }
  }
  return d;
}

// The kept pairs in token-major order, then the padding pairs (weight 0).
Pairs kept_pairs(const Tensor& weights, const std::vector<int64_t>& expert_of, int64_t k, const CapacityDecisions& d) {
  const int64_t count = static_cast<int64_t>(expert_of.size());
  std::vector<int64_t> positions, token_of_pair, expert_of_pair;
  for (int64_t p = 0; p < count; ++p)
    if (d.kept[p]) positions.push_back(p), token_of_pair.push_back(p / k), expert_of_pair.push_back(expert_of[p]);
  Tensor flat_weights = weights.reshape({count});
  int64_t kept = static_cast<int64_t>(positions.size()), padded = static_cast<int64_t>(d.pad_tokens.size());
  Tensor pair_weight =
      kept == count ? flat_weights : index_select(flat_weights, ids_on(positions, {kept}, weights.device()));
  if (padded > 0) {
    pair_weight = concat({pair_weight, zeros({padded}, weights.dtype(), weights.device())}, 0);
    token_of_pair.insert(token_of_pair.end(), d.pad_tokens.begin(), d.pad_tokens.end());
    expert_of_pair.insert(expert_of_pair.end(), d.pad_experts.begin(), d.pad_experts.end());
  }
  return make_pairs(token_of_pair, expert_of_pair, pair_weight);
}

}  // namespace

CapacityResult apply_capacity(const Tensor& expert_index, const Tensor& weights, int64_t num_experts,
                              const CapacityConfig& capacity, int64_t sequence_length, const Tensor& active) {
  const char* op = "apply_capacity";
  check_capacity_inputs(expert_index, weights, num_experts, capacity, active, op);
  const int64_t tokens = expert_index.size(0), k = expert_index.size(1);
  int64_t sequences = sequence_count(tokens, sequence_length, op);
  int64_t groups = capacity.per_sequence ? sequences : 1;
  int64_t group_tokens = groups > 0 ? tokens / groups : 0;

  CapacityResult result;
  if (!capacity.enabled() && !active.defined()) {
    // Dropless, every candidate active: all T*k pairs, made on the selection's device.
    result.pairs = token_choice_pairs(expert_index, weights);
    result.kept = full(expert_index.shape(), 1.0, DType::i64, expert_index.device());
    result.routed = tokens * k;
    return result;
  }
  if (capacity.enabled())
    result.capacity = capacity.expert_capacity > 0
                          ? capacity.expert_capacity
                          : capacity_from_factor(group_tokens, k, num_experts, capacity.capacity_factor);
  // Capacity walks the candidates one at a time, on the host: the ids (and the flags and weights
  // it reads) are copied there once; the pairs and flags go back to the selection's device.
  std::vector<int64_t> expert_of = host_ids(expert_index);
  std::vector<int64_t> active_flags = active.defined() ? host_ids(active) : std::vector<int64_t>();
  std::vector<double> w = capacity.drop_policy == DropPolicy::probability ? host_values(weights) : std::vector<double>();
  CapacityDecisions d = decide(expert_of, active_flags, w, groups, group_tokens, k, num_experts, capacity, result.capacity);
  if (capacity.enabled()) note_choice("capacity", d.kept.data(), tokens * k, d.margin);
  result.kept = ids_on(d.kept, expert_index.shape(), expert_index.device());
  result.routed = d.routed, result.dropped = d.dropped;
  result.padded = static_cast<int64_t>(d.pad_tokens.size());
  result.pairs = kept_pairs(weights, expert_of, k, d);
  return result;
}

// ---- Assembling ----

Routing token_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& expert_index,
                             const Tensor& weights) {
  CapacityResult everything;
  everything.pairs = token_choice_pairs(expert_index, weights);
  everything.routed = everything.pairs.token.numel();
  return token_choice_routing(logits, scores, expert_index, everything);
}

Routing token_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& expert_index,
                             const CapacityResult& kept) {
  Routing routing;
  routing.router_logits = logits;
  routing.scores = scores;
  routing.expert_index = expert_index;
  routing.pair_token = kept.pairs.token, routing.pair_expert = kept.pairs.expert;
  routing.pair_weight = kept.pairs.weight;
  routing.routed_pairs = kept.routed;
  routing.dropped_pairs = kept.dropped;
  routing.padded_pairs = kept.padded;
  routing.capacity = kept.capacity;
  return routing;
}

Routing expert_choice_routing(const Tensor& logits, const Tensor& scores, const Tensor& token_index,
                              const Tensor& weights) {
  Pairs pairs = expert_choice_pairs(token_index, weights);
  Routing routing;
  routing.router_logits = logits;
  routing.scores = scores;
  routing.expert_index = token_index;
  routing.pair_token = pairs.token, routing.pair_expert = pairs.expert, routing.pair_weight = pairs.weight;
  routing.routed_pairs = pairs.token.numel();
  routing.capacity = token_index.size(1);
  return routing;
}

void check_router_logits(const Tensor& logits, int64_t num_experts, const char* op) {
  check_floating(logits, op, "logits");
  TINYMOE_CHECK(logits.dim() == 2 && logits.size(1) == num_experts, op, "expected router logits [T, ", num_experts,
                "], got ", shape_str(logits.shape()));
}

int64_t sequence_count(int64_t tokens, int64_t sequence_length, const char* op) {
  TINYMOE_CHECK(sequence_length >= 0, op, "expected sequence_length >= 0, got ", sequence_length);
  if (sequence_length == 0) return 1;
  TINYMOE_CHECK(tokens % sequence_length == 0, op, "T = ", tokens, " tokens do not split into sequences of ",
                sequence_length);
  return tokens / sequence_length;
}

}  // namespace tinymoe::nn
