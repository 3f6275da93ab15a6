// slice, concat, transpose, stack: values by hand, every dtype, gradients to each input, bad input.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "ops/shape.h"
#include "tests/test_helpers.h"
#include "tinymoe/tinymoe.h"

using namespace tinymoe;
using tinymoe::testing::check_gradients;

namespace {

// 0, 1, 2, ... in the given shape, as f64.
Tensor counting(const Shape& shape) { return arange(shape_numel(shape), DType::f64).reshape(shape); }

}  // namespace

TEST_CASE("shape: slice along each dim", "[shape]") {
  Tensor x = counting({2, 3, 4});
  Tensor rows = slice(x, 0, 1, 2);
  CHECK(rows.shape() == Shape{1, 3, 4});
  CHECK(rows.to_vector<double>() == slice(counting({24}), 0, 12, 24).to_vector<double>());
  Tensor middle = slice(x, 1, 1, 3);
  CHECK(middle.shape() == Shape{2, 2, 4});
  CHECK(middle.to_vector<double>() == std::vector<double>{4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23});
  Tensor last = slice(x, -1, 2, 4);
  CHECK(last.shape() == Shape{2, 3, 2});
  CHECK(last.to_vector<double>() == std::vector<double>{2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23});
  CHECK(slice(x, 2, 1, 1).shape() == Shape{2, 3, 0});
  CHECK(slice(x, 0, 0, 2).to_vector<double>() == x.to_vector<double>());
  // A copy: writing into the slice leaves x alone.
  middle.data<double>()[0] = -1;
  CHECK(x.data<double>()[4] == 4);
  Tensor ids = from_vector(std::vector<int64_t>{5, 6, 7, 8}, {4});
  CHECK(slice(ids, 0, 1, 3).to_vector<int64_t>() == std::vector<int64_t>{6, 7});
}

TEST_CASE("shape: concat along each dim, with empty pieces", "[shape]") {
  Tensor a = counting({2, 2});
  Tensor b = add(counting({2, 3}), 10.0);
  Tensor joined = concat({a, b}, 1);
  CHECK(joined.shape() == Shape{2, 5});
  CHECK(joined.to_vector<double>() == std::vector<double>{0, 1, 10, 11, 12, 2, 3, 13, 14, 15});
  CHECK(concat({a, b}, -1).to_vector<double>() == joined.to_vector<double>());
  Tensor c = add(counting({1, 2}), 20.0);
  CHECK(concat({a, c, a}, 0).to_vector<double>() == std::vector<double>{0, 1, 2, 3, 20, 21, 0, 1, 2, 3});
  CHECK(concat({a, zeros({0, 2}, DType::f64)}, 0).to_vector<double>() == a.to_vector<double>());
  CHECK(concat({a}, 0).to_vector<double>() == a.to_vector<double>());
  Tensor ids = concat({from_vector(std::vector<int64_t>{1}, {1}), from_vector(std::vector<int64_t>{2, 3}, {2})});
  CHECK(ids.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
  Tensor x = counting({2, 2, 2});
  CHECK(concat({x, x}, 1).to_vector<double>() == std::vector<double>{0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7});
}

TEST_CASE("shape: transpose", "[shape]") {
  Tensor x = counting({2, 3});
  Tensor t = transpose(x);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(transpose(t).to_vector<double>() == x.to_vector<double>());
  CHECK(transpose(counting({1, 4})).shape() == Shape{4, 1});
  CHECK(transpose(zeros({0, 3})).shape() == Shape{3, 0});
  CHECK(transpose(from_vector(std::vector<int64_t>{1, 2}, {1, 2})).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK(transpose(from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2})).to_vector<float>() ==
        std::vector<float>{1, 3, 2, 4});
}

namespace {

// out[index with dims a and b swapped] = x[index], element by element: the definition.
std::vector<double> swapped_by_definition(const Tensor& x, int64_t a, int64_t b) {
  Shape shape = x.shape(), out_shape = shape;
  std::swap(out_shape[a], out_shape[b]);
  std::vector<double> values = x.to_vector<double>(), out(values.size());
  std::vector<int64_t> index(shape.size(), 0);
  for (size_t flat = 0; flat < values.size(); ++flat) {
    std::vector<int64_t> swapped = index;
    std::swap(swapped[a], swapped[b]);
    int64_t target = 0;
    for (size_t d = 0; d < shape.size(); ++d) target = target * out_shape[d] + swapped[d];
    out[target] = values[flat];
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0 && ++index[d] == shape[d]; --d) index[d] = 0;
  }
  return out;
}

}  // namespace

TEST_CASE("shape: transpose of any two dims matches its definition", "[shape]") {
  Tensor x = counting({2, 3, 4, 5});
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 4; ++b) {
      INFO("dims " << a << ", " << b);
      Tensor t = transpose(x, a, b);
      Shape expected_shape = x.shape();
      std::swap(expected_shape[a], expected_shape[b]);
      CHECK(t.shape() == expected_shape);
      CHECK(t.to_vector<double>() == swapped_by_definition(x, a, b));
      CHECK(transpose(x, b - 4, a - 4).to_vector<double>() == t.to_vector<double>());  // negative, either order
    }
  CHECK(transpose(counting({3, 4}), 0, 1).to_vector<double>() == transpose(counting({3, 4})).to_vector<double>());
  CHECK(transpose(zeros({2, 0, 3}), 0, 2).shape() == Shape{3, 0, 2});
  Tensor ids = from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {1, 2, 3});
  CHECK(transpose(ids, 1, 2).to_vector<int64_t>() == std::vector<int64_t>{1, 4, 2, 5, 3, 6});
  // Attention's head split: [B, S, H, dh] -> [B, H, S, dh] and back.
  Tensor heads = counting({2, 5, 3, 4});
  CHECK(transpose(transpose(heads, 1, 2), 1, 2).to_vector<double>() == heads.to_vector<double>());
}

TEST_CASE("shape: stack inserts a new dim", "[shape]") {
  Tensor a = counting({2, 2});
  Tensor b = add(counting({2, 2}), 10.0);
  Tensor first = stack({a, b});
  CHECK(first.shape() == Shape{2, 2, 2});
  CHECK(first.to_vector<double>() == std::vector<double>{0, 1, 2, 3, 10, 11, 12, 13});
  Tensor middle = stack({a, b}, 1);
  CHECK(middle.shape() == Shape{2, 2, 2});
  CHECK(middle.to_vector<double>() == std::vector<double>{0, 1, 10, 11, 2, 3, 12, 13});
  Tensor last = stack({a, b}, -1);
  CHECK(last.shape() == Shape{2, 2, 2});
  CHECK(last.to_vector<double>() == std::vector<double>{0, 10, 1, 11, 2, 12, 3, 13});
  CHECK(stack({a, b}, 2).to_vector<double>() == last.to_vector<double>());
  Tensor scalars = stack({scalar(1.0, DType::f64), scalar(2.0, DType::f64), scalar(3.0, DType::f64)});
  CHECK(scalars.shape() == Shape{3});
  CHECK(scalars.to_vector<double>() == std::vector<double>{1, 2, 3});
  CHECK(stack({from_vector(std::vector<int64_t>{4}, {1})}).shape() == Shape{1, 1});
}

TEST_CASE("shape: gradcheck slice, concat, transpose, stack", "[shape][gradcheck]") {
  Generator generator(11);
  Tensor x = randn({2, 3, 4}, DType::f64, &generator).requires_grad_();
  check_gradients("slice dim 0", [](const TensorList& in) { return slice(in[0], 0, 1, 2); }, {x});
  check_gradients("slice dim 1", [](const TensorList& in) { return slice(in[0], 1, 0, 2); }, {x});
  check_gradients("slice dim -1", [](const TensorList& in) { return slice(in[0], -1, 1, 4); }, {x});
  check_gradients("slice whole", [](const TensorList& in) { return slice(in[0], 2, 0, 4); }, {x});
  Tensor row = randn({1, 3}, DType::f64, &generator).requires_grad_();
  check_gradients("slice one row", [](const TensorList& in) { return slice(in[0], 1, 2, 3); }, {row});
  Tensor a = randn({2, 3}, DType::f64, &generator).requires_grad_();
  Tensor b = randn({2, 1}, DType::f64, &generator).requires_grad_();
  Tensor c = randn({1, 3}, DType::f64, &generator).requires_grad_();
  check_gradients("concat dim 1", [](const TensorList& in) { return concat({in[0], in[1]}, 1); }, {a, b});
  check_gradients("concat dim 0", [](const TensorList& in) { return concat({in[0], in[1], in[0]}, 0); }, {a, c});
  check_gradients("concat one input", [](const TensorList& in) { return concat({in[0]}, 0); }, {a});
  Tensor constant = randn({2, 2}, DType::f64, &generator);
  check_gradients("concat with a constant",
                  [](const TensorList& in) {
                    return concat({in[1], in[0]}, 1);
                  },
                  {a, constant});
  check_gradients("transpose", [](const TensorList& in) { return transpose(in[0]); }, {a});
  check_gradients("transpose one row", [](const TensorList& in) { return transpose(in[0]); }, {c});
  for (auto dims : {std::pair<int64_t, int64_t>{0, 2}, {1, 2}, {-1, 0}, {1, 1}}) {
    std::string what = "transpose dims " + std::to_string(dims.first) + ", " + std::to_string(dims.second);
    check_gradients(what.c_str(), [dims](const TensorList& in) { return transpose(in[0], dims.first, dims.second); },
                    {x});
  }
  Tensor d = randn({2, 3}, DType::f64, &generator).requires_grad_();
  for (int64_t dim : {0, 1, 2, -1}) {
    std::string what = "stack dim " + std::to_string(dim);
    check_gradients(what.c_str(), [dim](const TensorList& in) { return stack({in[0], in[1]}, dim); }, {a, d});
  }
  Tensor s = scalar(0.5, DType::f64).requires_grad_();
  check_gradients("stack 0-d",
                  [](const TensorList& in) {
                    return stack({in[0], in[0], in[1]});
                  },
                  {s, scalar(2.0, DType::f64).requires_grad_()});
}

TEST_CASE("shape: gradients by hand", "[shape]") {
  Tensor x = counting({2, 3}).requires_grad_();
  Tensor picked = slice(x, 1, 1, 2);  // column 1
  sum(mul(picked, from_vector(std::vector<double>{2, 3}, {2, 1}))).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 0, 3, 0});
  Tensor y = counting({2}).requires_grad_();
  sum(concat({y, y, counting({1})})).backward();  // used twice: gradient 2
  CHECK(y.grad().to_vector<double>() == std::vector<double>{2, 2});
}

TEST_CASE("shape: errors name the op", "[shape][errors]") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH(slice(x, 1, 2, 1), Catch::Contains("slice") && Catch::Contains("start 2 and end 1"));
  CHECK_THROWS_WITH(slice(x, 1, 0, 4), Catch::Contains("slice") && Catch::Contains("<= 3"));
  CHECK_THROWS_WITH(slice(x, 0, -1, 1), Catch::Contains("slice") && Catch::Contains("start -1"));
  CHECK_THROWS_WITH(slice(x, 2, 0, 1), Catch::Contains("slice") && Catch::Contains("dim 2 out of range"));
  CHECK_THROWS_WITH(slice(scalar(1.0), 0, 0, 1), Catch::Contains("slice"));
  CHECK_THROWS_WITH(slice(Tensor(), 0, 0, 1), Catch::Contains("slice") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(concat({}, 0), Catch::Contains("concat") && Catch::Contains("empty list"));
  CHECK_THROWS_WITH(concat({x, zeros({3, 2})}, 0), Catch::Contains("concat") && Catch::Contains("[3, 2]"));
  CHECK_THROWS_WITH(concat({x, zeros({2, 3, 1})}, 0), Catch::Contains("concat") && Catch::Contains("tensor 1"));
  CHECK_THROWS_WITH(concat({x, zeros({2, 3}, DType::f64)}, 0), Catch::Contains("concat") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(concat({x, x}, 2), Catch::Contains("concat") && Catch::Contains("dim 2"));
  CHECK_THROWS_WITH(concat({scalar(1.0), scalar(2.0)}, 0),
                    Catch::Contains("concat") && Catch::Contains("0-dimensional"));
  CHECK_THROWS_WITH(concat({x, Tensor()}, 0), Catch::Contains("concat") && Catch::Contains("undefined"));
  CHECK_THROWS_WITH(transpose(zeros({2, 3, 4})), Catch::Contains("transpose") && Catch::Contains("2 dimensions"));
  CHECK_THROWS_WITH(transpose(zeros({3})), Catch::Contains("transpose"));
  CHECK_THROWS_WITH(transpose(zeros({2, 3}), 0, 2), Catch::Contains("transpose") && Catch::Contains("2"));
  CHECK_THROWS_WITH(transpose(zeros({2, 3}), -3, 0), Catch::Contains("transpose"));
  CHECK_THROWS_WITH(transpose(Tensor(), 0, 1), Catch::Contains("transpose"));
  CHECK_THROWS_WITH(stack({}), Catch::Contains("stack") && Catch::Contains("empty list"));
  CHECK_THROWS_WITH(stack({x, zeros({2, 2})}), Catch::Contains("stack") && Catch::Contains("[2, 2]"));
  CHECK_THROWS_WITH(stack({x, x}, 3), Catch::Contains("stack") && Catch::Contains("dim 3"));
  CHECK_THROWS_WITH(stack({x, x}, -4), Catch::Contains("stack") && Catch::Contains("dim -4"));
  CHECK_THROWS_WITH(stack({x, zeros({2, 3}, DType::i64)}), Catch::Contains("stack") && Catch::Contains("i64"));
}
