// Element types and devices. f32 is the training type, f64 the gradient-check type, i64 the
// index type (token ids, expert ids, offsets).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "tinymoe/error.h"

namespace tinymoe {

enum class DType { f32, f64, i64 };

inline size_t element_size(DType dtype) { return dtype == DType::f32 ? 4 : 8; }
inline bool is_floating(DType dtype) { return dtype != DType::i64; }
const char* dtype_name(DType dtype);
inline std::ostream& operator<<(std::ostream& out, DType dtype) { return out << dtype_name(dtype); }

// The C++ type behind a dtype, and back.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };

enum class DeviceKind { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static Device cpu() { return {DeviceKind::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  // Parses "cpu", "cuda", "cuda:N".
  static Device parse(const std::string& text);

  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  std::string str() const;
  bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
};

inline std::ostream& operator<<(std::ostream& out, const Device& device) { return out << device.str(); }

// Runs fn(tag) where tag carries `using type = float|double` for the dtype; i64 is an error.
template <typename T> struct type_tag { using type = T; };

template <typename Fn>
decltype(auto) dispatch_floating(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(type_tag<float>{});
    case DType::f64: return fn(type_tag<double>{});
    default: fail(op, "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  }
}

// Runs fn(tag) for every dtype.
template <typename Fn>
decltype(auto) dispatch_all(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(type_tag<float>{});
    case DType::f64: return fn(type_tag<double>{});
    default: return fn(type_tag<int64_t>{});
  }
}

}  // namespace tinymoe
