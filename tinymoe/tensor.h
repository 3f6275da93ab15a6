// Tensor: a handle (shared_ptr) to a shape, a dtype and shared storage, plus the autograd state.
// Row-major and contiguous always: reshape/view share storage, every other op allocates.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tinymoe/dtype.h"
#include "tinymoe/storage.h"

namespace tinymoe {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);

struct Node;
struct TensorImpl;
class Generator;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: no shape, no storage
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  // Allocates uninitialised storage.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  // Size of dimension d; negative d counts from the end.
  int64_t size(int64_t d) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(dtype()); }

  // Typed element pointer; throws when T does not match the dtype or the tensor is not on cpu.
  template <typename T> T* data() const;
  void* raw_data() const;
  const std::shared_ptr<Storage>& storage() const;

  // Same storage, new shape (one dimension may be -1). Differentiable.
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const { return reshape(shape); }
  Tensor flatten() const { return reshape({numel()}); }
  Tensor clone() const;                 // a copy with its own storage; differentiable
  Tensor to(DType dtype) const;         // cast; differentiable between floating dtypes
  Tensor to(Device device) const;       // copy to another device; differentiable
  Tensor detach() const;                // same storage, no autograd history

  template <typename T> std::vector<T> to_vector() const;
  // The value of a one-element tensor as double (or T).
  double item() const;
  template <typename T> T item() const;

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool requires = true);  // only on leaves
  bool is_leaf() const;
  Tensor grad() const;                  // undefined until a backward reaches this leaf
  void zero_grad();                     // drops the accumulated gradient
  void set_grad(const Tensor& grad);
  const std::shared_ptr<Node>& grad_fn() const;
  // Reverse pass from this tensor; see tinymoe/autograd.h for the options.
  void backward(bool retain_graph = false) const;
  void backward(const Tensor& grad_output, bool retain_graph = false) const;

  std::string str(int64_t max_per_dim = 6) const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // the record that produced this tensor; null for leaves
  int output_index = 0;           // which output of grad_fn this is
  Tensor grad;                    // accumulated gradient of a leaf
};

using TensorList = std::vector<Tensor>;

// ---- Factories. All default to f32 on cpu. ----
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor full_like(const Tensor& like, double value);
// 0, 1, ..., end-1 (or start, start+step, ... < end).
Tensor arange(int64_t end, DType dtype = DType::i64);
Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64);
// Copies values into a new tensor of the given shape; the shape must hold values.size() elements.
Tensor from_vector(const std::vector<float>& values, const Shape& shape);
Tensor from_vector(const std::vector<double>& values, const Shape& shape);
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape);
Tensor scalar(double value, DType dtype = DType::f32);
// Standard normal and uniform [low, high) samples from a generator (default: the global one).
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* generator = nullptr);
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* generator = nullptr,
            double low = 0.0, double high = 1.0);
// Uniform integers in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* generator = nullptr);

// Shared argument checks used by every op; each throws tinymoe::Error naming op.
void check_defined(const Tensor& tensor, const char* op, const char* name);
void check_dtype(const Tensor& tensor, DType dtype, const char* op, const char* name);
void check_floating(const Tensor& tensor, const char* op, const char* name);
void check_dim(const Tensor& tensor, int64_t dim, const char* op, const char* name);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_cpu(const Tensor& tensor, const char* op);
// Normalises a possibly negative dimension index into [0, ndim).
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace tinymoe
