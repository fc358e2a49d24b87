// moerouter: the one-launch decode router, logits = x W^T then the dense DSV4 route, for n <= 64.
//
// Decode is bound by reading W once from HBM (DSV4-Pro: 384 x 7168 bf16 = 5.5 MB), so the
// kernel is laid out to stream W over the whole card and to finish everything else inside the
// same launch:
//
//   grid     = tiles x 8 blocks; each tile is one thread-block cluster of 8 along H
//   block    = groups x wk warps; a warp owns 8 experts (one mma n-tile) and a run of 32-wide
//              chunks of its block's H range
//   stage 1  every thread loads its W 16-byte units into registers before
//            griddepcontrol.wait (W never depends on the previous kernel, only x does), then
//            loads x and runs mma.sync m16n8k16 (tokens on M, experts on N, fp32 accumulate)
//   stage 2  partials go to shared memory, are summed over the block's warps, then over the
//            cluster's 8 blocks through distributed shared memory, all in a fixed order (the
//            result is bit-reproducible); s = sqrt_softplus(logit) goes to the workspace
//   stage 3  the last cluster to finish (a device-scope counter, reset by that cluster for
//            the next launch or graph replay) ranks s + bias per token, one warp per token:
//            top-k, renormalize (detail/math.h), scale, write weights and ids
//
// The mma operands are fed straight from global memory: a thread's 16-byte load holds 8
// consecutive k of one row, and the two mma k-steps of a 32-wide chunk take its first and last
// 4 values. That permutes k identically for x and W, which leaves every dot product unchanged.
#pragma once

#include <cooperative_groups.h>
#include <cuda/atomic>
#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/warp_select.cuh"

namespace moerouter {
namespace kernels {

/// Blocks per cluster: the H split whose partial sums are reduced through DSMEM (portable).
constexpr int kRouteGemmClusterK = 8;
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
/// Bytes of the workspace header (the arrival counter), before the score buffer.
constexpr int kRouteGemmHeaderBytes = 256;

/// Parameters of route_gemm_kernel (device pointers; built by cuda::launch_route_gemm).
struct RouteGemmArgs {
  const std::uint16_t* x;     ///< [n, hidden] bf16 bits, row stride x_stride, 16-byte aligned
  const std::uint16_t* w;     ///< [experts, hidden] bf16 bits, contiguous, 16-byte aligned
  const float* bias;          ///< [experts] fp32 or null (zeros)
  float* weights;             ///< out [n, k] fp32, row stride weights_stride
  void* ids;                  ///< out [n, k] int32 or int64 (ids64), row stride ids_stride
  unsigned* counter;          ///< workspace: clusters that finished stage 2 (0 between launches)
  float* scores;              ///< workspace: [n, experts] fp32 s = sqrt_softplus(logit)
  std::int64_t x_stride, weights_stride, ids_stride;
  int n, hidden, experts, k;
  float scale;
  int ids64;                  ///< 1: ids are int64
  int tiles;                  ///< clusters (expert tiles) in the grid
  int groups;                 ///< 8-expert groups per tile (tile experts = 8 * groups)
  int wk;                     ///< warps per group, splitting the block's H range
  int block_k;                ///< H per block (a multiple of 32)
  int warp_chunks;            ///< 32-wide chunks per warp (ceil(block_k / 32 / wk))
};

namespace route_gemm_detail {

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

__device__ __forceinline__ uint4 load_stream(const std::uint16_t* p) {
  uint4 v;
  // W is read once: keep it out of L1 so x (re-read by the tile's other warps) stays there.
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
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

// Programmatic dependent launch: wait for the previous kernel's memory (a no-op without PDL).
__device__ __forceinline__ void grid_dependency_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}
__device__ __forceinline__ void trigger_dependents() {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

}  // namespace route_gemm_detail

/// The decode router. kMTiles = ceil(n / 16) rounded to {1, 2, 4}; kPerLane = ceil(E / 32)
/// rounded to {8, 12, 16, 32}. Dynamic shared memory: wk * 16 * kMTiles * 8 * groups floats.
/// Launched as clusters of kRouteGemmClusterK blocks along x (see cuda::launch_route_gemm).
template <int kMTiles, int kPerLane>
__global__ void __launch_bounds__(kRouteGemmMaxWarps * 32)
    route_gemm_kernel(const RouteGemmArgs a) {
  namespace cg = cooperative_groups;
  using namespace route_gemm_detail;
  constexpr int kRows = 16 * kMTiles;  // padded tokens
  extern __shared__ float4 smem_f4[];
  float* part = reinterpret_cast<float*>(smem_f4);  // [wk][kRows][tile_e]
  __shared__ int last_flag;
  __shared__ float bias_s[kRouteGemmMaxExperts];
  __shared__ float sel_s[kRouteGemmMaxWarps][kRouteGemmMaxK];
  __shared__ float sel_w[kRouteGemmMaxWarps][kRouteGemmMaxK];

  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int tile = int(blockIdx.x) / kRouteGemmClusterK;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int nwarps = int(blockDim.x) >> 5;
  const int tile_e = 8 * a.groups;
  const int g = warp % a.groups, wk = warp / a.groups;
  const int quad = lane >> 2, c = lane & 3;

  // ---- stage 1: this warp's W slice into registers, then x, then mma ----------------------
  const int e = tile * tile_e + g * 8 + quad;  // the expert row this thread loads
  const bool e_ok = e < a.experts;
  const int block_k0 = rank * a.block_k;
  const int k_end = min(a.hidden, block_k0 + a.block_k);
  const int warp_k0 = block_k0 + wk * a.warp_chunks * 32 + 8 * c;
  const std::uint16_t* w_row = a.w + std::int64_t(e_ok ? e : 0) * a.hidden;

  trace(0);
  // The bias is a weight (never written by the previous kernel): fetch it now, off the tail.
  for (int i = int(threadIdx.x); i < a.experts; i += int(blockDim.x)) {
    bias_s[i] = a.bias ? __ldg(a.bias + i) : 0.0f;
  }
  float acc[kMTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;

  for (int base = 0; base < a.warp_chunks; base += kRouteGemmUnits) {
    uint4 wv[kRouteGemmUnits];
#pragma unroll
    for (int u = 0; u < kRouteGemmUnits; ++u) {
      const int kk = warp_k0 + (base + u) * 32;
      wv[u] = make_uint4(0, 0, 0, 0);
      if (e_ok && base + u < a.warp_chunks && kk < k_end) wv[u] = load_stream(w_row + kk);
    }
    // Only x comes from the previous kernel: W's loads above are already in flight.
    if (base == 0) grid_dependency_wait();
#pragma unroll
    for (int u = 0; u < kRouteGemmUnits; ++u) {
      if (base + u < a.warp_chunks) {  // warp-uniform
        const int kk = warp_k0 + (base + u) * 32;
        const bool k_ok = kk < k_end;
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
  // Every block of this grid is past its loads of x: a dependent kernel may start its prologue.
  trace(1);
  trigger_dependents();

  // ---- stage 2: reduce over the block's warps, then over the cluster, in a fixed order -----
  // C fragment: rows (tokens) quad and quad + 8, columns (experts) 2c and 2c + 1.
  {
    float* mine = part + std::int64_t(wk) * kRows * tile_e;
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
  const int items = a.n * tile_e;  // only real tokens
  for (int i = int(threadIdx.x); i < items; i += int(blockDim.x)) {
    float sum = part[i];
    for (int q = 1; q < a.wk; ++q) sum += part[std::int64_t(q) * kRows * tile_e + i];
    part[i] = sum;
  }
  cluster.sync();  // every block's part[0..items) is final
  trace(2);
  for (int i = rank * int(blockDim.x) + int(threadIdx.x); i < items;
       i += kRouteGemmClusterK * int(blockDim.x)) {
    float logit = 0.0f;
#pragma unroll
    for (int q = 0; q < kRouteGemmClusterK; ++q) logit += cluster.map_shared_rank(part, q)[i];
    const int t = i / tile_e, ee = tile * tile_e + i % tile_e;
    if (ee < a.experts) {
      a.scores[std::int64_t(t) * a.experts + ee] = detail::sqrt_softplus(logit);
    }
  }
  // The cluster barrier orders every peer's score writes before rank 0's release, whose
  // cumulativity publishes them device-wide with the count (one release per cluster, not a
  // fence per thread). The barrier also keeps every block alive while a peer may still read
  // its shared memory.
  trace(3);
  cluster.sync();
  trace(4);
  if (rank == 0 && threadIdx.x == 0) {
    // acq_rel: releases this cluster's scores, acquires every earlier cluster's.
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(*a.counter);
    const bool last = count.fetch_add(1u, ::cuda::memory_order_acq_rel) == unsigned(a.tiles - 1);
    // Every other cluster has counted itself: reset for the next launch / graph replay.
    if (last) count.store(0u, ::cuda::memory_order_relaxed);
    // Pushed into every peer (rather than read from rank 0 later), so no block reads the
    // shared memory of a peer that may already have exited.
    for (int q = 0; q < kRouteGemmClusterK; ++q) *cluster.map_shared_rank(&last_flag, q) = last;
  }
  cluster.sync();  // orders rank 0's acquire before every read of the scores below
  trace(5);
  if (!last_flag) return;

  // ---- stage 3 (last cluster only): top-k of s + bias per token, one warp per token -------
  for (int row = rank * nwarps + warp; row < a.n; row += kRouteGemmClusterK * nwarps) {
    const float* srow = a.scores + std::int64_t(row) * a.experts;
    std::uint64_t key[kPerLane];
    float sv[kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int ee = lane + 32 * j;
      key[j] = 0;  // below every real entry
      sv[j] = 0.0f;
      if (ee < a.experts) {
        sv[j] = __ldcg(srow + ee);
        key[j] = detail::pack_rank_key(a.bias ? sv[j] + bias_s[ee] : sv[j], std::uint32_t(ee));
      }
    }
    int my_id = 0;
    for (int r = 0; r < a.k; ++r) {
      std::uint64_t best = key[0];
#pragma unroll
      for (int j = 1; j < kPerLane; ++j) best = key[j] > best ? key[j] : best;
      const std::uint64_t top = detail::warp_max_u64(best);
      float s_top = 0.0f;  // the winner's s, on its owner lane (no second trip to memory)
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        if (key[j] == top) {
          s_top = sv[j];
          key[j] = 0;
        }
      }
      const int id = int(detail::packed_index(top));
      s_top = __shfl_sync(detail::kFullMask, s_top, id & 31);
      if (lane == r) my_id = id;
      if (lane == 0) sel_s[warp][r] = s_top;
    }
    __syncwarp();
    if (lane == 0) detail::renormalize(sel_s[warp], a.k, a.scale, sel_w[warp]);
    __syncwarp();
    if (lane < a.k) {
      a.weights[std::int64_t(row) * a.weights_stride + lane] = sel_w[warp][lane];
      if (a.ids64) {
        static_cast<std::int64_t*>(a.ids)[std::int64_t(row) * a.ids_stride + lane] = my_id;
      } else {
        static_cast<std::int32_t*>(a.ids)[std::int64_t(row) * a.ids_stride + lane] = my_id;
      }
    }
    __syncwarp();  // sel_* are reused by this warp's next row
  }
  trace(6);
}

}  // namespace kernels
}  // namespace moerouter
