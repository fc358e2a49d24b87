// Decode-router benchmark: the one-launch route_gemm vs cuBLAS GEMM alone vs the prefill path
// (cuda::route: cuBLASLt GEMM + fused route, two launches) vs the practical floor (a plain
// kernel reading the same bytes) vs HBM copy bandwidth, for DSV4-Flash and DSV4-Pro at k = 6
// and N = 1..64. Every timed launch is captured in a CUDA graph; L2 is kept
// cold by rotating distinct copies of W (3x the L2 size in all); x stays hot, as it would be
// right after the previous layer wrote it. Also the exposed time behind a preceding kernel,
// with and without programmatic dependent launch (PDL), and the same three times for the fused
// route from logits (L2-warm logits) and the hash route from x (hash layers: the k rows of W a
// token needs, no GEMM).
//
//   route_gemm_bench [--reps R] [--n N1,N2,...] [--sweep] [--sweep-split]
// Prints `us | GB/s | % copy | cuBLAS | cuBLASLt+route | floor | x floor | exposed` per shape;
// --sweep also times every forced tiling (groups per expert tile) of the decode kernel,
// --sweep-split every groups per tile of the two-launch mma path (mma partials, then the
// block-per-row route) where the shape takes it.
// --n: the token counts to time (default 1, 2, 3, 4, 8, 16, 32, 64).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "copy_bandwidth.h"
#include "moerouter/cuda.h"
#include "moerouter/kernels/route_gemm.cuh"
#include "moerouter/route_gemm.h"
#include "moerouter/synthetic.h"

// Optional before/after: -DMOER_BENCH_OLD='"path.cuh"' names a header that defines
// old_workspace_bytes(E) and old_launch(params, w, workspace, stream, sms) for an earlier
// kernel, timed in the --sweep lines.
#ifdef MOER_BENCH_OLD
#include MOER_BENCH_OLD
#endif

namespace {

#define CHECK_OK(expr) moerouter_bench::check_status((expr), #expr)

// The practical floor: read W (`a`, na 16-byte vectors, streamed) and x (`b`, nb vectors) and
// reduce them. Each thread issues its kFloorPer loads (vectors t, t + 256, ... of its block's
// 1024) before it uses any; the grid covers W and x once. Measured on an H100 (CUDA graph, W
// cold, us; a probe of the fifteenth session): Pro's 5.5 MB 3.22 and Flash's 2.1 MB 2.22,
// where the grid-stride loop of 2 x SMs blocks of 512 threads used before took 3.99 and 2.95
// (and 1, 2 or 8 loads a thread, or 128 or 512 threads, 3.23-3.74 and 2.26-2.53).
constexpr int kFloorThreads = 256;
constexpr int kFloorPer = 4;
constexpr unsigned kFloorSink = 4096;  // words of `out` (the sink has 2^18)
__global__ void __launch_bounds__(kFloorThreads)
    read_floor_kernel(const uint4* __restrict__ a, std::size_t na, const uint4* __restrict__ b,
                      std::size_t nb, unsigned* __restrict__ out) {
  const std::size_t base = std::size_t(blockIdx.x) * kFloorThreads * kFloorPer + threadIdx.x;
  uint4 v[kFloorPer];
#pragma unroll
  for (int u = 0; u < kFloorPer; ++u) {
    const std::size_t i = base + std::size_t(u) * kFloorThreads;
    v[u] = i < na ? __ldcs(a + i) : i < na + nb ? __ldg(b + (i - na)) : make_uint4(0, 0, 0, 0);
  }
  unsigned acc = 0;
#pragma unroll
  for (int u = 0; u < kFloorPer; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  acc = __reduce_xor_sync(0xffffffffu, acc);
  if ((threadIdx.x & 31) == 0) atomicXor(out + blockIdx.x % kFloorSink, acc);
}

__global__ void empty_kernel() {}

// A stand-in for the previous layer's kernel: spins for `cycles` on every SM, and lets its
// dependent start early (as a PDL-aware engine kernel would).
__global__ void busy_kernel(long long cycles, unsigned* sink) {
  moerouter::detail::trigger_dependents();
  const long long t0 = clock64();
  unsigned x = threadIdx.x;
  while (clock64() - t0 < cycles) x = x * 1664525u + 1013904223u;
  if (x == 0x12345678u) *sink = x;
}

// Captures `body(i)` for i in [0, launches) into one graph; returns the median over `reps`
// replays (after three) of the time per launch, in microseconds.
template <typename F>
double time_graph(cudaStream_t s, int launches, int reps, F&& body) {
  return moerouter_bench::graph_us(
             s,
             [&](cudaStream_t) {
               for (int i = 0; i < launches; ++i) body(i);
             },
             reps, 3, cudaStreamCaptureModeThreadLocal) /
         launches;
}

// Exposed time of `launch(i, pdl)` behind busy_kernel (a stand-in for the previous layer's
// kernel that lets its dependent start at once): (busy + launch) - busy, with and without PDL.
struct Exposed {
  double pdl = 0, plain = 0;
};
template <typename F>
Exposed time_exposed(cudaStream_t s, int launches, int reps, int sms, long long busy_cycles,
                     unsigned* sink, F&& launch) {
  const double busy_us = time_graph(s, launches, reps, [&](int) {
    busy_kernel<<<sms, 128, 0, s>>>(busy_cycles, sink);
  });
  Exposed e;
  for (const bool pdl : {true, false}) {
    const double pair_us = time_graph(s, launches, reps, [&](int i) {
      busy_kernel<<<sms, 128, 0, s>>>(busy_cycles, sink);
      launch(i, pdl);
    });
    (pdl ? e.pdl : e.plain) = pair_us - busy_us;
  }
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace moerouter;
  int reps = 15;
  bool sweep = false, sweep_split = false;
  std::vector<int> ns = {1, 2, 3, 4, 8, 16, 32, 64};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--sweep")) sweep = true;
    if (!std::strcmp(argv[i], "--sweep-split")) sweep_split = true;
    if (!std::strcmp(argv[i], "--n") && i + 1 < argc) {  // a comma-separated list, 1..64
      ns.clear();
      for (const char* c = argv[++i]; *c != '\0';) {
        char* end = nullptr;
        const long v = std::strtol(c, &end, 10);
        if (end == c || v < 1 || v > 64) {
          std::fprintf(stderr, "--n takes token counts 1..64, comma-separated\n");
          return 2;
        }
        ns.push_back(int(v));
        c = *end == ',' ? end + 1 : end;
      }
    }
  }
  int dev = 0;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const int sms = prop.multiProcessorCount;
  std::printf("device: %s, %d SMs, L2 %.1f MB\n", prop.name, sms, prop.l2CacheSize / 1e6);

  // HBM copy bandwidth (bytes read + written): the same measurement as moerouter_bench and
  // radix_topk_bench (copy_bandwidth.h). This bench had its own grid-stride copy kernel in a
  // CUDA graph until the sixteenth session (2832 GB/s on an H100, against 2958-2993 this way).
  const double copy_gbs = moerouter_bench::copy_bandwidth_gbps(s);
  const double empty_us = time_graph(s, 200, reps, [&](int) { empty_kernel<<<1, 32, 0, s>>>(); });
  std::printf("copy bandwidth: %.0f GB/s (read + write); empty kernel in a graph: %.2f us\n",
              copy_gbs, empty_us);
  std::printf("\n");
  moerouter::cuda::RouterGemm lt;
  CHECK_OK(lt.init());

  cublasHandle_t blas;
  CUBLAS_CK(cublasCreate(&blas));
  CUBLAS_CK(cublasSetStream(blas, s));
  void* blas_ws;
  const std::size_t blas_ws_bytes = 64u << 20;
  CK(cudaMalloc(&blas_ws, blas_ws_bytes));
  CUBLAS_CK(cublasSetWorkspace(blas, blas_ws, blas_ws_bytes));
  unsigned* sink;
  CK(cudaMalloc(&sink, 1 << 20));
  CK(cudaMemset(sink, 0, 1 << 20));

  std::printf("%-6s %3s | %8s %7s %6s | %8s %8s %8s | %7s %7s | %9s %9s | %s\n", "model", "N",
              "ours us", "GB/s", "%copy", "cuBLAS", "Lt+route", "floor us", "x Lt+rt",
              "x floor", "exp. PDL", "exp. noPDL", "kernel (mma: groups x wk, tiles x splits)");
  const long long busy_cycles = 20000;  // ~11 us at 1.75 GHz
  for (const ModelShape& m : {dsv4_flash(), dsv4_pro()}) {
    const std::int64_t H = m.hidden, E = m.experts;
    const std::size_t w_bytes = std::size_t(E * H) * 2;
    const int copies = std::max<int>(8, int(3.0 * prop.l2CacheSize / w_bytes) + 1);
    const SyntheticLayer layer = make_synthetic_layer(m, 1, false);
    std::vector<void*> ws(copies);
    for (auto& p : ws) {
      CK(cudaMalloc(&p, w_bytes));
      CK(cudaMemcpy(p, layer.w.data(), w_bytes, cudaMemcpyHostToDevice));
    }
    const std::vector<bf16> xh = make_hidden(64, H, 2);
    void *x, *bias, *weights, *ids, *logits, *work, *route_work;
    CK(cudaMalloc(&x, xh.size() * 2));
    CK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&bias, E * 4));
    CK(cudaMemcpy(bias, layer.bias.data(), E * 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&weights, 64 * 32 * 4));
    CK(cudaMalloc(&ids, 64 * 32 * 8));
    CK(cudaMalloc(&logits, 64 * E * 4));
    const std::size_t work_bytes = moerouter::cuda::route_gemm_workspace_size(64, E);
    CK(cudaMalloc(&work, work_bytes));
    CK(cudaMemset(work, 0, work_bytes));
#ifdef MOER_BENCH_OLD
    void* old_work;
    CK(cudaMalloc(&old_work, old_workspace_bytes(E)));
    CK(cudaMemset(old_work, 0, old_workspace_bytes(E)));
#endif
    const std::size_t route_work_bytes = moerouter::cuda::route_workspace_size(64, E);
    CK(cudaMalloc(&route_work, route_work_bytes));

    for (int n : ns) {
      RouteParams p;
      p.x = x;
      p.bias = static_cast<const float*>(bias);
      p.weights = static_cast<float*>(weights);
      p.ids = ids;
      p.n = n;
      p.hidden = H;
      p.experts = E;
      p.k = m.k;
      p.scale = m.scale;
      // The params of launch i: W copy i of the rotating copies (W cold).
      const auto params_at = [&](int i) {
        RouteParams q = p;
        q.w = ws[std::size_t(i) % ws.size()];
        return q;
      };
      auto ours = [&](int i, bool pdl) {
        CHECK_OK(moerouter::cuda::launch_route_gemm(params_at(i), work, work_bytes, s, pdl));
      };
      const int launches = copies * 4;
      const double ours_us = time_graph(s, launches, reps, [&](int i) { ours(i, false); });
      // launch_route_gemm_tiled with a forced tiling or kernel, over the rotating W copies.
      const auto tiled = [&](int i, bool pdl, int groups, int routers, int kernel) {
        CHECK_OK(moerouter::cuda::launch_route_gemm_tiled(params_at(i), work, work_bytes, s, pdl,
                                                          groups, routers, kernel));
      };
      const auto tiled_us = [&](int groups, int routers, int kernel) {
        return time_graph(s, launches, reps,
                          [&](int i) { tiled(i, false, groups, routers, kernel); });
      };
      const auto lt_route = [&](int i) {
        CHECK_OK(moerouter::cuda::route(params_at(i), lt, route_work, route_work_bytes, s));
      };
      // cuBLAS: logits^T [E, n] (column-major) = W [E, H] * x^T [H, n], fp32 accumulate.
      const float one = 1.0f, zero = 0.0f;
      const double blas_us = time_graph(s, launches, reps, [&](int i) {
        CUBLAS_CK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(E), n, int(H), &one,
                               ws[std::size_t(i) % ws.size()], CUDA_R_16BF, int(H), x,
                               CUDA_R_16BF, int(H), &zero, logits, CUDA_R_32F, int(E),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      const double lt_us = time_graph(s, launches, reps, lt_route);
      const std::size_t x_vecs = std::size_t(n) * H * 2 / 16;  // x's 16-byte vectors
      const double floor_us = time_graph(s, launches, reps, [&](int i) {
        const std::size_t nv = w_bytes / 16 + x_vecs;
        constexpr std::size_t kPerBlock = std::size_t(kFloorThreads) * kFloorPer;
        read_floor_kernel<<<unsigned((nv + kPerBlock - 1) / kPerBlock), kFloorThreads, 0, s>>>(
            static_cast<const uint4*>(ws[std::size_t(i) % ws.size()]), w_bytes / 16,
            static_cast<const uint4*>(x), x_vecs, sink);
      });
      const Exposed exposed = time_exposed(s, launches / 2, reps, sms, busy_cycles, sink, ours);
      const double bytes = double(w_bytes) + double(n) * H * 2;
      const double gbs = bytes / ours_us / 1e3;
      const bool two_launches = moerouter::cuda::route_gemm_two_launches(n, E, m.k);
      const moerouter::cuda::RouteGemmTiling tl = moerouter::cuda::route_gemm_tiling(
          n, E, H, sms, two_launches ? moerouter::cuda::route_gemm_two_launch_groups(n, E) : 0);
      const int epb = moerouter::cuda::route_gemv_experts_per_block(n, E, m.k, sms);
      char kernel[128];
      if (epb > 0) {
        // The one-pass kernel ran: time the mma kernel too (same run, same rotation).
        const double mma_us = tiled_us(0, 0, moerouter::cuda::kRouteGemmForceMma);
        double split_us = 0.0;  // the one-pass kernel's logits, then the route: two launches
        double split_exposed = 0.0;  // its time exposed behind the busy kernel, with PDL
        if (moerouter::cuda::route_gemm_two_launch_shape(E, m.k)) {
          // The other form of the one-pass path: logits, then the route (two launches), or
          // the one-pass kernel's own poller.
          const int other = two_launches ? moerouter::cuda::kRouteGemmForceGemv
                                         : moerouter::cuda::kRouteGemmForceGemvSplit;
          split_us = tiled_us(0, 0, other);
          split_exposed = time_exposed(s, launches / 2, reps, sms, busy_cycles, sink,
                                       [&](int i, bool pdl) { tiled(i, pdl, 0, 0, other); })
                              .pdl;
        }
        std::snprintf(kernel, sizeof kernel,
                      "one-pass %d experts x %d blocks%s (mma %.2f; %s %.2f, exposed %.2f)", epb,
                      int((E + epb - 1) / epb), two_launches ? ", logits + route" : "", mma_us,
                      two_launches ? "poller" : "logits + route", split_us, split_exposed);
      } else if (two_launches) {
        // The two-launch path ran (mma GEMM, then the block-per-row route): time the one-launch
        // mma kernel (its routers) too.
        const double one_us = tiled_us(0, 0, moerouter::cuda::kRouteGemmForceMma);
        std::snprintf(kernel, sizeof kernel,
                      "mma %dx%d, %dx%d + block route (one launch, %d router(s): %.2f)", tl.groups,
                      tl.wk, tl.tiles, tl.splits, tl.routers, one_us);
      } else {
        std::snprintf(kernel, sizeof kernel, "mma %dx%d, %dx%d, %d router(s)", tl.groups, tl.wk,
                      tl.tiles, tl.splits, tl.routers);
      }
      std::printf("%-6s %3d | %8.2f %7.0f %5.1f%% | %8.2f %8.2f %8.2f | %7.2f %7.2f | %9.2f %9.2f "
                  "| %s\n",
                  m.name.c_str(), n, ours_us, gbs, 100.0 * gbs / copy_gbs, blas_us, lt_us,
                  floor_us, lt_us / ours_us, ours_us / floor_us, exposed.pdl, exposed.plain,
                  kernel);
      std::fflush(stdout);
      if (sweep_split && n >= 2 && moerouter::cuda::route_gemm_two_launch_shape(E, m.k)) {
        // cuBLASLt + the fused route behind the same kernel (no PDL: the GEMM waits for it).
        const Exposed lt_ex = time_exposed(s, launches / 2, reps, sms, busy_cycles, sink,
                                           [&](int i, bool) { lt_route(i); });
        std::printf("    cuBLASLt + route exposed %.2f; sweep two-launch mma, groups(tiles x "
                    "splits):alone/exposed with PDL:", lt_ex.plain);
        for (int tg : {1, 2, 3, 4, 6, 8, 12, 16}) {
          const moerouter::cuda::RouteGemmTiling ft =
              moerouter::cuda::route_gemm_tiling(n, E, H, sms, tg, 0);
          if (ft.tiles == 0) continue;
          const double t_us = tiled_us(tg, 0, moerouter::cuda::kRouteGemmForceMmaSplit);
          const Exposed ex = time_exposed(
              s, launches / 2, reps, sms, busy_cycles, sink, [&](int i, bool pdl) {
                tiled(i, pdl, tg, 0, moerouter::cuda::kRouteGemmForceMmaSplit);
              });
          std::printf(" %d(%dx%d):%.2f/%.2f", tg, ft.tiles, ft.splits, t_us, ex.pdl);
        }
        std::printf("\n");
        std::fflush(stdout);
      }
      if (sweep) {
        std::printf("    sweep groups(tiles x splits, routers):");
        for (int tg : {1, 2, 3, 4, 6, 8, 12, 16}) {
          for (int lv : {1, 2, 4, 8, 16}) {
            const moerouter::cuda::RouteGemmTiling ft =
                moerouter::cuda::route_gemm_tiling(n, E, H, sms, tg, lv);
            if (ft.tiles == 0 || ft.routers != lv) continue;
            const double t_us = tiled_us(tg, lv, moerouter::cuda::kRouteGemmAuto);
            std::printf(" %d(%dx%d,%d):%.2f", tg, ft.tiles, ft.splits, lv, t_us);
          }
        }
#ifdef MOER_BENCH_OLD
        const double old_us = time_graph(s, launches, reps, [&](int i) {
          old_launch(p, ws[std::size_t(i) % ws.size()], old_work, s, sms);
        });
        std::printf(" | before (clusters): %.2f", old_us);
#endif
        std::printf("\n");
        std::fflush(stdout);
      }
    }
    // The fused route from logits (what follows an engine's own router GEMM): alone, and
    // behind the busy kernel with and without PDL (with PDL its launch and start overlap the
    // busy kernel's end; it waits for it before any memory access).
    {
      const int launches = copies * 4;
      for (int n : {1, 16, 64}) {
        RouteLogitsParams rp;
        rp.logits = static_cast<const float*>(logits);
        rp.bias = static_cast<const float*>(bias);
        rp.weights = static_cast<float*>(weights);
        rp.ids = ids;
        rp.n = n;
        rp.experts = E;
        rp.k = m.k;
        rp.scale = m.scale;
        auto route = [&](int, bool pdl) { CHECK_OK(moerouter::cuda::route_logits(rp, s, pdl)); };
        const double alone_us = time_graph(s, launches, reps, [&](int i) { route(i, false); });
        const Exposed exposed = time_exposed(s, launches / 2, reps, sms, busy_cycles, sink, route);
        std::printf("%-6s %3d | route from logits: %6.2f us alone | exp. PDL %6.2f, noPDL %6.2f\n",
                    m.name.c_str(), n, alone_us, exposed.pdl, exposed.plain);
        std::fflush(stdout);
      }
    }
    // Hash layers: the hash route from x (only the k rows of W each token needs), on the same
    // rotation of W copies: alone, and behind the busy kernel with and without PDL (with PDL
    // it reads the token ids, the table and its rows of W before it waits).
    {
      const SyntheticLayer hl = make_synthetic_layer(m, 1, true);
      const std::vector<std::int32_t> toks = make_tokens(64, m.vocab, 5);
      void *table, *tokens;
      CK(cudaMalloc(&table, hl.tid2eid.size() * 4));
      CK(cudaMemcpy(table, hl.tid2eid.data(), hl.tid2eid.size() * 4,
                            cudaMemcpyHostToDevice));
      CK(cudaMalloc(&tokens, toks.size() * 4));
      CK(cudaMemcpy(tokens, toks.data(), toks.size() * 4, cudaMemcpyHostToDevice));
      const int launches = copies * 4;
      for (int n : {1, 4, 16, 64}) {
        HashRouteParams hp;
        hp.token_ids = tokens;
        hp.table = table;
        hp.weights = static_cast<float*>(weights);
        hp.ids = ids;
        hp.source = HashWeights::kFromX;
        hp.x = x;
        hp.hidden = H;
        hp.n = n;
        hp.vocab = m.vocab;
        hp.experts = E;
        hp.k = m.k;
        hp.scale = m.scale;
        auto hash = [&](int i, bool pdl) {
          HashRouteParams q = hp;
          q.w = ws[std::size_t(i) % ws.size()];
          CHECK_OK(moerouter::cuda::hash_route(q, s, pdl));
        };
        const double alone_us = time_graph(s, launches, reps, [&](int i) { hash(i, false); });
        const Exposed exposed = time_exposed(s, launches / 2, reps, sms, busy_cycles, sink, hash);
        std::printf("%-6s %3d | hash route from x: %6.2f us alone | exp. PDL %6.2f, noPDL %6.2f\n",
                    m.name.c_str(), n, alone_us, exposed.pdl, exposed.plain);
        std::fflush(stdout);
      }
      CK(cudaFree(table));
      CK(cudaFree(tokens));
    }
    for (void* p : ws) CK(cudaFree(p));
    for (void* p : {x, bias, weights, ids, logits, work, route_work}) CK(cudaFree(p));
  }
  CK(cudaDeviceSynchronize());
  std::printf("\n(GB/s counts W + x bytes once; %% copy is of the copy bandwidth above; "
              "x Lt+rt = cuda::route time / ours; x floor = ours / floor; exp. = exposed time "
              "behind a ~%lld-cycle preceding kernel)\n",
              busy_cycles);
  return 0;
}
