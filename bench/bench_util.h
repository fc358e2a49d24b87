// moerouter benchmarks: helpers the benchmark programs share (CUDA error checks, the kernel that
// reads a buffer into L2, CUDA graph timing). Each benchmark is one translation unit.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "moerouter/status.h"

// Exits with the file, line, expression and CUDA's message when `expr` does not return
// cudaSuccess.
#define CK(expr)                                                                                 \
  do {                                                                                           \
    const cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

// Exits with the file, line, expression and status unless the cuBLAS or cuBLASLt call `expr`
// returns CUBLAS_STATUS_SUCCESS (the including file includes cuBLAS's header).
#define CUBLAS_CK(expr)                                                                      \
  do {                                                                                       \
    const cublasStatus_t s_ = (expr);                                                        \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                       \
      std::fprintf(stderr, "%s:%d %s: cuBLAS status %d\n", __FILE__, __LINE__, #expr,       \
                   int(s_));                                                                 \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

namespace moerouter_bench {

/// Exits with `what` and the status's message unless it is success.
inline void check_status(const moerouter::Status& st, const char* what) {
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, st.to_string().c_str());
    std::exit(1);
  }
}

namespace {

/// Reads `count` int4 (into L2) and never writes unless the data is all 0x7fffffff: an L2 flush
/// when the buffer is a few times the L2, or a parameter's re-read into it.
__global__ void flush_kernel(const int4* buf, std::size_t count, int* sink) {
  int acc = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const int4 v = buf[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x7fffffff) *sink = acc;  // never true for our buffers; keeps the loads alive
}

}  // namespace

/// Median time of one replay of the CUDA graph captured from body(stream), in microseconds
/// (`warmups` replays first, then `replays` timed by events), captured in `mode`.
inline double graph_us(cudaStream_t stream, const std::function<void(cudaStream_t)>& body,
                       int replays = 15, int warmups = 2,
                       cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(stream, mode));
  body(stream);
  CK(cudaStreamEndCapture(stream, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < warmups; ++i) CK(cudaGraphLaunch(exec, stream));
  std::vector<float> ms;
  for (int i = 0; i < replays; ++i) {
    CK(cudaEventRecord(e0, stream));
    CK(cudaGraphLaunch(exec, stream));
    CK(cudaEventRecord(e1, stream));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return double(ms[ms.size() / 2]) * 1e3;
}

}  // namespace moerouter_bench
