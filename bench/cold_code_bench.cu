// cold_code_bench: a kernel's time when its code is cold in the SMs' instruction caches (other
// kernels with large code ran since its last launch, as between two calls of one layer in an
// engine) against the same kernel with its code warm (the repeated launches of the other
// benchmarks), the data cold in both (an L2 flush before every launch). Each figure is a
// difference of two CUDA graphs of 16 launches:
//   code warm: {flush; op} x 16          - {flush} x 16
//   code cold: {flush; evict; flush; op} x 16 - {flush; evict; flush} x 16
// where `evict` runs other kernels of the library with large code on every SM (bf16 large-k
// top-k, sorted and unsorted, over 4 x 262144; the fused route over 16384 rows). Median of 9
// replays. Shapes: the large-k top-k (issue 7, fp32 unsorted) and the fused route (issue 3).
//
// Usage: cold_code_bench
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "moerouter/cuda.h"
#include "moerouter/device.h"
#include "bench_util.h"

namespace {

using namespace moerouter;
using moerouter_bench::check_status;
using moerouter_bench::flush_kernel;

// Median of 9 replays of the graph captured from body(), in microseconds.
double graph_us(cudaStream_t s, const std::function<void()>& body) {
  return moerouter_bench::graph_us(s, [&](cudaStream_t) { body(); }, 9);
}

}  // namespace

int main() {
  if (!moerouter::cuda_available()) {
    std::fprintf(stderr, "cold_code_bench: no CUDA device (%s)\n",
                 moerouter::cuda_device_description().c_str());
    return 1;
  }
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s (%d SMs, L2 %.0f MB)\n", prop.name, prop.multiProcessorCount,
              double(prop.l2CacheSize) / 1e6);
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  int* sink = nullptr;
  CK(cudaMalloc(&sink, sizeof(int)));
  const std::size_t flush_bytes = 3 * std::size_t(prop.l2CacheSize);
  int4* flush_buf = nullptr;
  CK(cudaMalloc(&flush_buf, flush_bytes));
  CK(cudaMemset(flush_buf, 1, flush_bytes));
  const auto flush = [&] {
    flush_kernel<<<unsigned(prop.multiProcessorCount) * 4, 512, 0, st>>>(
        flush_buf, flush_bytes / sizeof(int4), sink);
  };
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;

  // The evicting kernels: bf16 top-k (grid mode, sorted and unsorted) and the fused route.
  constexpr std::int64_t kEvictRows = 4, kEvictLen = 262144, kRouteRows = 16384, kE = 384;
  std::vector<std::uint16_t> evict_vals(std::size_t(kEvictRows * kEvictLen));
  for (auto& x : evict_vals) x = std::uint16_t(0x3f80u + rng() % 256u);  // bf16 in [1, 2)
  void* d_evict_vals = nullptr;
  std::int32_t* d_evict_idx = nullptr;
  CK(cudaMalloc(&d_evict_vals, evict_vals.size() * 2));
  CK(cudaMemcpy(d_evict_vals, evict_vals.data(), evict_vals.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMalloc(&d_evict_idx, std::size_t(kEvictRows) * 2048 * 4));
  TopkParams ep;
  ep.values = d_evict_vals;
  ep.indices = d_evict_idx;
  ep.n = kEvictRows;
  ep.length = kEvictLen;
  ep.k = 2048;
  ep.values_dtype = DType::kBF16;
  const std::size_t evict_ws_bytes = cuda::topk_workspace_size(ep);
  void* d_evict_ws = nullptr;
  if (evict_ws_bytes > 0) {
    CK(cudaMalloc(&d_evict_ws, evict_ws_bytes));
    CK(cudaMemset(d_evict_ws, 0, evict_ws_bytes));
  }
  float *d_rl = nullptr, *d_rw = nullptr, *d_rbias = nullptr;
  std::int32_t* d_rids = nullptr;
  CK(cudaMalloc(&d_rl, std::size_t(kRouteRows * kE) * 4));
  CK(cudaMemset(d_rl, 0, std::size_t(kRouteRows * kE) * 4));
  CK(cudaMalloc(&d_rbias, std::size_t(kE) * 4));
  CK(cudaMemset(d_rbias, 0, std::size_t(kE) * 4));
  CK(cudaMalloc(&d_rw, std::size_t(kRouteRows) * 6 * 4));
  CK(cudaMalloc(&d_rids, std::size_t(kRouteRows) * 6 * 4));
  // A fused route over n rows of E = kE logits, k = 6 (the bias is zeros).
  const auto route_params = [&](const float* logits, float* weights, std::int32_t* ids,
                                std::int64_t n) {
    RouteLogitsParams rp;
    rp.logits = logits;
    rp.bias = d_rbias;
    rp.weights = weights;
    rp.ids = ids;
    rp.n = n;
    rp.experts = kE;
    rp.k = 6;
    rp.scale = 2.5f;
    return rp;
  };
  const RouteLogitsParams evict_route = route_params(d_rl, d_rw, d_rids, kRouteRows);
  const auto evict = [&] {
    for (bool sorted : {true, false}) {
      ep.sorted = sorted;
      check_status(cuda::topk(ep, d_evict_ws, evict_ws_bytes, st), "evict: topk");
    }
    check_status(cuda::route_logits(evict_route, st), "evict: route_logits");
  };

  constexpr int kLaunches = 16;
  const auto report = [&](const char* what, const std::function<void()>& op) {
    // Per launch: graph {before; op} x kLaunches minus graph {before} x kLaunches.
    const auto net_us = [&](const std::function<void()>& before) {
      const double with_op = graph_us(st, [&] {
        for (int i = 0; i < kLaunches; ++i) {
          before();
          op();
        }
      });
      const double without = graph_us(st, [&] {
        for (int i = 0; i < kLaunches; ++i) before();
      });
      return (with_op - without) / kLaunches;
    };
    const double warm = net_us(flush);
    const double cold = net_us([&] {
      flush();
      evict();
      flush();
    });
    std::printf("%-40s data cold: code warm %8.2f us, code cold %8.2f us\n", what, warm, cold);
  };

  struct TopkShape {
    std::int64_t n, len;
    int k;
  };
  for (const TopkShape sh : {TopkShape{1, 262144, 512}, TopkShape{64, 65536, 512},
                             TopkShape{1024, 8192, 512}, TopkShape{1, 1048576, 1024}}) {
    std::vector<float> h(std::size_t(sh.n * sh.len));
    for (auto& x : h) x = normal(rng);
    float* d_v = nullptr;
    std::int32_t* d_idx = nullptr;
    CK(cudaMalloc(&d_v, h.size() * 4));
    CK(cudaMemcpy(d_v, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&d_idx, std::size_t(sh.n) * std::size_t(sh.k) * 4));
    TopkParams p;
    p.values = d_v;
    p.indices = d_idx;
    p.n = sh.n;
    p.length = sh.len;
    p.k = sh.k;
    p.sorted = false;
    const std::size_t ws_bytes = cuda::topk_workspace_size(p);
    void* d_ws = nullptr;
    if (ws_bytes > 0) {
      CK(cudaMalloc(&d_ws, ws_bytes));
      CK(cudaMemset(d_ws, 0, ws_bytes));
    }
    char what[96];
    std::snprintf(what, sizeof(what), "topk f32 unsorted %lldx%lld k=%d",
                  static_cast<long long>(sh.n), static_cast<long long>(sh.len), sh.k);
    report(what, [&] { check_status(cuda::topk(p, d_ws, ws_bytes, st), "topk"); });
    CK(cudaFree(d_v));
    CK(cudaFree(d_idx));
    if (d_ws != nullptr) CK(cudaFree(d_ws));
  }
  for (const std::int64_t n : {std::int64_t(1), std::int64_t(16384)}) {
    std::vector<float> h(std::size_t(n * kE));
    for (auto& x : h) x = normal(rng);
    float *d_l = nullptr, *d_w = nullptr;
    std::int32_t* d_ids = nullptr;
    CK(cudaMalloc(&d_l, h.size() * 4));
    CK(cudaMemcpy(d_l, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&d_w, std::size_t(n) * 6 * 4));
    CK(cudaMalloc(&d_ids, std::size_t(n) * 6 * 4));
    const RouteLogitsParams q = route_params(d_l, d_w, d_ids, n);
    char what[96];
    std::snprintf(what, sizeof(what), "route_logits f32 E=384 k=6 N=%lld",
                  static_cast<long long>(n));
    report(what, [&] { check_status(cuda::route_logits(q, st), "route_logits"); });
    CK(cudaFree(d_l));
    CK(cudaFree(d_w));
    CK(cudaFree(d_ids));
  }
  CK(cudaFree(d_evict_vals));
  CK(cudaFree(d_evict_idx));
  if (d_evict_ws != nullptr) CK(cudaFree(d_evict_ws));
  CK(cudaFree(d_rl));
  CK(cudaFree(d_rw));
  CK(cudaFree(d_rbias));
  CK(cudaFree(d_rids));
  CK(cudaFree(flush_buf));
  CK(cudaFree(sink));
  CK(cudaStreamDestroy(st));
  return 0;
}
