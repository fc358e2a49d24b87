// moerouter: the DSV4 hash route (ids from the tid2eid table, weights per SPEC.md).
//
// Two kernels:
//   hash_route_gather_kernel  weights from precomputed logits, or uniform. kGroup lanes per
//                             token (k <= kGroup), lane j owns column j of the table row.
//   hash_route_x_kernel       weights from x and W: only the k dot products x[n] . W[id_j] a
//                             token needs. A cluster of blocks splits H (several SMs' load
//                             bandwidth for one token in decode); their partial sums are added
//                             in a fixed order through distributed shared memory, so the
//                             result is deterministic.
// A token id outside [0, vocab) or a table entry outside [0, experts) reads nothing out of
// bounds: the row gets ids -1 and weights 0, and *error_flag (if given) is set to 1.
// Programmatic dependent launch: both kernels read the token ids and the table (and the x
// kernel the rows of W it needs) before griddepcontrol.wait, then x or the logits and every
// write after it, so launched with PDL only x or the logits may come from the previous kernel.
#pragma once

#include <cooperative_groups.h>
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

}  // namespace hash_detail

/// Weights from x and W. Grid: cluster_size * n blocks of kHashXThreads, launched with the
/// cluster dimension (cluster_size, 1, 1), cluster_size in 1..kHashXMaxCluster; block
/// (token, rank) adds up the H-slice `rank` of the k dot products of `token`.
template <int kMaxK>
__global__ void __launch_bounds__(kHashXThreads) hash_route_x_kernel(const HashRouteArgs a) {
  namespace cg = cooperative_groups;
  constexpr int kWarps = kHashXThreads / detail::kWarpSize;
  // Chunks of 8 elements a thread loads before it adds (more loads in flight for small k).
  constexpr int kTile = kMaxK <= 8 ? 2 : 1;
  __shared__ std::int64_t s_ids[kMaxK];
  __shared__ float s_part[kWarps][kMaxK];
  // Rank 0's: every block's slice sums, pushed into it (distributed shared memory) by their
  // blocks before the cluster barrier, so rank 0 reads only its own shared memory after it.
  __shared__ float s_slices[kHashXMaxCluster][kMaxK];
  __shared__ float s_score[kMaxK];

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const cg::cluster_group cluster = cg::this_cluster();
  const int csize = int(cluster.num_blocks());
  const int rank = int(cluster.block_rank());
#else
  const int csize = 1;
  const int rank = 0;
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The first half of a split cluster barrier: its wait, before the push into rank 0's shared
  // memory below, guarantees that every block of the cluster has started (a block's shared
  // memory may be accessed only then). Arrived now, it costs no wait there.
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
  // The token: the cluster's index (detail::cluster_id_x; a 64-bit division of blockIdx.x by
  // the cluster size had preceded the token id's load).
  const std::int64_t token = detail::cluster_id_x();
  const int tid = int(threadIdx.x);
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
      const std::int64_t u = u0 + tid + std::int64_t(t) * kHashXThreads;
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
        const std::int64_t u = u0 + tid + std::int64_t(t) * kHashXThreads;
#pragma unroll
        for (int j = 0; j < kMaxK; ++j) {
          wt[t][j] = (u < u_end && j < a.k) ? __ldg(wrow[j] + u) : make_uint4(0, 0, 0, 0);
        }
      }
    };
    load_w(u_begin);  // the first tile of W (all of it at DSV4's sizes) before the wait
    detail::grid_dependency_wait();
    for (std::int64_t u0 = u_begin; u0 < u_end; u0 += std::int64_t(kTile) * kHashXThreads) {
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
    for (std::int64_t h = u_begin + tid; h < u_end; h += kHashXThreads) {
      const float xv = detail::bf16_to_float(xrow[h]);
#pragma unroll
      for (int j = 0; j < kMaxK; ++j) {
        if (j < a.k) acc[j] = fmaf(xv, detail::bf16_to_float(a.w[s_ids[j] * a.hidden + h]), acc[j]);
      }
    }
  }

  // Fixed-order reductions: a butterfly in the warp, then warps in order, then blocks in order.
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) acc[j] += __shfl_xor_sync(detail::kFullMask, acc[j], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) s_part[warp][j] = acc[j];
  }
  __syncthreads();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");  // every block has started
#endif
  if (tid < a.k) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += s_part[w][tid];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cluster.map_shared_rank(&s_slices[0][0], 0)[rank * kMaxK + tid] = v;
#else
    s_slices[0][tid] = v;
#endif
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Every block's push is visible to rank 0 (release / acquire); after it no block touches
  // another's shared memory, so the others may leave at once. (Measured on an H100, clusters
  // of 8, W and the table L2-warm: rank 0 reading the others' slices after this barrier, then
  // a second full barrier so that none left early, took 4.24 us at Pro N = 1 against 3.67.)
  cluster.sync();
#else
  __syncthreads();
#endif
  if (rank != 0) return;
  if (tid < a.k) {
    float logit = 0.0f;  // in rank order
#pragma unroll
    for (int r = 0; r < kHashXMaxCluster; ++r) {
      if (r < csize) logit += s_slices[r][tid];
    }
    s_score[tid] = detail::sqrt_softplus_nobranch(logit);
  }
  __syncthreads();
  if (tid < a.k) {
    const float sum = detail::rank_order_sum(s_score, a.k);
    detail::store_route_slot(a, token, tid, s_ids[tid],
                             s_score[tid] / detail::renorm_denominator(sum) * a.scale);
  }
}

}  // namespace kernels
}  // namespace moerouter
