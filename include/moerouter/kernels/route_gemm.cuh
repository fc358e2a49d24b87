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
//            (W and bias never depend on the previous kernel, only x does), then loads x and
//            runs mma.sync m16n8k16 (tokens on M, experts on N, fp32 accumulate). No thread
//            waits for the bias or x behind W's stream.
//   stage 2  the partials are summed over the block's warps in shared memory, in a fixed order,
//            and written to the workspace. Small n * E (one_level): the grid's last block to
//            finish (an arrival counter) sums every split, in split order, into shared memory.
//            Otherwise, with one split the partials are the logits; with more, the last block
//            of each tile (a per-tile counter) sums the tile's splits into the logits.
//   stage 3  that last block (one_level) or the last tile to finish (a global counter) routes
//            the n rows, one warp per row, with the fused route's device code (route_topk.cuh:
//            logit filter, approximate keys, exact sqrt-softplus of a few candidates, rank,
//            renormalize, scale).
// Every counter is reset by the block that sees it complete, so the workspace is ready for the
// next launch or graph replay. Every sum has a fixed order: the result is bit-reproducible.
//
// The mma operands are fed straight from global memory: a thread's 16-byte load holds 8
// consecutive k of one row, and the two mma k-steps of a 32-wide chunk take its first and last
// 4 values. That permutes k identically for x and W, which leaves every dot product unchanged.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/pdl.cuh"
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
/// 32-wide k chunks whose W a thread holds in registers at once (one 16-byte unit each).
constexpr int kRouteGemmUnits = 8;
/// Largest H splits (blocks per expert tile).
constexpr int kRouteGemmMaxSplits = 32;
/// Largest expert tiles (one arrival counter each).
constexpr int kRouteGemmMaxTiles = 255;
/// Largest n whose x lines stage 1 prefetches into L2 ahead of their loads.
constexpr int kRouteGemmPrefetchTokens = 8;
/// Bytes of the workspace header (the arrival counters: [0] global, [1 + t] tile t).
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
  unsigned* counters;         ///< workspace: arrival counters (0 between launches)
  float* logits;              ///< workspace: [n, logits_stride] fp32, 16-byte aligned rows
  float* partials;            ///< workspace: [tiles * splits][n][8 * groups] fp32 (splits > 1)
  int logits_stride;          ///< experts rounded up to 4
  int tiles;                  ///< expert tiles
  int splits;                 ///< H splits per tile (grid = tiles * splits)
  int groups;                 ///< 8-expert groups per tile
  int wk;                     ///< warps per group, splitting the block's chunks
  int chunks;                 ///< ceil(hidden / 32)
  int warp_chunks;            ///< the most chunks any warp owns
  int one_level;              ///< 1: the grid's last block sums every partial (small n * E);
                              ///< 0: each tile's last block, then the last tile
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

/// Counts this block's arrival at `counter`; thread 0 only, after a barrier that follows every
/// write of the block (the barrier makes the block's writes part of what thread 0's release
/// publishes with the count). Returns true in the block that arrives last, which resets the
/// counter for the next launch; its acquire orders the others' writes before its block's
/// reads (after the next barrier).
__device__ __forceinline__ bool arrive_last(unsigned* counter, unsigned expected) {
  unsigned old;
  // acq_rel: releases this block's writes (ordered before by the barrier), acquires every
  // earlier arrival's; one device-scope operation instead of a fence and an atomic.
  asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;"
               : "=r"(old)
               : "l"(counter)
               : "memory");
  const bool last = old == expected - 1;
  if (last) atomicExch(counter, 0u);  // every other block has counted itself
  return last;
}

#if defined(MOER_ROUTE_GEMM_TRACE)
// Diagnosis builds only: %globaltimer at each stage, thread 0 of every block.
__device__ unsigned long long g_trace[1024][8];
__device__ __forceinline__ void trace(int slot) {
  if (threadIdx.x == 0) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    g_trace[blockIdx.x][slot] = t;
  }
}
#else
__device__ __forceinline__ void trace(int) {}
#endif

/// The dense route of one row of fp32 logits written earlier in this launch (in shared memory,
/// kShared, or global memory read through L2, never the non-coherent path), one warp, with
/// the fused route's device code (route_topk.cuh). s_bias: the bias, 0 past E.
template <int kChunks, bool kShared>
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
      const float4 v = kShared ? *reinterpret_cast<const float4*>(lrow + e0)
                               : __ldcg(reinterpret_cast<const float4*>(lrow + e0));
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

}  // namespace route_gemm_detail

/// Dynamic shared memory of route_gemm_kernel: the warps' partial sums, which the route stage
/// reuses for its per-warp buffers and, one_level, the logits [n][ceil4(E)].
inline std::size_t route_gemm_smem_bytes(int m_tiles, int groups, int wk, int n, int experts,
                                         bool one_level) {
  const std::size_t part = std::size_t(wk) * 16 * m_tiles * 8 * groups * sizeof(float);
  std::size_t route = std::size_t(groups) * wk * sizeof(route_detail::RouteWarpSmem);
  if (one_level) route += std::size_t(n) * std::size_t((experts + 3) / 4 * 4) * sizeof(float);
  return part > route ? part : route;
}

/// The decode router. kMTiles = ceil(n / 16) rounded to {1, 2, 4}; kChunks = ceil(E / 128)
/// rounded to {2, 3, 4, 8}. Dynamic shared memory: route_gemm_smem_bytes(kMTiles, groups, wk).
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

  const int tile = int(blockIdx.x) / a.splits, split = int(blockIdx.x) % a.splits;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int nwarps = int(blockDim.x) >> 5;
  const int tile_e = 8 * a.groups;
  const int g = warp % a.groups, q = warp / a.groups;
  const int quad = lane >> 2, c = lane & 3;

  // ---- stage 1: this warp's W slice into registers, then x, then mma ----------------------
  const int e = tile * tile_e + g * 8 + quad;  // the expert row this thread loads
  const bool e_ok = e < a.experts;
  const int c0 = int(std::int64_t(split) * a.chunks / a.splits);
  const int c1 = int(std::int64_t(split + 1) * a.chunks / a.splits);
  const int wc = (c1 - c0 + a.wk - 1) / a.wk;
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
  if (a.warp_chunks <= 0) copy_bias(bias_s, a.bias, a.experts, kBiasSlots);
  wait_bias_copies();  // before the barrier below: bias_s is complete after it
  grid_dependency_wait();  // (again) before any workspace access, also for a warp without chunks
  // This block is past its loads of x: a dependent kernel may start its prologue.
  trigger_dependents();
  trace(1);

  // ---- stage 2: reduce over the block's warps in a fixed order, then over the splits ------
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
    // The bias range for the route (the grid's last block needs it): computed here, where
    // this warp would idle while the first items of the sums below are added.
    route_detail::RouteBiasAcc bias_acc;
#pragma unroll
    for (int ch = 0; ch < kChunks; ++ch) {
      const int e0 = route_slot_expert(4 * ch, lane);
      const float4 v = *reinterpret_cast<const float4*>(bias_s + e0);
      const float b4[4] = {v.x, v.y, v.z, v.w};
      bias_acc.add(b4, e0, a.experts);
    }
    const route_detail::RouteBias rb = bias_acc.reduce(true);
    if (lane == 0) rb_s = rb;
  }
  const int items = a.n * tile_e;  // only real tokens
  const bool direct = a.splits == 1 && !a.one_level;
  float* my_part = a.partials + std::int64_t(blockIdx.x) * items;
  for (int i = int(threadIdx.x); i < items; i += int(blockDim.x)) {
    float sum = part[i];
    for (int w2 = 1; w2 < a.wk; ++w2) sum += part[std::int64_t(w2) * kRows * tile_e + i];
    if (direct) {
      const int t = i / tile_e, ee = tile * tile_e + i % tile_e;
      if (ee < a.experts) a.logits[std::int64_t(t) * a.logits_stride + ee] = sum;
    } else {
      my_part[i] = sum;
    }
  }
  __syncthreads();
  trace(2);
  if (!direct && !a.one_level) {
    if (threadIdx.x == 0) flag_s = arrive_last(a.counters + 1 + tile, unsigned(a.splits));
    __syncthreads();
    if (!flag_s) return;
    // The tile's last block: logits = sum of the tile's splits, in split order.
    const float* tile_part = a.partials + std::int64_t(tile) * a.splits * items;
    for (int i = int(threadIdx.x); i < items; i += int(blockDim.x)) {
      const int t = i / tile_e, ee = tile * tile_e + i % tile_e;
      float sum = __ldcg(tile_part + i);
      int s = 1;
      for (; s + 4 <= a.splits; s += 4) {  // four loads in flight, then the adds in order
        const float v0 = __ldcg(tile_part + std::int64_t(s) * items + i);
        const float v1 = __ldcg(tile_part + std::int64_t(s + 1) * items + i);
        const float v2 = __ldcg(tile_part + std::int64_t(s + 2) * items + i);
        const float v3 = __ldcg(tile_part + std::int64_t(s + 3) * items + i);
        sum += v0;
        sum += v1;
        sum += v2;
        sum += v3;
      }
      for (; s < a.splits; ++s) sum += __ldcg(tile_part + std::int64_t(s) * items + i);
      if (ee < a.experts) a.logits[std::int64_t(t) * a.logits_stride + ee] = sum;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    flag_s = arrive_last(a.counters, unsigned(a.one_level ? a.tiles * a.splits : a.tiles));
  }
  __syncthreads();
  trace(3);
  if (!flag_s) return;
  // The partial sums are dead: their shared memory becomes the warps' route buffers (and,
  // one_level, the logits after them).
  auto* route_s = reinterpret_cast<route_detail::RouteWarpSmem*>(smem_f4);
  float* logits_s = reinterpret_cast<float*>(route_s + nwarps);
  if (a.one_level) {
    // The grid's last block: logits = sum of every tile's splits, in split order.
    const int total = a.n * a.experts;
    for (int i = int(threadIdx.x); i < total; i += int(blockDim.x)) {
      const int t = i / a.experts, ee = i % a.experts;
      const int tl = ee / tile_e, j = ee % tile_e;
      const float* src = a.partials + std::int64_t(tl) * a.splits * items + t * tile_e + j;
      float sum = __ldcg(src);
      int s = 1;
      for (; s + 4 <= a.splits; s += 4) {
        const float v0 = __ldcg(src + std::int64_t(s) * items);
        const float v1 = __ldcg(src + std::int64_t(s + 1) * items);
        const float v2 = __ldcg(src + std::int64_t(s + 2) * items);
        const float v3 = __ldcg(src + std::int64_t(s + 3) * items);
        sum += v0;
        sum += v1;
        sum += v2;
        sum += v3;
      }
      for (; s < a.splits; ++s) sum += __ldcg(src + std::int64_t(s) * items);
      logits_s[t * a.logits_stride + ee] = sum;
    }
    __syncthreads();
  }
  trace(4);

  // ---- stage 3 (last block only): the dense route of every row, one warp per row ----------
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
  if (warp >= a.n) return;
  const route_detail::RouteBias rb = rb_s;  // written in stage 2, ordered by its barriers
  for (int row = warp; row < a.n; row += nwarps) {
    if (a.one_level) {
      route_logit_row<kChunks, true>(ra, route_s[warp], row, logits_s + row * a.logits_stride,
                                     bias_s, rb);
    } else {
      route_logit_row<kChunks, false>(ra, route_s[warp], row,
                                      a.logits + std::int64_t(row) * a.logits_stride, bias_s,
                                      rb);
    }
  }
  if (warp == 0) trace(5);
}

}  // namespace kernels
}  // namespace moerouter
