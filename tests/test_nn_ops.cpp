// The dense network ops: embedding, rms_norm, cross_entropy. Forward against slow loops written
// here, f64 gradchecks (edge shapes, ignored rows), hand-checked gradients, bad input.
#include <catch2/catch.hpp>
#include <cmath>

#include "ops/embedding.h"
#include "ops/loss.h"
#include "ops/norm.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;
namespace matchers = Catch::Matchers;

namespace {

Tensor ids_of(const std::vector<int64_t>& values, const Shape& shape) { return from_vector(values, shape); }

}  // namespace

// ---- embedding ----

TEST_CASE("embedding: rows by id, any ids shape", "[embedding]") {
  Tensor weight = arange(8, DType::f64).reshape({4, 2});  // row v = [2v, 2v+1]
  Tensor out = embedding(weight, ids_of({3, 0, 3, 1, 2, 2}, {2, 3}));
  CHECK(out.shape() == Shape{2, 3, 2});
  CHECK(out.to_vector<double>() == std::vector<double>{6, 7, 0, 1, 6, 7, 2, 3, 4, 5, 4, 5});
  Tensor single = embedding(weight, from_vector(std::vector<int64_t>{2}, {}));
  CHECK(single.shape() == Shape{2});
  CHECK(single.to_vector<double>() == std::vector<double>{4, 5});
  CHECK(embedding(weight, zeros({0}, DType::i64)).shape() == Shape{0, 2});
  CHECK(embedding(weight.to(DType::f32), ids_of({1}, {1})).to_vector<float>() == std::vector<float>{2, 3});
}

TEST_CASE("embedding: repeated ids accumulate their gradients", "[embedding]") {
  Tensor weight = zeros({4, 2}, DType::f64).requires_grad_();
  Tensor out = embedding(weight, ids_of({1, 3, 1, 1}, {4}));
  Tensor upstream = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  out.backward(upstream);
  // Row 1 gets positions 0, 2, 3; row 3 gets position 1; rows 0 and 2 nothing.
  CHECK(weight.grad().to_vector<double>() == std::vector<double>{0, 0, 13, 16, 0, 0, 3, 4});
}

TEST_CASE("embedding: gradcheck", "[embedding][gradcheck]") {
  Generator generator(12);
  Tensor weight = randn({5, 3}, DType::f64, &generator).requires_grad_();
  for (const Tensor& ids : {ids_of({4, 0, 4, 2}, {2, 2}), ids_of({1}, {1}), ids_of({3}, {}), ids_of({0, 0, 0}, {3})}) {
    std::string what = "embedding ids " + shape_str(ids.shape());
    check_gradients(what.c_str(), [ids](const TensorList& in) { return embedding(in[0], ids); }, {weight});
  }
}

TEST_CASE("embedding: errors name the op", "[embedding][errors]") {
  Tensor weight = zeros({8, 2});
  CHECK_THROWS_WITH(embedding(weight, ids_of({1, 9}, {2})),
                    Catch::Contains("embedding") && Catch::Contains("id 9") && Catch::Contains("8 rows"));
  CHECK_THROWS_WITH(embedding(weight, ids_of({-1}, {1})), Catch::Contains("embedding") && Catch::Contains("id -1"));
  CHECK_THROWS_WITH(embedding(weight, zeros({2})), Catch::Contains("embedding") && Catch::Contains("ids"));
  CHECK_THROWS_WITH(embedding(zeros({8}), ids_of({1}, {1})), Catch::Contains("embedding") && Catch::Contains("weight"));
  CHECK_THROWS_WITH(embedding(zeros({8, 2}, DType::i64), ids_of({1}, {1})),
                    Catch::Contains("embedding") && Catch::Contains("floating"));
  CHECK_THROWS_WITH(embedding(weight, Tensor()), Catch::Contains("embedding") && Catch::Contains("undefined"));
}

// ---- rms_norm ----

namespace {

// y = x / sqrt(mean(x^2) + eps) * weight, one row of the last dim at a time.
std::vector<double> slow_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  std::vector<double> values = x.to_vector<double>(), result(values.size());
  int64_t width = x.shape().back();
  std::vector<double> scale = weight.defined() ? weight.to_vector<double>() : std::vector<double>(width, 1.0);
  for (int64_t start = 0; start < x.numel(); start += width) {
    double squares = 0;
    for (int64_t j = 0; j < width; ++j) squares += values[start + j] * values[start + j];
    double rms = std::sqrt(squares / static_cast<double>(width) + eps);
    for (int64_t j = 0; j < width; ++j) result[start + j] = values[start + j] / rms * scale[j];
  }
  return result;
}

}  // namespace

TEST_CASE("rms_norm: forward matches the formula", "[rms_norm]") {
  // Hand-computed: mean(3^2, 4^2) = 12.5.
  Tensor x = from_vector(std::vector<double>{3, 4}, {1, 2});
  Tensor weight = from_vector(std::vector<double>{1, 2}, {2});
  double rms = std::sqrt(12.5);
  CHECK_THAT(rms_norm(x, weight, 0.0).to_vector<double>(), matchers::Approx(std::vector<double>{3 / rms, 8 / rms}));
  CHECK_THAT(rms_norm(x, Tensor(), 0.0).to_vector<double>(), matchers::Approx(std::vector<double>{3 / rms, 4 / rms}));
  Generator generator(13);
  for (const Shape& shape : {Shape{3, 5}, Shape{2, 3, 4}, Shape{4}, Shape{2, 1}}) {
    INFO(shape_str(shape));
    Tensor input = randn(shape, DType::f64, &generator);
    Tensor scale = randn({shape.back()}, DType::f64, &generator);
    CHECK_THAT(rms_norm(input, scale).to_vector<double>(),
               matchers::Approx(slow_rms_norm(input, scale, 1e-6)).epsilon(1e-12));
    CHECK_THAT(rms_norm(input, Tensor(), 0.1).to_vector<double>(),
               matchers::Approx(slow_rms_norm(input, Tensor(), 0.1)).epsilon(1e-12));
    CHECK_THAT(rms_norm(input.to(DType::f32), scale.to(DType::f32)).to(DType::f64).to_vector<double>(),
               matchers::Approx(slow_rms_norm(input, scale, 1e-6)).epsilon(1e-5).margin(1e-6));
  }
  // eps keeps an all-zero row finite.
  CHECK(rms_norm(zeros({1, 3}), Tensor()).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(rms_norm(zeros({0, 3}), ones({3})).shape() == Shape{0, 3});
}

TEST_CASE("rms_norm: gradcheck for x and weight", "[rms_norm][gradcheck]") {
  Generator generator(14);
  for (const Shape& shape : {Shape{1, 4}, Shape{3, 5}, Shape{2, 3, 4}, Shape{3, 1}, Shape{6}}) {
    Tensor x = randn(shape, DType::f64, &generator).requires_grad_();
    Tensor weight = randn({shape.back()}, DType::f64, &generator).requires_grad_();
    std::string where = shape_str(shape);
    check_gradients(("rms_norm x, weight " + where).c_str(),
                    [](const TensorList& in) { return rms_norm(in[0], in[1]); }, {x, weight});
    check_gradients(("rms_norm no weight " + where).c_str(),
                    [](const TensorList& in) { return rms_norm(in[0], Tensor(), 1e-2); }, {x});
    Tensor constant_weight = weight.detach().clone();
    check_gradients(("rms_norm constant weight " + where).c_str(),
                    [](const TensorList& in) { return rms_norm(in[0], in[1]); }, {x, constant_weight});
    Tensor constant_x = x.detach().clone();
    check_gradients(("rms_norm weight only " + where).c_str(),
                    [](const TensorList& in) { return rms_norm(in[0], in[1]); }, {constant_x, weight});
  }
}

TEST_CASE("rms_norm: errors name the op", "[rms_norm][errors]") {
  Tensor x = zeros({2, 4});
  CHECK_THROWS_WITH(rms_norm(x, zeros({3})), Catch::Contains("rms_norm") && Catch::Contains("[4]"));
  CHECK_THROWS_WITH(rms_norm(x, zeros({1, 4})), Catch::Contains("rms_norm") && Catch::Contains("weight"));
  CHECK_THROWS_WITH(rms_norm(x, zeros({4}, DType::f64)), Catch::Contains("rms_norm") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(rms_norm(zeros({2, 4}, DType::i64), Tensor()),
                    Catch::Contains("rms_norm") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(rms_norm(scalar(1.0), Tensor()), Catch::Contains("rms_norm") && Catch::Contains("[..., d]"));
  CHECK_THROWS_WITH(rms_norm(zeros({2, 0}), Tensor()), Catch::Contains("rms_norm") && Catch::Contains("d >= 1"));
  CHECK_THROWS_WITH(rms_norm(x, Tensor(), -1e-3), Catch::Contains("rms_norm") && Catch::Contains("eps"));
  CHECK_THROWS_WITH(rms_norm(Tensor(), Tensor()), Catch::Contains("rms_norm") && Catch::Contains("undefined"));
}

// ---- cross_entropy ----

namespace {

// mean over kept rows of -log softmax(logits_n)[target_n], unshifted (moderate logits only).
double slow_cross_entropy(const Tensor& logits, const std::vector<int64_t>& targets, int64_t ignore_index) {
  std::vector<double> values = logits.to_vector<double>();
  int64_t classes = logits.size(1);
  double total = 0;
  int64_t kept = 0;
  for (size_t row = 0; row < targets.size(); ++row) {
    if (targets[row] == ignore_index) continue;
    double normaliser = 0;
    for (int64_t c = 0; c < classes; ++c) normaliser += std::exp(values[row * classes + c]);
    total += -std::log(std::exp(values[row * classes + targets[row]]) / normaliser);
    ++kept;
  }
  return total / static_cast<double>(kept);
}

}  // namespace

TEST_CASE("cross_entropy: forward matches a slow loop", "[cross_entropy]") {
  // Hand-computed: uniform logits over 4 classes give log 4.
  CHECK(cross_entropy(zeros({3, 4}, DType::f64), ids_of({0, 1, 3}, {3})).item() == Approx(std::log(4.0)));
  Generator generator(15);
  Tensor logits = randn({5, 3}, DType::f64, &generator);
  std::vector<int64_t> targets = {2, 0, -100, 1, 2};
  Tensor loss = cross_entropy(logits, ids_of(targets, {5}));
  CHECK(loss.shape() == Shape{});
  CHECK(loss.dtype() == DType::f64);
  CHECK(loss.item() == Approx(slow_cross_entropy(logits, targets, -100)).epsilon(1e-12));
  std::vector<int64_t> other_ignore = {2, 0, 1, 1, 2};
  CHECK(cross_entropy(logits, ids_of(other_ignore, {5}), 1).item() ==
        Approx(slow_cross_entropy(logits, other_ignore, 1)).epsilon(1e-12));
  Tensor loss32 = cross_entropy(logits.to(DType::f32), ids_of(targets, {5}));
  CHECK(loss32.dtype() == DType::f32);
  CHECK(loss32.item() == Approx(loss.item()).epsilon(1e-6));
  CHECK(cross_entropy(zeros({2, 1}), ids_of({0, 0}, {2})).item() == 0);  // one class: certain
}

TEST_CASE("cross_entropy: large logits stay finite", "[cross_entropy]") {
  Tensor logits = from_vector(std::vector<double>{1000, 1001, -1000, 0}, {2, 2});
  double e = std::exp(1.0);
  // Row 0: -log softmax([1000, 1001])[0] = log(1 + e); row 1: -log softmax([-1000, 0])[1] ~ e^-1000.
  double expected = (std::log1p(e) + std::exp(-1000.0)) / 2;
  CHECK(cross_entropy(logits, ids_of({0, 1}, {2})).item() == Approx(expected));
  CHECK(cross_entropy(logits.to(DType::f32), ids_of({0, 1}, {2})).item() == Approx(expected));
}

TEST_CASE("cross_entropy: every row ignored gives 0 and a zero gradient", "[cross_entropy]") {
  Tensor logits = randn({3, 4}, DType::f64).requires_grad_();
  Tensor loss = cross_entropy(logits, ids_of({-100, -100, -100}, {3}));
  CHECK(loss.item() == 0);
  loss.backward();
  CHECK(logits.grad().to_vector<double>() == std::vector<double>(12, 0.0));
  CHECK(cross_entropy(zeros({0, 4}), zeros({0}, DType::i64)).item() == 0);
}

TEST_CASE("cross_entropy: gradient by hand and gradcheck", "[cross_entropy][gradcheck]") {
  Tensor logits = from_vector(std::vector<double>{0, std::log(3.0), 5, 7}, {2, 2}).requires_grad_();
  cross_entropy(logits, ids_of({1, -100}, {2})).backward();
  // One kept row: softmax [0.25, 0.75] minus onehot(1); the ignored row gets nothing.
  CHECK_THAT(logits.grad().to_vector<double>(), matchers::Approx(std::vector<double>{0.25, -0.25, 0, 0}));
  Generator generator(16);
  struct Case {
    Shape shape;
    std::vector<int64_t> targets;
  };
  for (const Case& c : std::vector<Case>{{{4, 3}, {2, 0, 1, 1}},
                                         {{4, 3}, {2, -100, 1, -100}},
                                         {{1, 5}, {3}},
                                         {{3, 1}, {0, 0, -100}},
                                         {{2, 6}, {5, 5}}}) {
    Tensor x = randn(c.shape, DType::f64, &generator).requires_grad_();
    Tensor targets = ids_of(c.targets, {c.shape[0]});
    std::string what = "cross_entropy " + shape_str(c.shape);
    check_gradients(what.c_str(), [targets](const TensorList& in) { return cross_entropy(in[0], targets); }, {x});
  }
  Tensor x = randn({3, 4}, DType::f64, &generator).requires_grad_();
  Tensor targets = ids_of({0, 3, 2}, {3});
  check_gradients("cross_entropy scaled upstream",
                  [targets](const TensorList& in) { return mul(cross_entropy(in[0], targets), 2.5); }, {x});
  check_gradients("cross_entropy all ignored",
                  [](const TensorList& in) {
                    return cross_entropy(in[0], ids_of({-100, -100, -100}, {3}));
                  },
                  {x});
}

TEST_CASE("cross_entropy: errors name the op", "[cross_entropy][errors]") {
  Tensor logits = zeros({2, 3});
  CHECK_THROWS_WITH(cross_entropy(logits, ids_of({0, 3}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("target 3") && Catch::Contains("3 classes"));
  CHECK_THROWS_WITH(cross_entropy(logits, ids_of({-1, 0}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("target -1"));
  CHECK_THROWS_WITH(cross_entropy(logits, ids_of({0, 1, 2}, {3})),
                    Catch::Contains("cross_entropy") && Catch::Contains("[2]"));
  CHECK_THROWS_WITH(cross_entropy(logits, ids_of({0, 1}, {1, 2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("targets"));
  CHECK_THROWS_WITH(cross_entropy(logits, zeros({2})), Catch::Contains("cross_entropy") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(cross_entropy(zeros({2, 3}, DType::i64), ids_of({0, 1}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("logits"));
  CHECK_THROWS_WITH(cross_entropy(zeros({2, 3, 1}), ids_of({0, 1}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("2 dimensions"));
  CHECK_THROWS_WITH(cross_entropy(zeros({2, 0}), ids_of({0, 1}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("class"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor()), Catch::Contains("cross_entropy") && Catch::Contains("undefined"));
}

// ---- all of them together ----

namespace {

// A tiny model through every op of this area; returns a scalar loss.
Tensor tiny_model_loss(const Tensor& table, const Tensor& scale, const Tensor& projection) {
  Tensor hidden = rms_norm(embedding(table, ids_of({1, 5, 2, 1}, {2, 2})), scale);  // [2, 2, 4]
  Tensor rows = concat({slice(hidden, 0, 0, 1), slice(hidden, 0, 1, 2)}, 1);        // [1, 4, 4]
  Tensor mixed = transpose(transpose(rows.reshape({4, 4})));                        // [4, 4]
  Tensor logits = linear(stack({mixed, mixed}, 0).reshape({8, 4}), projection);     // [8, 6]
  Tensor loss = cross_entropy(log_softmax(softmax(logits)), ids_of({0, 1, 2, 3, 4, 5, -100, 0}, {8}));
  return add(loss, mul(mean(logsumexp(logits)), 1e-3));
}

}  // namespace

TEST_CASE("dense ops: a small model's graph backpropagates and frees its records", "[nn_ops]") {
  size_t records_before = tape_size();
  Generator generator(17);
  Tensor table = randn({6, 4}, DType::f64, &generator).requires_grad_();
  Tensor scale = ones({4}, DType::f64).requires_grad_();
  Tensor projection = randn({6, 4}, DType::f64, &generator).requires_grad_();
  {
    Tensor dropped = tiny_model_loss(table, scale, projection);  // never backpropagated
    CHECK(tape_size() > records_before);
  }
  CHECK(tape_size() == records_before);  // no backward closure kept its own record alive
  tiny_model_loss(table, scale, projection).backward();
  CHECK(tape_size() == records_before);
  for (const Tensor& parameter : {table, scale, projection}) {
    REQUIRE(parameter.grad().defined());
    for (double value : parameter.grad().to_vector<double>()) CHECK(std::isfinite(value));
  }
  check_gradients("tiny model", [](const TensorList& in) { return tiny_model_loss(in[0], in[1], in[2]); },
                  {table, scale, projection});
}
