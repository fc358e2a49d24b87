// moerouter: the router GEMM's cuBLASLt algorithms, each timed (a diagnostic for
// cuda::RouterGemm's choice): logits fp32 [n, E] = x bf16 [n, H] * W bf16 [E, H]^T with the
// descriptors RouterGemm builds, the heuristic's first `--top` results (default 16) for a
// workspace of 0 and of 32 MiB, each timed in a CUDA graph (median of replays, x rotating over
// copies totalling >= 3x the L2, W warm as within a layer). Prints each algorithm's tile,
// stages, split-K and reduction scheme, so that a faster one than the heuristic's first can be
// named.
//
// Usage: gemm_algo_bench [--n N1,N2,..] [--top K]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

using moerouter_bench::graph_us;

__global__ void fill_bf16(std::uint16_t* p, std::size_t n, unsigned seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    // A bf16 in about [-2, 2): sign, exponent 126..128, random mantissa.
    const unsigned exp = 126u + (h >> 8) % 3u;
    p[i] = std::uint16_t(((h & 1u) << 15) | (exp << 7) | ((h >> 16) & 0x7fu));
  }
}

int config_attr(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  std::uint32_t v = 0;
  std::size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof(v), &written) !=
      CUBLAS_STATUS_SUCCESS) {
    return -1;
  }
  return int(v);
}

std::vector<std::int64_t> parse_list(const char* s) {
  std::vector<std::int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, nullptr, 10));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> ns = {64, 256, 1024, 4096, 16384};
  int top = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--n") == 0) ns = parse_list(argv[i + 1]);
    if (std::strcmp(argv[i], "--top") == 0) top = std::min(64, std::max(1, std::atoi(argv[i + 1])));
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("Device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasLtHandle_t lt;
  CUBLAS_CK(cublasLtCreate(&lt));
  const std::size_t ws_max = 32u << 20;
  void* ws = nullptr;
  CK(cudaMalloc(&ws, ws_max));
  const char* names[2] = {"pro", "flash"};
  const std::int64_t shapes[2][2] = {{7168, 384}, {4096, 256}};
  for (int mi = 0; mi < 2; ++mi) {
    const char* mname = names[mi];
    const std::int64_t hidden = shapes[mi][0], experts = shapes[mi][1];
    std::uint16_t* w = nullptr;
    CK(cudaMalloc(&w, std::size_t(hidden * experts) * 2));
    fill_bf16<<<1024, 256, 0, stream>>>(w, std::size_t(hidden * experts), 7u);
    for (const std::int64_t n : ns) {
      const std::size_t xbytes = std::size_t(n * hidden) * 2;
      const int sets = int(std::min<std::size_t>(
          64, std::max<std::size_t>(1, (3 * std::size_t(prop.l2CacheSize) + xbytes - 1) / xbytes)));
      std::vector<std::uint16_t*> x(sets);
      for (int s = 0; s < sets; ++s) {
        CK(cudaMalloc(&x[s], xbytes));
        fill_bf16<<<1024, 256, 0, stream>>>(x[s], std::size_t(n * hidden), 100u + s);
      }
      float* d = nullptr;
      CK(cudaMalloc(&d, std::size_t(n * experts) * 4));
      CK(cudaStreamSynchronize(stream));
      cublasLtMatmulDesc_t op;
      CUBLAS_CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CUBLAS_CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      CUBLAS_CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      cublasLtMatrixLayout_t la, lb, ld;
      CUBLAS_CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, hidden, experts, hidden));
      CUBLAS_CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, hidden, n, hidden));
      CUBLAS_CK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, experts, n, experts));
      for (int wi = 0; wi < 2; ++wi) {
        const std::size_t wsb = wi == 0 ? 0 : ws_max;
        cublasLtMatmulPreference_t pref;
        CUBLAS_CK(cublasLtMatmulPreferenceCreate(&pref));
        const std::uint64_t w64 = wsb;
        CUBLAS_CK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w64, sizeof(w64)));
        cublasLtMatmulHeuristicResult_t res[64];  // (a std::vector of these crashes nvcc 13.0)
        int found = 0;
        CUBLAS_CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, top, res, &found));
        std::printf("\n%s n=%lld workspace %zu MiB: %d algorithms (x rotates over %d copies)\n",
                    mname, (long long)n, wsb >> 20, found, sets);
        std::printf("  #  algo tile stages splitK red swizzle custom cluster | us\n");
        double first = 0, best = 1e30;
        int best_i = -1;
        for (int i = 0; i < found; ++i) {
          const cublasLtMatmulAlgo_t& algo = res[i].algo;
          const float alpha = 1.0f, beta = 0.0f;
          int s = 0;
          bool ok = true;
          const double us =
              graph_us(
                  stream,
                  [&](cudaStream_t st) {
                    for (int r = 0; r < sets; ++r) {
                      if (cublasLtMatmul(lt, op, &alpha, w, la, x[(s + r) % sets], lb, &beta, d, ld,
                                         d, ld, &algo, ws, wsb, st) != CUBLAS_STATUS_SUCCESS) {
                        ok = false;
                      }
                    }
                    ++s;
                  }) /
              sets;
          if (!ok) continue;
          if (i == 0) first = us;
          if (us < best) {
            best = us;
            best_i = i;
          }
          std::printf("  %2d %5d %4d %6d %6d %3d %7d %6d %7d | %8.2f\n", i,
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_ID),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
                      config_attr(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID), us);
        }
        if (best_i >= 0) {
          std::printf("  heuristic's first %.2f us, best #%d %.2f us (%.1f%%)\n", first, best_i,
                      best, 100.0 * (first - best) / first);
        }
        CUBLAS_CK(cublasLtMatmulPreferenceDestroy(pref));
      }
      CUBLAS_CK(cublasLtMatrixLayoutDestroy(la));
      CUBLAS_CK(cublasLtMatrixLayoutDestroy(lb));
      CUBLAS_CK(cublasLtMatrixLayoutDestroy(ld));
      CUBLAS_CK(cublasLtMatmulDescDestroy(op));
      for (auto* p : x) CK(cudaFree(p));
      CK(cudaFree(d));
    }
    CK(cudaFree(w));
  }
  CUBLAS_CK(cublasLtDestroy(lt));
  CK(cudaFree(ws));
  return 0;
}
