#include "tinymoe/tensor.h"

#include <cstring>
#include <sstream>

#include "ops/copy.h"
#include "tinymoe/autograd.h"
#include "tinymoe/random.h"

namespace tinymoe {

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return count;
}

namespace {

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) throw Error("Tensor: use of an undefined tensor");
  return *impl;
}

void check_shape_valid(const Shape& shape, const char* op) {
  for (int64_t extent : shape)
    TINYMOE_CHECK(extent >= 0, op, "negative size in shape ", shape_str(shape));
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape_valid(shape, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * element_size(dtype), device);
  return Tensor(std::move(impl));
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
void* Tensor::raw_data() const { return checked(impl_).storage->data(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }

template <typename T>
T* Tensor::data() const {
  TINYMOE_CHECK(dtype() == dtype_of<T>::value, "data", "requested ", dtype_name(dtype_of<T>::value),
                " data from a ", dtype_name(dtype()), " tensor");
  TINYMOE_CHECK(device().is_cpu(), "data", "host pointer requested for a tensor on ", device().str(),
                "; copy it with to(Device::cpu()) first");
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = requested;
  int64_t known = 1;
  int inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      TINYMOE_CHECK(inferred < 0, "reshape", "only one dimension may be -1, got ", shape_str(requested));
      inferred = static_cast<int>(i);
    } else {
      TINYMOE_CHECK(shape[i] >= 0, "reshape", "negative size in shape ", shape_str(requested));
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    TINYMOE_CHECK(known != 0 && numel() % known == 0, "reshape", "cannot infer -1 in ",
                  shape_str(requested), " for a tensor of shape ", shape_str(this->shape()));
    shape[inferred] = numel() / known;
  }
  TINYMOE_CHECK(shape_numel(shape) == numel(), "reshape", "shape ", shape_str(requested),
                " holds ", shape_numel(shape), " elements but the tensor of shape ",
                shape_str(this->shape()), " has ", numel());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = shape;
  impl->dtype = impl_->dtype;
  Tensor out(std::move(impl));
  if (needs_record({this})) {
    Shape input_shape = this->shape();
    record("reshape", {*this}, {out}, [input_shape](const TensorList& grads) -> TensorList {
      return {grads[0].reshape(input_shape)};
    });
  }
  return out;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = checked(impl_).storage;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::clone() const { return copy_tensor(*this, dtype(), device(), "clone"); }
Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  return copy_tensor(*this, target, device(), "to");
}
Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  return copy_tensor(*this, dtype(), target, "to");
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = device().is_cpu() ? *this : to(Device::cpu());
  const T* begin = host.data<T>();
  return std::vector<T>(begin, begin + numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

template <typename T>
T Tensor::item() const {
  TINYMOE_CHECK(numel() == 1, "item", "expected a tensor with one element, got shape ", shape_str(shape()));
  Tensor host = device().is_cpu() ? *this : to(Device::cpu());
  return dispatch_all(dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    return static_cast<T>(*static_cast<const S*>(host.raw_data()));
  });
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
double Tensor::item() const { return item<double>(); }

bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }
bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

Tensor& Tensor::requires_grad_(bool requires) {
  checked(impl_);
  TINYMOE_CHECK(is_leaf(), "requires_grad_", "only leaf tensors can change requires_grad; "
                "this tensor was produced by '", impl_->grad_fn->op, "' (use detach() first)");
  TINYMOE_CHECK(!requires || is_floating(dtype()), "requires_grad_",
                "only floating tensors can require grad, got ", dtype_name(dtype()));
  impl_->requires_grad = requires;
  return *this;
}

Tensor Tensor::grad() const { return checked(impl_).grad; }
void Tensor::zero_grad() { checked(impl_); impl_->grad = Tensor(); }
void Tensor::set_grad(const Tensor& grad) {
  checked(impl_);
  if (grad.defined())
    TINYMOE_CHECK(grad.shape() == shape() && grad.dtype() == dtype(), "set_grad", "expected a ",
                  dtype_name(dtype()), " gradient of shape ", shape_str(shape()), ", got ",
                  dtype_name(grad.dtype()), " ", shape_str(grad.shape()));
  impl_->grad = grad;
}

void Tensor::backward(bool retain_graph) const { tinymoe::backward(*this, Tensor(), retain_graph); }
void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  tinymoe::backward(*this, grad_output, retain_graph);
}

// ---- Printing: torch-like, truncated to max_per_dim leading and trailing entries per dim. ----
namespace {

template <typename T>
void print_values(std::ostream& out, const T* data, const Shape& shape, size_t dim, int64_t max_per_dim) {
  if (shape.empty()) {
    out << data[0];
    return;
  }
  int64_t extent = shape[dim];
  int64_t stride = 1;
  for (size_t d = dim + 1; d < shape.size(); ++d) stride *= shape[d];
  out << '[';
  bool truncate = extent > 2 * max_per_dim;
  for (int64_t i = 0; i < extent; ++i) {
    if (truncate && i == max_per_dim) {
      out << "..., ";
      i = extent - max_per_dim;
    }
    if (dim + 1 == shape.size()) {
      out << data[i];
    } else {
      print_values(out, data + i * stride, shape, dim + 1, max_per_dim);
    }
    if (i + 1 < extent) out << (dim + 1 == shape.size() ? ", " : ",\n ");
  }
  out << ']';
}

}  // namespace

std::string Tensor::str(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
      << ", device=" << device().str();
  if (requires_grad()) out << ", requires_grad";
  if (impl_->grad_fn) out << ", grad_fn=" << impl_->grad_fn->op;
  out << ")\n";
  Tensor host = detach().to(Device::cpu());
  dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    print_values(out, static_cast<const T*>(host.raw_data()), shape(), 0, max_per_dim);
  });
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

// ---- Factories ----
Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = host.data<T>();
    std::fill(data, data + host.numel(), static_cast<T>(value));
  });
  return device.is_cpu() ? host : host.to(device);
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), like.dtype(), like.device()); }
Tensor ones_like(const Tensor& like) { return ones(like.shape(), like.dtype(), like.device()); }
Tensor full_like(const Tensor& like, double value) { return full(like.shape(), value, like.dtype(), like.device()); }
Tensor scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor arange(int64_t end, DType dtype) { return arange(0, end, 1, dtype); }
Tensor arange(int64_t start, int64_t end, int64_t step, DType dtype) {
  TINYMOE_CHECK(step != 0, "arange", "step must be non-zero");
  int64_t count = step > 0 ? (end - start + step - 1) / step : (start - end - step - 1) / -step;
  if (count < 0) count = 0;
  Tensor out = Tensor::empty({count}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = out.data<T>();
    for (int64_t i = 0; i < count; ++i) data[i] = static_cast<T>(start + i * step);
  });
  return out;
}

namespace {
template <typename T>
Tensor from_values(const std::vector<T>& values, const Shape& shape) {
  check_shape_valid(shape, "from_vector");
  TINYMOE_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "from_vector", "shape ",
                shape_str(shape), " holds ", shape_numel(shape), " elements but ", values.size(), " values came");
  Tensor out = Tensor::empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(out.raw_data(), values.data(), values.size() * sizeof(T));
  return out;
}
}  // namespace

Tensor from_vector(const std::vector<float>& values, const Shape& shape) { return from_values(values, shape); }
Tensor from_vector(const std::vector<double>& values, const Shape& shape) { return from_values(values, shape); }
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape) { return from_values(values, shape); }

Tensor randn(const Shape& shape, DType dtype, Generator* generator) {
  Generator& source = generator ? *generator : default_generator();
  Tensor out = Tensor::empty(shape, dtype);
  dispatch_floating(dtype, "randn", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = out.data<T>();
    for (int64_t i = 0; i < out.numel(); ++i) data[i] = static_cast<T>(source.normal());
  });
  return out;
}

Tensor rand(const Shape& shape, DType dtype, Generator* generator, double low, double high) {
  TINYMOE_CHECK(low < high, "rand", "expected low < high, got [", low, ", ", high, ")");
  Generator& source = generator ? *generator : default_generator();
  Tensor out = Tensor::empty(shape, dtype);
  dispatch_floating(dtype, "rand", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = out.data<T>();
    for (int64_t i = 0; i < out.numel(); ++i) data[i] = static_cast<T>(low + (high - low) * source.uniform());
  });
  return out;
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* generator) {
  TINYMOE_CHECK(low < high, "randint", "expected low < high, got [", low, ", ", high, ")");
  Generator& source = generator ? *generator : default_generator();
  Tensor out = Tensor::empty(shape, DType::i64);
  int64_t* data = out.data<int64_t>();
  for (int64_t i = 0; i < out.numel(); ++i) data[i] = source.integer(low, high);
  return out;
}

// ---- Shared checks ----
void check_defined(const Tensor& tensor, const char* op, const char* name) {
  TINYMOE_CHECK(tensor.defined(), op, "argument '", name, "' is an undefined tensor");
}
void check_dtype(const Tensor& tensor, DType dtype, const char* op, const char* name) {
  check_defined(tensor, op, name);
  TINYMOE_CHECK(tensor.dtype() == dtype, op, "expected '", name, "' of dtype ", dtype_name(dtype),
                ", got ", dtype_name(tensor.dtype()));
}
void check_floating(const Tensor& tensor, const char* op, const char* name) {
  check_defined(tensor, op, name);
  TINYMOE_CHECK(is_floating(tensor.dtype()), op, "expected '", name,
                "' of a floating dtype (f32 or f64), got ", dtype_name(tensor.dtype()));
}
void check_dim(const Tensor& tensor, int64_t dim, const char* op, const char* name) {
  check_defined(tensor, op, name);
  TINYMOE_CHECK(tensor.dim() == dim, op, "expected '", name, "' with ", dim, " dimensions, got shape ",
                shape_str(tensor.shape()));
}
void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  TINYMOE_CHECK(a.device() == b.device(), op, "expected tensors on one device, got ", a.device().str(),
                " and ", b.device().str(), " (mixed devices are an error, not a copy)");
}
void check_cpu(const Tensor& tensor, const char* op) {
  TINYMOE_CHECK(tensor.device().is_cpu(), op, "has no kernel for device ", tensor.device().str(),
                " in this build");
}
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t normalized = dim < 0 ? dim + ndim : dim;
  TINYMOE_CHECK(normalized >= 0 && normalized < ndim, op, "dim ", dim, " out of range for a tensor with ",
                ndim, " dimensions");
  return normalized;
}

}  // namespace tinymoe
