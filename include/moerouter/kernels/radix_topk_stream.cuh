// moerouter: large-k top-k (the sparse-attention indexer's) that streams each row from memory
// once and keeps only a short candidate list on chip: a sample bounds the threshold, one pass
// keeps the elements above that bound, and an exact radix select over the few candidates
// finishes. A thread-block cluster of 1..16 blocks shares a row (each block a contiguous chunk);
// rows may have any length.
//
// 1. Bound: every block of the row's cluster takes the same sample of kStreamSample elements
//    (the whole row if it is that short; else 128 runs of 32 consecutive elements spread evenly
//    over the row) and finds, by two 11-bit histogram passes, the top 22 bits T0 of the m-th
//    largest sampled key, m = the sample's share of k plus a margin (4 standard deviations + 8).
//    T0 is then, with overwhelming probability for any data that is not arranged against the
//    sample, below the row's k-th largest key while few elements lie above it.
// 2. Collect: each block streams its chunk in tiles of kStreamThreads x 16 elements and keeps,
//    in index order (ordered compaction: per-warp counts, one barrier a tile, ballots), every
//    element with key > T0 and the first k with key == T0 (the top k needs no more of those:
//    ties go to the lower index). The list holds (key, index) pairs in shared memory.
// 3. Merge: the blocks publish their counts (one cluster barrier); if the lists overflowed or
//    fewer than k elements reached T0 (the sample misled), every block recomputes the exact
//    threshold by up to three 11-bit histogram passes over its chunk, merged over the cluster
//    through distributed shared memory, and collects again with it (then at most k are kept).
//    Blocks 1.. append their lists (ties capped cluster-wide, still in index order) to block
//    0's list through distributed shared memory (a second cluster barrier) and exit.
// 4. Finish (block 0): exact radix select of the k-th key among the candidates, then an ordered
//    compaction of the list: unsorted output in ascending index order directly, sorted output by
//    the bitonic network (k <= 1024) or CUB's block radix sort (k = 2048) of the cluster kernel.
// Keys: detail::order_key with NaN at 1, so that 0 marks "no element". Rows with fewer valid
// elements than k pad with index -1 and value -inf. No global workspace, no host sync.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cub/block/block_scan.cuh>

#include "moerouter/kernels/radix_topk_cluster.cuh"

namespace moerouter {
namespace kernels {

constexpr int kStreamThreads = kClusterThreads;
/// Elements of the sample that bounds the threshold.
constexpr int kStreamSample = 4096;
/// Elements a block's tile covers (16 per thread).
constexpr int kStreamTile = kStreamThreads * 16;

/// Entries of a block's candidate list for k: room for the k ties plus about 2k (at least
/// 2048) elements above the sampled bound.
__host__ __device__ constexpr int stream_capacity(int k) {
  return ((3 * k + 2048 + kStreamThreads - 1) / kStreamThreads) * kStreamThreads;
}
/// Dynamic shared memory of radix_topk_stream_kernel for k: the list's keys and indices.
__host__ __device__ constexpr std::size_t stream_smem_bytes(int k) {
  return std::size_t(stream_capacity(k)) * 8;
}

/// First element of the g-th sampled run of 32 (g < kStreamSample / 32) in a row of
/// len > kStreamSample elements.
__host__ __device__ constexpr std::int64_t stream_sample_run(int g, std::int64_t len) {
  return std::int64_t(g) * (len - 32) / (kStreamSample / 32 - 1);
}

namespace radix_stream_detail {

using radix_cluster_detail::kBins;
using radix_cluster_detail::kWarps;
using Scan = cub::BlockScan<int, kStreamThreads>;

/// Histogram increment aggregated over the lanes of a warp that hit the same bin (the
/// candidates crowd into few bins). Every lane of the warp must call it; `bin` < 0 = none.
__device__ __forceinline__ void warp_hist_add(int* h, int bin) {
  const unsigned peers = __match_any_sync(0xffffffffu, bin);
  if (bin >= 0 && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&h[bin], __popc(peers));
}

/// Bucket where the count from the top reaches `want` (1-based rank), over this block's
/// histogram `h` plus, with `csize` > 1, the same histogram of every block of the cluster
/// (distributed shared memory; the caller has passed a cluster barrier since every block
/// finished its counts). Zeroes `h_next` (the next pass's histogram, nobody reads it now).
/// s_sel = {bucket, want - count above it, count in it}; ends with a block barrier.
template <typename Cluster>
__device__ __forceinline__ void pick_bucket(Cluster& cluster, int csize, int rank, int* h,
                                            int* h_next, int want, Scan::TempStorage& scan_tmp,
                                            int* s_sel) {
  const int b0 = kBins - 4 - 4 * int(threadIdx.x);
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
  *reinterpret_cast<int4*>(&h_next[b0]) = make_int4(0, 0, 0, 0);
  int before;
  Scan(scan_tmp).ExclusiveSum(c.x + c.y + c.z + c.w, before);
  const int cnt[4] = {c.w, c.z, c.y, c.x};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (before < want && before + cnt[i] >= want) {
      s_sel[0] = b0 + 3 - i;
      s_sel[1] = want - before;
      s_sel[2] = cnt[i];
    }
    before += cnt[i];
  }
  __syncthreads();
}

/// Ordered compaction of a list of n (key, index) pairs in index order: an entry is kept if
/// (key & mask) > prefix, or == prefix and fewer than `cap` such entries precede it; emit(slot,
/// key, index) with slot = kept entries before it. Each thread takes a contiguous run of the
/// list; one block scan. Reads all of its entries before the first emit (so emit may overwrite
/// the list behind a block barrier the caller places) only when kInPlace.
template <typename Emit>
__device__ __forceinline__ void compact_list(const std::uint32_t* key, const std::int32_t* idx,
                                             int n, std::uint32_t prefix, std::uint32_t mask,
                                             int cap, Scan::TempStorage& scan_tmp, Emit emit) {
  const int q = (n + kStreamThreads - 1) / kStreamThreads;
  const int lo = int(threadIdx.x) * q, hi = lo + q < n ? lo + q : n;
  int g = 0, e = 0;
  for (int i = lo; i < hi; ++i) {
    const std::uint32_t m = key[i] & mask;
    g += m > prefix;
    e += m == prefix;
  }
  int pre;
  Scan(scan_tmp).ExclusiveSum(g | (e << 16), pre);  // both counts < 2^16
  int og = pre & 0xffff, oe = pre >> 16;
  for (int i = lo; i < hi; ++i) {
    const std::uint32_t kk = key[i], m = kk & mask;
    if (m > prefix) {
      emit(og + (oe < cap ? oe : cap), kk, idx[i]);
      ++og;
    } else if (m == prefix) {
      if (oe < cap) emit(og + oe, kk, idx[i]);
      ++oe;
    }
  }
}

}  // namespace radix_stream_detail

/// Grid: n * cluster blocks of kStreamThreads, cluster dimension (cluster, 1, 1), dynamic shared
/// memory stream_smem_bytes(k); row = block / cluster. Any row length < 2^31.
template <typename T>
__global__ void __launch_bounds__(kStreamThreads, 2) radix_topk_stream_kernel(RadixTopkArgs a) {
  namespace cg = cooperative_groups;
  using namespace radix_cluster_detail;
  using radix_stream_detail::compact_list;
  using radix_stream_detail::pick_bucket;
  using radix_stream_detail::Scan;
  constexpr int kT = kStreamThreads;
  constexpr int kVec = Vec<T>::kN;
  constexpr int kJ = 16 / kVec;  // vectors per thread per tile
  constexpr unsigned kAll = 0xffffffffu;

  extern __shared__ std::uint32_t s_dyn[];
  __shared__ union {
    alignas(16) int hist[2][kBins];
    typename SortN<1>::TempStorage sort1;
    typename SortN<2>::TempStorage sort2;
    typename SortN<4>::TempStorage sort4;
  } sm;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ std::uint32_t s_sort_key[kRadixMaxK];
  __shared__ std::int32_t s_sort_idx[kRadixMaxK];
  __shared__ int s_sel[3];
  __shared__ int s_cnt[2][kWarps][2];  // per warp (gt, eq) counts of a tile, double-buffered
  __shared__ int s_count[2];           // this block's (gt, eq) totals (read by other blocks)

  cg::cluster_group cluster = cg::this_cluster();
  const int csize = int(cluster.num_blocks());
  const int rank = int(cluster.block_rank());
  const std::int64_t row = blockIdx.x / csize;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T* v = static_cast<const T*>(a.values) + row * a.values_stride;
  std::int64_t len = a.lengths ? a.lengths[row] : a.length;
  len = len < 0 ? 0 : (len > a.length ? a.length : len);
  const int k = a.k;
  const int kk = len < k ? int(len) : k;  // elements to choose
  const int cap = stream_capacity(k);
  std::uint32_t* l_key = s_dyn;
  std::int32_t* l_idx = reinterpret_cast<std::int32_t*>(s_dyn + cap);
  std::int32_t* out_idx = a.indices + row * a.indices_stride;
  float* out_val = a.out_values ? a.out_values + row * a.out_values_stride : nullptr;
  if (kk == 0) {  // the same for every block of the cluster: nobody waits at a barrier
    if (rank == 0) {
      for (int j = tid; j < k; j += kT) {
        out_idx[j] = -1;
        if (out_val) out_val[j] = -INFINITY;
      }
    }
    return;
  }
  auto csync = [&] {
    if (csize > 1) {
      cluster.sync();
    } else {
      __syncthreads();
    }
  };

  // This block's chunk: whole tiles, [c_begin, c_end).
  const std::int64_t tiles = (len + kStreamTile - 1) / kStreamTile;
  const std::int64_t per = (tiles + csize - 1) / csize;
  const std::int64_t c_begin = rank * per * kStreamTile < len ? rank * per * kStreamTile : len;
  const std::int64_t c_end = c_begin + per * kStreamTile < len ? c_begin + per * kStreamTile : len;
  const bool aligned = (reinterpret_cast<std::uintptr_t>(v) & 15u) == 0;

  // The 16 keys of this thread in the tile at `base`: element seg + j*32*kVec + lane*kVec + s
  // for key j*kVec + s, seg = base + warp*512 (0 = past the chunk).
  auto load_tile = [&](std::int64_t base, std::uint32_t* keys) {
    const std::int64_t seg = base + std::int64_t(warp) * 512;
    if (aligned && seg + 512 <= c_end) {
      uint4 raw[kJ];
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        raw[j] = __ldg(reinterpret_cast<const uint4*>(v + seg + j * 32 * kVec + lane * kVec));
      }
#pragma unroll
      for (int j = 0; j < kJ; ++j) keys_of(raw[j], v, &keys[j * kVec]);
    } else {
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        load_vec(v, seg + j * 32 * kVec + lane * kVec, c_end, aligned, &keys[j * kVec]);
      }
    }
  };

  // 1. The sampled bound T0 (the same in every block of the cluster).
  std::uint32_t prefix = 0, mask = 0;
  {
    constexpr int kPer = kStreamSample / kT;
    std::uint32_t sk[kPer];
    const bool whole = len <= kStreamSample;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const std::int64_t pos =
          whole ? std::int64_t(i) * kT + tid : stream_sample_run(warp * kPer + i, len) + lane;
      sk[i] = pos < len ? key_of(load_value(v, pos)) : 0u;
    }
    int want = kk;
    if (!whole) {
      const float e = float(k) * float(kStreamSample) / float(len);
      const int m = int(ceilf(e + 4.0f * sqrtf(e) + 8.0f));
      want = m < kStreamSample ? m : kStreamSample;
    }
    for (int b = tid; b < 2 * kBins; b += kT) (&sm.hist[0][0])[b] = 0;
    __syncthreads();
#pragma unroll 1
    for (int pass = 0; pass < 2; ++pass) {
      const int shift = pass == 0 ? 21 : 10;
      int* h = sm.hist[pass];
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (sk[i] != 0u && (sk[i] & mask) == prefix) atomicAdd(&h[(sk[i] >> shift) & 0x7ffu], 1);
      }
      __syncthreads();
      pick_bucket(cluster, 1, rank, h, sm.hist[pass ^ 1], want, scan_tmp, s_sel);
      prefix |= std::uint32_t(s_sel[0]) << shift;
      mask |= 0x7ffu << shift;
      want = s_sel[1];
      if (s_sel[2] == want) break;
      // pass 1 writes hist[1], zeroed by pass 0's pick_bucket
    }
  }
  // Collect with gt = key > T0, eq = key == T0 (T0 = prefix with the bits below mask zero).
  mask = 0xffffffffu;
  int cap_eq = k;

  // 2. Collect: the list gets every element with (key & mask) > prefix and the first cap_eq
  //    with (key & mask) == prefix, in index order; G, E = this block's totals.
  int G = 0, E = 0;
  auto collect = [&] {
    G = 0;
    E = 0;
    int buf = 0;
#pragma unroll 1
    for (std::int64_t base = c_begin; base < c_end; base += kStreamTile, buf ^= 1) {
      std::uint32_t keys[16];
      load_tile(base, keys);
      int g = 0, e = 0;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const std::uint32_t m = keys[i] & mask;
        g += m > prefix;
        e += m == prefix && keys[i] != 0u;
      }
      g = __reduce_add_sync(kAll, g);
      e = __reduce_add_sync(kAll, e);
      if (lane == 0) {
        s_cnt[buf][warp][0] = g;
        s_cnt[buf][warp][1] = e;
      }
      __syncthreads();
      const int wg = lane < kWarps ? s_cnt[buf][lane][0] : 0;
      const int we = lane < kWarps ? s_cnt[buf][lane][1] : 0;
      if (g + e > 0) {
        int og = G + __reduce_add_sync(kAll, lane < warp ? wg : 0);
        int oe = E + __reduce_add_sync(kAll, lane < warp ? we : 0);
        const unsigned lt = (1u << lane) - 1u;
        const std::int64_t seg = base + std::int64_t(warp) * 512;
#pragma unroll
        for (int j = 0; j < kJ; ++j) {
          unsigned bg[kVec], be[kVec];
          int pg = 0, pe = 0, tg = 0, te = 0;
#pragma unroll
          for (int s = 0; s < kVec; ++s) {
            const std::uint32_t key = keys[j * kVec + s], m = key & mask;
            bg[s] = __ballot_sync(kAll, m > prefix);
            be[s] = __ballot_sync(kAll, m == prefix && key != 0u);
            pg += __popc(bg[s] & lt);
            pe += __popc(be[s] & lt);
            tg += __popc(bg[s]);
            te += __popc(be[s]);
          }
          int mg = og + pg, me = oe + pe;
#pragma unroll
          for (int s = 0; s < kVec; ++s) {
            const bool isg = (bg[s] >> lane) & 1u, ise = (be[s] >> lane) & 1u;
            int slot = -1;
            if (isg) slot = mg + (me < cap_eq ? me : cap_eq);
            if (ise && me < cap_eq) slot = mg + me;
            if (slot >= 0 && slot < cap) {
              l_key[slot] = keys[j * kVec + s];
              l_idx[slot] = std::int32_t(seg + j * 32 * kVec + lane * kVec + s);
            }
            mg += isg;
            me += ise;
          }
          og += tg;
          oe += te;
        }
      }
      G += __reduce_add_sync(kAll, wg);
      E += __reduce_add_sync(kAll, we);
    }
  };
  collect();

  // 3. Merge. Loops at most twice: the second time after the exact threshold, which fits.
  int total = 0;
  bool exact = false;
#pragma unroll 1
  for (;;) {
    if (tid == 0) {
      s_count[0] = G;
      s_count[1] = E;
    }
    csync();  // every block's list and counts are complete
    // Every warp: the cluster's counts, lane r = block r (E before it capped by cap_eq).
    int gb = 0, eb = 0;
    if (lane < csize) {
      const int* t = lane == rank ? s_count : cluster.map_shared_rank(s_count, lane);
      gb = t[0];
      eb = t[1];
    }
    int epre = eb;  // inclusive scan of eb over lanes, then exclusive
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int o = __shfl_up_sync(kAll, epre, d);
      if (lane >= d) epre += o;
    }
    epre -= eb;
    const int room = cap_eq - epre > 0 ? cap_eq - epre : 0;
    const int kept = gb + (eb < room ? eb : room);  // block `lane`'s share of the merged list
    const bool trunc = __any_sync(kAll, gb + (eb < cap_eq ? eb : cap_eq) > cap);
    const int offset = __reduce_add_sync(kAll, lane < rank ? kept : 0);
    const int my_room = __shfl_sync(kAll, room, rank);
    total = __reduce_add_sync(kAll, kept);
    const int reach = __reduce_add_sync(kAll, gb) + __reduce_add_sync(kAll, eb);
    if (exact || !(trunc || total > cap || reach < kk)) {
      if (csize > 1) {
        if (rank != 0) {
          std::uint32_t* dk = cluster.map_shared_rank(l_key, 0) + offset;
          std::int32_t* di = cluster.map_shared_rank(l_idx, 0) + offset;
          compact_list(l_key, l_idx, G + (E < cap_eq ? E : cap_eq), prefix, mask, my_room,
                       scan_tmp, [&](int slot, std::uint32_t key, std::int32_t idx) {
                         dk[slot] = key;
                         di[slot] = idx;
                       });
        }
        cluster.sync();  // block 0's list is complete
        if (rank != 0) return;
      }
      break;
    }
    // The sample misled (or the row is arranged against it): the exact threshold, by up to
    // three histogram passes over the chunk merged over the cluster, then collect again.
    exact = true;
    for (int b = tid; b < 2 * kBins; b += kT) (&sm.hist[0][0])[b] = 0;
    __syncthreads();
    prefix = 0;
    mask = 0;
    int want = kk;
#pragma unroll 1
    for (int pass = 0, buf = 0; pass < 3; ++pass, buf ^= 1) {
      const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
      const std::uint32_t dmask = pass == 2 ? 0x3ffu : 0x7ffu;
      int* h = sm.hist[buf];
#pragma unroll 1
      for (std::int64_t base = c_begin; base < c_end; base += kStreamTile) {
        std::uint32_t keys[16];
        load_tile(base, keys);
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          if (keys[i] != 0u && (keys[i] & mask) == prefix) {
            atomicAdd(&h[(keys[i] >> shift) & dmask], 1);
          }
        }
      }
      csync();
      pick_bucket(cluster, csize, rank, h, sm.hist[buf ^ 1], want, scan_tmp, s_sel);
      prefix |= std::uint32_t(s_sel[0]) << shift;
      mask |= dmask << shift;
      want = s_sel[1];
      if (s_sel[2] == want) break;
    }
    cap_eq = want;
    csync();  // every block is done reading the others' histograms and counts
    collect();
  }

  // 4. Block 0: the exact k-th key among the `total` candidates (index order), then output.
  std::uint32_t fp = 0, fm = 0;
  int take = kk;  // candidates equal to the threshold (under fm) to take
  if (total > kk) {
    for (int b = tid; b < 2 * kBins; b += kT) (&sm.hist[0][0])[b] = 0;
    __syncthreads();
#pragma unroll 1
    for (int pass = 0, buf = 0; pass < 3; ++pass, buf ^= 1) {
      const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
      const std::uint32_t dmask = pass == 2 ? 0x3ffu : 0x7ffu;
      int* h = sm.hist[buf];
      for (int i0 = 0; i0 < total; i0 += kT) {  // whole warps: warp_hist_add needs all lanes
        const int i = i0 + tid;
        const std::uint32_t key = i < total ? l_key[i] : 0u;
        radix_stream_detail::warp_hist_add(
            h, i < total && (key & fm) == fp ? int((key >> shift) & dmask) : -1);
      }
      __syncthreads();
      pick_bucket(cluster, 1, rank, h, sm.hist[buf ^ 1], take, scan_tmp, s_sel);
      fp |= std::uint32_t(s_sel[0]) << shift;
      fm |= dmask << shift;
      take = s_sel[1];
      if (s_sel[2] == take) break;
    }
  }
  if (!a.sorted) {
    compact_list(l_key, l_idx, total, fp, fm, take, scan_tmp,
                 [&](int slot, std::uint32_t, std::int32_t idx) {
                   out_idx[slot] = idx;
                   if (out_val) out_val[slot] = load_value(v, idx);
                 });
    for (int j = kk + tid; j < k; j += kT) {
      out_idx[j] = -1;
      if (out_val) out_val[j] = -INFINITY;
    }
    return;
  }
  compact_list(l_key, l_idx, total, fp, fm, take, scan_tmp,
               [&](int slot, std::uint32_t key, std::int32_t idx) {
                 s_sort_key[slot] = key;
                 s_sort_idx[slot] = idx;
               });
  __syncthreads();
  if (k <= 2 * kT) {
    unsigned long long* buf = reinterpret_cast<unsigned long long*>(&sm.hist[0][0]);
    if (k <= kT) {
      bitonic_output<1>(buf, s_sort_key, s_sort_idx, kk, k, v, out_idx, out_val);
    } else {
      bitonic_output<2>(buf, s_sort_key, s_sort_idx, kk, k, v, out_idx, out_val);
    }
    return;
  }
  sorted_output<4>(sm.sort4, s_sort_key, s_sort_idx, s_cnt[0], kk, k, fp, v, out_idx, out_val);
}

}  // namespace kernels
}  // namespace moerouter
