#include "cuda/nccl_library.h"

#include <string>

#include "cuda/shared_library.h"

namespace tinymoe {
namespace cuda {
namespace {

template <typename Function>
void bind(void* library, const char* name, Function& function) {
  bind_required(library, "nccl", name, function);
}

NcclLibrary load() {
  void* library = open_shared_library("nccl", {"libnccl.so." + std::to_string(NCCL_MAJOR), TINYMOE_NCCL_LIBRARY});
  NcclLibrary functions{};
  bind(library, "ncclGetVersion", functions.get_version);
  bind(library, "ncclGetUniqueId", functions.get_unique_id);
  bind(library, "ncclCommInitRank", functions.comm_init_rank);
  bind(library, "ncclCommDestroy", functions.comm_destroy);
  bind(library, "ncclCommAbort", functions.comm_abort);
  bind(library, "ncclGroupStart", functions.group_start);
  bind(library, "ncclGroupEnd", functions.group_end);
  bind(library, "ncclSend", functions.send);
  bind(library, "ncclRecv", functions.recv);
  bind(library, "ncclAllReduce", functions.all_reduce);
  bind(library, "ncclGetErrorString", functions.error_string);
  bind(library, "ncclGetLastError", functions.last_error);
  return functions;
}

}  // namespace

const NcclLibrary& nccl_library() {
  static const NcclLibrary functions = load();
  return functions;
}

}  // namespace cuda
}  // namespace tinymoe
