// moerouter: the DSV4 hash route (ids from the tid2eid table, weights per SPEC.md).
//
// Two kernels:
//   hash_route_gather_kernel  weights from precomputed logits, or uniform. kGroup lanes per
//                             token (k <= kGroup), lane j owns column j of the table row.
//   hash_route_x_kernel       weights from x and W: only the k dot products x[n] . W[id_j] a
//                             token needs. A cluster of blocks splits H (several SMs' load
//                             bandwidth for one token in decode); their partial sums meet in
//                             the first block's shared memory (st.async and an mbarrier, no
//                             cluster-wide barrier at the end) and are added in a fixed order,
//                             so the result is deterministic.
// A token id outside [0, vocab) or a table entry outside [0, experts) reads nothing out of
// bounds: the row gets ids -1 and weights 0, and *error_flag (if given) is set to 1.
// Programmatic dependent launch: both kernels read the token ids and the table (and the x
// kernel the rows of W it needs) before griddepcontrol.wait, then x or the logits and every
// write after it, so launched with PDL only x or the logits may come from the previous kernel.
#pragma once

#include <cooperative_groups.h>
#include <cuda/ptx>
#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/cluster_id.cuh"
#include "moerouter/detail/exact_math.cuh"
#include "moerouter/detail/math.h"
#include "moerouter/detail/pdl.cuh"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Threads per block of hash_route_x_kernel.
constexpr int kHashXThreads = 128;
/// Largest cluster (blocks sharing one token's dot products) of hash_route_x_kernel.
constexpr int kHashXMaxCluster = 8;
/// hash_route_x_kernel's hidden size is below this (its slice bounds are 32-bit products).
constexpr std::int64_t kHashXMaxHidden = std::int64_t(1) << 27;

/// Resolved arguments of both hash route kernels.
struct HashRouteArgs {
  const void* token_ids;      ///< [n] i32 or i64
  const void* table;          ///< [vocab, k] i32 or i64, contiguous
  float* weights;             ///< out [n, k] fp32
  void* ids;                  ///< out [n, k] i32 or i64
  std::int32_t* error_flag;   ///< optional, set to 1 on a bad row
  const void* logits;         ///< gather: [n, experts] f32 or bf16, or null for uniform weights
  const bf16* x;              ///< x kernel: [n, hidden] bf16
  const bf16* w;              ///< x kernel: [experts, hidden] bf16, contiguous
  std::int64_t n;
  std::int64_t vocab;
  std::int64_t experts;
  std::int64_t hidden;
  std::int64_t x_stride;
  std::int64_t logits_stride;
  std::int64_t weights_stride;
  std::int64_t ids_stride;
  int k;
  float scale;
  bool token_i64, table_i64, ids_i64, logits_bf16;
  bool vector_x;              ///< x, W rows 16-byte aligned and hidden % 8 == 0
  bool pdl;                   ///< launched with PDL: the x kernel loads x only after the wait
};

namespace hash_detail {

__device__ __forceinline__ std::int64_t load_index(const void* p, bool i64, std::int64_t i) {
  return i64 ? __ldg(static_cast<const long long*>(p) + i)
             : std::int64_t(__ldg(static_cast<const int*>(p) + i));
}

}  // namespace hash_detail

/// Weights from logits (a.logits != null) or uniform (a.logits == null). Launch with a
/// multiple of 32 threads per block and ceil(n * kGroup / threads) blocks.
template <int kGroup>
__global__ void hash_route_gather_kernel(const HashRouteArgs a) {
  static_assert(kGroup == 8 || kGroup == 32, "kGroup is 8 or 32");
  const std::int64_t gt = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t token = gt / kGroup;
  const int j = int(gt % kGroup);
  const int lane = detail::lane_id();
  const int group_base = lane & ~(kGroup - 1);
  const unsigned group_mask =
      kGroup == 32 ? detail::kFullMask : (0xffu << group_base);  // this token's lanes
  const bool active = token < a.n;

  bool bad = false;
  std::int64_t id = -1;
  if (active) {
    const std::int64_t tok = hash_detail::load_index(a.token_ids, a.token_i64, token);
    bad = tok < 0 || tok >= a.vocab;
    if (!bad && j < a.k) {
      id = hash_detail::load_index(a.table, a.table_i64, tok * a.k + j);
      bad = id < 0 || id >= a.experts;
    }
  }
  bad = (__ballot_sync(detail::kFullMask, bad) & group_mask) != 0;
  detail::grid_dependency_wait();  // the logits (and the outputs) may be the previous kernel's

  float s = 0.0f;
  if (active && !bad && j < a.k && a.logits != nullptr) {
    const std::int64_t off = token * a.logits_stride + id;
    const float logit = a.logits_bf16 ? detail::bf16_to_float(static_cast<const bf16*>(a.logits)[off])
                                      : __ldg(static_cast<const float*>(a.logits) + off);
    s = detail::sqrt_softplus_nobranch(logit);
  }
  // detail::renormalize's order: 0 + s0 + s1 + ... (every lane of the group sums the same way;
  // the shuffles first, independent of each other, then the additions in order).
  float part[kGroup];
#pragma unroll
  for (int jj = 0; jj < kGroup; ++jj) part[jj] = __shfl_sync(detail::kFullMask, s, group_base + jj);
  float sum = 0.0f;
#pragma unroll
  for (int jj = 0; jj < kGroup; ++jj) {
    if (jj < a.k) sum += part[jj];
  }
  if (active && j < a.k) {
    float w = 0.0f;
    if (!bad) {
      w = a.logits != nullptr ? s / detail::renorm_denominator(sum) * a.scale
                              : a.scale / float(a.k);
    }
    detail::store_route_slot(a, token, j, bad ? -1 : id, w);
    if (bad && j == 0 && a.error_flag != nullptr) *a.error_flag = 1;
  }
}

namespace hash_detail {

/// acc[j] += x . w for 8 bf16 pairs packed in two uint4.
__device__ __forceinline__ float dot8(const uint4& x, const uint4& w, float acc) {
  const std::uint32_t xs[4] = {x.x, x.y, x.z, x.w};
  const std::uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    acc = fmaf(__uint_as_float(xs[i] << 16), __uint_as_float(ws[i] << 16), acc);
    acc = fmaf(__uint_as_float(xs[i] & 0xffff0000u), __uint_as_float(ws[i] & 0xffff0000u), acc);
  }
  return acc;
}

/// One level of warp_sums: the lane keeps one half of its kCount values (the upper half where
/// its lane bit kOffset is set) and adds its partner's copy of that half.
template <int kCount, int kOffset, int kMaxK>
__device__ __forceinline__ void warp_sums_level(float (&v)[kMaxK], int lane) {
  if constexpr (kCount > 1) {
    constexpr int kHalf = kCount / 2;
    const bool upper = (lane & kOffset) != 0;
#pragma unroll
    for (int j = 0; j < kHalf; ++j) {
      const float keep = upper ? v[j + kHalf] : v[j];
      const float give = upper ? v[j] : v[j + kHalf];
      v[j] = keep + __shfl_xor_sync(detail::kFullMask, give, kOffset);
    }
    warp_sums_level<kHalf, kOffset / 2>(v, lane);
  } else if constexpr (kOffset > 0) {
    v[0] += __shfl_xor_sync(detail::kFullMask, v[0], kOffset);
    warp_sums_level<1, kOffset / 2>(v, lane);
  }
}

/// The warp's sums of kMaxK values (each lane's acc[j]), as a transposed butterfly: every
/// level halves the values a lane holds (warp_sums_level), then plain butterflies over the
/// lanes that hold the same value; lane l ends with the sum of value l / (32 / kMaxK). Eight
/// values take 4 + 2 + 1 + 1 + 1 = 9 shuffles, against 40 for eight butterflies. A fixed
/// order: the same bits in every run.
template <int kMaxK>
__device__ __forceinline__ float warp_sums(const float (&acc)[kMaxK]) {
  static_assert(kMaxK >= 1 && kMaxK <= detail::kWarpSize && (kMaxK & (kMaxK - 1)) == 0,
                "a power of two up to 32 values");
  float v[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) v[j] = acc[j];
  warp_sums_level<kMaxK, detail::kWarpSize / 2>(v, detail::lane_id());
  return v[0];
}

#if defined(MOER_HASH_TRACE)
// Diagnosis builds only: %globaltimer at each stage, thread 0 of blocks 0..7.
__device__ unsigned long long g_hash_trace[8][12];
__device__ __forceinline__ void trace(int slot, unsigned dep = 0) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "r"(dep) : "memory");
  if (threadIdx.x == 0 && blockIdx.x < 8) g_hash_trace[blockIdx.x][slot] = t;
}
#else
__device__ __forceinline__ void trace(int, unsigned = 0) {}
#endif

}  // namespace hash_detail

/// Weights from x and W. Grid: cluster_size * n blocks of kThreads, launched with the cluster
/// dimension (cluster_size, 1, 1), cluster_size in 2..kHashXMaxCluster, or without clusters
/// (one block a token); block (token, rank) adds up the H-slice `rank` of the k dot products
/// of `token`. The other ranks store their slice sums into rank 0's shared memory (st.async,
/// counted by an mbarrier there) and leave; rank 0 adds them in rank order and writes the row.
/// kTile: 16-byte chunks of each row a thread loads before it adds (more loads in flight for
/// small k). Stages, for MOER_HASH_TRACE builds: 0 start, 1 token id, 2 table row, 3 dot
/// products, 4 block sums, 5 cluster wait, 6 slices in, 7 renormalized, 8 stored.
template <int kMaxK, int kThreads = kHashXThreads, int kTile = (kMaxK <= 8 ? 2 : 1)>
__global__ void __launch_bounds__(kThreads) hash_route_x_kernel(const HashRouteArgs a) {
  namespace cg = cooperative_groups;
  constexpr int kWarps = kThreads / detail::kWarpSize;
  __shared__ std::int64_t s_ids[kMaxK];
  __shared__ float s_part[kWarps][kMaxK];
  // Rank 0's: the other blocks' slice sums, stored into it by st.async (distributed shared
  // memory), and the mbarrier that counts their bytes.
  __shared__ float s_slices[kHashXMaxCluster][kMaxK];
  __shared__ __align__(8) std::uint64_t s_bar;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const cg::cluster_group cluster = cg::this_cluster();
  const int csize = int(cluster.num_blocks());
  const int rank = int(cluster.block_rank());
#else
  const int csize = 1;
  const int rank = 0;
#endif
  const int tid = int(threadIdx.x);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (csize > 1) {  // cluster-uniform
    // (By the last warp, whose threads load no token id or table entry: the fence takes
    // ~0.1 us.)
    if (rank == 0 && tid == kThreads - detail::kWarpSize) {
      // The barrier completes when the other blocks' k slice sums (4 bytes each) have landed.
      ::cuda::ptx::mbarrier_init(&s_bar, 1);
      (void)::cuda::ptx::mbarrier_arrive_expect_tx(
          ::cuda::ptx::sem_release, ::cuda::ptx::scope_cta, ::cuda::ptx::space_shared, &s_bar,
          unsigned((csize - 1) * a.k) * 4u);
      ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
    }
    // The first half of a split cluster barrier: its wait, before the stores into rank 0's
    // shared memory below, guarantees that every block of the cluster has started and that
    // rank 0's mbarrier is initialized. Arrived now, it costs no wait there.
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
  }
#endif
  hash_detail::trace(0);
  // The token: the cluster's index (detail::cluster_id_x; a 64-bit division of blockIdx.x by
  // the cluster size had preceded the token id's load).
  const std::int64_t token = detail::cluster_id_x();
  const int lane = detail::lane_id(), warp = tid / detail::kWarpSize;

  // This block's slice of H, in 8-element chunks on the vector path, elements otherwise
  // (hidden < kHashXMaxHidden: 32-bit products and divisions).
  const int units = a.vector_x ? a.hidden / 8 : a.hidden;
  const std::int64_t u_begin = unsigned(units * rank) / unsigned(csize);
  const std::int64_t u_end = unsigned(units * (rank + 1)) / unsigned(csize);
  const bf16* xrow = a.x + token * a.x_stride;
  uint4 xt[kTile];
  const auto load_x = [&](std::int64_t u0) {
#pragma unroll
    for (int t = 0; t < kTile; ++t) {
      const std::int64_t u = u0 + tid + std::int64_t(t) * kThreads;
      xt[t] = u < u_end ? __ldg(reinterpret_cast<const uint4*>(xrow) + u) : make_uint4(0, 0, 0, 0);
    }
  };
  // Without PDL, x does not wait for anything: its first tile loads before the id lookup
  // (measured on an H100, Pro N=1, inputs cold: 3.92 us, against 4.19 when it loads after W).
  if (a.vector_x && !a.pdl) load_x(u_begin);

  bool bad = false;
  if (tid < a.k) {
    const std::int64_t tok = hash_detail::load_index(a.token_ids, a.token_i64, token);
    bad = tok < 0 || tok >= a.vocab;
    hash_detail::trace(1, unsigned(tok));
    std::int64_t id = -1;
    if (!bad) {
      id = hash_detail::load_index(a.table, a.table_i64, tok * a.k + tid);
      bad = id < 0 || id >= a.experts;
    }
    s_ids[tid] = id;
  }
  if (__syncthreads_or(bad)) {  // the same in every block of the cluster: all leave together
    detail::grid_dependency_wait();  // before any write
    if (rank == 0 && tid < a.k) {
      detail::store_route_slot(a, token, tid, -1, 0.0f);
      if (tid == 0 && a.error_flag != nullptr) *a.error_flag = 1;
    }
    return;
  }

  hash_detail::trace(2);
  float acc[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) acc[j] = 0.0f;
  if (a.vector_x) {
    const uint4* wrow[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) {
      wrow[j] = reinterpret_cast<const uint4*>(a.w + (j < a.k ? s_ids[j] : 0) * a.hidden);
    }
    uint4 wt[kTile][kMaxK];
    const auto load_w = [&](std::int64_t u0) {
#pragma unroll
      for (int t = 0; t < kTile; ++t) {
        const std::int64_t u = u0 + tid + std::int64_t(t) * kThreads;
#pragma unroll
        for (int j = 0; j < kMaxK; ++j) {
          wt[t][j] = (u < u_end && j < a.k) ? __ldg(wrow[j] + u) : make_uint4(0, 0, 0, 0);
        }
      }
    };
    load_w(u_begin);  // the first tile of W (all of it at DSV4's sizes) before the wait
    detail::grid_dependency_wait();
    for (std::int64_t u0 = u_begin; u0 < u_end; u0 += std::int64_t(kTile) * kThreads) {
      if (u0 != u_begin) {
        load_w(u0);
        load_x(u0);
      } else if (a.pdl) {
        load_x(u0);
      }
#pragma unroll
      for (int t = 0; t < kTile; ++t) {
#pragma unroll
        for (int j = 0; j < kMaxK; ++j) acc[j] = hash_detail::dot8(xt[t], wt[t][j], acc[j]);
      }
    }
  } else {
    detail::grid_dependency_wait();
    for (std::int64_t h = u_begin + tid; h < u_end; h += kThreads) {
      const float xv = detail::bf16_to_float(xrow[h]);
#pragma unroll
      for (int j = 0; j < kMaxK; ++j) {
        if (j < a.k) acc[j] = fmaf(xv, detail::bf16_to_float(a.w[s_ids[j] * a.hidden + h]), acc[j]);
      }
    }
  }

  hash_detail::trace(3, __float_as_uint(acc[0]));
  // Fixed-order reductions (deterministic): within the warp (hash_detail::warp_sums), then the
  // warps in order, then the blocks in rank order.
  const float lane_sum = hash_detail::warp_sums(acc);
  constexpr int kSpread = detail::kWarpSize / kMaxK;  // lanes holding each sum
  if (lane % kSpread == 0) s_part[warp][lane / kSpread] = lane_sum;
  __syncthreads();
  hash_detail::trace(4);
  float v = 0.0f;  // this block's slice sum of dot product tid (tid < k)
  if (tid < a.k) {
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += s_part[w][tid];
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (csize > 1) {
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");  // every block has started
    hash_detail::trace(5);
    if (rank != 0) {
      // Into rank 0's slot for this rank; its mbarrier counts the bytes. Nothing waits here:
      // no block reads this one's shared memory, so it may leave at once. Measured on an
      // H100 (Pro N=1, clusters of 8, in-kernel stamps): remote stores and a cluster.sync()
      // took 0.68 us from the blocks' sums to rank 0's read, this 0.20-0.25 us
      // (moerouter_bench, inputs cold: Pro N=1 3.56 -> 3.07 us).
      if (tid < a.k) {
        ::cuda::ptx::st_async(cluster.map_shared_rank(&s_slices[rank][tid], 0), v,
                              cluster.map_shared_rank(&s_bar, 0));
      }
      return;
    }
  }
#endif
  if (warp != 0) return;  // k <= 32: warp 0 finishes the row
  float logit = 0.0f;     // the slices in rank order
  if (tid < a.k) logit += v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (csize > 1) {
    // The whole warp waits: a wait by the k lanes alone, the others ahead at the shuffles
    // below, took Pro N=1 3.86 us against 2.86 (kMaxK = 8), 7.2 against 3.5 (kMaxK = 32)
    // (measured on an H100, CUDA graph, L2 warm).
    detail::wait_cluster_stores(&s_bar);
    if (tid < a.k) {
#pragma unroll
      for (int r = 1; r < kHashXMaxCluster; ++r) {
        if (r < csize) logit += s_slices[r][tid];
      }
    }
  }
#endif
  __syncwarp();
  hash_detail::trace(6, __float_as_uint(logit));
  const float score = tid < a.k ? detail::sqrt_softplus_nobranch(logit) : 0.0f;
  // detail::renormalize's order, 0 + s0 + s1 + ...: the shuffles first, then the additions.
  float part[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) part[j] = __shfl_sync(detail::kFullMask, score, j);
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    if (j < a.k) sum += part[j];
  }
  hash_detail::trace(7, __float_as_uint(sum));
  if (tid < a.k) {
    detail::store_route_slot(a, token, tid, s_ids[tid],
                             score / detail::renorm_denominator(sum) * a.scale);
  }
  hash_detail::trace(8);
}

}  // namespace kernels
}  // namespace moerouter
