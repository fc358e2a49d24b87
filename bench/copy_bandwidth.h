// moerouter benchmarks: the device-to-device copy bandwidth that the HBM floors divide by.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.h"

namespace moerouter_bench {

/// Bytes read + written per second (GB/s) by 1 GiB cudaMemcpyAsync device-to-device copies
/// issued on `stream` and timed by events: the median of 10, after 2 warm-ups. (The same copies
/// captured in a CUDA graph, as memcpy nodes, ran at 2434 GB/s on an H100 against 2958-2987 for
/// these: a floor divided by that figure came out ~20% too high.) Exits on a CUDA error (CK).
inline double copy_bandwidth_gbps(cudaStream_t stream) {
  const std::size_t bytes = std::size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    CK(cudaEventRecord(e0, stream));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
    CK(cudaEventRecord(e1, stream));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CK(cudaFree(a));
  CK(cudaFree(b));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return 2.0 * double(bytes) / (double(ms[ms.size() / 2]) * 1e-3) / 1e9;
}

}  // namespace moerouter_bench
