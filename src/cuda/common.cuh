// Host-side helpers of the CUDA launchers: device-pointer checks, occupancy caching, launch
// errors as Status.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "moerouter/status.h"

namespace moerouter {
namespace cuda {
namespace detail {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::success();
  return Status(StatusCode::kCudaError,
                std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

/// The launch error of the kernel just enqueued (configuration errors, missing image).
inline Status launch_status(const char* op) { return cuda_status(cudaGetLastError(), op); }

/// Checks that `ptr` (skipped when null) is memory the current device can read: device or
/// managed memory of this device, or mapped pinned host memory. Pageable host memory or
/// another device's allocation is a kInvalidArgument that names the argument.
inline Status check_device_pointer(const char* op, const char* name, const void* ptr) {
  if (ptr == nullptr) return Status::success();
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return Status(StatusCode::kInvalidArgument, std::string(op) + ": " + name +
                                                    " must be device memory (" +
                                                    cudaGetErrorString(err) + ")");
  }
  if (attr.type == cudaMemoryTypeUnregistered) {
    return Status(StatusCode::kInvalidArgument, std::string(op) + ": " + name +
                                                    " must be device memory, got a host "
                                                    "(pageable) pointer");
  }
  if (attr.type == cudaMemoryTypeDevice) {
    int dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && attr.device != dev) {
      return Status(StatusCode::kInvalidArgument,
                    std::string(op) + ": " + name + " must be memory of the current device " +
                        std::to_string(dev) + ", got memory of device " +
                        std::to_string(attr.device));
    }
  }
  return Status::success();
}

/// compute(dev) for `key` on the current device, computed once per (key, device) and cached
/// (thread-safe); `fallback` where the current device cannot be read. Every call site passes
/// its own lambda, so each has its own cache.
template <typename Key, typename Value, typename Compute>
Value per_device(const Key& key, Value fallback, Compute compute) {
  static std::mutex mu;
  static std::map<std::pair<Key, int>, Value> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return fallback;
  std::lock_guard<std::mutex> lock(mu);
  const auto k = std::make_pair(key, dev);
  const auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  const Value v = compute(dev);
  cache.emplace(k, v);
  return v;
}

/// Blocks of `kernel` (at `threads` per block and `smem` bytes of dynamic shared memory) that
/// fill the current device once, cached per (kernel, threads, smem, device): a grid-stride
/// kernel launches no more than this.
inline int resident_blocks(const void* kernel, int threads, std::size_t smem = 0) {
  return per_device(std::make_tuple(kernel, threads, smem), 1, [&](int dev) {
    int sms = 1, per_sm = 1;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 1;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) !=
            cudaSuccess ||
        per_sm < 1) {
      per_sm = 1;
    }
    (void)cudaGetLastError();
    return sms * per_sm;
  });
}

/// Dynamic shared memory (unused) that leaves room for only one block of `kernel` per SM: more
/// than half an SM's, less the kernel's static shared memory. Set up as the kernel's maximum
/// once per (kernel, device); 0 where the device cannot say or the kernel cannot take it.
/// For a grid of at most one wave launched with programmatic dependent launch: its blocks
/// start while the previous grid still holds most SMs and would otherwise pile onto the few
/// free ones (several a SM), then run there side by side once released.
inline std::size_t one_block_per_sm_smem(const void* kernel) {
  return per_device(kernel, std::size_t(0), [&](int dev) {
    std::size_t bytes = 0;
    int per_sm = 0, per_block = 0;
    cudaFuncAttributes fa{};
    if (cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) ==
            cudaSuccess &&
        cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) ==
            cudaSuccess &&
        cudaFuncGetAttributes(&fa, kernel) == cudaSuccess) {
      const std::size_t want = std::size_t(per_sm) / 2 + 1024;
      if (want > fa.sharedSizeBytes && want - fa.sharedSizeBytes <= std::size_t(per_block) &&
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               int(want - fa.sharedSizeBytes)) == cudaSuccess) {
        bytes = want - fa.sharedSizeBytes;
      }
    }
    (void)cudaGetLastError();
    return bytes;
  });
}

/// An attribute of the current device, cached per device and attribute; `fallback` where the
/// query fails.
inline int device_attribute(cudaDeviceAttr attr, int fallback) {
  return per_device(int(attr), fallback, [&](int dev) {
    int value = fallback;
    if (cudaDeviceGetAttribute(&value, attr, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      value = fallback;
    }
    return value;
  });
}

/// Multiprocessors of the current device.
inline int sm_count() { return device_attribute(cudaDevAttrMultiProcessorCount, 1); }

/// Bytes of L2 cache of the current device (0 where unknown).
inline int l2_bytes() { return device_attribute(cudaDevAttrL2CacheSize, 0); }

inline bool aligned(const void* p, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

/// Launches `kernel(args...)` on `stream`; pdl: with programmatic stream serialization (the
/// kernel may start before the previous one on the stream ends and must wait with
/// griddepcontrol.wait before it reads that kernel's output); cluster > 0: in thread-block
/// clusters of `cluster` blocks along x. The launch error as a Status (and cleared).
template <typename Kernel, typename... Args>
Status launch_kernel_ex(Kernel kernel, dim3 grid, dim3 block, std::size_t smem_bytes,
                        cudaStream_t stream, bool pdl, const char* what, int cluster,
                        const Args&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem_bytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  if (cluster > 0) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = unsigned(cluster);
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, args...);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return cuda_status(err, what);
  }
  return launch_status(what);
}

/// launch_kernel_ex for a kernel of one parameter.
template <typename Kernel, typename Args>
Status launch_kernel(Kernel kernel, dim3 grid, dim3 block, std::size_t smem_bytes,
                     cudaStream_t stream, bool pdl, const Args& args, const char* what,
                     int cluster = 0) {
  return launch_kernel_ex(kernel, grid, block, smem_bytes, stream, pdl, what, cluster, args);
}

}  // namespace detail
}  // namespace cuda
}  // namespace moerouter

#define MOER_RETURN_IF_ERROR_CUDA(expr) \
  do {                                  \
    ::moerouter::Status moer_st_ = (expr); \
    if (!moer_st_.ok()) return moer_st_; \
  } while (0)
