// moerouter benchmarks: the device-to-device copy bandwidth that the HBM floors divide by.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace moerouter_bench {

/// Bytes read + written per second (GB/s) by 1 GiB cudaMemcpyAsync device-to-device copies
/// issued on `stream` and timed by events: the median of 10, after 2 warm-ups. (The same copies
/// captured in a CUDA graph, as memcpy nodes, ran at 2434 GB/s on an H100 against 2958-2987 for
/// these: a floor divided by that figure came out ~20% too high.) Exits on a CUDA error.
inline double copy_bandwidth_gbps(cudaStream_t stream) {
  const auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      std::fprintf(stderr, "copy_bandwidth_gbps: %s: %s\n", what, cudaGetErrorString(e));
      std::exit(1);
    }
  };
  const std::size_t bytes = std::size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc");
  check(cudaMalloc(&b, bytes), "cudaMalloc");
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    check(cudaEventRecord(e0, stream), "cudaEventRecord");
    check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    check(cudaEventRecord(e1, stream), "cudaEventRecord");
    check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, e0, e1), "cudaEventElapsedTime");
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  check(cudaFree(a), "cudaFree");
  check(cudaFree(b), "cudaFree");
  check(cudaEventDestroy(e0), "cudaEventDestroy");
  check(cudaEventDestroy(e1), "cudaEventDestroy");
  return 2.0 * double(bytes) / (double(ms[ms.size() / 2]) * 1e-3) / 1e9;
}

}  // namespace moerouter_bench
