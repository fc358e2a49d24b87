// moerouter: %globaltimer (ns; on an H100 it ticks in ~0.26 us steps), for the kernels'
// diagnosis stamps (MOER_*_TRACE builds).
#pragma once

#include <cuda_runtime.h>

namespace moerouter {
namespace detail {

__device__ __forceinline__ unsigned long long global_timer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

}  // namespace detail
}  // namespace moerouter
