// radix_topk_bench: large-k top-k (the sparse-attention indexer's shapes): cuda::topk with the
// workspace it asks for (the streaming kernel, configured by shape; grid mode for few long
// rows), other configurations forced through cuda::topk_radix_config (blocks per row x
// threads) or cuda::topk_radix_grid (grid mode, blocks per row), and the read floor (row bytes
// / device-to-device copy bandwidth measured in the same run).
// Method of moerouter_bench.cu: a CUDA graph of many launches over rotating distinct inputs
// (>= 3x L2 in total, so reads come from HBM), time per launch = graph time / launches, median
// of 15 replays. Values: normal random (hash-based), fp32 and bf16.
//
// Usage: radix_topk_bench [--quick] [ROWSxLEN ...]  (shapes given: only those, both dtypes)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "moerouter/cuda.h"
#include "bench_util.h"
#include "copy_bandwidth.h"

namespace {

using namespace moerouter;

using moerouter_bench::check_status;

__device__ std::uint32_t hash32(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return std::uint32_t(x);
}

// Normal random values (Box-Muller over a hash), fp32 or bf16 (round to nearest even).
__global__ void fill_normal(void* out, std::size_t count, bool bf16, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float u1 = (hash32(seed * 0x9e3779b97f4a7c15ull + 2 * i) + 1.0f) * 2.3283064e-10f;
    const float u2 = hash32(seed * 0x9e3779b97f4a7c15ull + 2 * i + 1) * 2.3283064e-10f;
    const float z = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
    if (bf16) {
      std::uint32_t b;
      std::memcpy(&b, &z, 4);
      b += 0x7fffu + ((b >> 16) & 1u);
      static_cast<std::uint16_t*>(out)[i] = std::uint16_t(b >> 16);
    } else {
      static_cast<float*>(out)[i] = z;
    }
  }
}

struct Ctx {
  cudaStream_t stream = nullptr;
  std::size_t l2 = 0;
  double copy_gbps = 0;
  std::string name;

  double graph_us(const std::function<void(cudaStream_t)>& body, int replays = 15) {
    return moerouter_bench::graph_us(stream, body, replays);
  }

  // Stream-ordered copies timed by events (copy_bandwidth.h says why not in a graph).
  void measure_copy() { copy_gbps = moerouter_bench::copy_bandwidth_gbps(stream); }
};

struct Shape {
  std::int64_t rows, len;
  int k;
  // Streaming kernel configurations to time: (blocks per row, threads), or (blocks per row, 1)
  // for grid mode (blocks cooperating through a workspace), or (1, 2) for the short-row kernel
  // (cuda::topk_rows; sorted only for k <= 1024).
  std::vector<std::pair<int, int>> alts;
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<std::string> only;  // "ROWSxLEN" of the shapes to run (none: all)
  for (int i = quick ? 2 : 1; i < argc; ++i) only.emplace_back(argv[i]);
  const std::vector<Shape> shapes = {
      {1, 262144, 512, {{16, 512}, {8, 512}, {32, 1}, {64, 1}}},
      {64, 65536, 512, {{2, 512}, {4, 512}, {1, 256}, {2, 1}}},
      {1024, 8192, 512, {{1, 512}, {1, 256}, {1, 2}}},
      {4096, 4096, 512, {{1, 256}, {1, 2}}},
      {8192, 2048, 512, {{1, 256}, {1, 2}}},
      {4096, 16384, 512, {{1, 512}, {1, 256}}},
      {256, 262144, 2048, {{1, 512}, {1, 256}, {2, 512}}},
      {1, 65536, 1024, {{4, 512}, {8, 512}, {16, 512}}},
      {8, 131072, 1024, {{8, 512}, {16, 512}}},
      {4, 1048576, 1024, {{16, 512}, {32, 1}}},
      {1, 1048576, 1024, {{16, 512}, {64, 1}, {128, 1}}},
      {2, 524288, 2048, {{16, 512}, {64, 1}}},
  };
  auto name_of = [](const Shape& sh) {
    return std::to_string(sh.rows) + "x" + std::to_string(sh.len);
  };
  for (const std::string& want : only) {  // a shape not in the list would run nothing, silently
    if (std::none_of(shapes.begin(), shapes.end(),
                     [&](const Shape& sh) { return name_of(sh) == want; })) {
      std::string known;
      for (const Shape& sh : shapes) known += " " + name_of(sh);
      std::fprintf(stderr, "radix_topk_bench: no shape %s (shapes:%s)\n", want.c_str(),
                   known.c_str());
      return 2;
    }
  }
  Ctx c;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  c.name = prop.name;
  c.l2 = std::size_t(prop.l2CacheSize);
  CK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  c.measure_copy();
  std::printf("Device: %s, %d SMs, L2 %zu MB, copy bandwidth %.0f GB/s (read + write)\n",
              c.name.c_str(), prop.multiProcessorCount, c.l2 >> 20, c.copy_gbps);

  std::printf("%-5s %-12s %5s | %9s %9s | %8s | %s\n", "dtype", "rows x len", "k", "sorted",
              "unsorted", "floor", "other blocks per row x threads: sorted, unsorted");
  for (const bool bf16 : {false, true}) {
    for (const Shape& sh : shapes) {
      if (!only.empty() && std::find(only.begin(), only.end(), name_of(sh)) == only.end()) {
        continue;
      }
      const std::size_t esize = bf16 ? 2 : 4;
      const std::size_t bytes = std::size_t(sh.rows * sh.len) * esize;
      const int sets =
          int(std::min<std::size_t>(256, std::max<std::size_t>(1, (3 * c.l2 + bytes - 1) / bytes)));
      std::vector<void*> in(sets);
      for (int s = 0; s < sets; ++s) {
        CK(cudaMalloc(&in[s], bytes));
        fill_normal<<<1024, 256, 0, c.stream>>>(in[s], bytes / esize, bf16, 1234 + s);
      }
      std::int32_t* idx = nullptr;
      float* val = nullptr;
      CK(cudaMalloc(&idx, sh.rows * sh.k * 4));
      CK(cudaMalloc(&val, sh.rows * sh.k * 4));
      auto params = [&](int s, bool sorted) {
        TopkParams p;
        p.values = in[s];
        p.values_dtype = bf16 ? DType::kBF16 : DType::kF32;
        p.indices = idx;
        p.out_values = val;
        p.n = sh.rows;
        p.length = sh.len;
        p.k = sh.k;
        p.sorted = sorted;
        return p;
      };
      // One workspace for topk's own choice and every grid-mode alternative, zeroed once (every
      // call leaves it zeroed).
      std::size_t ws_bytes = moerouter::cuda::topk_workspace_size(params(0, false));
      for (const auto& a : sh.alts) {
        if (a.second == 1) {
          ws_bytes = std::max(ws_bytes,
                              moerouter::cuda::topk_radix_grid_workspace_size(params(0, false),
                                                                              a.first));
        }
      }
      void* ws = nullptr;
      if (ws_bytes > 0) {
        CK(cudaMalloc(&ws, ws_bytes));
        CK(cudaMemsetAsync(ws, 0, ws_bytes, c.stream));
      }
      CK(cudaStreamSynchronize(c.stream));
      // topk as a caller with a workspace calls it, or a forced configuration.
      auto run = [&](const TopkParams& p, int cluster, int threads, cudaStream_t st) {
        if (cluster < 1) return moerouter::cuda::topk(p, ws, ws_bytes, st);
        if (threads == 1) return moerouter::cuda::topk_radix_grid(p, cluster, ws, ws_bytes, st);
        if (threads == 2) return moerouter::cuda::topk_rows(p, st);
        return moerouter::cuda::topk_radix_config(p, cluster, threads, st);
      };
      // The same indices and values from topk's configuration and the first alternative, both
      // orders, on set 0 (the tests check both against the CPU backend).
      bool same = true;
      for (const bool sorted : {true, false}) {
        const std::size_t m = std::size_t(sh.rows * sh.k);
        std::vector<std::int32_t> i0(m), i1(m);
        std::vector<float> v0(m), v1(m);
        check_status(run(params(0, sorted), 0, 0, c.stream), "topk");
        CK(cudaMemcpyAsync(i0.data(), idx, m * 4, cudaMemcpyDeviceToHost, c.stream));
        CK(cudaMemcpyAsync(v0.data(), val, m * 4, cudaMemcpyDeviceToHost, c.stream));
        CK(cudaMemset(idx, 0x7f, m * 4));
        check_status(run(params(0, sorted), sh.alts[0].first, sh.alts[0].second, c.stream),
                     "alternative");
        CK(cudaMemcpyAsync(i1.data(), idx, m * 4, cudaMemcpyDeviceToHost, c.stream));
        CK(cudaMemcpyAsync(v1.data(), val, m * 4, cudaMemcpyDeviceToHost, c.stream));
        CK(cudaStreamSynchronize(c.stream));
        same = same && i0 == i1 && std::memcmp(v0.data(), v1.data(), m * 4) == 0;
      }
      auto time = [&](int cluster, int threads, bool sorted) {
        const int launches = std::max(sets, quick ? 8 : 32);
        return c.graph_us(
                   [&](cudaStream_t st) {
                     for (int i = 0; i < launches; ++i) {
                       const TopkParams p = params(i % sets, sorted);
                       check_status(run(p, cluster, threads, st), "launch");
                     }
                   },
                   quick ? 5 : 15) /
               launches;
      };
      const double ns = time(0, 0, true), nu = time(0, 0, false);
      const double floor = double(bytes) / (c.copy_gbps * 1e9) * 1e6;
      std::string alts;
      for (const auto& a : sh.alts) {
        char buf[96];
        if (a.second == 2) {  // the short-row kernel: sorted only for k <= 1024
          if (sh.k <= 1024) {
            std::snprintf(buf, sizeof(buf), " rows: %.1f %.1f;", time(a.first, a.second, true),
                          time(a.first, a.second, false));
          } else {
            std::snprintf(buf, sizeof(buf), " rows: - %.1f;", time(a.first, a.second, false));
          }
        } else if (a.second == 1) {
          std::snprintf(buf, sizeof(buf), " grid %dx512: %.1f %.1f;", a.first,
                        time(a.first, a.second, true), time(a.first, a.second, false));
        } else {
          std::snprintf(buf, sizeof(buf), " %dx%d: %.1f %.1f;", a.first, a.second,
                        time(a.first, a.second, true), time(a.first, a.second, false));
        }
        alts += buf;
      }
      char shape[32];
      std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)sh.rows, (long long)sh.len);
      std::printf("%-5s %-12s %5d | %9.1f %9.1f | %8.1f |%s%s\n", bf16 ? "bf16" : "fp32", shape,
                  sh.k, ns, nu, floor, alts.c_str(),
                  same ? "" : "  MISMATCH between configurations");
      std::fflush(stdout);
      for (void* p : in) CK(cudaFree(p));
      CK(cudaFree(idx));
      CK(cudaFree(val));
      if (ws != nullptr) CK(cudaFree(ws));
    }
  }
  return 0;
}
