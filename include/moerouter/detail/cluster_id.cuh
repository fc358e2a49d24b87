// moerouter: thread-block cluster helpers: the index of this block's cluster in the grid (x),
// and the wait on an mbarrier that other blocks of the cluster complete with st.async.
#pragma once

#include <cuda/ptx>
#include <cuda_runtime.h>

#include <cstdint>

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

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
/// Waits (spinning) until the mbarrier at `bar`, in this block's shared memory, completes its
/// first phase: the bytes it expects (other blocks' st.async into this block) have landed.
/// Acquire at cluster scope: those stores are visible to this thread after it.
__device__ __forceinline__ void wait_cluster_stores(std::uint64_t* bar) {
  while (!::cuda::ptx::mbarrier_try_wait_parity(::cuda::ptx::sem_acquire,
                                                ::cuda::ptx::scope_cluster, bar, 0u)) {
  }
}
#endif

}  // namespace detail
}  // namespace moerouter
