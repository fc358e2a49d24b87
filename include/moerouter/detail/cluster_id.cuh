// moerouter: the index of this block's thread-block cluster in the grid (x).
#pragma once

#include <cuda_runtime.h>

namespace moerouter {
namespace detail {

/// %clusterid.x: the cluster's index along x (a block of a launch without clusters is a
/// cluster of one, so this is blockIdx.x there). Read from the special register rather than
/// divided out of blockIdx.x by the cluster size: a division by a runtime value costs ~15-25
/// instructions (a reciprocal, its conversions and corrections; 64-bit: a subroutine call)
/// at a kernel's start, before the loads that need the index.
__device__ __forceinline__ unsigned cluster_id_x() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned id;
  asm("mov.u32 %0, %%clusterid.x;" : "=r"(id));
  return id;
#else
  return blockIdx.x;
#endif
}

}  // namespace detail
}  // namespace moerouter
