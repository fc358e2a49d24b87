// moerouter: programmatic dependent launch (PDL) in device code.
#pragma once

#include <cuda_runtime.h>

namespace moerouter {
namespace detail {

/// Waits until the previous kernel in the stream has completed and its memory is visible (a
/// no-op when the launch did not allow programmatic stream serialization). A kernel launched
/// with PDL may start while that kernel still runs: it must call this before it reads what
/// that kernel writes, and before it writes anything that kernel may still read.
__device__ __forceinline__ void grid_dependency_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

/// Lets the next kernel in the stream, if launched with PDL, start now (before this one ends);
/// it still sees this kernel's memory only after its grid_dependency_wait().
__device__ __forceinline__ void trigger_dependents() {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

}  // namespace detail
}  // namespace moerouter
