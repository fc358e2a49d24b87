// moerouter: the one-launch decode router, logits = x W^T then the dense DSV4 route, for n <= 64.
//
// Decode is bound by reading W once from HBM (DSV4-Pro: 384 x 7168 bf16 = 5.5 MB), so the
// kernel is laid out to stream W over every SM at once and to keep the work after the stream
// short:
//
//   grid     = tiles x splits blocks (at most one per SM, no clusters): tile t owns 8 * groups
//              experts, split s owns a contiguous run of 32-wide H chunks
//   block    = groups x wk warps; a warp owns 8 experts (one mma n-tile) and a run of the
//              block's chunks
//   stage 1  every thread loads its W 16-byte units into registers, requests its x lines into
//            L2 and copies the bias to shared memory (cp.async) before griddepcontrol.wait
//            (W and bias never depend on the previous kernel, only x does), then loads x (with
//            one token tile, all of the warp's x before the first mma) and runs mma.sync
//            m16n8k16 (tokens on M, experts on N, fp32 accumulate). No thread waits for the
//            bias or x behind W's stream.
//   stage 2  the partials are summed over the block's warps in shared memory, in a fixed order,
//            and written to the workspace; then the block counts its arrival on one counter.
//   stage 3  the last `routers` blocks to arrive (a.routers, ceil(n / 4) up to 16) wait until
//            every block has arrived, each sums its rows' partials over the splits, in split
//            order, into shared memory (a few 16-byte L2 loads per thread, every router at
//            once), and routes those rows, one warp per row, with the fused route's device
//            code (route_topk.cuh: logit filter, approximate keys, exact sqrt-softplus of a few
//            candidates, rank, renormalize, scale). The other blocks exit at their arrival.
//            The wait needs the routers co-resident with the blocks still to arrive, which holds
//            wherever `routers` blocks fit on the device at once: a router only waits for
//            blocks that arrive after it, and at most routers - 1 of them are still missing.
//            With a.routers == 0 the kernel ends after stage 2's partial sums (no counter):
//            launch_route_gemm's two-launch path routes them with route_topk_rowwide_kernel.
// The counters are reset by the last router to see the count complete, so the workspace is
// ready for the next launch or graph replay. Every sum has a fixed order: the result is
// bit-reproducible.
//
// The mma operands are fed straight from global memory: a thread's 16-byte load holds 8
// consecutive k of one row, and the two mma k-steps of a 32-wide chunk take its first and last
// 4 values. That permutes k identically for x and W, which leaves every dot product unchanged.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/pdl.cuh"
#include "moerouter/detail/timer.cuh"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/kernels/route_topk.cuh"

namespace moerouter {
namespace kernels {

/// Largest tokens per launch.
constexpr int kRouteGemmMaxTokens = 64;
/// Largest experts.
constexpr int kRouteGemmMaxExperts = 1024;
/// Largest k.
constexpr int kRouteGemmMaxK = 32;
/// Largest warps per block (groups x wk).
constexpr int kRouteGemmMaxWarps = 16;
/// Warps per block the tiling gives at most where the groups allow (wk = 12 / groups): at 128
/// registers a thread, a block of 16 warps takes the whole register file, so it cannot start
/// beside a preceding kernel's blocks, and programmatic dependent launch then cannot stream W
/// during that kernel. 12 warps leave a quarter of it. Measured on an H100 (route_gemm_bench
/// --sweep-split, behind a ~11 us kernel of one 128-thread block a SM), the two-launch path's
/// exposed time, us: Pro n = 8 / 16 / 32 / 64 6.73 / 6.80 / 7.91 / 9.87 at 3 groups x 5 warps
/// against 4.07 / 4.51 / 6.19 / 7.52 at 3 x 4; alone 7.37 / 7.68 / 8.68 / 10.57 against 7.49 /
/// 7.55 / 8.84 / 10.53.
constexpr int kRouteGemmBlockWarps = 12;
/// 32-wide k chunks whose W a thread holds in registers at once (one 16-byte unit each).
constexpr int kRouteGemmUnits = 8;
/// Largest H splits (blocks per expert tile).
constexpr int kRouteGemmMaxSplits = 32;
/// Largest expert tiles.
constexpr int kRouteGemmMaxTiles = 255;
/// Rows a router block routes at once (one warp each; their logits in shared memory).
constexpr int kRouteGemmRouterRows = 4;
/// Largest router blocks.
constexpr int kRouteGemmMaxRouters = 16;
/// Largest n whose x lines stage 1 prefetches into L2 ahead of their loads.
constexpr int kRouteGemmPrefetchTokens = 8;
/// Bytes of the workspace header (the counters: [0] arrivals, [1] routers past the wait).
constexpr int kRouteGemmHeaderBytes = 1024;

/// Parameters of route_gemm_kernel (device pointers; built by cuda::launch_route_gemm).
/// The inputs and outputs of both decode kernels (route_gemm_kernel, route_gemv_kernel).
struct RouteDecodeArgs {
  const std::uint16_t* x;     ///< [n, hidden] bf16 bits, row stride x_stride, 16-byte aligned
  const std::uint16_t* w;     ///< [experts, hidden] bf16 bits, contiguous, 16-byte aligned
  const float* bias;          ///< [experts] fp32 or null (zeros)
  float* weights;             ///< out [n, k] fp32, row stride weights_stride
  void* ids;                  ///< out [n, k] int32 or int64 (ids64), row stride ids_stride
  std::int64_t x_stride, weights_stride, ids_stride;
  int n, hidden, experts, k;
  float scale;
  int ids64;                  ///< 1: ids are int64
};

struct RouteGemmArgs : RouteDecodeArgs {
  unsigned* counters;         ///< workspace: [0] arrivals, [1] routers done waiting (0 between
                              ///< launches)
  float* partials;            ///< workspace: [tiles * splits][n][8 * groups] fp32
  int logits_stride;          ///< experts rounded up to 4 (a row of the routers' shared logits)
  int tiles;                  ///< expert tiles
  int splits;                 ///< H splits per tile (grid = tiles * splits)
  int groups;                 ///< 8-expert groups per tile
  int wk;                     ///< warps per group, splitting the block's chunks
  int chunks;                 ///< ceil(hidden / 32)
  int warp_chunks;            ///< the most chunks any warp owns
  int routers;                ///< blocks that reduce and route rows (1..min(n, grid)); 0:
                              ///< none, the partials only (a second kernel routes)
};

namespace route_gemm_detail {

__device__ __forceinline__ uint4 load_stream(const std::uint16_t* p) {
  uint4 v;
  // W is read once: keep it out of L1 so x (re-read by the tile's other warps) stays there.
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 load_x(const std::uint16_t* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// D += A * B, m16n8k16, bf16 in, fp32 accumulate. A: tokens x k (row), B: k x experts (col).
__device__ __forceinline__ void mma_bf16(float (&d)[4], unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
  // Not volatile: the compiler may hoist the next chunks' x loads above this mma.
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// The bias into shared memory without a register round trip (cp.async; 0 past E or without
/// bias), so no thread waits for it before it loads x: the copies complete in the background
/// and wait_bias_copies() (before the barrier that precedes any read of bias_s) waits.
__device__ __forceinline__ void copy_bias(float* bias_s, const float* bias, int experts,
                                          int slots) {
  for (int i = int(threadIdx.x); i < slots; i += int(blockDim.x)) {
    if (bias != nullptr && i < experts) {
      const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(bias_s + i));
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(bias + i)
                   : "memory");
    } else {
      bias_s[i] = 0.0f;
    }
  }
}
__device__ __forceinline__ void wait_bias_copies() {
  asm volatile("cp.async.wait_all;" ::: "memory");
}

/// Brings x's line into L2 ahead of its load (x may still be written by the previous kernel
/// under PDL: L2 is coherent, and the value is read only by the load after the wait).
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Programmatic dependent launch (detail/pdl.cuh).
using moerouter::detail::grid_dependency_wait;
using moerouter::detail::trigger_dependents;

/// Counts this block's arrival at `counter` and returns how many blocks arrived before it;
/// thread 0 only, after a barrier that follows every write of the block (the barrier makes the
/// block's writes part of what thread 0's release publishes with the count). acq_rel: one
/// device-scope operation that releases this block's writes and acquires the earlier
/// arrivals'.
__device__ __forceinline__ unsigned arrive(unsigned* counter) {
  unsigned old;
  asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;"
               : "=r"(old)
               : "l"(counter)
               : "memory");
  return old;
}

/// Waits until `counter` reaches `expected`; thread 0 only, before a barrier. The acquire load
/// that sees the last arrival orders every arrival's writes before this block's reads (after
/// the barrier).
__device__ __forceinline__ void wait_count(const unsigned* counter, unsigned expected) {
  unsigned v;
  do {
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(counter) : "memory");
  } while (v < expected);
}

#if defined(MOER_ROUTE_GEMM_TRACE)
// Diagnosis builds only: %globaltimer at each stage, thread 0 of every block.
__device__ unsigned long long g_trace[1024][8];
__device__ __forceinline__ void trace(int slot) {
  if (threadIdx.x == 0) g_trace[blockIdx.x][slot] = detail::global_timer();
}
#else
__device__ __forceinline__ void trace(int) {}
#endif

/// The dense route of one row of fp32 logits in shared memory (ceil4(E) floats, 16-byte
/// aligned), one warp, with the fused route's device code (route_topk.cuh). s_bias: the bias,
/// 0 past E.
template <int kChunks>
__device__ __forceinline__ void route_logit_row(const RouteTopkArgs& a,
                                                route_detail::RouteWarpSmem& sm,
                                                std::int64_t row, const float* lrow,
                                                const float* s_bias,
                                                const route_detail::RouteBias& rb) {
  constexpr int kSlots = 4 * kChunks;
  constexpr float kNaN = __builtin_nanf("");
  const int lane = detail::lane_id();
  float l[kSlots];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int e0 = route_slot_expert(4 * c, lane);
    if (e0 < a.experts) {  // rows are padded to a multiple of 4: the load stays in the row
      const float4 v = *reinterpret_cast<const float4*>(lrow + e0);
      l[4 * c + 0] = v.x;
      l[4 * c + 1] = e0 + 1 < a.experts ? v.y : kNaN;
      l[4 * c + 2] = e0 + 2 < a.experts ? v.z : kNaN;
      l[4 * c + 3] = e0 + 3 < a.experts ? v.w : kNaN;
    } else {
#pragma unroll
      for (int t = 0; t < 4; ++t) l[4 * c + t] = kNaN;
    }
  }
  route_detail::route_row<kSlots, 0, true>(a, sm, s_bias, row, l, rb);
}

__device__ __forceinline__ void add4(float4& s, const float4& v) {
  s.x += v.x;
  s.y += v.y;
  s.z += v.z;
  s.w += v.w;
}

/// A router's logits of rows r0 .. r0 + rows - 1 into logits_s (row i at i * logits_stride):
/// each 4-expert group summed over the tile's splits in split order (so the logits do not
/// depend on which block routes them), every thread of the block taking groups in turn with
/// its split loads in flight together. Past E (up to ceil4(E)) the sums are of zeros.
__device__ __forceinline__ void sum_splits(const RouteGemmArgs& a, int r0, int rows,
                                           float* logits_s) {
  const int tile_e = 8 * a.groups;
  const int quads = a.logits_stride / 4;
  const std::int64_t items = std::int64_t(a.n) * tile_e;  // floats of one block's partials
  for (int i = int(threadIdx.x); i < rows * quads; i += int(blockDim.x)) {
    const int r = i / quads, e = 4 * (i % quads);
    const float4* src = reinterpret_cast<const float4*>(
        a.partials + std::int64_t(e / tile_e) * a.splits * items +
        std::int64_t(r0 + r) * tile_e + e % tile_e);
    const std::int64_t step = items / 4;  // one split, in float4
    float4 sum = __ldcg(src);
    int s = 1;
    for (; s + 4 <= a.splits; s += 4) {  // four loads in flight, then the adds in order
      const float4 v0 = __ldcg(src + s * step);
      const float4 v1 = __ldcg(src + (s + 1) * step);
      const float4 v2 = __ldcg(src + (s + 2) * step);
      const float4 v3 = __ldcg(src + (s + 3) * step);
      add4(sum, v0);
      add4(sum, v1);
      add4(sum, v2);
      add4(sum, v3);
    }
    for (; s < a.splits; ++s) add4(sum, __ldcg(src + s * step));
    *reinterpret_cast<float4*>(logits_s + r * a.logits_stride + e) = sum;
  }
}

}  // namespace route_gemm_detail

/// Dynamic shared memory of route_gemm_kernel: the warps' partial sums, which the routers
/// reuse for kRouteGemmRouterRows warps' route buffers and as many rows of logits.
inline std::size_t route_gemm_smem_bytes(int m_tiles, int groups, int wk, int experts) {
  const std::size_t part = std::size_t(wk) * 16 * m_tiles * 8 * groups * sizeof(float);
  const std::size_t route =
      std::size_t(kRouteGemmRouterRows) * (sizeof(route_detail::RouteWarpSmem) +
                                           std::size_t((experts + 3) / 4 * 4) * sizeof(float));
  return part > route ? part : route;
}

/// The decode router. kMTiles = ceil(n / 16) rounded to {1, 2, 4}; kChunks = ceil(E / 128)
/// rounded to {2, 3, 4, 8}. Dynamic shared memory: route_gemm_smem_bytes(kMTiles, groups, wk,
/// E).
template <int kMTiles, int kChunks>
__global__ void __launch_bounds__(kRouteGemmMaxWarps * 32, 1)
    route_gemm_kernel(const RouteGemmArgs a) {
  using namespace route_gemm_detail;
  constexpr int kRows = 16 * kMTiles;  // padded tokens
  constexpr int kSlots = 4 * kChunks;
  constexpr int kBiasSlots = kSlots * 32;  // the route's view of the bias (128 * kChunks)
  static_assert(kBiasSlots <= kRouteGemmMaxExperts, "bias_s holds the route's slots");
  extern __shared__ float4 smem_f4[];
  float* part = reinterpret_cast<float*>(smem_f4);  // [wk][kRows][tile_e]
  __shared__ __align__(16) float bias_s[kRouteGemmMaxExperts];  // 0 past E
  __shared__ int flag_s;
  __shared__ route_detail::RouteBias rb_s;

  // Unsigned divisions (every operand is >= 0): no sign fix-ups before W's loads.
  const int tile = int(blockIdx.x / unsigned(a.splits));
  const int split = int(blockIdx.x % unsigned(a.splits));
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int nwarps = int(blockDim.x) >> 5;
  const int tile_e = 8 * a.groups;
  const int g = int(unsigned(warp) % unsigned(a.groups));
  const int q = int(unsigned(warp) / unsigned(a.groups));
  const int quad = lane >> 2, c = lane & 3;

  // ---- stage 1: this warp's W slice into registers, then x, then mma ----------------------
  const int e = tile * tile_e + g * 8 + quad;  // the expert row this thread loads
  const bool e_ok = e < a.experts;
  // 32-bit (splits <= 32, chunks < 2^26): a 64-bit division here preceded W's loads.
  const int c0 = int(unsigned(split * a.chunks) / unsigned(a.splits));
  const int c1 = int(unsigned((split + 1) * a.chunks) / unsigned(a.splits));
  const int wc = int(unsigned(c1 - c0 + a.wk - 1) / unsigned(a.wk));
  const int wc0 = c0 + q * wc;
  const int wc1 = min(c1, wc0 + wc);
  const std::uint16_t* w_row = a.w + std::int64_t(e_ok ? e : 0) * a.hidden + 8 * c;

  trace(0);
  float acc[kMTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;

  for (int base = 0; base < a.warp_chunks; base += kRouteGemmUnits) {
    uint4 wv[kRouteGemmUnits];
#pragma unroll
    for (int u = 0; u < kRouteGemmUnits; ++u) {
      const int ch = wc0 + base + u;
      wv[u] = make_uint4(0, 0, 0, 0);
      if (e_ok && ch < wc1 && ch * 32 + 8 * c < a.hidden) wv[u] = load_stream(w_row + ch * 32);
    }
    if (base == 0) {
      // x behind W in the same queues: request its lines now, its loads below hit L2. Only
      // for a few tokens: for more, the prefetches crowd W's loads (H100, Pro: N = 64 20.9 ->
      // 27.5 us with them, N = 1 8.9 -> 8.7).
      if (kMTiles == 1 && a.n <= kRouteGemmPrefetchTokens) {
#pragma unroll
        for (int u = 0; u < kRouteGemmUnits; ++u) {
          const int ch = wc0 + u;
          const int kk = ch * 32 + 8 * c;
          if (ch < wc1 && kk < a.hidden) {
            const int t0 = quad, t1 = quad + 8;  // one m-tile
            if (t0 < a.n) prefetch_l2(a.x + std::int64_t(t0) * a.x_stride + kk);
            if (t1 < a.n) prefetch_l2(a.x + std::int64_t(t1) * a.x_stride + kk);
          }
        }
      }
      // The bias is a weight (never written by the previous kernel): copy it while W flies.
      copy_bias(bias_s, a.bias, a.experts, kBiasSlots);
      // Only x comes from the previous kernel: W's loads above are already in flight.
      grid_dependency_wait();
    }
    if constexpr (kMTiles == 1) {
      // One token tile: every unit's x fragments are loaded before the first mma, so their L2
      // round trips overlap each other and W's stream (nvcc had issued each unit's x loads
      // after the previous unit's mma). H100, Pro n = 8: two-launch path 8.16-8.25 -> 7.86-7.90
      // us at the same tiling, one-launch kernel 9.55 -> 8.92. More token tiles would not fit
      // the registers (512 threads a block).
      uint4 lo[kRouteGemmUnits], hi[kRouteGemmUnits];
#pragma unroll
      for (int u = 0; u < kRouteGemmUnits; ++u) {
        const int ch = wc0 + base + u;
        const int kk = ch * 32 + 8 * c;
        const bool ok = ch < wc1 && kk < a.hidden;
        lo[u] = make_uint4(0, 0, 0, 0);
        hi[u] = make_uint4(0, 0, 0, 0);
        if (ok && quad < a.n) lo[u] = load_x(a.x + std::int64_t(quad) * a.x_stride + kk);
        if (ok && quad + 8 < a.n) hi[u] = load_x(a.x + std::int64_t(quad + 8) * a.x_stride + kk);
      }
#pragma unroll
      for (int u = 0; u < kRouteGemmUnits; ++u) {
        if (wc0 + base + u < wc1) {  // warp-uniform
          mma_bf16(acc[0], lo[u].x, hi[u].x, lo[u].y, hi[u].y, wv[u].x, wv[u].y);
          mma_bf16(acc[0], lo[u].z, hi[u].z, lo[u].w, hi[u].w, wv[u].z, wv[u].w);
        }
      }
    } else {
      // Several token tiles: a unit's x loads follow the previous unit's mma (the registers
      // hold one unit's x), a chain of L2 round trips. Measured on an H200 (route_gemm_bench
      // --reps 3, two runs each, one call), both slower: the block's x slice staged once in
      // shared memory (cp.async, one barrier) Pro n = 32 / 64 8.51 -> 9.38-9.40 / 10.17-10.18
      // -> 12.52 us, and 12.5 exposed with PDL at 64 against 8.0 (the blocks no longer fit
      // beside the previous kernel's); every line of the warp's x prefetched into L1 after the
      // dependency wait, Pro n = 32 / 64 10.48 / 14.78-14.79.
#pragma unroll
      for (int u = 0; u < kRouteGemmUnits; ++u) {
        const int ch = wc0 + base + u;
        if (ch < wc1) {  // warp-uniform
          const int kk = ch * 32 + 8 * c;
          const bool k_ok = kk < a.hidden;
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            const int t0 = mt * 16 + quad, t1 = t0 + 8;
            uint4 lo = make_uint4(0, 0, 0, 0), hi = make_uint4(0, 0, 0, 0);
            if (k_ok && t0 < a.n) lo = load_x(a.x + std::int64_t(t0) * a.x_stride + kk);
            if (k_ok && t1 < a.n) hi = load_x(a.x + std::int64_t(t1) * a.x_stride + kk);
            mma_bf16(acc[mt], lo.x, hi.x, lo.y, hi.y, wv[u].x, wv[u].y);
            mma_bf16(acc[mt], lo.z, hi.z, lo.w, hi.w, wv[u].z, wv[u].w);
          }
        }
      }
    }
  }
  if (a.warp_chunks <= 0) copy_bias(bias_s, a.bias, a.experts, kBiasSlots);
  wait_bias_copies();  // before the barrier below: bias_s is complete after it
  grid_dependency_wait();  // (again) before any workspace access, also for a warp without chunks
  // This block is past its loads of x: a dependent kernel may start its prologue.
  trigger_dependents();
  trace(1);

  // ---- stage 2: reduce over the block's warps in a fixed order, then arrive ---------------
  // C fragment: rows (tokens) quad and quad + 8, columns (experts) 2c and 2c + 1.
  {
    float* mine = part + std::int64_t(q) * kRows * tile_e;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      const int t0 = mt * 16 + quad, col = g * 8 + 2 * c;
      mine[t0 * tile_e + col] = acc[mt][0];
      mine[t0 * tile_e + col + 1] = acc[mt][1];
      mine[(t0 + 8) * tile_e + col] = acc[mt][2];
      mine[(t0 + 8) * tile_e + col + 1] = acc[mt][3];
    }
  }
  __syncthreads();
  if (warp == nwarps - 1) {
    // The bias range for the route (the routers need it): computed here, where this warp
    // would idle while the first items of the sums below are added.
    route_detail::RouteBiasAcc bias_acc;
#pragma unroll
    for (int ch = 0; ch < kChunks; ++ch) {
      const int e0 = route_slot_expert(4 * ch, lane);
      const float4 v = *reinterpret_cast<const float4*>(bias_s + e0);
      const float b4[4] = {v.x, v.y, v.z, v.w};
      bias_acc.add(b4, e0, a.experts);
    }
    const route_detail::RouteBias rb = bias_acc.reduce();
    if (lane == 0) rb_s = rb;
  }
  const int items = a.n * tile_e;  // only real tokens
  float* my_part = a.partials + std::int64_t(blockIdx.x) * items;
  for (int i = int(threadIdx.x); i < items; i += int(blockDim.x)) {
    float sum = part[i];
    for (int w2 = 1; w2 < a.wk; ++w2) sum += part[std::int64_t(w2) * kRows * tile_e + i];
    my_part[i] = sum;
  }
  // No routers: a second kernel (route_topk_rowwide_kernel over SplitPartials, launched with
  // PDL) routes from the partials once this grid has finished.
  if (a.routers == 0) {
    trace(6);  // (thread 0's share written)
    return;
  }
  __syncthreads();
  trace(2);
  const unsigned blocks = gridDim.x;
  if (threadIdx.x == 0) {
    // The last a.routers blocks to arrive route: router 0 arrived last.
    const unsigned before = arrive(a.counters);
    const int router = int(blocks - 1 - before);
    if (router < a.routers && router > 0) wait_count(a.counters, blocks);
    flag_s = router;
  }
  __syncthreads();
  const int router = flag_s;
  if (router >= a.routers) return;
  if (threadIdx.x == 0) {
    // Every router is past its wait: the last to get here resets both counters.
    if (atomicAdd(a.counters + 1, 1u) == unsigned(a.routers - 1)) {
      atomicExch(a.counters, 0u);
      atomicExch(a.counters + 1, 0u);
    }
  }
  trace(3);

  // ---- stage 3 (routers only): the rows' logits, then their dense route -------------------
  // The partial sums are dead: their shared memory becomes the route buffers and the logits.
  auto* route_s = reinterpret_cast<route_detail::RouteWarpSmem*>(smem_f4);
  float* logits_s = reinterpret_cast<float*>(route_s + kRouteGemmRouterRows);
  RouteTopkArgs ra{};
  ra.bias = a.bias;
  ra.weights = a.weights;
  ra.ids = a.ids;
  ra.n = a.n;
  ra.weights_stride = a.weights_stride;
  ra.ids_stride = a.ids_stride;
  ra.experts = a.experts;
  ra.k = a.k;
  ra.scale = a.scale;
  ra.ids_i64 = a.ids64 != 0;
  const route_detail::RouteBias rb = rb_s;  // written in stage 2, ordered by its barriers
  // Router j routes rows [j * per, (j + 1) * per), kRouteGemmRouterRows at a time.
  const int per = (a.n + a.routers - 1) / a.routers;
  const int end = min(a.n, (router + 1) * per);
  for (int r0 = router * per; r0 < end; r0 += kRouteGemmRouterRows) {
    const int rows = min(kRouteGemmRouterRows, end - r0);
    sum_splits(a, r0, rows, logits_s);
    __syncthreads();
    trace(4);
    for (int r = warp; r < rows; r += nwarps) {
      route_logit_row<kChunks>(ra, route_s[r], r0 + r, logits_s + r * a.logits_stride, bias_s,
                               rb);
    }
    __syncthreads();  // the next rows' sums overwrite logits_s
  }
  if (router == 0) trace(5);
}

}  // namespace kernels
}  // namespace moerouter
