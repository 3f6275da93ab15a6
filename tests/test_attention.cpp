// nn/attention.h: CausalSelfAttention against attention written out element by element (scale,
// causal mask, heads), causality, gradcheck through x and every weight, names and errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using namespace tinymoe::nn;

// The errors name the module and say what was wrong.
#define CHECK_ATTENTION_ERROR(expr, text) \
  CHECK_THROWS_WITH(expr, Catch::Contains("CausalSelfAttention") && Catch::Contains(text))

namespace {

// y = x W^T for x [rows, d] and W [d, d], row-major vectors.
std::vector<double> project(const std::vector<double>& x, const Tensor& weight, int64_t rows, int64_t d) {
  std::vector<double> w = weight.to_vector<double>(), y(rows * d, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < d; ++o)
      for (int64_t i = 0; i < d; ++i) y[r * d + o] += x[r * d + i] * w[o * d + i];
  return y;
}

// Attention by its definition, one (sequence, head, query) at a time.
std::vector<double> attention_by_definition(const CausalSelfAttention& attention, const Tensor& x) {
  const int64_t batch = x.size(0), length = x.size(1), d = x.size(2);
  const int64_t heads = attention.num_heads(), dh = attention.head_dim();
  std::vector<double> values = x.to_vector<double>();
  std::vector<double> q = project(values, attention.q_proj()->weight(), batch * length, d);
  std::vector<double> k = project(values, attention.k_proj()->weight(), batch * length, d);
  std::vector<double> v = project(values, attention.v_proj()->weight(), batch * length, d);
  std::vector<double> context(batch * length * d, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < length; ++i) {
        auto at = [&](const std::vector<double>& m, int64_t s, int64_t c) { return m[(b * length + s) * d + h * dh + c]; };
        std::vector<double> weights(i + 1);
        double largest = -INFINITY, total = 0;
        for (int64_t j = 0; j <= i; ++j) {  // keys after the query are masked out
          double score = 0;
          for (int64_t c = 0; c < dh; ++c) score += at(q, i, c) * at(k, j, c);
          weights[j] = score / std::sqrt(static_cast<double>(dh));
          largest = std::max(largest, weights[j]);
        }
        for (double& w : weights) total += (w = std::exp(w - largest));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < dh; ++c) context[(b * length + i) * d + h * dh + c] += weights[j] / total * at(v, j, c);
      }
  return project(context, attention.o_proj()->weight(), batch * length, d);
}

}  // namespace

TEST_CASE("attention: matches attention written out by its definition", "[attention]") {
  for (int64_t heads : {1, 2, 4}) {
    INFO(heads << " heads");
    Generator generator(40 + heads);
    CausalSelfAttention attention(8, heads, &generator, DType::f64);
    Tensor x = randn({3, 5, 8}, DType::f64, &generator);
    Tensor y = attention(x);
    CHECK(y.shape() == Shape{3, 5, 8});
    std::vector<double> got = y.to_vector<double>(), expected = attention_by_definition(attention, x);
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-12));
  }
}

TEST_CASE("attention: one module over inputs of changing shape stays right", "[attention]") {
  // The mask and offsets of the last shape are kept: a new length or batch must rebuild them.
  Generator generator(48);
  CausalSelfAttention attention(8, 2, &generator, DType::f64);
  for (Shape shape : {Shape{2, 3, 8}, Shape{2, 6, 8}, Shape{1, 6, 8}, Shape{2, 3, 8}}) {
    INFO(shape_str(shape));
    Tensor x = randn(shape, DType::f64, &generator);
    std::vector<double> got = attention(x).to_vector<double>(), expected = attention_by_definition(attention, x);
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-12));
  }
}

TEST_CASE("attention: a position never sees the positions after it", "[attention]") {
  Generator generator(44);
  CausalSelfAttention attention(6, 3, &generator, DType::f64);
  Tensor x = randn({2, 7, 6}, DType::f64, &generator);
  Tensor changed = x.clone();
  for (int64_t c = 0; c < 6; ++c) changed.data<double>()[(7 + 4) * 6 + c] += 3.0;  // sequence 1, position 4
  std::vector<double> before = attention(x).to_vector<double>(), after = attention(changed).to_vector<double>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t s = 0; s < 7; ++s) {
      bool same = true;
      for (int64_t c = 0; c < 6; ++c) same = same && before[(b * 7 + s) * 6 + c] == after[(b * 7 + s) * 6 + c];
      INFO("sequence " << b << " position " << s);
      CHECK(same == (b == 0 || s < 4));
    }
  // One token attends only to itself: the output is o_proj(v_proj(x)).
  Tensor single = randn({1, 1, 6}, DType::f64, &generator);
  Tensor expected = attention.o_proj()->forward(attention.v_proj()->forward(single));
  CHECK(attention(single).to_vector<double>() == expected.to_vector<double>());
}

TEST_CASE("attention: gradcheck through x and every weight", "[attention][gradcheck]") {
  Generator generator(45);
  CausalSelfAttention attention(4, 2, &generator, DType::f64);
  Tensor x = randn({2, 3, 4}, DType::f64, &generator).requires_grad_();
  TensorList checked = attention.parameters();
  checked.insert(checked.begin(), x);
  GradcheckResult result = gradcheck_in_place([&] { return attention(x); }, checked);
  INFO(result.report);
  CHECK(result.passed());
}

TEST_CASE("attention: parameter names follow HF Llama", "[attention]") {
  CausalSelfAttention attention(8, 2);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : attention.named_parameters()) {
    names.push_back(name);
    CHECK(tensor.shape() == Shape{8, 8});
  }
  CHECK(names == std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"});
  CHECK(attention.head_dim() == 4);
}

TEST_CASE("attention: bad sizes and inputs name CausalSelfAttention", "[attention][errors]") {
  CHECK_ATTENTION_ERROR(CausalSelfAttention(6, 4), "num_heads");
  CHECK_ATTENTION_ERROR(CausalSelfAttention(6, 0), "num_heads");
  CausalSelfAttention attention(6, 2);
  CHECK_ATTENTION_ERROR(attention(zeros({4, 6})), "[B, S, 6]");
  CHECK_ATTENTION_ERROR(attention(zeros({1, 4, 5})), "[B, S, 6]");
  CHECK_ATTENTION_ERROR(attention(zeros({1, 0, 6})), "S >= 1");
  CHECK_ATTENTION_ERROR(attention(zeros({1, 4, 6}, DType::f64)), "dtype");
  CHECK_ATTENTION_ERROR(attention(Tensor()), "x");
}
