// The math ops (ops/elementwise, reduce, softmax, matmul, grouped_matmul, topk) on cuda tensors,
// forward and backward through the tape: each graph runs once on the CPU and once on cuda from
// the same values, with the same output gradient, and the outputs and input gradients are
// compared with docs/design.md's tolerances (parity.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "cuda/gemm.h"
#include "parity.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

using Graph = std::function<Tensor(const TensorList&)>;

// The same values as a leaf on `device`; floating leaves require grad, i64 ones (offsets) do not.
Tensor leaf_on(const Tensor& values, Device device) {
  Tensor leaf = device.is_cpu() ? values.clone() : values.to(device);
  if (is_floating(values.dtype())) leaf.requires_grad_();
  return leaf;
}

TensorList leaves_on(const TensorList& inputs, Device device) {
  TensorList leaves;
  for (const Tensor& input : inputs) leaves.push_back(leaf_on(input, device));
  return leaves;
}

// Runs `graph` on CPU leaves and on cuda leaves holding the same values, backpropagates one
// random output gradient through both tapes, and compares the output and the gradient of every
// floating input. f32 is held to f32_tolerance, f64 to kF64.
void check_parity(const Graph& graph, const TensorList& inputs, double f32_tolerance, uint64_t seed) {
  TensorList cpu_leaves = leaves_on(inputs, Device::cpu());
  TensorList gpu_leaves = leaves_on(inputs, kGpu);
  Tensor expected = graph(cpu_leaves);
  Tensor actual = graph(gpu_leaves);
  double tol = tolerance(expected.dtype(), f32_tolerance);
  REQUIRE(actual.device() == kGpu);
  REQUIRE(actual.shape() == expected.shape());
  CHECK(actual.dtype() == expected.dtype());
  CHECK(relative_error(actual.detach(), expected.detach()) <= tol);
  Tensor grad_output = random_input(expected.shape(), expected.dtype(), seed);
  expected.backward(grad_output);
  actual.backward(grad_output.to(kGpu));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!is_floating(inputs[i].dtype())) continue;
    INFO("gradient of input " << i << " " << shape_str(inputs[i].shape()));
    REQUIRE(gpu_leaves[i].grad().defined());
    CHECK(gpu_leaves[i].grad().device() == kGpu);
    CHECK(relative_error(gpu_leaves[i].grad(), cpu_leaves[i].grad()) <= tol);
  }
}

struct ShapePair {
  Shape a, b;
};

// Same shapes, either side broadcast, a 0-d scalar, missing leading dims, size-1 dims on both sides.
const std::vector<ShapePair> kBroadcastPairs = {
    {{3, 5}, {3, 5}}, {{4, 1, 6}, {5, 1}},          {{2, 3, 4}, {}},
    {{7}, {3, 1}},    {{2, 1, 3, 1}, {1, 4, 1, 5}}, {{1, 6}, {5, 1}},
};

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
};

const std::vector<BinaryCase> kBinaryCases = {
    {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
    {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
    {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
    {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
};

struct UnaryCase {
  const char* name;
  bool positive_domain;  // log, sqrt and fractional powers
  std::function<Tensor(const Tensor&)> op;
};

const std::vector<UnaryCase> kUnaryCases = {
    {"neg", false, [](const Tensor& x) { return neg(x); }},
    {"exp", false, [](const Tensor& x) { return exp(x); }},
    {"log", true, [](const Tensor& x) { return log(x); }},
    {"sqrt", true, [](const Tensor& x) { return sqrt(x); }},
    {"tanh", false, [](const Tensor& x) { return tanh(x); }},
    {"sigmoid", false, [](const Tensor& x) { return sigmoid(x); }},
    {"silu", false, [](const Tensor& x) { return silu(x); }},
    {"relu", false, [](const Tensor& x) { return relu(x); }},
    {"gelu", false, [](const Tensor& x) { return gelu(x); }},
    {"softplus", false, [](const Tensor& x) { return softplus(x); }},
    {"add_scalar", false, [](const Tensor& x) { return add(x, 0.75); }},
    {"mul_scalar", false, [](const Tensor& x) { return mul(x, -1.5); }},
    {"pow 2.5", true, [](const Tensor& x) { return pow(x, 2.5); }},
    {"pow -1", true, [](const Tensor& x) { return pow(x, -1.0); }},
    {"pow 3 (negative bases)", false, [](const Tensor& x) { return pow(x, 3.0); }},
    {"2 - x / 3", false, [](const Tensor& x) { return 2.0 - x / 3.0; }},
};

struct DimCase {
  Shape shape;
  int64_t dim;
};

// Reduced dims first, last and in the middle; rows longer than one block of threads (300, 600).
const std::vector<DimCase> kDimCases = {
    {{6, 33}, 0}, {{6, 33}, 1}, {{6, 33}, -1}, {{3, 4, 5}, 1}, {{2, 300}, 1}, {{600}, 0}, {{9, 1}, 1}, {{1, 7, 2}, 0},
};

// Records every choice reported to the observer, while it lives.
struct ChoiceLog : ChoiceObserver {
  std::vector<std::string> ops;
  std::vector<std::vector<int64_t>> chosen;
  std::vector<double> margins;
  ChoiceLog() { set_choice_observer(this); }
  ~ChoiceLog() override { set_choice_observer(nullptr); }
  void observe(const char* op, const int64_t* indices, int64_t count, double margin) override {
    ops.emplace_back(op);
    chosen.emplace_back(indices, indices + count);
    margins.push_back(margin);
  }
};

// TF32 is process-wide: switched on for one scope, off again even when a check throws.
struct Tf32Scope {
  Tf32Scope() { cuda::set_tf32_enabled(true); }
  ~Tf32Scope() { cuda::set_tf32_enabled(false); }
};

}  // namespace

TEST_CASE("cuda ops: add, sub, mul, div with broadcasting, forward and backward", "[cuda][ops][elementwise]") {
  uint64_t seed = 1000;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const BinaryCase& binary : kBinaryCases) {
      for (const ShapePair& shapes : kBroadcastPairs) {
        for (bool swapped : {false, true}) {
          const Shape& shape_a = swapped ? shapes.b : shapes.a;
          const Shape& shape_b = swapped ? shapes.a : shapes.b;
          bool divides = std::string(binary.name) == "div";
          Tensor a = random_input(shape_a, dtype, ++seed);
          Tensor b = divides ? random_positive(shape_b, dtype, ++seed) : random_input(shape_b, dtype, ++seed);
          INFO(binary.name << " " << shape_str(shape_a) << " " << shape_str(shape_b) << " " << dtype);
          check_parity([&](const TensorList& in) { return binary.op(in[0], in[1]); }, {a, b}, kElementwiseF32, ++seed);
        }
      }
    }
  }
}

TEST_CASE("cuda ops: one tensor as both operands accumulates both gradients", "[cuda][ops][elementwise]") {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = random_input({4, 9}, dtype, 1100);
    INFO(dtype);
    check_parity([](const TensorList& in) { return mul(in[0], in[0]) + exp(in[0]) - in[0] / 2.0; }, {x},
                 kElementwiseF32, 1101);
  }
}

TEST_CASE("cuda ops: unary and scalar ops, forward and backward", "[cuda][ops][elementwise]") {
  uint64_t seed = 1200;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const UnaryCase& unary : kUnaryCases) {
      for (const Shape& shape : {Shape{1}, Shape{5, 7}, Shape{3, 300}}) {
        Tensor x = unary.positive_domain ? random_positive(shape, dtype, ++seed) : random_input(shape, dtype, ++seed);
        INFO(unary.name << " " << shape_str(shape) << " " << dtype);
        check_parity([&](const TensorList& in) { return unary.op(in[0]); }, {x}, kElementwiseF32, ++seed);
      }
    }
  }
}

TEST_CASE("cuda ops: i64 arithmetic and sums stay exact", "[cuda][ops][elementwise][reduce]") {
  Generator generator(1300);
  Tensor a = randint(-1000, 1000, {6, 7}, &generator);
  Tensor b = randint(1, 50, {7}, &generator);
  for (const BinaryCase& binary : kBinaryCases) {
    INFO(binary.name);
    CHECK(binary.op(a.to(kGpu), b.to(kGpu)).to_vector<int64_t>() == binary.op(a, b).to_vector<int64_t>());
  }
  CHECK(sum(a.to(kGpu), 0).to_vector<int64_t>() == sum(a, 0).to_vector<int64_t>());
  CHECK(sum(a.to(kGpu)).item<int64_t>() == sum(a).item<int64_t>());
}

TEST_CASE("cuda ops: sum and mean along a dim, and of everything", "[cuda][ops][reduce]") {
  uint64_t seed = 1400;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      for (bool keepdim : {false, true}) {
        Tensor x = random_input(c.shape, dtype, ++seed);
        INFO(shape_str(c.shape) << " dim " << c.dim << " keepdim " << keepdim << " " << dtype);
        check_parity([&](const TensorList& in) { return sum(in[0], c.dim, keepdim); }, {x}, kElementwiseF32, ++seed);
        check_parity([&](const TensorList& in) { return mean(in[0], c.dim, keepdim); }, {x}, kElementwiseF32, ++seed);
      }
    }
    Tensor x = random_input({5, 6, 7}, dtype, ++seed);
    check_parity([](const TensorList& in) { return sum(in[0]); }, {x}, kElementwiseF32, ++seed);
    check_parity([](const TensorList& in) { return mean(in[0]); }, {x}, kElementwiseF32, ++seed);
  }
}

TEST_CASE("cuda ops: max along a dim, ties to the lowest index, gradient to the chosen entry", "[cuda][ops][reduce]") {
  uint64_t seed = 1500;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      for (bool ties : {false, true}) {
        for (bool keepdim : {false, true}) {
          Tensor x = ties ? random_ties(c.shape, dtype, ++seed) : random_input(c.shape, dtype, ++seed);
          INFO(shape_str(c.shape) << " dim " << c.dim << " ties " << ties << " keepdim " << keepdim << " " << dtype);
          ValuesIndices expected = max(x, c.dim, keepdim);
          ValuesIndices actual = max(x.to(kGpu), c.dim, keepdim);
          CHECK(actual.indices.device() == kGpu);
          CHECK(actual.indices.to_vector<int64_t>() == expected.indices.to_vector<int64_t>());
          // Values and gradients are copies of inputs: f32 is held to 0 (exact), f64 to kF64.
          check_parity([&](const TensorList& in) { return max(in[0], c.dim, keepdim).values; }, {x}, 0.0, ++seed);
        }
      }
    }
    check_parity([](const TensorList& in) { return max(in[0]); }, {random_input({4, 50}, dtype, ++seed)}, 0.0, ++seed);
  }
}

// Few outputs over a long extent take the cut path (cuda/launch.cuh ChunkPlan): pieces reduced
// by many blocks, then a pass over the pieces. 2^20 + 7 values make 257 pieces, the last short.
TEST_CASE("cuda ops: sums and maxima over long extents are cut into pieces and match the CPU",
          "[cuda][ops][reduce]") {
  uint64_t seed = 1450;
  const int64_t n = (int64_t(1) << 20) + 7;
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype);
    Tensor whole = random_positive({n}, dtype, ++seed);  // positive: no cancellation in the sum
    check_parity([](const TensorList& in) { return sum(in[0]); }, {whole}, kElementwiseF32, ++seed);
    check_parity([](const TensorList& in) { return mean(in[0]); }, {whole}, kElementwiseF32, ++seed);
    check_parity([](const TensorList& in) { return max(in[0]); }, {whole}, 0.0, ++seed);
    for (const DimCase& c : {DimCase{{3, 100003}, 1}, DimCase{{100003, 3}, 0}}) {
      INFO(shape_str(c.shape) << " dim " << c.dim);
      Tensor x = random_positive(c.shape, dtype, ++seed);
      check_parity([&](const TensorList& in) { return sum(in[0], c.dim); }, {x}, kElementwiseF32, ++seed);
      check_parity([&](const TensorList& in) { return max(in[0], c.dim).values; }, {x}, 0.0, ++seed);
    }
    // The largest value twice, in pieces 73 and 220 (of 4081 values): the lower index wins across pieces too.
    std::vector<double> values = random_ties({n}, DType::f64, ++seed).to_vector<double>();
    values[300000] = values[900000] = 9.0;
    Tensor tied = from_vector(values, {n}).to(dtype);
    ValuesIndices gpu = max(tied.to(kGpu), 0);
    CHECK(gpu.indices.item<int64_t>() == 300000);
    CHECK(gpu.indices.item<int64_t>() == max(tied, 0).indices.item<int64_t>());
  }
  Generator generator(seed);
  Tensor counts = randint(-1000, 1000, {n}, &generator);
  CHECK(sum(counts.to(kGpu)).item<int64_t>() == sum(counts).item<int64_t>());
}

TEST_CASE("cuda ops: softmax, log_softmax and logsumexp, forward and backward", "[cuda][ops][softmax]") {
  uint64_t seed = 1600;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const DimCase& c : kDimCases) {
      Tensor x = mul(random_input(c.shape, dtype, ++seed), 3.0);
      INFO(shape_str(c.shape) << " dim " << c.dim << " " << dtype);
      check_parity([&](const TensorList& in) { return softmax(in[0], c.dim); }, {x}, kElementwiseF32, ++seed);
      check_parity([&](const TensorList& in) { return log_softmax(in[0], c.dim); }, {x}, kElementwiseF32, ++seed);
      for (bool keepdim : {false, true})
        check_parity([&](const TensorList& in) { return logsumexp(in[0], c.dim, keepdim); }, {x}, kElementwiseF32,
                     ++seed);
    }
  }
}

TEST_CASE("cuda ops: logsumexp of infinite and empty rows follows the CPU", "[cuda][ops][softmax]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dtype : {DType::f32, DType::f64}) {
    // Rows: all -inf (-> -inf), holding +inf (-> +inf), finite with one -inf entry.
    Tensor x = from_vector(std::vector<double>{-inf, -inf, -inf, 1.0, inf, 2.0, 0.5, 1.5, -inf}, {3, 3}).to(dtype);
    std::vector<double> expected = host_values(logsumexp(x, 1));
    std::vector<double> actual = host_values(logsumexp(x.to(kGpu), 1));
    INFO(dtype);
    REQUIRE(actual.size() == 3);
    CHECK(actual[0] == -inf);
    CHECK(actual[1] == inf);
    CHECK(actual[2] == Approx(expected[2]).epsilon(tolerance(dtype, kElementwiseF32)));
    std::vector<double> empty_rows = host_values(logsumexp(Tensor::empty({2, 0}, dtype, kGpu), 1));
    CHECK(empty_rows == std::vector<double>(2, -inf));
  }
}

TEST_CASE("cuda ops: matmul and linear, forward and backward", "[cuda][ops][matmul]") {
  struct MatmulCase {
    Shape a, b;
  };
  // Plain, with leading dims, a vector, one row, an empty inner dimension, no rows.
  const std::vector<MatmulCase> matmul_cases = {
      {{5, 7}, {7, 3}}, {{2, 3, 8}, {8, 4}}, {{7}, {7, 3}}, {{1, 33}, {33, 65}}, {{3, 0}, {0, 4}}, {{0, 5}, {5, 3}},
  };
  uint64_t seed = 1700;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const MatmulCase& c : matmul_cases) {
      INFO("matmul " << shape_str(c.a) << " " << shape_str(c.b) << " " << dtype);
      check_parity([](const TensorList& in) { return matmul(in[0], in[1]); },
                   {random_input(c.a, dtype, ++seed), random_input(c.b, dtype, ++seed)}, kGemmF32, ++seed);
    }
    for (const Shape& x_shape : {Shape{4, 6}, Shape{2, 3, 6}, Shape{6}}) {
      INFO("linear " << shape_str(x_shape) << " " << dtype);
      Tensor x = random_input(x_shape, dtype, ++seed);
      Tensor weight = random_input({5, 6}, dtype, ++seed);
      Tensor bias = random_input({5}, dtype, ++seed);
      check_parity([](const TensorList& in) { return linear(in[0], in[1], in[2]); }, {x, weight, bias}, kGemmF32,
                   ++seed);
      check_parity([](const TensorList& in) { return linear(in[0], in[1]); }, {x, weight}, kGemmF32, ++seed);
    }
  }
}

TEST_CASE("cuda ops: matmul with TF32 opted in stays within the TF32 tolerance", "[cuda][ops][matmul]") {
  Tf32Scope tf32;
  check_parity([](const TensorList& in) { return matmul(in[0], in[1]); },
               {random_input({64, 96}, DType::f32, 1800), random_input({96, 48}, DType::f32, 1801)}, kTf32, 1802);
}

TEST_CASE("cuda ops: grouped_matmul with empty and unbalanced groups, forward and both gradients",
          "[cuda][ops][grouped_matmul]") {
  // Unbalanced with an empty group inside; empty first and last groups; a single group; no rows.
  const std::vector<std::vector<int64_t>> offset_cases = {
      {0, 5, 5, 22, 23}, {0, 0, 7, 7}, {0, 9}, {0, 0, 0},
  };
  const int64_t in_features = 6, out_features = 5;
  uint64_t seed = 1900;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::vector<int64_t>& offset_values : offset_cases) {
      for (bool transpose_weight : {false, true}) {
        int64_t experts = static_cast<int64_t>(offset_values.size()) - 1, rows = offset_values.back();
        Tensor x = random_input({rows, in_features}, dtype, ++seed);
        Shape w_shape = transpose_weight ? Shape{experts, out_features, in_features}
                                         : Shape{experts, in_features, out_features};
        Tensor w = random_input(w_shape, dtype, ++seed);
        Tensor offsets = from_vector(offset_values, {experts + 1});
        INFO("offsets " << shape_str(offset_values) << " transpose_weight " << transpose_weight << " " << dtype);
        check_parity([&](const TensorList& in) { return grouped_matmul(in[0], in[1], in[2], transpose_weight); },
                     {x, w, offsets}, kGemmF32, ++seed);
      }
    }
  }
}

TEST_CASE("cuda ops: a SwiGLU expert layer built from the wired ops", "[cuda][ops][grouped_matmul]") {
  // h = silu(x W1_e) * (x W3_e), y = h W2_e (docs/design.md, block step 5); x feeds two products, so its
  // gradient is a sum on the tape.
  const std::vector<int64_t> offset_values = {0, 3, 3, 11, 12};
  const int64_t experts = 4, rows = 12, model = 8, hidden = 10;
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = random_input({rows, model}, dtype, 2000);
    Tensor w1 = random_input({experts, model, hidden}, dtype, 2001);
    Tensor w3 = random_input({experts, model, hidden}, dtype, 2002);
    Tensor w2 = random_input({experts, hidden, model}, dtype, 2003);
    Tensor offsets = from_vector(offset_values, {experts + 1});
    INFO(dtype);
    check_parity(
        [](const TensorList& in) {
          Tensor h = silu(grouped_matmul(in[0], in[1], in[4])) * grouped_matmul(in[0], in[2], in[4]);
          return grouped_matmul(h, in[3], in[4]);
        },
        {x, w1, w3, w2, offsets}, kGemmF32, 2004);
  }
}

TEST_CASE("cuda ops: topk values, indices (ties to the lower index) and gradient", "[cuda][ops][topk]") {
  struct TopkCase {
    Shape shape;
    int64_t k;
  };
  // Router shapes up to the kernel's limits (k 8, rows of 256), 3-d, a single column.
  const std::vector<TopkCase> cases = {
      {{16, 8}, 2}, {{5, 64}, 8}, {{3, 256}, 1}, {{7, 256}, 8}, {{4, 3, 10}, 3}, {{6, 1}, 1}, {{2, 33}, 5},
  };
  uint64_t seed = 2100;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const TopkCase& c : cases) {
      for (bool ties : {false, true}) {
        Tensor x = ties ? random_ties(c.shape, dtype, ++seed, 3) : random_input(c.shape, dtype, ++seed);
        INFO(shape_str(c.shape) << " k " << c.k << " ties " << ties << " " << dtype);
        TopK expected = topk(x, c.k);
        TopK actual = topk(x.to(kGpu), c.k);
        CHECK(actual.indices.device() == kGpu);
        CHECK(actual.indices.to_vector<int64_t>() == expected.indices.to_vector<int64_t>());
        // Values and gradients are copies of inputs: f32 is held to 0 (exact), f64 to kF64.
        check_parity([&](const TensorList& in) { return topk(in[0], c.k).values; }, {x}, 0.0, ++seed);
      }
    }
  }
  Generator generator(2199);
  Tensor ids = randint(-50, 50, {9, 40}, &generator);
  TopK integer = topk(ids.to(kGpu), 4);
  CHECK(integer.values.to_vector<int64_t>() == topk(ids, 4).values.to_vector<int64_t>());
  CHECK(integer.indices.to_vector<int64_t>() == topk(ids, 4).indices.to_vector<int64_t>());
}

TEST_CASE("cuda ops: topk reports its choice and margin to gradcheck's observer as on the CPU", "[cuda][ops][topk]") {
  Tensor x = random_input({6, 12}, DType::f64, 2200);
  ChoiceLog log;
  topk(x, 3);
  topk(x.to(kGpu), 3);
  REQUIRE(log.ops == std::vector<std::string>{"topk", "topk"});
  CHECK(log.chosen[1] == log.chosen[0]);
  CHECK(log.margins[1] == log.margins[0]);
}

TEST_CASE("cuda ops: gradients accumulate into cuda leaves over two backward passes", "[cuda][ops][autograd]") {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor values = random_input({3, 8}, dtype, 2300);
    Tensor cpu = leaf_on(values, Device::cpu()), gpu = leaf_on(values, kGpu);
    Tensor cpu_loss = sum(softmax(cpu * cpu, 1) * cpu);
    Tensor gpu_loss = sum(softmax(gpu * gpu, 1) * gpu);
    cpu_loss.backward(true);
    cpu_loss.backward();
    gpu_loss.backward(true);
    gpu_loss.backward();
    INFO(dtype);
    REQUIRE(gpu.grad().defined());
    CHECK(gpu.grad().device() == kGpu);
    CHECK(relative_error(gpu.grad(), cpu.grad()) <= tolerance(dtype, kElementwiseF32));
  }
}

TEST_CASE("cuda ops: topk outside the kernel's limits and mixed devices are Errors", "[cuda][ops][errors]") {
  Tensor scores = random_input({4, 16}, DType::f32, 2400).to(kGpu);
  CHECK_THROWS_WITH(topk(scores, 9), Contains("topk") && Contains("at most 8") && Contains("k = 9"));
  CHECK_THROWS_WITH(topk(random_input({2, 257}, DType::f32, 2401).to(kGpu), 2),
                    Contains("topk") && Contains("at most 256") && Contains("n = 257"));
  CHECK_THROWS_WITH(topk(scores, 2, 0), Contains("topk") && Contains("last dimension"));
  CHECK_THROWS_WITH(topk(scores, 2, -1, false), Contains("topk") && Contains("largest=true"));
  CHECK_THROWS_WITH(topk(scores, 2, -1, true, false), Contains("topk") && Contains("sorted=true"));
  CHECK_THROWS_WITH(topk(scores, 17), Contains("topk") && Contains("larger than n"));

  Tensor a_cpu = random_input({3, 4}, DType::f32, 2402), a_gpu = a_cpu.to(kGpu);
  CHECK_THROWS_WITH(add(a_cpu, a_gpu), Contains("add") && Contains("one device"));
  CHECK_THROWS_WITH(mul(a_gpu, a_cpu), Contains("mul") && Contains("one device"));
  Tensor w_cpu = random_input({4, 5}, DType::f32, 2403);
  CHECK_THROWS_WITH(matmul(a_gpu, w_cpu), Contains("matmul") && Contains("one device"));
  CHECK_THROWS_WITH(linear(a_gpu, random_input({5, 4}, DType::f32, 2404).to(kGpu), random_input({5}, DType::f32, 2405)),
                    Contains("linear") && Contains("one device"));
  Tensor x = random_input({5, 4}, DType::f32, 2406).to(kGpu);
  Tensor w = random_input({2, 4, 3}, DType::f32, 2407);
  Tensor offsets = from_vector(std::vector<int64_t>{0, 2, 5}, {3});
  CHECK_THROWS_WITH(grouped_matmul(x, w, offsets.to(kGpu)), Contains("grouped_matmul") && Contains("one device"));
  CHECK_THROWS_WITH(grouped_matmul(x, w.to(kGpu), offsets), Contains("grouped_matmul") && Contains("x's device"));

  Tensor out = exp(a_gpu.clone().requires_grad_());
  CHECK_THROWS_WITH(out.backward(ones({3, 4})), Contains("backward") && Contains("one device"));
}
