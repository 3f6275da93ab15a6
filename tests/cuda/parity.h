// Helpers of the CUDA tests: random inputs, host copies and the relative error that
// docs/design.md's tolerances are stated in (||a - b|| / ||b||).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "tinymoe/tinymoe.h"

namespace cuda_test {

using namespace tinymoe;

inline const Device kGpu = Device::cuda(0);

// docs/design.md: f32 elementwise 1e-5, GEMM 1e-4, TF32 1e-3; f64 work is held to 1e-12.
constexpr double kElementwiseF32 = 1e-5;
constexpr double kGemmF32 = 1e-4;
constexpr double kTf32 = 1e-3;
constexpr double kF64 = 1e-12;

inline double tolerance(DType dtype, double f32_tolerance) { return dtype == DType::f64 ? kF64 : f32_tolerance; }

inline std::vector<double> host_values(const Tensor& x) { return x.to(Device::cpu()).to(DType::f64).to_vector<double>(); }

// ||actual - expected|| / ||expected|| over all elements, in double on the host.
inline double relative_error(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.shape() == expected.shape());
  std::vector<double> a = host_values(actual), b = host_values(expected);
  double difference = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm == 0 ? std::sqrt(difference) : std::sqrt(difference / norm);
}

// Normal samples pushed away from zero (|v| >= 0.1): "random inputs, never zeros".
inline Tensor random_input(const Shape& shape, DType dtype, uint64_t seed) {
  Generator generator(seed);
  std::vector<double> values(static_cast<size_t>(shape_numel(shape)));
  for (double& value : values) {
    value = generator.normal();
    if (std::abs(value) < 0.1) value = value < 0 ? value - 0.1 : value + 0.1;
  }
  return from_vector(values, shape).to(dtype);
}

// Uniform in [low, high) (a positive domain for log, sqrt, pow, div).
inline Tensor random_positive(const Shape& shape, DType dtype, uint64_t seed, double low = 0.5, double high = 2.0) {
  Generator generator(seed);
  return rand(shape, dtype, &generator, low, high);
}

// Small integers as floats: inputs with many exact ties.
inline Tensor random_ties(const Shape& shape, DType dtype, uint64_t seed, int64_t distinct = 4) {
  Generator generator(seed);
  return randint(1, distinct + 1, shape, &generator).to(dtype);
}

}  // namespace cuda_test
