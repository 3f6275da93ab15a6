// NCCL, opened with dlopen by the first nccl_communicator() instead of linked into tinymoe.
//
// Why: libnccl.so.2 is a 200 MB library that most tinymoe programs never use, and it is often
// installed apart from the toolkit (a distribution package, or the nvidia-nccl wheel that
// PyTorch brings). Opened lazily, a program that never builds an NCCL communicator neither loads
// it nor needs it to start; one that does finds it on the loader's path (LD_LIBRARY_PATH) or as
// the copy found at configure time.
//
// The functions are typed from nccl.h (decltype), so a signature mismatch does not compile.
#pragma once

#include <nccl.h>

namespace tinymoe {
namespace cuda {

struct NcclLibrary {
  decltype(&ncclGetVersion) get_version;
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRank) comm_init_rank;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclCommAbort) comm_abort;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
  decltype(&ncclSend) send;
  decltype(&ncclRecv) recv;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclGetErrorString) error_string;
  decltype(&ncclGetLastError) last_error;
};

// Opens libnccl.so.2 (then the copy found at configure time) once per process; thread-safe.
// Throws tinymoe::Error naming "nccl" when neither opens or a function is missing (a retry
// happens on the next call).
const NcclLibrary& nccl_library();

}  // namespace cuda
}  // namespace tinymoe
