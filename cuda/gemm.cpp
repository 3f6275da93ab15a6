#include "cuda/gemm.h"

#include <atomic>
#include <climits>
#include <mutex>
#include <type_traits>
#include <unordered_map>

#include "cuda/allocator.h"
#include "cuda/cublas_library.h"
#include "cuda/runtime.h"

namespace tinymoe {
namespace cuda {
namespace {

std::atomic<bool> use_tf32{false};

// ---- Handles: one per thread and device, recycled through a pool when a thread ends (as
// PyTorch does), so a thread pool that comes and goes does not leak handles. The pool is never
// destroyed: cublasDestroy during static destruction would race the CUDA runtime's teardown.
struct HandlePool {
  std::mutex mutex;
  std::unordered_map<int, std::vector<cublasHandle_t>> idle;  // device -> handles
};

HandlePool& handle_pool() {
  static HandlePool* pool = new HandlePool();
  return *pool;
}

struct ThreadHandles {
  std::unordered_map<int, cublasHandle_t> by_device;
  ~ThreadHandles() {
    std::lock_guard<std::mutex> lock(handle_pool().mutex);
    for (const auto& [device, handle] : by_device) handle_pool().idle[device].push_back(handle);
  }
};

thread_local ThreadHandles thread_handles;

cublasHandle_t take_idle_handle(int device) {
  HandlePool& pool = handle_pool();
  std::lock_guard<std::mutex> lock(pool.mutex);
  std::vector<cublasHandle_t>& idle = pool.idle[device];
  if (idle.empty()) return nullptr;
  cublasHandle_t handle = idle.back();
  idle.pop_back();
  return handle;
}

int current_device() {
  int device = 0;
  TINYMOE_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// ---- Argument checks shared by gemm and grouped_gemm.
cublasOperation_t operation(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }

int as_int(int64_t value, const char* op, const char* name) {
  TINYMOE_CHECK(value >= 0 && value <= INT_MAX, op, name, " = ", value, " is outside [0, ", INT_MAX,
                "] (cuBLAS's 32-bit interface)");
  return static_cast<int>(value);
}

void check_leading(int64_t ld, int64_t columns, const char* op, const char* name) {
  TINYMOE_CHECK(ld >= std::max<int64_t>(columns, 1), op, name, " = ", ld, " is less than the ", columns,
                " columns of its row-major matrix");
}

void check_problem(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                   int64_t ldc, const char* op) {
  as_int(m, op, "m");
  as_int(n, op, "n");
  as_int(k, op, "k");
  check_leading(lda, trans_a ? m : k, op, "lda");
  check_leading(ldb, trans_b ? k : n, op, "ldb");
  check_leading(ldc, n, op, "ldc");
  as_int(lda, op, "lda");
  as_int(ldb, op, "ldb");
  as_int(ldc, op, "ldc");
}

void set_math_mode(cublasHandle_t handle, float) {
  TINYMOE_CUBLAS_CHECK(cublas_library().set_math_mode(handle, use_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}
void set_math_mode(cublasHandle_t, double) {}

// ---- Typed cuBLAS entry points, column-major as cuBLAS sees them.
cublasStatus_t column_major_gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n,
                                 int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                                 const float* beta, float* c, int ldc) {
  return cublas_library().sgemm(handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t column_major_gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n,
                                 int k, const double* alpha, const double* a, int lda, const double* b, int ldb,
                                 const double* beta, double* c, int ldc) {
  return cublas_library().dgemm(handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t column_major_geam(cublasHandle_t handle, int m, int n, const float* alpha, const float* a, int lda,
                                 const float* beta, const float* b, int ldb, float* c, int ldc) {
  return cublas_library().sgeam(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, alpha, a, lda, beta, b, ldb, c, ldc);
}
cublasStatus_t column_major_geam(cublasHandle_t handle, int m, int n, const double* alpha, const double* a, int lda,
                                 const double* beta, const double* b, int ldb, double* c, int ldc) {
  return cublas_library().dgeam(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, alpha, a, lda, beta, b, ldb, c, ldc);
}

// C = beta * C for an empty inner dimension (cuBLAS wants ld >= 1 rows of A and B, which a
// k == 0 product may not have). beta == 0 writes zeros without reading C (it may hold NaN).
template <typename T>
void scale_rows(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(0)) {
    TINYMOE_CUDA_CHECK(cudaMemset2DAsync(c, ldc * sizeof(T), 0, n * sizeof(T), m));
    return;
  }
  const T zero = T(0);
  int rows = static_cast<int>(n), columns = static_cast<int>(m), ld = static_cast<int>(ldc);
  TINYMOE_CUBLAS_CHECK(column_major_geam(cublas_handle(), rows, columns, &beta, c, ld, &zero, c, ld, c, ld));
}

// ---- The grouped call: host arrays of sizes, device arrays of pointers.
template <typename T>
struct GroupedArguments {
  std::vector<cublasOperation_t> op_first, op_second;  // cuBLAS's transa (ours of B), transb (of A)
  std::vector<int> m, n, k, ld_first, ld_second, ldc, group_size;
  std::vector<T> alpha, beta;
  std::vector<const void*> pointers;  // all first operands (our B), then second (our A), then C

  GroupedArguments(bool trans_a, bool trans_b, const std::vector<const GemmProblem<T>*>& work, T alpha_value,
                   T beta_value) {
    size_t count = work.size();
    pointers.resize(3 * count);
    for (size_t g = 0; g < count; ++g) {
      const GemmProblem<T>& problem = *work[g];
      op_first.push_back(operation(trans_b));
      op_second.push_back(operation(trans_a));
      m.push_back(static_cast<int>(problem.n));
      n.push_back(static_cast<int>(problem.m));
      k.push_back(static_cast<int>(problem.k));
      ld_first.push_back(static_cast<int>(problem.ldb));
      ld_second.push_back(static_cast<int>(problem.lda));
      ldc.push_back(static_cast<int>(problem.ldc));
      group_size.push_back(1);
      alpha.push_back(alpha_value);
      beta.push_back(beta_value);
      pointers[g] = problem.b;
      pointers[count + g] = problem.a;
      pointers[2 * count + g] = problem.c;
    }
  }
};

cublasStatus_t grouped_call(cublasHandle_t handle, GroupedArguments<float>& args, void* const* device_pointers) {
  int count = static_cast<int>(args.m.size());
  return cublas_library().gemm_grouped_batched_ex(
      handle, args.op_first.data(), args.op_second.data(), args.m.data(), args.n.data(), args.k.data(),
      args.alpha.data(), const_cast<const void* const*>(device_pointers), CUDA_R_32F, args.ld_first.data(),
      const_cast<const void* const*>(device_pointers + count), CUDA_R_32F, args.ld_second.data(), args.beta.data(),
      device_pointers + 2 * count, CUDA_R_32F, args.ldc.data(), count, args.group_size.data(),
      use_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
}

cublasStatus_t grouped_call(cublasHandle_t handle, GroupedArguments<double>& args, void* const* device_pointers) {
  int count = static_cast<int>(args.m.size());
  auto typed = reinterpret_cast<double* const*>(device_pointers);
  return cublas_library().dgemm_grouped_batched(handle, args.op_first.data(), args.op_second.data(), args.m.data(),
                                   args.n.data(), args.k.data(), args.alpha.data(), typed, args.ld_first.data(),
                                   typed + count, args.ld_second.data(), args.beta.data(), typed + 2 * count,
                                   args.ldc.data(), count, args.group_size.data());
}

bool grouped_available(float) { return cublas_library().gemm_grouped_batched_ex != nullptr; }
bool grouped_available(double) { return cublas_library().dgemm_grouped_batched != nullptr; }

template <typename T>
cublasStatus_t run_grouped(bool trans_a, bool trans_b, const std::vector<const GemmProblem<T>*>& work, T alpha,
                           T beta) {
  if (!grouped_available(T())) return CUBLAS_STATUS_NOT_SUPPORTED;  // cuBLAS < 12.5
  GroupedArguments<T> args(trans_a, trans_b, work, alpha, beta);
  size_t pointer_bytes = args.pointers.size() * sizeof(void*);
  DeviceBuffer device_pointers(pointer_bytes, Device::cuda(current_device()));
  // Asynchronous on the legacy stream, so ordered before the GEMM: a plain cudaMemcpy from
  // pageable memory would make the host wait for the device to drain first. The pointers are
  // staged before the call returns, so `args` may go right after.
  TINYMOE_CUDA_CHECK(
      cudaMemcpyAsync(device_pointers.data(), args.pointers.data(), pointer_bytes, cudaMemcpyHostToDevice, 0));
  cublasHandle_t handle = cublas_handle();
  set_math_mode(handle, T());
  return grouped_call(handle, args, static_cast<void* const*>(device_pointers.data()));
}

}  // namespace

void set_tf32_enabled(bool enabled) { use_tf32 = enabled; }
bool tf32_enabled() { return use_tf32; }

cublasHandle_t cublas_handle() {
  int device = current_device();
  auto found = thread_handles.by_device.find(device);
  if (found != thread_handles.by_device.end()) return found->second;
  cublasHandle_t handle = take_idle_handle(device);
  if (handle == nullptr) TINYMOE_CUBLAS_CHECK(cublas_library().create(&handle));
  TINYMOE_CUBLAS_CHECK(cublas_library().set_stream(handle, nullptr));  // the legacy default stream, see cuda/runtime.h
  thread_handles.by_device[device] = handle;
  return handle;
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  check_problem(trans_a, trans_b, m, n, k, lda, ldb, ldc, "gemm");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_rows(m, n, beta, c, ldc);
    return;
  }
  cublasHandle_t handle = cublas_handle();
  set_math_mode(handle, T());
  TINYMOE_CUBLAS_CHECK(column_major_gemm(handle, operation(trans_b), operation(trans_a), static_cast<int>(n),
                                         static_cast<int>(m), static_cast<int>(k), &alpha, b, static_cast<int>(ldb),
                                         a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
}

template <typename T>
GroupedGemmPath grouped_gemm(bool trans_a, bool trans_b, const std::vector<GemmProblem<T>>& problems, T alpha,
                             T beta, GroupedGemmPath path) {
  std::vector<const GemmProblem<T>*> work;
  for (const GemmProblem<T>& problem : problems) {
    check_problem(trans_a, trans_b, problem.m, problem.n, problem.k, problem.lda, problem.ldb, problem.ldc,
                  "grouped_gemm");
    if (problem.m == 0 || problem.n == 0) continue;
    if (problem.k == 0) scale_rows(problem.m, problem.n, beta, problem.c, problem.ldc);
    else work.push_back(&problem);
  }
  if (path != GroupedGemmPath::loop && !work.empty()) {
    cublasStatus_t status = run_grouped(trans_a, trans_b, work, alpha, beta);
    if (status == CUBLAS_STATUS_SUCCESS) return GroupedGemmPath::grouped;
    // Not every release lists TF32 compute for the grouped call, and one that does not may say
    // INVALID_VALUE: the loop of plain GEMMs keeps TF32 through the handle's math mode.
    bool unsupported = status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_ARCH_MISMATCH ||
                       (status == CUBLAS_STATUS_INVALID_VALUE && use_tf32 && std::is_same_v<T, float>);
    if (path == GroupedGemmPath::grouped || !unsupported)
      throw_cublas_error(status, "cublas<t>GemmGroupedBatched(...)", __FILE__, __LINE__);
  }
  if (work.empty()) return path == GroupedGemmPath::loop ? GroupedGemmPath::loop : GroupedGemmPath::grouped;
  for (const GemmProblem<T>* problem : work)
    gemm(trans_a, trans_b, problem->m, problem->n, problem->k, alpha, problem->a, problem->lda, problem->b,
         problem->ldb, beta, problem->c, problem->ldc);
  return GroupedGemmPath::loop;
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template GroupedGemmPath grouped_gemm<float>(bool, bool, const std::vector<GemmProblem<float>>&, float, float,
                                             GroupedGemmPath);
template GroupedGemmPath grouped_gemm<double>(bool, bool, const std::vector<GemmProblem<double>>&, double, double,
                                              GroupedGemmPath);

}  // namespace cuda
}  // namespace tinymoe
