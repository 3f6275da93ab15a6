// The copy, shape and layer ops on cuda tensors against their CPU paths, forward and backward
// through the tape: casts, slice, concat, stack, transpose, embedding, rms_norm, cross_entropy,
// swiglu and the weighted MoE combine.
#include <catch2/catch.hpp>

#include <utility>

#include "cuda/fused.h"
#include "cuda/layout.h"
#include "graph_parity.h"
#include "ops/embedding.h"
#include "ops/loss.h"
#include "ops/norm.h"
#include "ops/shape.h"
#include "ops/swiglu.h"
#include "ops/weighted_scatter_add.h"

using namespace cuda_test;
using Catch::Contains;

namespace {

// Every combination of which floating inputs want a gradient, at least one.
const std::vector<std::vector<bool>> kGradientChoices = {{true, true}, {true, false}, {false, true}};

}  // namespace

TEST_CASE("cuda ops copy: casts between every dtype pair on the device, clone, and the cast's gradient",
          "[cuda][copy]") {
  uint64_t seed = 2000;
  for (DType from : {DType::f32, DType::f64, DType::i64}) {
    Tensor x = from == DType::i64 ? random_ids({5, 7}, 1000, ++seed) : mul(random_input({5, 7}, from, ++seed), 50.0);
    for (DType to : {DType::f32, DType::f64, DType::i64}) {
      INFO(from << " to " << to);
      GraphRun gpu = check_graph([&](const TensorList& in) { return in[0].to(to); }, {x}, kExact, kExact, ++seed);
      CHECK(gpu.output.dtype() == to);
    }
    check_graph([](const TensorList& in) { return in[0].clone(); }, {x}, kExact, kExact, ++seed);
  }
}

TEST_CASE("cuda ops shape: slice, concat, stack and transpose match the CPU forward and backward", "[cuda][shape]") {
  uint64_t seed = 2100;
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    auto draw = [&](const Shape& shape) {
      return dtype == DType::i64 ? random_ids(shape, 1000, ++seed) : random_input(shape, dtype, ++seed);
    };
    INFO(dtype);
    Tensor cube = draw({3, 4, 5});
    struct Range {
      int64_t start, end;
    };
    for (int64_t dim : {0, 1, 2, -1})
      for (Range range : {Range{0, 1}, Range{1, 3}, Range{0, 3}, Range{2, 2}}) {
        INFO("slice dim " << dim << " [" << range.start << ", " << range.end << ")");
        check_graph([&](const TensorList& in) { return slice(in[0], dim, range.start, range.end); }, {cube}, kExact,
                    kExact, ++seed);
      }
    Tensor wide = draw({3, 2, 5}), empty = draw({3, 0, 5});
    check_graph([](const TensorList& in) { return concat(in, 1); }, {cube, wide, empty}, kExact, kExact, ++seed);
    check_graph([](const TensorList& in) { return concat(in, 0); }, {cube, draw({1, 4, 5})}, kExact, kExact, ++seed);
    check_graph([](const TensorList& in) { return concat(in, -1); }, {cube, draw({3, 4, 2})}, kExact, kExact, ++seed);
    for (int64_t dim : {0, 1, 2, -1}) {
      INFO("stack dim " << dim);
      check_graph([&](const TensorList& in) { return stack(in, dim); }, {draw({4, 3}), draw({4, 3}), draw({4, 3})},
                  kExact, kExact, ++seed);
    }
    for (const Shape& shape : {Shape{7, 13}, Shape{1, 5}, Shape{0, 3}, Shape{300, 2}}) {
      INFO("transpose " << shape_str(shape));
      check_graph([](const TensorList& in) { return transpose(in[0]); }, {draw(shape)}, kExact, kExact, ++seed);
    }
    // Any two dims of a 4-D tensor: attention's head split [B, S, H, dh] <-> [B, H, S, dh].
    Tensor heads = draw({2, 5, 3, 4});
    for (auto dims : {std::pair<int64_t, int64_t>{1, 2}, {0, 3}, {2, 3}, {-1, 1}, {2, 2}}) {
      INFO("transpose dims " << dims.first << ", " << dims.second);
      check_graph([&](const TensorList& in) { return transpose(in[0], dims.first, dims.second); }, {heads}, kExact,
                  kExact, ++seed);
    }
  }
}

TEST_CASE("cuda ops embedding: rows by id and the summed gradient of repeated ids match the CPU",
          "[cuda][embedding]") {
  uint64_t seed = 2200;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape& ids_shape : {Shape{200}, Shape{3, 4}, Shape{}, Shape{0}}) {
      Tensor weight = random_input({11, 6}, dtype, ++seed);
      Tensor ids = random_ids(ids_shape, 11, ++seed);
      INFO(dtype << " ids " << shape_str(ids_shape));
      // The weight gradient is a deterministic scatter: the CPU's sums in the CPU's order.
      check_graph([](const TensorList& in) { return embedding(in[0], in[1]); }, {weight, ids}, kExact, kExact, ++seed);
    }
  }
}

TEST_CASE("cuda ops rms_norm: forward and both gradients match the CPU, with and without a weight",
          "[cuda][norm]") {
  uint64_t seed = 2300;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{4, 16}, Shape{2, 3, 300}, Shape{5, 1}, Shape{700, 8}, Shape{0, 8}}) {
      Tensor x = random_input(shape, dtype, ++seed);
      Tensor weight = random_input({shape.back()}, dtype, ++seed);
      for (const std::vector<bool>& wanted : kGradientChoices) {
        INFO(dtype << " " << shape_str(shape) << " x grad " << wanted[0] << " weight grad " << wanted[1]);
        check_graph([](const TensorList& in) { return rms_norm(in[0], in[1], 1e-6); }, {x, weight}, kElementwise,
                    kElementwise, ++seed, wanted);
      }
      INFO(dtype << " " << shape_str(shape) << " no weight");
      check_graph([](const TensorList& in) { return rms_norm(in[0], Tensor(), 1e-5); }, {x}, kElementwise,
                  kElementwise, ++seed);
    }
  }
}

TEST_CASE("cuda ops cross_entropy: loss and gradient match the CPU, ignored rows, large logits", "[cuda][loss]") {
  uint64_t seed = 2400;
  struct LossCase {
    int64_t rows, classes;
    double scale;  // logits of size ~scale: exp would overflow without the max shift
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (LossCase c : {LossCase{37, 11, 1.0}, LossCase{8, 1000, 3.0}, LossCase{5, 1, 1.0}, LossCase{16, 7, 80.0},
                       LossCase{0, 5, 1.0}}) {
      Tensor logits = mul(random_input({c.rows, c.classes}, dtype, ++seed), c.scale);
      Tensor classes = random_ids({c.rows}, c.classes, ++seed);
      std::vector<int64_t> some_ignored = classes.to_vector<int64_t>();
      for (size_t row = 0; row < some_ignored.size(); row += 3) some_ignored[row] = -100;  // every third row
      INFO(dtype << " " << c.rows << " x " << c.classes << " scale " << c.scale);
      check_graph([](const TensorList& in) { return cross_entropy(in[0], in[1]); },
                  {logits, from_vector(some_ignored, {c.rows})}, kElementwise, kElementwise, ++seed);
      // An ignore_index that is also a class: the rows of class 0 drop out.
      check_graph([](const TensorList& in) { return cross_entropy(in[0], in[1], 0); }, {logits, classes},
                  kElementwise, kElementwise, ++seed);
    }
  }
  Tensor logits = random_input({4, 3}, DType::f32, 2450);
  Tensor all_ignored = from_vector(std::vector<int64_t>{-100, -100, -100, -100}, {4});
  GraphRun gpu = check_graph([](const TensorList& in) { return cross_entropy(in[0], in[1]); }, {logits, all_ignored},
                             kExact, kExact, 2451);
  CHECK(gpu.output.item() == 0.0);
  CHECK(host_values(gpu.grads[0]) == std::vector<double>(12, 0.0));
}

TEST_CASE("cuda ops swiglu: forward and both gradients match the CPU", "[cuda][swiglu]") {
  uint64_t seed = 2500;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{5, 7}, Shape{1000}, Shape{0, 4}}) {
      Tensor gate = mul(random_input(shape, dtype, ++seed), 4.0), up = random_input(shape, dtype, ++seed);
      for (const std::vector<bool>& wanted : kGradientChoices) {
        INFO(dtype << " " << shape_str(shape) << " gate grad " << wanted[0] << " up grad " << wanted[1]);
        check_graph([](const TensorList& in) { return swiglu(in[0], in[1]); }, {gate, up}, kElementwise, kElementwise,
                    ++seed, wanted);
      }
    }
  }
}

TEST_CASE("cuda ops weighted_scatter_add: combine and its gradients match the CPU, runs are bit-identical",
          "[cuda][weighted_scatter_add]") {
  struct CombineCase {
    int64_t pairs, width, num_rows;
    bool column_weight;  // weight [P, 1] instead of [P]
  };
  uint64_t seed = 2600;
  for (DType dtype : {DType::f32, DType::f64}) {
    for (CombineCase c : {CombineCase{300, 16, 40, false}, CombineCase{5, 300, 3, true}, CombineCase{64, 8, 100, true},
                          CombineCase{0, 4, 6, false}}) {
      Tensor source = random_input({c.pairs, c.width}, dtype, ++seed);
      Tensor index = random_ids({c.pairs}, c.num_rows, ++seed);
      Tensor weight = random_input(c.column_weight ? Shape{c.pairs, 1} : Shape{c.pairs}, dtype, ++seed);
      const std::vector<bool> source_index_weight[] = {{true, false, true}, {true, false, false}, {false, false, true}};
      for (const std::vector<bool>& wanted : source_index_weight) {
        INFO(dtype << " pairs " << c.pairs << " width " << c.width << " rows " << c.num_rows << " grads "
                   << wanted[0] << wanted[2]);
        check_graph([&](const TensorList& in) { return weighted_scatter_add(in[0], in[1], in[2], c.num_rows); },
                    {source, index, weight}, kElementwise, kElementwise, ++seed, wanted);
      }
    }
  }
  Tensor source = random_input({3000, 16}, DType::f32, 2650).to(kGpu);
  Tensor index = random_ids({3000}, 20, 2651).to(kGpu);
  Tensor weight = random_input({3000}, DType::f32, 2652).to(kGpu);
  CHECK(host_values(weighted_scatter_add(source, index, weight, 20)) ==
        host_values(weighted_scatter_add(source, index, weight, 20)));
}

TEST_CASE("cuda ops nn: bad ids, targets and indices, and mixed devices, are Errors naming the op",
          "[cuda][errors]") {
  Tensor weight = random_input({11, 6}, DType::f32, 2700).to(kGpu);
  CHECK_THROWS_WITH(embedding(weight, from_vector(std::vector<int64_t>{3, 11}, {2}).to(kGpu)),
                    Contains("embedding") && Contains("index 11"));
  CHECK_THROWS_WITH(embedding(weight, from_vector(std::vector<int64_t>{3}, {1})),
                    Contains("embedding") && Contains("mixed devices"));
  Tensor logits = random_input({3, 5}, DType::f32, 2701).to(kGpu);
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector(std::vector<int64_t>{0, 7, -100}, {3}).to(kGpu)),
                    Contains("cross_entropy") && Contains("index 7"));
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector(std::vector<int64_t>{0, -1, 2}, {3}).to(kGpu)),
                    Contains("cross_entropy") && Contains("index -1"));
  Tensor x = random_input({4, 5}, DType::f32, 2702).to(kGpu);
  CHECK_THROWS_WITH(rms_norm(x, ones({5})), Contains("rms_norm") && Contains("mixed devices"));
  CHECK_THROWS_WITH(swiglu(x, random_input({4, 5}, DType::f32, 2703)), Contains("swiglu") && Contains("mixed devices"));
  CHECK_THROWS_WITH(concat({x, random_input({4, 5}, DType::f32, 2704)}, 0),
                    Contains("concat") && Contains("mixed devices"));
  Tensor source = random_input({2, 3}, DType::f32, 2705).to(kGpu), pair_weight = ones({2}).to(kGpu);
  CHECK_THROWS_WITH(weighted_scatter_add(source, from_vector(std::vector<int64_t>{0, 4}, {2}).to(kGpu), pair_weight, 4),
                    Contains("weighted_scatter_add") && Contains("index 4"));
}

TEST_CASE("cuda ops nn: the kernels refuse cpu tensors, naming the op", "[cuda][errors][nodevice]") {
  Tensor x = ones({3, 2});
  Tensor targets = from_vector(std::vector<int64_t>{0, 1, 0}, {3});
  CHECK_THROWS_WITH(cuda::cast(x, DType::f64), Contains("cast") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::copy_along(x, 0, x, 0, 0, 1), Contains("copy_along") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::transpose(x, 0, 1), Contains("transpose") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::rms_norm(x, Tensor(), 1e-6), Contains("rms_norm") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::rms_norm_backward(x, x, Tensor(), 1e-6, false),
                    Contains("rms_norm") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::cross_entropy(x, targets, -100), Contains("cross_entropy") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::cross_entropy_backward(ones({}), x, targets, {}, -100),
                    Contains("cross_entropy") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::swiglu(x, x), Contains("swiglu") && Contains("cuda device"));
  CHECK_THROWS_WITH(cuda::swiglu_backward(x, x, x, true, true), Contains("swiglu") && Contains("cuda device"));
}
