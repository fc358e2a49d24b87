// moerouter: large-k top-k (the sparse-attention indexer's) with each row read from memory
// once: a thread-block cluster per row (1..16 blocks), each block holding its chunk of the row
// as order keys in registers (kClusterThreads x kItems keys), radix select over 11-bit digits
// with the per-block histograms merged through distributed shared memory.
//
// 1. Load: block r of the cluster owns elements [r*chunk, (r+1)*chunk) of the row; warp w of the
//    block owns a contiguous segment of 32*kItems of those, read in 16-byte vectors (coalesced
//    across the warp). Keys: detail::order_key, with NaN moved from 0 to 1 so that 0 marks an
//    element past the row's valid length (it can never be chosen, see 3).
// 2. Select: up to three histogram passes (bits 31..21, 20..10, 9..0) over the keys still
//    matching the chosen prefix (optionally, kPrefilter, for rows of >= 16k elements the first
//    counts only keys above a lower bound found by a pass over the maxima of groups of 8
//    keys). Every block merges all blocks' histograms (DSMEM reads) and finds the same bucket; the
//    passes stop early once the bucket holds exactly the elements still to take. Result:
//    prefix/mask and `remaining`, the number of elements whose masked key equals the prefix that
//    belong to the top k (the lowest-index ones: ties).
// 3. Ordered compaction: an element is chosen if its masked key > prefix, or == prefix (and the
//    key is not 0) and fewer than `remaining` such elements precede it. Its slot is the number
//    of chosen elements before it in index order: per-warp counts, a scan over warps, a scan
//    over the cluster's blocks, then ballots within each warp. Unsorted output = slot order
//    (ascending index), written directly.
// 4. Sorted: the chosen (key, index) pairs are gathered in slot order into block 0's shared
//    memory and sorted there: k <= 1024 by a bitonic network on (key desc, index asc); k > 1024
//    (or kBitonic = false) by CUB's stable block radix sort on the key, descending.
// Rows with fewer valid elements than k pad with index -1 and value -inf.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include "moerouter/detail/math.h"
#include "moerouter/kernels/radix_topk.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Threads of a cluster top-k block, and the most blocks of one row's cluster.
constexpr int kClusterThreads = 512;
constexpr int kClusterMaxBlocks = 16;

namespace radix_cluster_detail {

constexpr int kBins = 2048;
constexpr int kWarps = kClusterThreads / 32;

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int kN = 4;
};
template <>
struct Vec<bf16> {
  static constexpr int kN = 8;
};

/// Order key with NaN at 1 (detail::order_key gives it 0); 0 = no element.
__device__ __forceinline__ std::uint32_t key_of(float f) {
  const std::uint32_t k = moerouter::detail::order_key(f);
  return k == 0u ? 1u : k;
}

__device__ __forceinline__ void load_vec(const float* v, std::int64_t pos, std::int64_t len,
                                         bool aligned, std::uint32_t* out) {
  if (aligned && pos + 4 <= len) {
    const float4 f = __ldg(reinterpret_cast<const float4*>(v + pos));
    out[0] = key_of(f.x);
    out[1] = key_of(f.y);
    out[2] = key_of(f.z);
    out[3] = key_of(f.w);
  } else {
#pragma unroll
    for (int s = 0; s < 4; ++s) out[s] = pos + s < len ? key_of(v[pos + s]) : 0u;
  }
}

__device__ __forceinline__ void load_vec(const bf16* v, std::int64_t pos, std::int64_t len,
                                         bool aligned, std::uint32_t* out) {
  if (aligned && pos + 8 <= len) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(v + pos));
    const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      out[2 * s] = key_of(moerouter::detail::bf16_bits_to_float(std::uint16_t(w[s] & 0xffffu)));
      out[2 * s + 1] = key_of(moerouter::detail::bf16_bits_to_float(std::uint16_t(w[s] >> 16)));
    }
  } else {
#pragma unroll
    for (int s = 0; s < 8; ++s) {
      out[s] = pos + s < len ? key_of(moerouter::detail::bf16_to_float(v[pos + s])) : 0u;
    }
  }
}

/// Keys of 16 loaded bytes (the pointer only selects the element type).
__device__ __forceinline__ void keys_of(const uint4& u, const float*, std::uint32_t* out) {
  out[0] = key_of(__uint_as_float(u.x));
  out[1] = key_of(__uint_as_float(u.y));
  out[2] = key_of(__uint_as_float(u.z));
  out[3] = key_of(__uint_as_float(u.w));
}
__device__ __forceinline__ void keys_of(const uint4& u, const bf16*, std::uint32_t* out) {
  const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    out[2 * s] = key_of(moerouter::detail::bf16_bits_to_float(std::uint16_t(w[s] & 0xffffu)));
    out[2 * s + 1] = key_of(moerouter::detail::bf16_bits_to_float(std::uint16_t(w[s] >> 16)));
  }
}

__device__ __forceinline__ float load_value(const float* v, std::int64_t i) { return v[i]; }
__device__ __forceinline__ float load_value(const bf16* v, std::int64_t i) {
  return moerouter::detail::bf16_to_float(v[i]);
}

}  // namespace radix_cluster_detail

/// Elements of a row one block holds.
template <int kItems>
constexpr std::int64_t cluster_chunk() {
  return std::int64_t(kClusterThreads) * kItems;
}

/// Grid: n * cluster blocks, launched with cluster dimension (cluster, 1, 1); row = block /
/// cluster. Rows must have length <= cluster * cluster_chunk<kItems>().
namespace radix_cluster_detail {

template <int kN, int kThreads = kClusterThreads>
using SortN = cub::BlockRadixSort<std::uint32_t, kThreads, kN, std::int32_t>;

/// Sorted output of block 0: the `chosen` gathered (key, index) pairs in slot (= index) order,
/// kN per thread (k <= kN * kThreads), sorted by key descending and written to out.
/// Keys relative to the prefix (every chosen key is >= it), so that only the bits where the
/// chosen keys differ are sorted. Padding (0) stays after the elements equal to the prefix: the
/// sort is stable and padding comes last in slot order.
template <int kN, int kThreads = kClusterThreads, typename T>
__device__ __forceinline__ void sorted_output(typename SortN<kN, kThreads>::TempStorage& tmp,
                                              const std::uint32_t* s_key, const std::int32_t* s_idx,
                                              int (*s_warp)[2], int chosen, int k,
                                              std::uint32_t prefix, const T* v,
                                              std::int32_t* out_idx, float* out_val) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  std::uint32_t sk[kN];
  std::int32_t si[kN];
  std::uint32_t top = 0;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int s = tid * kN + i;
    const bool ok = s < chosen;
    sk[i] = ok ? s_key[s] - prefix : 0u;
    si[i] = ok ? s_idx[s] : -1;
    top = sk[i] > top ? sk[i] : top;
  }
  top = __reduce_max_sync(0xffffffffu, top);
  if (lane == 0) s_warp[warp][0] = int(top >> 1);  // >> 1: fits an int; the bit count is the same
  __syncthreads();
  int hi = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) hi |= s_warp[w][0];
  const int end_bit = hi != 0 ? 33 - __clz(hi) : 1;  // bits of the largest relative key (>= 1)
  SortN<kN, kThreads>(tmp).SortDescendingBlockedToStriped(sk, si, 0, end_bit);
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int j = i * kThreads + tid;
    if (j < k) {
      out_idx[j] = si[i];
      if (out_val) out_val[j] = j < chosen ? load_value(v, si[i]) : -INFINITY;
    }
  }
}

/// Sorted output of block 0 by a bitonic network (the default): the `chosen` gathered pairs as
/// unique 64-bit composites (key << 32 | ~index), so that descending composite order is key
/// descending, index ascending, a total order; padding (composite 0) sorts last. kN per thread
/// (element e = threadIdx.x + e' * kThreads); strides below 32 exchange by shuffles, up to
/// kThreads / 2 through `buf` (kN * kThreads words), larger within the thread.
template <int kN, int kThreads = kClusterThreads, typename T>
__device__ __forceinline__ void bitonic_output(unsigned long long* buf, const std::uint32_t* s_key,
                                               const std::int32_t* s_idx, int chosen, int k,
                                               const T* v, std::int32_t* out_idx, float* out_val) {
  using u64 = unsigned long long;
  constexpr int kT = kThreads, kSize = kT * kN;
  const int t = threadIdx.x;
  u64 d[kN];  // ~composite, sorted ascending
#pragma unroll
  for (int h = 0; h < kN; ++h) {
    const int e = t + kT * h;
    d[h] = e < chosen ? ~((u64(s_key[e]) << 32) | u64(~std::uint32_t(s_idx[e]))) : ~0ull;
  }
#pragma unroll
  for (int size = 2; size <= kSize; size <<= 1) {
#pragma unroll
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      if (stride >= kT) {
        const int hs = stride / kT;
#pragma unroll
        for (int h = 0; h < kN; ++h) {
          if ((h & hs) == 0) {
            const bool up = ((t + kT * h) & size) == 0;
            const u64 a = d[h], b = d[h | hs];
            const u64 lo = a < b ? a : b, hi = a < b ? b : a;
            d[h] = up ? lo : hi;
            d[h | hs] = up ? hi : lo;
          }
        }
      } else {
        u64 p[kN];
        if (stride >= 32) {
#pragma unroll
          for (int h = 0; h < kN; ++h) buf[t + kT * h] = d[h];
          __syncthreads();
#pragma unroll
          for (int h = 0; h < kN; ++h) p[h] = buf[(t ^ stride) + kT * h];
          __syncthreads();
        } else {
#pragma unroll
          for (int h = 0; h < kN; ++h) p[h] = __shfl_xor_sync(0xffffffffu, d[h], stride);
        }
#pragma unroll
        for (int h = 0; h < kN; ++h) {
          const int e = t + kT * h;
          const bool lower = (e & stride) == 0, up = (e & size) == 0;
          const u64 mn = d[h] < p[h] ? d[h] : p[h], mx = d[h] < p[h] ? p[h] : d[h];
          d[h] = lower == up ? mn : mx;
        }
      }
    }
  }
#pragma unroll
  for (int h = 0; h < kN; ++h) {
    const int e = t + kT * h;
    if (e < k) {
      const bool ok = e < chosen;
      const std::int32_t idx = ok ? std::int32_t(~std::uint32_t(~d[h])) : -1;
      out_idx[e] = idx;
      if (out_val) out_val[e] = ok ? load_value(v, idx) : -INFINITY;
    }
  }
}

}  // namespace radix_cluster_detail

/// kPrefilter: a first pass over group maxima bounds the threshold (see 2.). Off by default:
/// measured slower on an H200 at every indexer shape (the extra pass costs more than the shared
/// atomics it saves); kept for comparison (bench/radix_topk_bench.cu). kBitonic: sorted output
/// for k <= 1024 by a bitonic network (measured faster than CUB there; slower at k = 2048,
/// which keeps CUB's block radix sort), else CUB's for every k.
template <typename T, int kItems, bool kPrefilter = false, bool kBitonic = true>
__global__ void __launch_bounds__(kClusterThreads, kItems <= 16 ? 3 : 2)
    radix_topk_cluster_kernel(RadixTopkArgs a) {
  namespace cg = cooperative_groups;
  using namespace radix_cluster_detail;
  constexpr int kVec = Vec<T>::kN;
  constexpr int kGroups = kItems / kVec;
  static_assert(kItems % kVec == 0, "kItems must be a multiple of the vector width");
  using Scan = cub::BlockScan<int, kClusterThreads>;

  __shared__ union {
    alignas(16) int hist[2][kBins];
    typename SortN<1>::TempStorage sort1;
    typename SortN<2>::TempStorage sort2;
    typename SortN<4>::TempStorage sort4;
  } sm;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ std::uint32_t s_sort_key[kRadixMaxK];
  __shared__ std::int32_t s_sort_idx[kRadixMaxK];
  __shared__ int s_sel[3];           // chosen bin, elements of it still to take, its count
  __shared__ int s_warp[kWarps][2];  // per warp (gt, eq) counts, then their exclusive scan
  __shared__ int s_total[2];         // this block's (gt, eq) totals (read by other blocks)
  __shared__ int s_base[3];          // cluster-wide (gt, eq) before this block; chosen total

  cg::cluster_group cluster = cg::this_cluster();
  const int csize = int(cluster.num_blocks());
  const int rank = int(cluster.block_rank());
  const std::int64_t row = blockIdx.x / csize;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T* v = static_cast<const T*>(a.values) + row * a.values_stride;
  std::int64_t len = a.lengths ? a.lengths[row] : a.length;
  len = len < 0 ? 0 : (len > a.length ? a.length : len);
  const int k = a.k;
  auto csync = [&] {
    if (csize > 1) {
      cluster.sync();
    } else {
      __syncthreads();
    }
  };

  // 1. Keys of this thread: group j, sub s = element seg + j*32*kVec + lane*kVec + s.
  const std::int64_t seg =
      std::int64_t(rank) * cluster_chunk<kItems>() + std::int64_t(warp) * 32 * kItems;
  const bool aligned = (reinterpret_cast<std::uintptr_t>(v) & 15u) == 0;
  std::uint32_t keys[kItems];
  if (aligned && seg + 32 * kItems <= len) {
    // The warp's whole segment is valid: every vector load in flight before the first use.
    uint4 raw[kGroups];
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      raw[j] = __ldg(reinterpret_cast<const uint4*>(v + seg + j * 32 * kVec + lane * kVec));
    }
#pragma unroll
    for (int j = 0; j < kGroups; ++j) keys_of(raw[j], v, &keys[j * kVec]);
  } else {
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      load_vec(v, seg + j * 32 * kVec + lane * kVec, len, aligned, &keys[j * kVec]);
    }
  }

  // 2. Radix select.
  std::uint32_t prefix = 0, mask = 0;
  int remaining = k;
  if (len > k) {
    for (int b = tid; b < 2 * kBins; b += kClusterThreads) (&sm.hist[0][0])[b] = 0;
    __syncthreads();
    // Pre-filter (long rows): the k-th largest of the maxima of groups of 8 keys is at most the
    // k-th largest key (the k largest maxima are k distinct elements), so the lower edge `lo`
    // of its top-11-bit bucket bounds the threshold from below and the first full pass counts
    // only keys >= lo: far fewer shared-memory atomics on the row's bulk.
    const bool prefilter = kPrefilter && len >= 16 * std::int64_t(k);
    std::uint32_t lo = 0;
    int buf = 0;
#pragma unroll 1
    for (int pass = prefilter ? -1 : 0; pass < 3; ++pass, buf ^= 1) {
      const int shift = pass <= 0 ? 21 : pass == 1 ? 10 : 0;
      const std::uint32_t dmask = pass == 2 ? 0x3ffu : 0x7ffu;
      int* h = sm.hist[buf];
      if (pass < 0) {
#pragma unroll
        for (int q = 0; q < kItems / 8; ++q) {
          std::uint32_t m = keys[q * 8];
#pragma unroll
          for (int i = 1; i < 8; ++i) m = keys[q * 8 + i] > m ? keys[q * 8 + i] : m;
          atomicAdd(&h[m >> 21], 1);
        }
      } else {
        // Runs of equal bins in this thread's keys are added at once (few-distinct data).
        std::uint32_t run_bin = 0;
        int run = 0;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const std::uint32_t key = keys[i];
          if ((key & mask) == prefix && key >= lo) {
            const std::uint32_t bin = (key >> shift) & dmask;
            if (bin != run_bin) {
              if (run) atomicAdd(&h[run_bin], run);
              run_bin = bin;
              run = 0;
            }
            ++run;
          }
        }
        if (run) atomicAdd(&h[run_bin], run);
      }
      csync();
      // This thread's 4 bins, highest first: 2047-4t .. 2044-4t, summed over the cluster.
      const int b0 = kBins - 4 - 4 * tid;
      int4 c = *reinterpret_cast<const int4*>(&h[b0]);
#pragma unroll 1
      for (int r0 = 0; r0 < csize && csize > 1; r0 += 4) {
        int4 o[4];  // four remote loads in flight before the first add
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int r = r0 + q;
          o[q] = r < csize && r != rank
                     ? *reinterpret_cast<const int4*>(cluster.map_shared_rank(&h[b0], r))
                     : make_int4(0, 0, 0, 0);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          c.x += o[q].x;
          c.y += o[q].y;
          c.z += o[q].z;
          c.w += o[q].w;
        }
      }
      // The other buffer: every block has finished reading it (it passed this pass's barrier).
      *reinterpret_cast<int4*>(&sm.hist[buf ^ 1][b0]) = make_int4(0, 0, 0, 0);
      int before;
      Scan(scan_tmp).ExclusiveSum(c.x + c.y + c.z + c.w, before);
      const int cnt[4] = {c.w, c.z, c.y, c.x};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (before < remaining && before + cnt[i] >= remaining) {
          s_sel[0] = b0 + 3 - i;
          s_sel[1] = remaining - before;
          s_sel[2] = cnt[i];
        }
        before += cnt[i];
      }
      __syncthreads();
      if (pass < 0) {
        lo = std::uint32_t(s_sel[0]) << 21;
        continue;
      }
      lo = 0;
      prefix |= std::uint32_t(s_sel[0]) << shift;
      mask |= dmask << shift;
      remaining = s_sel[1];
      if (s_sel[2] == remaining) break;  // the whole bucket is in the top k
    }
  }

  // 3. Ordered compaction. Counts per warp, then per block, then per cluster.
  {
    int gt = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const std::uint32_t m = keys[i] & mask;
      gt += m > prefix;
      eq += m == prefix && keys[i] != 0u;
    }
    gt = __reduce_add_sync(0xffffffffu, gt);
    eq = __reduce_add_sync(0xffffffffu, eq);
    if (lane == 0) {
      s_warp[warp][0] = gt;
      s_warp[warp][1] = eq;
    }
  }
  __syncthreads();
  if (warp == 0) {
    const int g = lane < kWarps ? s_warp[lane][0] : 0, e = lane < kWarps ? s_warp[lane][1] : 0;
    int gi = g, ei = e;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int go = __shfl_up_sync(0xffffffffu, gi, d), eo = __shfl_up_sync(0xffffffffu, ei, d);
      if (lane >= d) {
        gi += go;
        ei += eo;
      }
    }
    if (lane < kWarps) {
      s_warp[lane][0] = gi - g;
      s_warp[lane][1] = ei - e;
    }
    if (lane == 31) {
      s_total[0] = gi;
      s_total[1] = ei;
    }
  }
  csync();  // s_total of every block is published
  if (warp == 0) {
    int g = 0, e = 0, tg = 0, te = 0;
    if (lane < csize) {
      const int* t = lane == rank ? s_total : cluster.map_shared_rank(s_total, lane);
      tg = t[0];
      te = t[1];
      if (lane < rank) {
        g = tg;
        e = te;
      }
    }
    g = __reduce_add_sync(0xffffffffu, g);
    e = __reduce_add_sync(0xffffffffu, e);
    tg = __reduce_add_sync(0xffffffffu, tg);
    te = __reduce_add_sync(0xffffffffu, te);
    if (lane == 0) {
      s_base[0] = g;
      s_base[1] = e;
      s_base[2] = tg + (te < remaining ? te : remaining);
    }
  }
  __syncthreads();
  const int chosen = s_base[2];
  const bool sorted = a.sorted;
  if (csize > 1 && !sorted) cluster.barrier_arrive();  // done reading other blocks' memory
  std::int32_t* out_idx = a.indices + row * a.indices_stride;
  float* out_val = a.out_values ? a.out_values + row * a.out_values_stride : nullptr;
  std::uint32_t* sort_key = s_sort_key;
  std::int32_t* sort_idx = s_sort_idx;
  if (sorted && csize > 1) {
    sort_key = cluster.map_shared_rank(s_sort_key, 0);
    sort_idx = cluster.map_shared_rank(s_sort_idx, 0);
  }
  {
    int gt_run = s_base[0] + s_warp[warp][0], eq_run = s_base[1] + s_warp[warp][1];
    const unsigned lt = (1u << lane) - 1u;
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      unsigned bg[kVec], be[kVec];
      int pg = 0, pe = 0, tg = 0, te = 0;
#pragma unroll
      for (int s = 0; s < kVec; ++s) {
        const std::uint32_t key = keys[j * kVec + s], m = key & mask;
        bg[s] = __ballot_sync(0xffffffffu, m > prefix);
        be[s] = __ballot_sync(0xffffffffu, m == prefix && key != 0u);
        pg += __popc(bg[s] & lt);
        pe += __popc(be[s] & lt);
        tg += __popc(bg[s]);
        te += __popc(be[s]);
      }
      int og = gt_run + pg, oe = eq_run + pe;
#pragma unroll
      for (int s = 0; s < kVec; ++s) {
        const bool g = (bg[s] >> lane) & 1u, e = (be[s] >> lane) & 1u;
        int slot = -1;
        if (g) slot = og + (oe < remaining ? oe : remaining);
        if (e && oe < remaining) slot = og + oe;
        if (slot >= 0) {
          const std::int32_t idx = std::int32_t(seg + j * 32 * kVec + lane * kVec + s);
          if (sorted) {
            sort_key[slot] = keys[j * kVec + s];
            sort_idx[slot] = idx;
          } else {
            out_idx[slot] = idx;
            if (out_val) out_val[slot] = load_value(v, idx);
          }
        }
        og += g;
        oe += e;
      }
      gt_run += tg;
      eq_run += te;
    }
  }
  if (!sorted) {
    if (rank == 0) {
      for (int j = chosen + tid; j < k; j += kClusterThreads) {
        out_idx[j] = -1;
        if (out_val) out_val[j] = -INFINITY;
      }
    }
    if (csize > 1) cluster.barrier_wait();
    return;
  }

  // 4. Sorted: block 0 sorts the gathered pairs (stable: ties keep ascending index order).
  csync();
  if (rank != 0) return;
  if (kBitonic && k <= 2 * kClusterThreads) {
    // The histograms are dead: every remote read of them came before the totals barrier.
    unsigned long long* buf = reinterpret_cast<unsigned long long*>(&sm.hist[0][0]);
    if (k <= kClusterThreads) {
      bitonic_output<1>(buf, s_sort_key, s_sort_idx, chosen, k, v, out_idx, out_val);
    } else {
      bitonic_output<2>(buf, s_sort_key, s_sort_idx, chosen, k, v, out_idx, out_val);
    }
    return;
  }
  if (k <= kClusterThreads) {
    sorted_output<1>(sm.sort1, s_sort_key, s_sort_idx, s_warp, chosen, k, prefix, v, out_idx,
                     out_val);
  } else if (k <= 2 * kClusterThreads) {
    sorted_output<2>(sm.sort2, s_sort_key, s_sort_idx, s_warp, chosen, k, prefix, v, out_idx,
                     out_val);
  } else {
    sorted_output<4>(sm.sort4, s_sort_key, s_sort_idx, s_warp, chosen, k, prefix, v, out_idx,
                     out_val);
  }
}

}  // namespace kernels
}  // namespace moerouter
