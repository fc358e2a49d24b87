// moerouter: large-k top-k (the sparse-attention indexer's) that streams each row from memory
// once and keeps only a short candidate list on chip: a sample bounds the threshold, one pass
// keeps the elements above that bound, and an exact radix select over the few candidates
// finishes. A thread-block cluster of 1..16 blocks shares a row (each block a contiguous chunk),
// or, in grid mode (few long rows), 2..256 blocks that meet in a caller's workspace; rows may
// have any length. Blocks of 256 threads (many rows: four blocks an SM) or 512.
//
// 1. Bound: every block of the row's cluster takes the same sample (the whole row if it is
//    short; else runs of 32 consecutive elements spread evenly over the row, 1024..16384 in all)
//    and finds the lower edge T0 of a narrow bucket that holds the m-th largest sampled key,
//    m = the sample's share of k plus a margin (4 standard deviations + 8): where a thread
//    holds four sampled elements at most (aligned rows, samples up to 4 x threads), with their
//    keys in registers, by 8-bit histogram passes from the top (two or three, until the bucket
//    holds at most 8 samples beyond the rank wanted); else, keys in shared memory, by an
//    11-bit pass and an 8-bit one within the bucket (19 bits). Where a few rows have several
//    blocks each (kSearch: the bound's latency is the kernel's), neither: each thread keeps
//    only the largest key of its sampled elements (one element of each of its runs, run r in
//    warp r mod 16, so that neighbouring elements and neighbouring runs meet in different
//    threads), and T0 is the largest 16-bit prefix that at least m threads' largest keys
//    reach, found bit by bit with block-wide counts (16 barriers, no histogram; 8 or 16 bits
//    more while more than m + 8 threads reach it). Each counted thread holds a sampled key
//    >= T0, so T0 is at or below the m-th largest sampled key. T0 is then, with overwhelming
//    probability for data not arranged against the sample, below the row's k-th largest key
//    while few elements lie at or above it.
// 2. Collect: each block streams its chunk in tiles of 16 consecutive elements a thread (bf16:
//    the next tile's loads in flight while one is processed) and appends every element >= T0
//    (a float compare) to a list of (value bits, index) in shared memory, in index order:
//    per-thread counts, a warp scan, one block barrier a tile. Staged (kStage: few rows of
//    2..16-block clusters, chunks of 1, 2 or 4 tiles): the chunk arrives in shared memory by
//    bulk copies issued right after the sample's loads (where no row has its own length, both
//    are the kernel's first work, from the host's geometry), each tile's compares run as it
//    lands, and one scan of the tiles' packed counts places the candidates (and, with the
//    host's geometry, counts them into step 4's first histogram).
// 3. Merge: the blocks publish their counts (one cluster barrier). If a list overflowed or fewer
//    than k elements reached T0 (the sample misled, or ties crowd at T0), every block computes
//    the exact threshold by up to three 11-bit histogram passes over its chunk, merged over the
//    cluster through distributed shared memory, and collects again with it: every key above it
//    and the first ones equal to it (ties go to the lower index), at most k in all. Blocks 1..
//    copy their lists to block 0's through distributed shared memory (a second cluster barrier)
//    and exit. Staged two-block clusters with the host's geometry: block 1 pushes its list into
//    block 0's upper half as it places it, block 0's own list ending where it starts. Grid mode:
//    every block leaves its list and length in the workspace and arrives at the row's atomic
//    counter; the last to arrive gathers the lists (block order) and finishes, and takes the
//    exact path alone, over the whole row, if the sample misled.
// 4. Finish (block 0): exact radix select of the k-th key among the candidates (8-bit digits;
//    the first is the top 16 bits as an offset from T0's), then an ordered compaction of the
//    list: unsorted output in ascending index order directly, sorted output by the bitonic
//    network (k <= 1024) or CUB's block radix sort (k = 2048), kernels/radix_topk.cuh.
// Keys: detail::order_key with NaN at 1 (radix_detail::key_of). Rows with fewer valid
// elements than k pad with index -1 and value -inf. No host sync; a global workspace only in
// grid mode (the caller's, radix_stream_grid_bytes).
#pragma once

#include <cooperative_groups.h>
#include <cuda/ptx>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cub/block/block_scan.cuh>
#include <type_traits>

#include "moerouter/detail/cluster_id.cuh"
#include "moerouter/detail/timer.cuh"
#include "moerouter/kernels/radix_topk.cuh"

namespace moerouter {
namespace kernels {

/// Largest sample that bounds the threshold.
constexpr int kStreamSample = 16384;
/// Consecutive elements of a thread in a tile.
constexpr int kStreamPer = 16;

/// Entries of a block's candidate list for k: room for about 3k elements at or above the
/// sampled bound (at least 3072, so the list's memory also holds the sample's keys and its
/// histogram, and the exact fallback's two 2048-bin histograms).
__host__ __device__ constexpr int stream_capacity(int k) {
  return 3 * k + 2048 <= 3072 ? 3072 : ((3 * k + 2048 + 511) / 512) * 512;
}
/// The sample of a row of len elements: 16 * runs runs of 32 consecutive elements, runs = 2, 4,
/// 8 or 32 (1024, 2048, 4096 or 16384 elements; the whole row if it is not longer). Measured on
/// an H100: 4096x16384 fp32 144 us with 1024 sampled elements a row, 150 us with 2048. Rows of
/// 2^19 and more take 16384: with 4096, a 2^20-long row's k = 1024 expects ~5k elements at the
/// bound, as many as the list holds, and half the rows took the exact fallback.
__host__ __device__ constexpr int stream_sample_runs(int len) {
  return len >= 524288 ? 32 : len >= 131072 ? 8 : len >= 32768 ? 4 : 2;
}
/// Dynamic shared memory of radix_topk_stream_kernel for k and rows of `length`: the list of
/// (bits, index) pairs, then, for sorted output, the k chosen (key, index) pairs; at least the
/// sample's keys and a 2048-bin histogram (the list's memory holds them first).
__host__ __device__ constexpr std::size_t stream_smem_bytes(int k, bool sorted,
                                                            std::int64_t length = 0) {
  const std::size_t list = std::size_t(stream_capacity(k)) * 8 + (sorted ? std::size_t(k) * 8 : 0);
  const std::size_t sample =
      (std::size_t(512) *
           std::size_t(stream_sample_runs(int(length < (1ll << 30) ? length : (1ll << 30)))) +
       2048) *
      4;
  return list > sample ? list : sample;
}
/// Staged chunks (radix_topk_stream_kernel's kStage): bytes of a 512-thread block's chunk copy
/// (at most four tiles of elements of esize bytes) and where it starts in the dynamic shared
/// memory (after the list, at a 128-byte boundary).
__host__ __device__ constexpr std::size_t stream_stage_bytes(std::size_t esize) {
  return std::size_t(4) * 512 * kStreamPer * esize;
}
__host__ __device__ constexpr std::size_t stream_stage_offset(int k, bool sorted,
                                                              std::int64_t length) {
  return (stream_smem_bytes(k, sorted, length) + 127) / 128 * 128;
}
/// Dynamic shared memory of radix_topk_stream_kernel: stream_smem_bytes, and with kStage
/// (`stage`) the chunk's copy after it.
__host__ __device__ constexpr std::size_t stream_launch_smem_bytes(int k, bool sorted,
                                                                   std::int64_t length,
                                                                   bool stage, std::size_t esize) {
  return stage ? stream_stage_offset(k, sorted, length) + stream_stage_bytes(esize)
               : stream_smem_bytes(k, sorted, length);
}
/// Whether step 1 keeps a row's sample in registers, four elements a thread of 512 (more than
/// the sample, which has at most 2048 elements): what kStage requires.
__host__ __device__ constexpr bool stream_sample_in_registers(int len) {
  return len > 512 * stream_sample_runs(len) && stream_sample_runs(len) <= 4;
}
/// Runs of the sample of staged f32 rows with the host's geometry (stream_stage_sample_runs).
constexpr int kStreamStageRuns = 8;
/// kStage with the host's geometry (a.stage_tiles): the sample's runs of a row of len elements
/// of esize bytes. f32 rows that stream_sample_runs gives 4 runs (2048 elements, four a thread)
/// take kStreamStageRuns = 8 (4096, eight a thread, all loaded at the kernel's start beside the
/// copies): with the same 4-sigma margin over twice the sample the bound lies closer to the
/// k-th key, so fewer candidates reach the list (64x65536, k = 512: ~1000 expected against
/// ~1300), and the work after the last tile is per candidate. Measured on an H200
/// (radix_topk_bench 64x65536, twelve runs each in three calls, us): f32 unsorted 10.4-10.5 ->
/// 10.1-10.2, sorted 12.9-13.0 -> 12.7-12.8. 16 runs (16 keys a thread): 10.8. bf16 rows keep 4
/// (with 8: 8.4 -> 8.8-8.9; a bf16 bound refines no further than 16 bits).
__host__ __device__ constexpr int stream_stage_sample_runs(int len, std::size_t esize) {
  return esize == 4 && stream_sample_runs(len) == 4 ? kStreamStageRuns : stream_sample_runs(len);
}
/// Tiles (of 512 threads) in each block's chunk where rows of len have `blocks` blocks each.
__host__ __device__ constexpr std::int64_t stream_chunk_tiles(std::int64_t len, int blocks) {
  constexpr std::int64_t kTile = 512 * kStreamPer;
  return ((len + kTile - 1) / kTile + blocks - 1) / blocks;
}
/// kStage's a.stage_tiles for rows of len elements each (no per-row lengths; aligned rows, the
/// host checks) over `blocks` blocks a row: the tiles of every block's chunk where each is
/// staged (the rows whole tiles, split evenly, 1, 2 or 4 a block; the sample in registers),
/// else 0.
__host__ __device__ constexpr int stream_uniform_stage_tiles(std::int64_t len, int blocks) {
  constexpr std::int64_t kTile = 512 * kStreamPer;
  if (blocks < 2 || len <= 0 || len >= (std::int64_t(1) << 31) || len % kTile != 0 ||
      (len / kTile) % blocks != 0 || !stream_sample_in_registers(int(len))) {
    return 0;
  }
  const std::int64_t per = len / kTile / blocks;
  return per == 1 || per == 2 || per == 4 ? int(per) : 0;
}

/// Distance between the starts of two sampled runs in a row of len elements (len > 512 * runs).
__host__ __device__ constexpr int stream_sample_step(int runs, int len) {
  return (len - 32) / (16 * runs - 1);
}
/// First element of sampled run g (of 16 * runs) in a row of len elements (len > 512 * runs): a
/// multiple of 8, so that a 16-byte aligned row's runs load as 16-byte vectors; the last run
/// ends at or before the row's end. step: stream_sample_step(runs, len), one division a block
/// (the kernel had a 64-bit division per sampled vector before, a subroutine call and ~25
/// instructions on the way to each of the sample's loads).
__host__ __device__ constexpr int stream_sample_run_at(int g, int step) { return (g * step) & ~7; }
__host__ __device__ constexpr int stream_sample_run(int g, int runs, int len) {
  return stream_sample_run_at(g, stream_sample_step(runs, len));
}

/// Grid mode's workspace, in 32-bit words: an arrival counter per row (zero between calls),
/// then every block's list length (row-major [n][blocks]), then every block's list of
/// `slot` (bits, index) pairs.
__host__ __device__ constexpr std::int64_t radix_stream_grid_counts(std::int64_t n) {
  return (n + 3) / 4 * 4;
}
__host__ __device__ constexpr std::int64_t radix_stream_grid_lists(std::int64_t n, int blocks) {
  return (radix_stream_grid_counts(n) + n * blocks + 3) / 4 * 4;
}
/// List entries a block of grid mode may leave: its chunk (whole tiles of 512 threads) or the
/// list's capacity, the smaller.
__host__ __device__ constexpr int radix_stream_grid_slot(std::int64_t length, int blocks, int k) {
  const std::int64_t chunk = stream_chunk_tiles(length, blocks) * (512 * kStreamPer);
  return int(chunk < stream_capacity(k) ? chunk : stream_capacity(k));
}
/// Bytes of grid mode's workspace for n rows of `length`, `blocks` blocks a row.
__host__ __device__ constexpr std::size_t radix_stream_grid_bytes(std::int64_t n,
                                                                  std::int64_t length, int blocks,
                                                                  int k) {
  return std::size_t(radix_stream_grid_lists(n, blocks)) * 4 +
         std::size_t(n) * std::size_t(blocks) *
             std::size_t(radix_stream_grid_slot(length, blocks, k)) * 8;
}

namespace radix_stream_detail {

#ifdef MOER_STREAM_TRACE  // phase timestamps of the first blocks (a probe's build only)
__device__ unsigned long long g_trace[4096][16];
#define MOER_STREAM_STAMP(i)                                                             \
  do {                                                                                   \
    if (threadIdx.x == 0 && blockIdx.x < 4096) {                                         \
      radix_stream_detail::g_trace[blockIdx.x][i] = ::moerouter::detail::global_timer(); \
    }                                                                                    \
  } while (0)
#else
#define MOER_STREAM_STAMP(i) \
  do {                       \
  } while (0)
#endif

using radix_detail::kBins;
template <int kT>
using Scan = cub::BlockScan<int, kT>;
constexpr unsigned kAll = 0xffffffffu;

/// Float bits of element i of a thread's kStreamPer (raw words: f32 bits, or bf16 pairs, low
/// first).
template <typename T>
__device__ __forceinline__ std::uint32_t elem_bits(const std::uint32_t* raw, int i);
template <>
__device__ __forceinline__ std::uint32_t elem_bits<float>(const std::uint32_t* raw, int i) {
  return raw[i];
}
template <>
__device__ __forceinline__ std::uint32_t elem_bits<bf16>(const std::uint32_t* raw, int i) {
  return (i & 1) ? raw[i >> 1] & 0xffff0000u : raw[i >> 1] << 16;
}
template <typename T>
constexpr int kRawWords = kStreamPer* int(sizeof(T)) / 4;

/// Float bits of element i (bf16: in the high half).
template <typename T>
__device__ __forceinline__ std::uint32_t bits_at(const T* v, int i);
template <>
__device__ __forceinline__ std::uint32_t bits_at<float>(const float* v, int i) {
  return __ldg(reinterpret_cast<const std::uint32_t*>(v) + i);
}
template <>
__device__ __forceinline__ std::uint32_t bits_at<bf16>(const bf16* v, int i) {
  return std::uint32_t(__ldg(reinterpret_cast<const std::uint16_t*>(v) + i)) << 16;
}

/// Raw words of the kStreamPer elements from pos clipped to `end` (past it: NaN, which no float
/// compare takes; the exact path checks the count itself).
template <typename T>
__device__ __forceinline__ void load_run(const T* v, int pos, int end, bool aligned,
                                         std::uint32_t* raw) {
  constexpr int kW = kRawWords<T>;
  if (aligned && pos + kStreamPer <= end) {
#pragma unroll
    for (int j = 0; j < kW / 4; ++j) {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(v + pos) + j);
      raw[4 * j] = u.x;
      raw[4 * j + 1] = u.y;
      raw[4 * j + 2] = u.z;
      raw[4 * j + 3] = u.w;
    }
  } else {
    const std::uint16_t* h = reinterpret_cast<const std::uint16_t*>(v);
    const std::uint32_t* w = reinterpret_cast<const std::uint32_t*>(v);
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      if constexpr (sizeof(T) == 4) {
        raw[i] = pos + i < end ? __ldg(w + pos + i) : 0x7fffffffu;
      } else {
        const std::uint32_t lo = pos + 2 * i < end ? __ldg(h + pos + 2 * i) : 0x7fffu;
        const std::uint32_t hi = pos + 2 * i + 1 < end ? __ldg(h + pos + 2 * i + 1) : 0x7fffu;
        raw[i] = lo | (hi << 16);
      }
    }
  }
}

/// radix_detail::key_of of the float with these bits, without branches (equal for all 2^32
/// inputs; nvcc compiled the reference's early returns to a branch around each key, ~12
/// instructions, in the loops over the candidates).
__device__ __forceinline__ std::uint32_t key_of_bits(std::uint32_t bits) {
  const std::uint32_t mag = bits & 0x7fffffffu;
  const std::uint32_t k = bits ^ (std::uint32_t(std::int32_t(bits) >> 31) | 0x80000000u);
  return mag > 0x7f800000u ? 1u : mag == 0u ? 0x80000000u : k;
}

/// key_of_bits of a number or an infinity (not NaN): fewer instructions where NaN cannot occur
/// (the candidates above a bound that is a number). Both zeros get +0's key, as there.
__device__ __forceinline__ std::uint32_t key_of_number(std::uint32_t bits) {
  const std::uint32_t k = bits ^ (std::uint32_t(std::int32_t(bits) >> 31) | 0x80000000u);
  return (bits & 0x7fffffffu) == 0u ? 0x80000000u : k;
}

/// Bin of the select's first histogram for an order key: its top 16 bits as an offset from
/// T0's (`base16`), clamped to 255 ("far above").
__device__ __forceinline__ std::uint32_t top16_bin_of_key(std::uint32_t key, std::uint32_t base16) {
  const std::uint32_t off = (key >> 16) - base16;
  return off < 255u ? off : 255u;
}

/// top16_bin_of_key of the float with these bits.
__device__ __forceinline__ int top16_bin(std::uint32_t bits, std::uint32_t base16) {
  return int(top16_bin_of_key(key_of_bits(bits), base16));
}

/// The float whose order key is `key` (key >= 0x00800000: a number or an infinity).
__device__ __forceinline__ float float_of_key(std::uint32_t key) {
  return __uint_as_float(key & 0x80000000u ? key & 0x7fffffffu : ~key);
}

/// Asks L2 for `bytes` (a multiple of 16) from p (16-byte aligned): cp.async.bulk.prefetch.
__device__ __forceinline__ void prefetch_l2(const void* p, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p;
  (void)bytes;
#endif
}

/// Histogram increment aggregated over the lanes of a warp that hit the same bin (the
/// candidates crowd into few bins). Every lane of the warp must call it; `bin` < 0 = none.
__device__ __forceinline__ void warp_hist_add(int* h, int bin) {
  const unsigned peers = __match_any_sync(kAll, bin);
  if (bin >= 0 && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&h[bin], __popc(peers));
}

/// 256-bin bucket (warp 0) where the count from the top reaches `want` (1-based rank):
/// s_sel = {bucket, want - count above it, count in it}; zeroes `h_next`. Ends with a barrier.
/// kAdd: the histogram is h plus h_add (bin by bin).
template <bool kAdd = false>
__device__ __forceinline__ void pick_bucket256(const int* h, int* h_next, int want, int* s_sel,
                                               const int* h_add = nullptr) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    // Lane l: bins 255 - 8l - i, i = 0..7 (highest first), two 16-byte loads.
    int4 lo = *reinterpret_cast<const int4*>(&h[248 - 8 * lane]);
    int4 hi = *reinterpret_cast<const int4*>(&h[252 - 8 * lane]);
    if constexpr (kAdd) {
      const int4 alo = *reinterpret_cast<const int4*>(&h_add[248 - 8 * lane]);
      const int4 ahi = *reinterpret_cast<const int4*>(&h_add[252 - 8 * lane]);
      lo = make_int4(lo.x + alo.x, lo.y + alo.y, lo.z + alo.z, lo.w + alo.w);
      hi = make_int4(hi.x + ahi.x, hi.y + ahi.y, hi.z + ahi.z, hi.w + ahi.w);
    }
    *reinterpret_cast<int4*>(&h_next[248 - 8 * lane]) = make_int4(0, 0, 0, 0);
    *reinterpret_cast<int4*>(&h_next[252 - 8 * lane]) = make_int4(0, 0, 0, 0);
    const int c[8] = {hi.w, hi.z, hi.y, hi.x, lo.w, lo.z, lo.y, lo.x};
    const int sum = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
    int incl = sum;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int o = __shfl_up_sync(kAll, incl, d);
      if (lane >= d) incl += o;
    }
    int before = incl - sum;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (before < want && before + c[i] >= want) {
        s_sel[0] = 255 - 8 * lane - i;
        s_sel[1] = want - before;
        s_sel[2] = c[i];
      }
      before += c[i];
    }
  }
  __syncthreads();
}

/// 2048-bin bucket where the count from the top reaches `want`, over this block's histogram `h`
/// plus, with `csize` > 1, the same histogram of every block of the cluster (distributed
/// shared memory; the caller has passed a cluster barrier since every block finished its
/// counts). Zeroes `h_next` (the next pass's histogram, nobody reads it now). s_sel as above;
/// ends with a block barrier.
template <int kT, typename Cluster>
__device__ __forceinline__ void pick_bucket2048(Cluster& cluster, int csize, int rank, int* h,
                                                int* h_next, int want,
                                                typename Scan<kT>::TempStorage& scan_tmp,
                                                int* s_sel) {
  constexpr int kQ = kBins / kT / 4;  // int4 groups of bins a thread: its bins b0 .. b0 + 4kQ - 1
  const int b0 = kBins - 4 * kQ * (int(threadIdx.x) + 1);
  int4 c[kQ];
#pragma unroll
  for (int q = 0; q < kQ; ++q) c[q] = *reinterpret_cast<const int4*>(&h[b0 + 4 * q]);
#pragma unroll 1
  for (int r = 0; r < csize && csize > 1; ++r) {
    if (r == rank) continue;
    const int* rh = cluster.map_shared_rank(h, r);
    int4 o[kQ];
#pragma unroll
    for (int q = 0; q < kQ; ++q) o[q] = *reinterpret_cast<const int4*>(&rh[b0 + 4 * q]);
#pragma unroll
    for (int q = 0; q < kQ; ++q) {
      c[q].x += o[q].x;
      c[q].y += o[q].y;
      c[q].z += o[q].z;
      c[q].w += o[q].w;
    }
  }
  int total = 0;
#pragma unroll
  for (int q = 0; q < kQ; ++q) {
    *reinterpret_cast<int4*>(&h_next[b0 + 4 * q]) = make_int4(0, 0, 0, 0);
    total += c[q].x + c[q].y + c[q].z + c[q].w;
  }
  int before;
  Scan<kT>(scan_tmp).ExclusiveSum(total, before);
#pragma unroll
  for (int q = kQ - 1; q >= 0; --q) {  // highest bins first
    const int cnt[4] = {c[q].w, c[q].z, c[q].y, c[q].x};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (before < want && before + cnt[i] >= want) {
        s_sel[0] = b0 + 4 * q + 3 - i;
        s_sel[1] = want - before;
        s_sel[2] = cnt[i];
      }
      before += cnt[i];
    }
  }
  __syncthreads();
}

/// Entries a thread of compact_by holds in registers (loaded at once, read once) where n is at
/// most that many a thread; longer runs loop.
constexpr int kCompactBatch = 4;

/// Ordered compaction of n (bits, index) pairs in index order, entry(i) the i-th, key_fn(bits)
/// its order key: an entry is kept if (key & mask) > prefix, or == prefix and fewer than `cap`
/// such entries precede it; emit(slot, entry) with slot = kept entries before it. Each thread
/// takes a contiguous run of the entries; one block scan. With kBatch > 1, runs of at most
/// kBatch entries (the candidate lists: n <= kBatch * kT) are loaded at once and kept in
/// registers for the emits, instead of a chain of dependent loads an entry, twice (and
/// radix_passes loads kBatch keys a thread before their adds). Measured on an H200 against the
/// loops alone (radix_topk_bench, unsorted us, four runs each, one call): f32 1024x8192
/// 16.6-17.0 -> 16.0-16.4 (the short-row kernel at six blocks an SM), 64x65536 11.0-11.2 ->
/// 10.8-10.9, 4096x16384 116.8-117.1 -> 115.4-115.8; bf16 64x65536 9.6 -> 9.3, 4096x16384
/// 101.6-101.8 -> 100.1-100.6; f32 256x262144 k = 2048 85.8-85.9 -> 86.1-86.5.
template <int kT, int kBatch = kCompactBatch, typename Entry, typename KeyFn, typename Emit>
__device__ __forceinline__ void compact_by(int n, Entry entry, KeyFn key_fn, std::uint32_t prefix,
                                           std::uint32_t mask, int cap,
                                           typename Scan<kT>::TempStorage& scan_tmp, Emit emit) {
  const int q = (n + kT - 1) / kT;
  const int lo = int(threadIdx.x) * q, hi = lo + q < n ? lo + q : n;
  if constexpr (kBatch > 1) {
    if (q <= kBatch) {  // block-uniform
      uint2 ent[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        ent[j] = lo + j < hi ? entry(lo + j) : make_uint2(0u, 0u);
      }
      int g = 0, e = 0;
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const std::uint32_t m = key_fn(ent[j].x) & mask;
        const bool in = lo + j < hi;
        g += in && m > prefix;
        e += in && m == prefix;
      }
      int pre;
      Scan<kT>(scan_tmp).ExclusiveSum(g | (e << 16), pre);  // both counts < 2^16
      int og = pre & 0xffff, oe = pre >> 16;
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const std::uint32_t m = key_fn(ent[j].x) & mask;
        if (lo + j < hi) {
          if (m > prefix) {
            emit(og + (oe < cap ? oe : cap), ent[j]);
            ++og;
          } else if (m == prefix) {
            if (oe < cap) emit(og + oe, ent[j]);
            ++oe;
          }
        }
      }
      return;
    }
  }
  int g = 0, e = 0;
  for (int i = lo; i < hi; ++i) {
    const std::uint32_t m = key_fn(entry(i).x) & mask;
    g += m > prefix;
    e += m == prefix;
  }
  int pre;
  Scan<kT>(scan_tmp).ExclusiveSum(g | (e << 16), pre);  // both counts < 2^16
  int og = pre & 0xffff, oe = pre >> 16;
  for (int i = lo; i < hi; ++i) {
    const uint2 ent = entry(i);
    const std::uint32_t m = key_fn(ent.x) & mask;
    if (m > prefix) {
      emit(og + (oe < cap ? oe : cap), ent);
      ++og;
    } else if (m == prefix) {
      if (oe < cap) emit(og + oe, ent);
      ++oe;
    }
  }
}

/// compact_by over a list of n (bits, index) pairs in shared memory.
template <int kT, typename Emit>
__device__ __forceinline__ void compact_list(const uint2* list, int n, std::uint32_t prefix,
                                             std::uint32_t mask, int cap,
                                             typename Scan<kT>::TempStorage& scan_tmp, Emit emit) {
  compact_by<kT>(
      n, [list](int i) { return list[i]; }, [](std::uint32_t b) { return key_of_bits(b); },
      prefix, mask, cap, scan_tmp, emit);
}

/// Four consecutive elements' raw words from src (16-byte aligned: a 16-byte f32 or an 8-byte
/// bf16 load), step 1's register path: w[0..3] (f32) or w[0..1] (bf16; w[2..3] untouched).
template <typename T>
__device__ __forceinline__ void load_sample4(const T* src, std::uint32_t (&w)[4]) {
  if constexpr (sizeof(T) == 4) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(src));
    w[0] = u.x;
    w[1] = u.y;
    w[2] = u.z;
    w[3] = u.w;
  } else {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(src));
    w[0] = u.x;
    w[1] = u.y;
  }
}

/// The sampled bound T0 from kKeys sampled keys a thread (0 = none; four, or eight for staged
/// f32 rows' 8-run sample) held in registers: 8-bit
/// passes from the top (256-bin histograms, warp 0 picks the bucket), the second and third only
/// while the bucket holds more than `slack` samples beyond the rank `want`. Every pass adds a
/// key at a time: the sample spreads over enough buckets that the atomics' conflicts cost less
/// than aggregating a warp's lanes by __match_any_sync (warp_hist_add) did. Measured on an H200
/// (radix_topk_bench --quick, unsorted us, two runs each, one call): f32 1024x8192 17.3 ->
/// 16.8-16.9, 8192x2048 71.9 -> 69.7-69.8, 4096x16384 119.1 -> 116.6-116.7; bf16 1024x8192
/// 14.4-14.5 -> 13.7-13.8, 64x65536 10.2 -> 9.6-9.7; no row slower. (Twelve more aggregated
/// adds a thread cost the staged bf16 kernel 1.6 us there: about 0.13 us each.) Both histograms
/// zero and a block barrier passed since; on return one of them is zero, the other not.
template <int kKeys>
__device__ __forceinline__ std::uint32_t sampled_bound(const std::uint32_t (&sk)[kKeys], int want,
                                                       int (*s_hist)[256], int* s_sel,
                                                       int slack = 8) {
  std::uint32_t t0 = 0;
#pragma unroll 1
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = 24 - 8 * pass;
    int* h = s_hist[pass & 1];
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      if (sk[j] != 0u && (pass == 0 || (sk[j] >> (shift + 8)) == (t0 >> (shift + 8)))) {
        atomicAdd(&h[(sk[j] >> shift) & 0xffu], 1);
      }
    }
    __syncthreads();
    pick_bucket256(h, s_hist[(pass & 1) ^ 1], want, s_sel);
    t0 |= std::uint32_t(s_sel[0]) << shift;
    want = s_sel[1];
    if (s_sel[2] <= want + slack) break;
  }
  return t0;
}

/// Step 4's 8-bit radix passes over n keys (`key(i)`: the i-th order key) from pass `pass`
/// (bits 31 - 8 pass .. 24 - 8 pass) up to kPasses - 1, among the keys equal to fp under fm:
/// the `take`-th largest's prefix fp under mask fm, and `take`, the keys equal to it under fm
/// to take (in index order). s_hist[cur] is zero. The first two passes aggregate a warp's adds
/// (from the top, few buckets take every key).
template <int kT, int kPasses, int kBatch = kCompactBatch, typename Key>
__device__ __forceinline__ void radix_passes(int n, int pass, int cur, Key key_at,
                                             int (*s_hist)[256], int* s_sel, std::uint32_t& fp,
                                             std::uint32_t& fm, int& take) {
#pragma unroll 1
  for (; pass < kPasses; ++pass, cur ^= 1) {
    const int shift = 24 - 8 * pass;
    int* h = s_hist[cur];
    // kBatch keys a thread loaded at once, then their adds (the atomics kept each step's
    // loads behind the previous step's adds: a chain of dependent loads a step).
    for (int i0 = 0; i0 < n; i0 += kBatch * kT) {
      std::uint32_t key[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int i = i0 + j * kT + int(threadIdx.x);
        key[j] = i < n ? key_at(i) : 0u;
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (i0 + j * kT >= n) break;  // block-uniform: whole warps, as warp_hist_add needs
        const int i = i0 + j * kT + int(threadIdx.x);
        const int bin = i < n && (key[j] & fm) == fp ? int((key[j] >> shift) & 0xffu) : -1;
        if (pass < 2) {
          warp_hist_add(h, bin);
        } else if (bin >= 0) {
          atomicAdd(&h[bin], 1);
        }
      }
    }
    __syncthreads();
    pick_bucket256(h, s_hist[cur ^ 1], take, s_sel);
    fp |= std::uint32_t(s_sel[0]) << shift;
    fm |= 0xffu << shift;
    take = s_sel[1];
    if (s_sel[2] == take) break;
  }
}

/// Step 4's select of the `take`-th largest among n candidates, all >= T0 (whose key's top 16
/// bits are base16), their first histogram (top16_bin) in s_hist[0] (plus h_add's bins, if
/// not null): the bucket of the top 16 bits, then bits 15..8 and 7..0 (f32; bf16's keys are
/// decided by their top 16 bits), or from the top should the k-th largest be far above T0. fp,
/// fm zero on entry; as radix_passes.
template <int kT, int kPasses, int kBatch = kCompactBatch, typename Key>
__device__ __forceinline__ void select_top16(int n, std::uint32_t base16, Key key_at,
                                             int (*s_hist)[256], int* s_sel, std::uint32_t& fp,
                                             std::uint32_t& fm, int& take,
                                             const int* h_add = nullptr) {
  if (h_add != nullptr) {
    pick_bucket256<true>(s_hist[0], s_hist[1], take, s_sel, h_add);
  } else {
    pick_bucket256(s_hist[0], s_hist[1], take, s_sel);
  }
  MOER_STREAM_STAMP(10);
  int pass = 2;  // next: bits 15..8
  if (s_sel[0] == 255) {
    pass = 0;  // from the top
  } else {
    fp = (base16 + std::uint32_t(s_sel[0])) << 16;
    fm = 0xffff0000u;
    take = s_sel[1];
    if (s_sel[2] == take) pass = 4;
  }
  radix_passes<kT, kPasses, kBatch>(n, pass, 1, key_at, s_hist, s_sel, fp, fm, take);
}

}  // namespace radix_stream_detail

/// Grid: n * cluster blocks of kT (256 or 512) threads, cluster dimension (cluster, 1, 1),
/// dynamic shared memory stream_smem_bytes(k, sorted, length); row = block / cluster. Any row
/// length < 2^31.
/// kGrid (grid mode, for rows too few and long for one cluster each to fill the GPU): n *
/// a.grid_blocks blocks without clusters; a row's blocks leave their lists (and lengths) in
/// a.grid_ws, and the last of them to arrive (an atomic counter, reset by it) gathers them in
/// block order and selects; if the sample misled, that block alone takes the exact path over
/// the whole row.
/// kAlone: launched with at most one block an SM, so the register limit is that of one block
/// (bf16 at 512 threads: no spills, against 160-192 bytes of spill loads at two blocks an SM).
/// kSearch (512 threads): the bound by a bit-by-bit search over each thread's largest sampled
/// key (step 1) instead of histograms. A template parameter, so that the other launches' code
/// stays as it was (its branch, never taken, made bf16 256x262144 k = 2048 78.4 -> 80.9 us).
/// kStage (512 threads, clusters, the sample's register path; dynamic shared memory
/// stream_stage_offset + stream_stage_bytes): a block whose chunk is 1, 2 or 4 whole tiles of
/// an aligned row has it copied into shared memory by bulk copies (one a tile), issued right
/// after the sample's loads, and collects each tile as it lands; step 2's stream then runs
/// from the kernel's start instead of from the sample's arrival (and its L2 prefetch). With
/// a.stage_tiles (every row staged: the host's geometry), the sample's loads and the copies
/// come first in the kernel, and the list's first histogram of step 4 is counted as the list
/// is written, the other blocks' added into block 0's by red.async with their list pushes.
template <typename T, int kT, bool kGrid = false, bool kAlone = false, bool kSearch = false,
          bool kStage = false>
__global__ void __launch_bounds__(kT, kAlone ? 1 : 1024 / kT)
    radix_topk_stream_kernel(RadixTopkArgs a) {
  namespace cg = cooperative_groups;
  using namespace radix_detail;
  using namespace radix_stream_detail;
  constexpr int kWarpsT = kT / 32;
  constexpr int kW = kRawWords<T>;
  constexpr int kPer = kStreamPer;
  // The next tile's loads in flight while one is processed where registers allow (bf16).
  constexpr bool kPrefetch = kW <= 8;
  constexpr int kTile = kT * kPer;
  constexpr unsigned kRunMask = (1u << kPer) - 1u;

  // Dynamic: the list of (float bits, index) in index order, which also holds the sample's keys
  // before it, the exact fallback's histograms and the sort's scratch after it; then, sorted
  // output only, the chosen keys and indices.
  extern __shared__ __align__(16) uint2 s_list[];
  __shared__ int s_hist[2][256];
  __shared__ typename Scan<kT>::TempStorage scan_tmp;
  __shared__ int s_excess_off[kGrid ? 256 : 1];  // grid mode's last block: see its gather
  __shared__ int s_sel[3];
  __shared__ int s_warp[2][kWarpsT];  // per warp counts of a tile (double-buffered)
  // Every block's (gt, eq) totals, stored here by each block of the cluster (a push: after the
  // barrier no block reads another's shared memory, so the list pushes below may end a block).
  __shared__ int2 s_counts[kClusterMaxBlocks];
  // Block 0's: counts the bytes of the other blocks' list pushes (st.async).
  __shared__ __align__(8) std::uint64_t s_list_bar;
  // Every block's: counts the bytes of the cluster's counts (st.async, the merge's first time).
  __shared__ __align__(8) std::uint64_t s_count_bar;
  // kStage's two-block clusters with the host's geometry (`spec`, below), block 0's: counts the
  // bytes of block 1's list and first histogram (s_hist_in), pushed as block 1 places them.
  __shared__ __align__(8) std::uint64_t s_spec_bar;
  __shared__ __align__(16) int s_hist_in[kStage ? 256 : 4];
  // kStage: the chunk's copy (tile t at s_stage + t * kTileWords, after the list: the host's
  // a.stage_offset), a barrier a tile.
  static_assert(!kStage || (kT == 512 && !kGrid && !kSearch),
                "kStage: 512 threads, clusters, the sample's register path");
  constexpr int kTileWords = kTile * int(sizeof(T)) / 4;  // a tile's copy, 32-bit words
  __shared__ __align__(8) std::uint64_t s_stage_bar[kStage ? 4 : 1];
  __shared__ std::uint64_t s_stage_warp[kStage ? kWarpsT : 1];
  std::uint32_t* s_stage = reinterpret_cast<std::uint32_t*>(
      reinterpret_cast<unsigned char*>(s_list) + (kStage ? a.stage_offset : 0u));
  // Thread 0: the `tiles` tiles from src into s_stage, a bulk copy and an mbarrier each.
  // Measured on an H200 against 16-byte cp.async copies by every thread (radix_topk_bench
  // 64x65536, unsorted us, three runs each, one call; f32 / bf16): the bulk copies 10.4-10.5 /
  // 8.4-8.5; each thread copying its own elements of a tile (a commit group a tile, no barrier)
  // 16.0-16.2 / 9.4-9.5; coalesced copies, a tile's mbarrier counting every thread's
  // cp.async.mbarrier.arrive.noinc 12.3 / 8.9.
  auto issue_stage = [&](const T* src, int tiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
      for (int t = 0; t < tiles; ++t) ::cuda::ptx::mbarrier_init(&s_stage_bar[t], 1);
      ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);  // the inits, seen by the copies
      for (int t = 0; t < tiles; ++t) {
        (void)::cuda::ptx::mbarrier_arrive_expect_tx(
            ::cuda::ptx::sem_release, ::cuda::ptx::scope_cta, ::cuda::ptx::space_shared,
            &s_stage_bar[t], unsigned(kTileWords) * 4u);
        ::cuda::ptx::cp_async_bulk(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                   s_stage + t * kTileWords, src + t * kTile,
                                   unsigned(kTileWords) * 4u, &s_stage_bar[t]);
      }
    }
#else
    (void)src;
    (void)tiles;
#endif
  };
  // The host found every chunk staged (a.stage_tiles): the sample's loads (four elements a
  // thread, eight for f32 rows of stream_stage_sample_runs' 8 runs; step 1's register path, the
  // runs' distance a.stage_step) and then the copies first thing, before the cluster's set-up
  // and the chunk's bounds, from the cluster's rank and index (special registers; no
  // division). Issued after those (as where rows have their own lengths), the copies went out
  // 1.3 us after the kernel's start (64x65536 f32 on an H100); a plain read of the same bytes
  // ends ~1.2 us later when issued that late. Measured on an H100 with the first histogram
  // counted in the collect (below), radix_topk_bench --quick 64x65536, three runs each, one
  // call: f32 unsorted 13.8-14.0 -> 13.0 us, sorted 16.4-16.5 -> 16.5-16.8; bf16 unsorted 10.5
  // -> 10.0, sorted 12.9-13.0 -> 12.5. (The copies first and the sample's loads after them: the
  // sample queued behind the copies, f32 13.9 -> 15.3 us, bf16 10.5 -> 12.2.)
  const bool pre_staged = kStage && a.stage_tiles > 0;
  // pre_staged: this thread's sampled elements, four (runs 0..63), and with the f32 rows' 8-run
  // sample (stream_stage_sample_runs) four more in pre_w2 (runs 64..127)
  static_assert(kStreamStageRuns == 8, "the staged f32 sample: two vectors a thread");
  constexpr bool kBigSample = kStage && sizeof(T) == 4;
  std::uint32_t pre_w[4] = {0u, 0u, 0u, 0u};
  std::uint32_t pre_w2[4] = {0u, 0u, 0u, 0u};
  if constexpr (kStage) {
    if (pre_staged) {
      const T* rowp =
          static_cast<const T*>(a.values) + std::int64_t(detail::cluster_id_x()) * a.values_stride;
      const int pruns = stream_stage_sample_runs(int(a.length), sizeof(T));
      const T* mine = rowp + (threadIdx.x % 8) * 4;
      if (int(threadIdx.x) < 128 * pruns) {
        load_sample4(mine + stream_sample_run_at(int(threadIdx.x) / 8, a.stage_step), pre_w);
      }
      if constexpr (kBigSample) {
        if (pruns == kStreamStageRuns) {  // (every thread has both: 1024 > 512)
          load_sample4(mine + stream_sample_run_at(64 + int(threadIdx.x) / 8, a.stage_step),
                       pre_w2);
        }
      }
      __syncthreads();  // every warp has issued its sample's loads
      const unsigned crank = cooperative_groups::this_cluster().block_rank();
      issue_stage(rowp + std::int64_t(crank) * (a.stage_tiles * kTile), a.stage_tiles);
    }
  }

  cg::cluster_group cluster = cg::this_cluster();
  // (Grid mode launches no clusters: every block is its own.)
  const int csize = kGrid ? 1 : int(cluster.num_blocks());
  const int rank = kGrid ? 0 : int(cluster.block_rank());
  // The row's blocks: the cluster's, or grid mode's a.grid_blocks consecutive blocks.
  const int gsize = kGrid ? a.grid_blocks : csize;
  const int grank = kGrid ? int(blockIdx.x % unsigned(gsize)) : rank;
  // (detail::cluster_id_x() here instead of the division: 4096x16384 f32 126 -> 140 us on an
  // H100, the 256-thread kernel's registers laid out differently; not used.)
  const std::int64_t row = blockIdx.x / unsigned(gsize);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T* v = static_cast<const T*>(a.values) + row * a.values_stride;
  const int len = row_length(a, row);
  const int k = a.k;
  const int kk = len < k ? len : k;  // elements to choose
  const int cap = stream_capacity(k);
  std::int32_t* out_idx = a.indices + row * a.indices_stride;
  float* out_val = a.out_values ? a.out_values + row * a.out_values_stride : nullptr;
  auto pad_from = [&](int first) { pad_row(out_idx, out_val, first, k, tid, kT); };
  MOER_STREAM_STAMP(0);
  if (kk == 0) {  // the same for every block of the cluster: nobody waits at a barrier
    if (grank == 0) pad_from(0);
    return;
  }
  // Two-block clusters where every chunk is staged (the host's geometry, cluster-uniform):
  // block 1 pushes its candidates into block 0's list as it places them (from entry `half` on;
  // block 0's own list ends at `half`), with the cluster's counts, instead of after them (see
  // the staged collect).
  const bool spec = kStage && pre_staged && csize == 2;
  const int half = cap / 2;
  // spec, the staged collect's fast form (cluster-uniform, as T0 is): the cluster's counts were
  // sent, and block 1's list pushed, in the collect.
  bool counts_sent = false;
  auto csync = [&] {
    if (csize > 1) {
      cluster.sync();
    } else {
      __syncthreads();
    }
  };
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (csize > 1) {  // cluster-uniform
    if (tid == 0) {
      ::cuda::ptx::mbarrier_init(&s_count_bar, 1);
      (void)::cuda::ptx::mbarrier_arrive_expect_tx(
          ::cuda::ptx::sem_release, ::cuda::ptx::scope_cta, ::cuda::ptx::space_shared,
          &s_count_bar, unsigned(csize) * 8u);  // one (gt, eq) pair from every block
      if (rank == 0) ::cuda::ptx::mbarrier_init(&s_list_bar, 1);
      if (spec && rank == 0) ::cuda::ptx::mbarrier_init(&s_spec_bar, 1);
      ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
    }
    // The first half of a split cluster barrier: its wait, before the merge stores the counts
    // into the other blocks' shared memory, guarantees that they have all started and their
    // mbarriers are initialized. Arrived now, it costs no wait there.
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
  }
#endif

  // This block's chunk: whole tiles, [c_begin, c_end); this thread's elements of a tile at
  // `base`: [base + kPer * tid, base + kPer * (tid + 1)).
  // (len + kTile - 1 would overflow an int for rows within a tile of 2^31.)
  const int tiles = len / kTile + (len % kTile != 0 ? 1 : 0);
  const std::int64_t per = (tiles + gsize - 1) / gsize;
  int c_begin = int(grank * per * kTile < len ? grank * per * kTile : len);
  int c_end = int(c_begin + per * kTile < len ? c_begin + per * kTile : len);
  const bool aligned = (reinterpret_cast<std::uintptr_t>(v) & 15u) == 0;
  // The current tile (and with kPrefetch the next one), loads issued before the sample's.
  std::uint32_t raw[kW], nxt[kPrefetch ? kW : 1];
  // kStage: staged once the copies are issued.
  const int stage_tiles = (c_end - c_begin) / kTile;
  // (stream_sample_in_registers(len) written out: through the function one branch became a
  // predicate OR and the code before the copies moved, a build not run on the device.)
  // (pre_staged: the host's a.stage_tiles is this geometry, for every row.)
  const bool stage_ok = pre_staged || (kStage && aligned && len > 512 * stream_sample_runs(len) &&
                                       stream_sample_runs(len) <= 4 && c_end > c_begin &&
                                       (c_end - c_begin) % kTile == 0 &&
                                       (stage_tiles == 1 || stage_tiles == 2 || stage_tiles == 4));
  bool staged = pre_staged;
  auto wait_stage = [&](int t) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    while (!::cuda::ptx::mbarrier_try_wait_parity(&s_stage_bar[t], 0u)) {
    }
#endif
  };
  auto load_first = [&] {
    if (c_begin < c_end) load_run(v, c_begin + kPer * tid, c_end, aligned, raw);
    if constexpr (kPrefetch) {
      if (c_begin + kTile < c_end) load_run(v, c_begin + kTile + kPer * tid, c_end, aligned, nxt);
    }
  };
  if (!stage_ok) load_first();  // (kStage: the first tile only if the chunk is not staged)

  // a.l2_prefetch: the chunk past the tiles in flight, asked of L2 (one bulk prefetch) once the
  // sample has arrived. Issued with the first tile's loads instead, its traffic delayed the
  // sample's loads by ~3 us on an H100 (64x65536 f32, 128 blocks): slower. Only 512-thread
  // blocks take it (the host asks for it where blocks are few, which have 512 threads); the
  // 256-thread kernels keep their code (with it, 4096x16384 +0.5..1%).
  auto prefetch_chunk = [&] {
    if constexpr (kT != 512) return;
    if (staged) return;  // the whole chunk is on its way
    const int from = c_begin + (kPrefetch ? 2 : 1) * kTile;
    if (a.l2_prefetch && aligned && tid == 0 && from < c_end) {
      const std::int64_t want = std::int64_t(c_end - from) * std::int64_t(sizeof(T));
      const std::uint32_t bytes = std::uint32_t(want < (1 << 30) ? want : (1 << 30)) & ~15u;
      if (bytes != 0) prefetch_l2(v + from, bytes);
    }
  };

  // 1. The sampled bound T0 (the same in every block of the cluster): the lower edge of a
  //    bucket of the m-th largest sampled key (the file comment's two ways).
  std::uint32_t t0 = 0;
  {
    const int runs =
        pre_staged ? stream_stage_sample_runs(len, sizeof(T)) : stream_sample_runs(len);
    const int size = 512 * runs;  // 16 * runs runs of 32
    const bool whole = len <= size;
    const int step = whole ? 0 : stream_sample_step(runs, len);
    constexpr int kVec = 16 / int(sizeof(T));  // elements a 16-byte vector
    constexpr int kRunVecs = 32 / kVec;
    int want = kk;
    if (!whole) {
      const float e = float(k) * float(size) / float(len);
      const int m = int(ceilf(e + 4.0f * sqrtf(e) + 8.0f));
      want = m < size ? m : size;
    }
    // kSearch: the largest sampled key of each thread (8 loads in flight), then T0 bit by bit
    // (where the host launches it and why: stream_tuning in src/cuda/topk.cu).
    bool searched = false;
    if constexpr (kSearch) {
      static_assert(kT == 512, "kSearch: 16 warps, the runs striped over them");
      if (!whole && 2 * want <= kT) {
        std::uint32_t mx = 0u;        // this thread's largest sampled key (0: none)
        const int nruns = size / 32;  // >= 32: every thread has an element of two runs or more
#pragma unroll 1
        for (int r0 = warp; r0 < nruns; r0 += 8 * kWarpsT) {
          std::uint32_t b[8];
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const int r = r0 + i * kWarpsT;
            if (r < nruns) b[i] = bits_at(v, stream_sample_run_at(r, step) + lane);
          }
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            if (r0 + i * kWarpsT < nruns) {
              const std::uint32_t key = key_of_bits(b[i]);
              mx = key > mx ? key : mx;
            }
          }
        }
        prefetch_chunk();
        MOER_STREAM_STAMP(1);
        int have = 0;  // threads whose largest key reaches T0 (block-uniform)
        auto search = [&](int hi, int lo) {
#pragma unroll
          for (int bit = hi; bit >= lo; --bit) {
            const std::uint32_t cand = t0 | (1u << bit);
            const int c = __syncthreads_count(mx >= cand);
            if (c >= want) {
              t0 = cand;
              have = c;
            }
          }
        };
        search(31, 16);
        // Another 8 bits while T0's bucket holds more than 8 threads beyond the rank wanted
        // (values dense in a 16-bit bucket, such as a ramp of large integers).
        if (have > want + 8) search(15, 8);
        if (have > want + 8) search(7, 0);
        searched = true;
      }
    }
    if (searched) {
      // T0 found above.
    } else if (kBigSample && pre_staged && size == kStreamStageRuns * kT) {
      // Staged f32 rows' 8-run sample (stream_stage_sample_runs), eight keys a thread loaded
      // at the kernel's start: 8-bit passes from the top, as the 4-key path below (slack 0).
      for (int b = tid; b < 512; b += kT) (&s_hist[0][0])[b] = 0;
      std::uint32_t sk[8];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sk[j] = key_of_bits(elem_bits<T>(pre_w, j));
        sk[4 + j] = key_of_bits(elem_bits<T>(pre_w2, j));
      }
      __syncthreads();  // the histograms are zero
      MOER_STREAM_STAMP(1);
      t0 = sampled_bound(sk, want, s_hist, s_sel, 0);
    } else if (aligned && !whole && size <= 4 * kT) {
      // Four consecutive sampled elements a thread (a 16-byte f32 or 8-byte bf16 load; runs
      // start at multiples of 8 elements), their keys kept in registers (0 = none): 8-bit
      // passes from the top (sampled_bound).
      for (int b = tid; b < 512; b += kT) (&s_hist[0][0])[b] = 0;
      std::uint32_t sk[4] = {0u, 0u, 0u, 0u};
      std::uint32_t w[4] = {0u, 0u, 0u, 0u};
      if (pre_staged) {
#pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = pre_w[j];
      } else if (tid < size / 4) {
        load_sample4(v + stream_sample_run_at(tid / 8, step) + (tid % 8) * 4, w);
      }
      if constexpr (kStage) {
        // The chunk's copies once every warp has issued its sample's loads (a barrier does not
        // wait for loads), so that the sample is not queued behind them.
        if (stage_ok && !pre_staged) {
          __syncthreads();
          issue_stage(v + c_begin, stage_tiles);
          MOER_STREAM_STAMP(12);
          staged = true;
        }
      }
      if (tid < size / 4) {
#pragma unroll
        for (int j = 0; j < 4; ++j) sk[j] = key_of_bits(elem_bits<T>(w, j));
      }
      __syncthreads();  // the histograms are zero
      prefetch_chunk();
      MOER_STREAM_STAMP(1);
      // f32 staged chunks: every pass while the bucket holds any sample beyond the rank
      // wanted (the bound is ready long before the chunk has landed there, and a bucket edge
      // closer to the m-th sample leaves fewer candidates: at normal rows' first bucket's
      // edge, 2.0, ~15% more than at the m-th sampled key). Measured on an H100 (radix_topk_bench
      // --quick 64x65536, three runs each, one call): f32 sorted 15.1-15.2 -> 15.0-15.1 us,
      // unsorted 12.6-12.7 -> 12.5-12.6; bf16 (a third pass that cannot split its 16-bit
      // keys) 9.8-10.0 -> 10.1-10.2, so it keeps the 8.
      t0 = sampled_bound(sk, want, s_hist, s_sel, kStage && sizeof(T) == 4 ? 0 : 8);
    } else {
      // The sample's keys (0 = none) and the first histogram in the list's memory; 16-byte
      // vectors where the row is aligned (4 in flight a thread), else 8 elements.
      std::uint32_t* s_skey = reinterpret_cast<std::uint32_t*>(s_list);
      int* h = reinterpret_cast<int*>(s_list) + size;  // kBins (stream_smem_bytes has room)
      for (int b = tid; b < kBins; b += kT) h[b] = 0;
      for (int b = tid; b < 256; b += kT) s_hist[0][b] = 0;
      if (aligned && !whole) {
        // 4 vectors in flight a thread (8 spill registers of the collect): a 16384-element f32
        // sample in two rounds.
        constexpr int kInFlight = 4;
        const int vecs = size / kVec;
#pragma unroll 1
        for (int c0 = 0; c0 < vecs; c0 += kInFlight * kT) {
          std::uint32_t w[kInFlight][4];
#pragma unroll
          for (int i = 0; i < kInFlight; ++i) {
            const int c = c0 + i * kT + tid;  // vector c: run c / kRunVecs
            if (c < vecs) {
              const uint4 u = __ldg(reinterpret_cast<const uint4*>(
                  v + stream_sample_run_at(c / kRunVecs, step) + (c % kRunVecs) * kVec));
              w[i][0] = u.x;
              w[i][1] = u.y;
              w[i][2] = u.z;
              w[i][3] = u.w;
            }
          }
#pragma unroll
          for (int i = 0; i < kInFlight; ++i) {
            const int c = c0 + i * kT + tid;
            if (c < vecs) {
#pragma unroll
              for (int j = 0; j < kVec; ++j) {
                s_skey[c * kVec + j] = key_of_bits(elem_bits<T>(w[i], j));
              }
            }
          }
        }
      }
#pragma unroll 1
      for (int i0 = 0; i0 < ((aligned && !whole) ? 0 : size); i0 += 8 * kT) {
        int spos[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int e = i0 + i * kT + tid;  // sample element: run e / 32, lane e % 32
          spos[i] = e >= size ? len : whole ? e : stream_sample_run_at(e >> 5, step) + (e & 31);
        }
        float sval[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) sval[i] = load_value(v, spos[i] < len ? spos[i] : len - 1);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int e = i0 + i * kT + tid;
          if (e < size) s_skey[e] = spos[i] < len ? key_of(sval[i]) : 0u;
        }
      }
      __syncthreads();
      prefetch_chunk();
      MOER_STREAM_STAMP(1);
      for (int e = tid; e < size; e += kT) {
        const std::uint32_t key = s_skey[e];
        if (key != 0u) atomicAdd(&h[key >> 21], 1);
      }
      __syncthreads();
      pick_bucket2048<kT>(cluster, 1, rank, h, h, want, scan_tmp, s_sel);
      const std::uint32_t b11 = std::uint32_t(s_sel[0]);
      t0 = b11 << 21;
      want = s_sel[1];
      if (s_sel[2] > want) {  // refine by the next 8 bits: a bucket can hold several times k
        for (int e = tid; e < size; e += kT) {
          const std::uint32_t key = s_skey[e];
          if (key != 0u && (key >> 21) == b11) atomicAdd(&s_hist[0][(key >> 13) & 0xffu], 1);
        }
        __syncthreads();
        pick_bucket256(s_hist[0], s_hist[1], want, s_sel);
        t0 |= std::uint32_t(s_sel[0]) << 13;
      }
    }
  }

  MOER_STREAM_STAMP(2);
  // 2. Collect. Fast form (kExact = false): every element with float value >= float(T0).
  //    Exact form: (key & mask) > prefix, and the first `cap_eq` with (key & mask) == prefix.
  //    Ties form (grid mode, bf16): float value > T0, and the first `cap_eq` equal to it.
  // Grid mode, bf16: the ties form, since a bf16 T0 is one value that thousands of a row's
  // elements can share (a ramp of 2^20 repeats each value near the top 2048-4096 times), so that
  // the lists stay within their room and the last block does not take the exact path alone over
  // the whole row. T0 first goes up to the next bf16 value (a key whose low 16 bits are those of
  // a bf16: 0 for numbers >= +0, 0xffff below): the same elements reach it, and its ties show.
  constexpr bool kTieLists = kGrid && sizeof(T) == 2;
  if constexpr (kTieLists) {
    if (t0 >= 0x00800000u) t0 = t0 >= 0x80000000u ? (t0 + 0xffffu) & ~0xffffu : t0 | 0xffffu;
  }
  std::uint32_t prefix = t0, mask = 0xffffffffu;
  int cap_eq = k;
  const bool fast = t0 >= 0x00800000u;  // T0 is a number or an infinity (else keys: NaN/-inf)
  const float t0f = float_of_key(t0);
  int G = 0, E = 0;  // this block's totals
  // pre_staged: the staged collect's fast form built step 4's first histogram of this block's
  // list (in s_hist[0]; the merge adds the other blocks' into block 0's). The same in every
  // block of the cluster: pre_staged (the host's), the fast form (T0, the same sample's); a
  // block's own staging decision would not be (a row with its own length can stage block 0's
  // chunk and stream block 1's), and block 0 would wait for bins never sent. Measured on an
  // H100 (the histogram in every staged block then, the copies after the sample's bound code,
  // radix_topk_bench --quick 64x65536, three runs each, one call): f32 unsorted 13.8-13.9 ->
  // 13.7-13.8 us, bf16 10.5-10.6 -> 10.4-10.5.
  bool staged_hist = false;
  // Forms: 0 (false_type) fast; 1 (true_type) exact; 2 ties: x > T0, and the first cap_eq with
  // x == T0, by float compares (T0 a number).
  auto collect = [&](auto form_tag) {
    constexpr int kForm = int(decltype(form_tag)::value);
    constexpr bool kExact = kForm == 1;
    constexpr bool kTies = kForm == 2;
    G = 0;
    E = 0;
    if constexpr (kStage) {
      if (staged) {
        if constexpr (kForm == 0) {
          // Each tile as it lands: this thread's 16 elements (16-byte vectors: four f32 or two
          // bf16, read in an order rotated by lane / 2 or lane / 4, so that a quarter warp meets
          // distinct banks) into bits 16 t.. of m64, their count into the 16-bit field t of
          // cnt; after the last tile one block scan of the packed counts (a field's prefix is
          // at most a tile, 8192) places every candidate, in index order (tile, thread,
          // element).
          constexpr int kVecs = kPer * int(sizeof(T)) / 16;  // a thread's vectors in a tile
          std::uint64_t m64 = 0, cnt = 0;
          // pre_staged: step 4's first histogram (top16_bin) of the list, counted as it is
          // written: zero before the scan's barrier (nobody reads s_hist after the bound's last
          // barrier).
          if (pre_staged && tid < 256) s_hist[0][tid] = 0;
          const std::uint32_t base16 = t0 >> 16;
#pragma unroll 1
          for (int t = 0; t < stage_tiles; ++t) {
            wait_stage(t);
            const uint4* mine =
                reinterpret_cast<const uint4*>(s_stage + t * kTileWords) + tid * kVecs;
            std::uint32_t b = 0;
#pragma unroll
            for (int j = 0; j < kVecs; ++j) {
              const int q = (j + (lane >> (kVecs == 4 ? 1 : 2))) & (kVecs - 1);
              const uint4 u = mine[q];
              if constexpr (sizeof(T) == 4) {
                b |= (std::uint32_t(__uint_as_float(u.x) >= t0f) |
                      std::uint32_t(__uint_as_float(u.y) >= t0f) << 1 |
                      std::uint32_t(__uint_as_float(u.z) >= t0f) << 2 |
                      std::uint32_t(__uint_as_float(u.w) >= t0f) << 3)
                     << (4 * q);
              } else {
                constexpr int kVecElems = 16 / int(sizeof(T));
                const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
                std::uint32_t bq = 0;
#pragma unroll
                for (int e = 0; e < kVecElems; ++e) {
                  bq |= std::uint32_t(__uint_as_float(elem_bits<T>(w, e)) >= t0f) << e;
                }
                b |= bq << (kVecElems * q);
              }
            }
            m64 |= std::uint64_t(b) << (16 * t);
            cnt |= std::uint64_t(__popc(b)) << (16 * t);
          }
          MOER_STREAM_STAMP(13);
          std::uint64_t incl = cnt;  // inclusive warp scan, then the warps' totals
#pragma unroll
          for (int d = 1; d < 32; d <<= 1) {
            const std::uint64_t o = __shfl_up_sync(kAll, incl, d);
            if (lane >= d) incl += o;
          }
          if (lane == 31) s_stage_warp[warp] = incl;
          __syncthreads();
          // Lane w holds warp w's totals; two 32-bit halves (tiles 0-1, 2-3) reduce without a
          // carry across fields (a field's sum is at most a tile).
          const std::uint64_t wt = lane < kWarpsT ? s_stage_warp[lane] : 0u;
          const std::uint32_t wlo = std::uint32_t(wt), whi = std::uint32_t(wt >> 32);
          const std::uint64_t before =
              std::uint64_t(__reduce_add_sync(kAll, lane < warp ? wlo : 0u)) |
              std::uint64_t(__reduce_add_sync(kAll, lane < warp ? whi : 0u)) << 32;
          const std::uint64_t tot = std::uint64_t(__reduce_add_sync(kAll, wlo)) |
                                    std::uint64_t(__reduce_add_sync(kAll, whi)) << 32;
          // spec: the counts go out now (every block's is known), and the list where step 4
          // reads it: block 0's ending at entry `half` of its list, block 1's pushed into block
          // 0's from `half` on (st.async, counted by block 0's s_spec_bar), so that the merge
          // waits for no second exchange. A block whose list does not fit there (block 0's
          // longer than half, block 1's than cap - half) keeps it in place: the merge then
          // takes the exact path (block 0 first waits for block 1's pushes): a row whose
          // candidates crowd into one half (more than cap / 2 of them, against ~2.5k over the
          // whole row for random data) is sent there, where one cap held both lists before.
          // Measured on an H100 against pushing after the counts (radix_topk_bench --quick
          // 64x65536, three runs each, one call; the f32 kernel at two blocks an SM then): f32
          // unsorted 12.9-13.1 -> 12.8-12.9 us, sorted 16.6-16.7 -> 15.6-15.7; bf16 10.0 -> 9.8,
          // sorted 12.5 -> 12.4.
          uint2* dst = s_list;
          bool push = false;
          std::uint64_t* push_list = nullptr;
          std::uint64_t* push_bar = nullptr;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
          if (spec) {
            const int all = int(tot & 0xffffu) + int((tot >> 16) & 0xffffu) +
                            int((tot >> 32) & 0xffffu) + int(tot >> 48);
            // Every block has started and initialized its barriers (the cluster barrier's
            // first half, arrived at the kernel's start).
            asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
            if (tid < 2) {
              ::cuda::ptx::st_async(
                  reinterpret_cast<std::uint64_t*>(cluster.map_shared_rank(s_counts, tid) + rank),
                  std::uint64_t(std::uint32_t(all)), cluster.map_shared_rank(&s_count_bar, tid));
            }
            counts_sent = true;
            if (rank == 0) {
              if (all <= half) dst = s_list + (half - all);
            } else if (all <= cap - half) {
              push = true;
              push_list =
                  reinterpret_cast<std::uint64_t*>(cluster.map_shared_rank(s_list, 0) + half);
              push_bar = cluster.map_shared_rank(&s_spec_bar, 0);
            }
          }
#endif
          // Every tile's candidates in one loop over m64 (bit 16 t + i: tile t's element i), so
          // that a warp runs as many steps as its lane with the most candidates, not that
          // lane's count summed over the tiles; each tile's list entries counted in ot (below).
          // Measured on an H200 against a loop a tile (radix_topk_bench 64x65536, unsorted us,
          // three runs each, one call): f32 10.8 -> 10.7-10.8, bf16 8.9 -> 8.8.
          // The end of this thread's entries of tile t in the 16-bit field t of ot, lowered as
          // they are taken (fields past stage_tiles are zero; a field ends at most at the
          // block's count, <= 4 * 8192). The loop is issue-bound (16 warps, a warp's fullest
          // lane's steps: ~2000 cycles of an H200's SM, clock64 stamps), so its instructions
          // count: one packed counter instead of four picked and bumped by compares, and a
          // candidate's key without the NaN case. Measured on an H200 against the four
          // counters and top16_bin (radix_topk_bench 64x65536, unsorted us, four runs each, one
          // call): f32 10.8 -> 10.6 (sorted 13.3-13.4 -> 13.1-13.2), bf16 8.8-8.9 -> 8.6 (sorted
          // 11.4-11.5 -> 11.2).
          std::uint64_t ot = 0;
          int first = 0;
          const std::uint64_t upto = before + incl;  // this thread's entries end, a tile a field
#pragma unroll
          for (int t = 0; t < 4; ++t) {
            ot |= std::uint64_t(first + int((upto >> (16 * t)) & 0xffffu)) << (16 * t);
            first += int((tot >> (16 * t)) & 0xffffu);
          }
          std::uint64_t mb = m64;
          const std::uint32_t* my_stage = s_stage + tid * kW;
          const std::uint32_t idx0 = std::uint32_t(c_begin + tid * kPer);
          while (mb != 0u) {
            // From the highest candidate down (the 64-bit mask's highest set bit costs fewer
            // instructions than its lowest: ~44 a step against ~49 in the SASS), each taking the
            // entry below its tile's field: the same places as in index order. Measured on an
            // H200 (radix_topk_bench 64x65536, unsorted us, seven runs each in two calls): f32
            // 10.5-10.6 -> 10.4-10.5 (sorted 13.1-13.2 -> 13.0), bf16 8.6 -> 8.4-8.5 (sorted
            // 11.1-11.2 -> 11.0-11.1). The mask and ot as two 32-bit halves on top of it (one
            // FLO a step): the same.
            const int j = 63 - __clzll(static_cast<long long>(mb));
            mb ^= std::uint64_t(1) << j;
            const int i = j & 15, t16 = j & 48;  // t16 = 16 t
            ot -= std::uint64_t(1) << t16;
            const int o = int((ot >> t16) & 0xffffu);
            if (o < cap) {
              const std::uint32_t* mine = my_stage + t16 * (kTileWords / 16);
              const std::uint32_t bits = sizeof(T) == 4 ? mine[i] : elem_bits<T>(mine, i);
              const std::uint32_t idx = idx0 + std::uint32_t(t16 * (kTile / 16) + i);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
              if (push) {
                ::cuda::ptx::st_async(push_list + o, (std::uint64_t(idx) << 32) | bits, push_bar);
              } else {
                dst[o] = make_uint2(bits, idx);
              }
#else
              dst[o] = make_uint2(bits, idx);
#endif
              if (pre_staged) {  // (a candidate is no NaN: key_of_number is its key)
                atomicAdd(&s_hist[0][top16_bin_of_key(key_of_number(bits), base16)], 1);
              }
            }
          }
          G = first;
          staged_hist = pre_staged;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
          if (spec && rank != 0) {  // block 1's first histogram into block 0's s_hist_in
            __syncthreads();
            if (tid < 256) {
              ::cuda::ptx::st_async(cluster.map_shared_rank(&s_hist_in[tid], 0), s_hist[0][tid],
                                    cluster.map_shared_rank(&s_spec_bar, 0));
            }
          }
#endif
          return;
        } else {
          // The exact form reads global memory; the copies land before the block may exit.
          for (int t = 0; t < stage_tiles; ++t) wait_stage(t);
        }
      }
    }
    int buf = 0;
#pragma unroll 1
    for (int base = c_begin; base < c_end; base += kTile, buf ^= 1) {
      const int pos = base + kPer * tid;
      // Bit i of gm / em: element i is above / at the threshold.
      const int rest = c_end - pos;
      const unsigned vmask = rest >= kPer ? kRunMask : rest <= 0 ? 0u : (1u << rest) - 1u;
      unsigned gm = 0, em = 0;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const std::uint32_t b = elem_bits<T>(raw, i);
        if constexpr (kExact) {
          const std::uint32_t m = key_of_bits(b) & mask;
          gm |= unsigned(m > prefix) << i;
          em |= unsigned(m == prefix) << i;
        } else if constexpr (kTies) {
          gm |= unsigned(__uint_as_float(b) > t0f) << i;
          em |= unsigned(__uint_as_float(b) == t0f) << i;
        } else {
          gm |= unsigned(__uint_as_float(b) >= t0f) << i;
        }
      }
      if constexpr (kExact) {
        gm &= vmask;
        em &= vmask;
      }
      const int g = __popc(gm), e = __popc(em);
      // Inclusive warp scan of the packed counts, warp totals through shared memory.
      const int c = g | (e << 16);  // both < 2^16 (a tile has at most 8192 elements)
      int incl = c;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const int o = __shfl_up_sync(kAll, incl, d);
        if (lane >= d) incl += o;
      }
      if (lane == 31) s_warp[buf][warp] = incl;
      __syncthreads();
      const int wsum = lane < kWarpsT ? s_warp[buf][lane] : 0;
      const int pre = __reduce_add_sync(kAll, lane < warp ? wsum : 0) + incl - c;
      const int tot = __reduce_add_sync(kAll, wsum);
      const std::uint32_t idx0 = std::uint32_t(pos);  // pos < 2^31
      // Ties form: while the block's ties so far stay within cap_eq, its entries are
      // consecutive as in the fast form.
      const int og0 = G + (pre & 0xffff), oe0 = kTies ? E + (pre >> 16) : 0;
      if (!kExact && c != 0 && og0 + g + (kTies ? oe0 + e : 0) <= cap &&
          (!kTies || oe0 + e <= cap_eq)) {
        // Every slot in the list: consecutive entries from og0 (+ oe0).
        uint2* dst = s_list + og0 + oe0;
        const unsigned km = kTies ? gm | em : gm;
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          if ((km >> i) & 1u) *dst++ = make_uint2(elem_bits<T>(raw, i), idx0 + i);
        }
      } else if (c != 0) {
        int og = G + (pre & 0xffff), oe = E + (pre >> 16);
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          int slot = -1;
          if constexpr (kExact || kTies) {
            const bool isg = (gm >> i) & 1u, ise = (em >> i) & 1u;
            slot = isg ? og + (oe < cap_eq ? oe : cap_eq) : ise && oe < cap_eq ? og + oe : -1;
            og += isg;
            oe += ise;
          } else {
            if ((gm >> i) & 1u) slot = og++;
          }
          if (slot >= 0 && slot < cap) s_list[slot] = make_uint2(elem_bits<T>(raw, i), idx0 + i);
        }
      }
      G += tot & 0xffff;
      E += tot >> 16;
      if constexpr (kPrefetch) {
        if (base + kTile < c_end) {  // the next tile becomes current; load the one after
#pragma unroll
          for (int w = 0; w < kW; ++w) raw[w] = nxt[w];
          if (base + 2 * kTile < c_end) load_run(v, pos + 2 * kTile, c_end, aligned, nxt);
        }
      } else if (base + kTile < c_end) {
        load_run(v, pos + kTile, c_end, aligned, raw);
      }
    }
  };
  if (fast && kTieLists) {
    collect(std::integral_constant<int, 2>{});
  } else if (fast) {
    collect(std::false_type{});
  } else {
    if (staged) load_first();   // (the exact form's first tile in registers)
    collect(std::true_type{});  // key > T0, and the first k keys == T0
  }

  MOER_STREAM_STAMP(3);
  int total = 0;
  bool merged = false;      // grid mode: the last block has the row's list
  bool first_hist = false;  // grid mode, kStage: step 4's first histogram is built (in s_hist[0])
  uint2* lst = s_list;      // step 4's list (spec: block 0's own entries start later)
  const int* hist_add = nullptr;  // spec: block 1's first histogram, added to s_hist[0]
  if constexpr (kGrid) {
    // 3g. Every block's list (the fast form, or bf16's ties form with the block's first k
    //     ties; if T0 is no number, none, and the exact path)
    //     and its length into the workspace; the row's last block to arrive gathers them in
    //     block order (= index order) and resets the row's counter for the next call.
    int* ws_arrive = reinterpret_cast<int*>(a.grid_ws);
    int* ws_count = reinterpret_cast<int*>(a.grid_ws + radix_stream_grid_counts(a.n)) + row * gsize;
    uint2* ws_list = reinterpret_cast<uint2*>(a.grid_ws + radix_stream_grid_lists(a.n, gsize)) +
                     row * gsize * std::int64_t(a.grid_slot);
    // Entries of this block's list: kTieLists, those above T0 and the first cap_eq (= k) equal
    // to it (each block's first k ties hold the row's first k - (above T0) ties, and the select
    // and the compaction below take ties in list order, which is index order).
    const int kept = kTieLists ? G + (E < cap_eq ? E : cap_eq) : G;
    const int mine = !fast ? 0 : kept < cap ? kept : cap;
    // The last block loads the first kGather entries a thread of each list before it knows the
    // lists' lengths (below): those slots are written in every call (zeros past the list), so
    // nothing reads workspace memory that this call did not write (beyond the counters).
    constexpr int kGather = 2;
    constexpr int kGroupRounds = 4;  // the gather's rounds a list's group takes (below)
    const int spec = kGather * (kT / gsize) < a.grid_slot ? kGather * (kT / gsize) : a.grid_slot;
    __syncthreads();  // the list is complete
    for (int i = tid; i < (mine > spec ? mine : spec); i += kT) {
      ws_list[std::int64_t(grank) * a.grid_slot + i] = i < mine ? s_list[i] : make_uint2(0u, 0u);
    }
    if (tid == 0) ws_count[grank] = fast ? kept : -1;
    // The block's barrier, then one thread's arrival as a single acq_rel atomic: its release
    // is cumulative (it orders the stores the barrier ordered before it), and its acquire
    // orders the earlier arrivals' lists before the last block's reads (after the barrier
    // below). Measured on an H100 against a __threadfence() before a relaxed atomicAdd and
    // another after it in the last block (radix_topk_bench --quick, unsorted, two runs each):
    // f32 1x262144 10.7-10.9 -> 10.4-10.5 us, 1x1048576 16.3-16.4 -> 16.0, 4x1048576 21.4 ->
    // 21.0, bf16 1x262144 10.1 -> 9.7. Every thread fencing its own stores before the barrier
    // had measured 0.1-0.2 us slower still.
    __syncthreads();
    if (tid == 0) {
      int before;
      asm volatile("atom.add.acq_rel.gpu.global.s32 %0, [%1], 1;"
                   : "=r"(before)
                   : "l"(ws_arrive + row)
                   : "memory");
      s_sel[0] = before == gsize - 1;  // the last to arrive
    }
    __syncthreads();
    if (s_sel[0] == 0) return;
    MOER_STREAM_STAMP(7);
    // A group of kT / gsize threads a block's list (gsize <= 256 = kGridMaxBlocks < kT = 512):
    // the list's first kGather * tpb entries are loaded with the lengths, in one round trip,
    // before the offsets are known; the rest after them, four loads in flight a thread.
    // Measured on an H100: before, every thread took entries i, i + kT, ... of the row's list
    // after the lengths, each one's block found by a binary search over the offsets (in-kernel
    // stamps, 1x262144 f32, grid 32: lengths 0.5 us, then that gather 1.8 us; with groups of
    // threads a list, 1.0 us). radix_topk_bench, unsorted us, before / kGather = 2 / 8: f32
    // 1x262144 12.1-12.2 / 11.4 / 11.6-11.7, 1x1048576 18.5-18.6 / 17.3-17.4 / 17.5-17.6,
    // 4x1048576 23.5-23.6 / 22.3-22.4 / 22.4; bf16 1x262144 12.8 / 11.7 / 11.9.
    const int tpb = kT / gsize;
    const int b = tid / tpb, t = tid - b * tpb;
    const bool group = b < gsize;
    const uint2* src = ws_list + std::int64_t(group ? b : 0) * a.grid_slot;
    uint2 e[kGather];
    if (group) {
#pragma unroll
      for (int j = 0; j < kGather; ++j) {
        if (t + j * tpb < a.grid_slot) e[j] = __ldcg(src + t + j * tpb);  // written above
      }
    }
    // Offsets of the blocks' lists (a block that overflowed or took no fast path: too many).
    int cnt = 0;
    if (tid < gsize) {
      cnt = __ldcg(&ws_count[tid]);
      cnt = cnt < 0 || cnt > cap ? cap + 1 : cnt;
    }
    int off = 0, sum = 0;
    Scan<kT>(scan_tmp).ExclusiveSum(cnt, off, sum);
    int* s_off = &s_hist[1][0];  // gsize <= 256 (kGridMaxBlocks) entries
    if (tid < gsize) s_off[tid] = off;
    if (tid < 256) s_hist[0][tid] = 0;  // the select's first histogram, built while copying
    if (tid == 0) ws_arrive[row] = 0;   // every block of the row has arrived
    __syncthreads();
    MOER_STREAM_STAMP(8);
    if (sum <= cap && sum >= kk) {
      // Each entry also counts into the select's first histogram (its top 16 bits as an
      // offset from T0's, step 4 below), so step 4 starts at its pick. Measured on an H100
      // against step 4's own pass over the gathered list (radix_topk_bench --quick, unsorted,
      // two runs each): f32 1x262144 10.4 -> 10.1-10.2 us, 4x1048576 21.0-21.1 -> 20.8,
      // 2x524288 18.0-18.1 -> 17.8, bf16 1x262144 9.7 -> 9.5-9.6.
      const std::uint32_t base16 = prefix >> 16;
      const auto put = [&](int slot, uint2 entry) {
        s_list[slot] = entry;
        atomicAdd(&s_hist[0][top16_bin(entry.x, base16)], 1);
      };
      const int grouped = (kGather + 4 * kGroupRounds) * tpb;  // entries a list's group takes
      if (group) {
        const int o = s_off[b];
        const int n = (b + 1 < gsize ? s_off[b + 1] : sum) - o;
#pragma unroll
        for (int j = 0; j < kGather; ++j) {
          if (t + j * tpb < n) put(o + t + j * tpb, e[j]);
        }
        // Longer lists: the rest, up to kGroupRounds rounds of four loads in flight a thread.
        const int lim = n < grouped ? n : grouped;
#pragma unroll 1
        for (int i0 = t + kGather * tpb; i0 < lim; i0 += 4 * tpb) {
          uint2 r[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            if (i0 + j * tpb < lim) r[j] = __ldcg(src + i0 + j * tpb);
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            if (i0 + j * tpb < lim) put(o + i0 + j * tpb, r[j]);
          }
        }
      }
      // Lists longer still (a row whose largest values sit together leaves most candidates in
      // one list): their excess over every thread of the block, not the list's group alone,
      // each entry's list found by a binary search over the excesses' offsets.
      int excess = 0;
      if (tid < gsize) {
        const int n = (tid + 1 < gsize ? s_off[tid + 1] : sum) - s_off[tid];
        excess = n > grouped ? n - grouped : 0;
      }
      if (__syncthreads_or(excess > 0)) {
        int eoff = 0, esum = 0;
        Scan<kT>(scan_tmp).ExclusiveSum(excess, eoff, esum);
        if (tid < gsize) s_excess_off[tid] = eoff;
        __syncthreads();
#pragma unroll 1
        for (int x0 = tid; x0 < esum; x0 += 4 * kT) {
          uint2 got[4];
          int at[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int x = x0 + j * kT;
            if (x < esum) {
              int lo = 0, hi = gsize;  // the last list whose excess starts at or before x
              while (hi - lo > 1) {
                const int mid = (lo + hi) / 2;
                if (s_excess_off[mid] <= x) {
                  lo = mid;
                } else {
                  hi = mid;
                }
              }
              const int i = grouped + x - s_excess_off[lo];
              got[j] = __ldcg(ws_list + std::int64_t(lo) * a.grid_slot + i);
              at[j] = s_off[lo] + i;
            }
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            if (x0 + j * kT < esum) put(at[j], got[j]);
          }
        }
      }
      MOER_STREAM_STAMP(9);
      __syncthreads();
      total = sum;
      merged = true;
      first_hist = true;
    } else {
      c_begin = 0;  // the exact path over the whole row, by this block alone
      c_end = len;
    }
  }
  // 3. Merge. Loops at most twice: the second time after the exact threshold, which fits.
  //    (Grid mode, if not merged above: straight to the exact path, then once more.)
  bool exact = false;  // the threshold is exact (after the fallback): the list always fits
#pragma unroll 1
  for (bool first = true; !merged; first = false) {
    if (!(kGrid && first)) {
      bool counted = false;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      if (csize > 1 && first) {
        // Thread r stores this block's counts into block r's copy with st.async (its own
        // included), whose mbarrier counts them: no cluster barrier. Measured on an H100
        // against the stores and a cluster.sync() (radix_topk_bench, unsorted, two runs): f32
        // 64x65536 15.6-15.8 -> 15.1 us, 1x65536 9.9 -> 9.4, 8x131072 12.6 -> 12.1.
        // The block barrier: every thread's appends are in the list and G, E are final (the
        // cluster barrier's wait does not order this block's threads: all of them arrived at
        // the kernel's start).
        __syncthreads();
        if (!counts_sent) {
          asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
          if (tid < csize) {
            ::cuda::ptx::st_async(
                reinterpret_cast<std::uint64_t*>(cluster.map_shared_rank(s_counts, tid) + rank),
                (std::uint64_t(std::uint32_t(E)) << 32) | std::uint32_t(G),
                cluster.map_shared_rank(&s_count_bar, tid));
          }
        }
        detail::wait_cluster_stores(&s_count_bar);
        counted = true;
      }
#endif
      if (!counted) {
        if (tid < csize) {  // thread r: into block r's copy
          int2* dst = tid == rank ? s_counts : cluster.map_shared_rank(s_counts, tid);
          dst[rank] = make_int2(G, E);
        }
        csync();  // every block's list and counts are complete
      }
      // Every warp: the cluster's counts, lane r = block r (ties before it capped by cap_eq).
      int gb = 0, eb = 0;
      if (lane < csize) {
        const int2 t = s_counts[lane];
        gb = t.x;
        eb = t.y;
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
      // (counts_sent, the first time: block 0's list fits below `half`, block 1's above it.)
      const int fit = counts_sent && first ? (lane == 0 ? half : cap - half) : cap;
      const bool trunc = __any_sync(kAll, gb + (eb < cap_eq ? eb : cap_eq) > fit);
      const int offset = __reduce_add_sync(kAll, lane < rank ? kept : 0);
      const int my_room = __shfl_sync(kAll, room, rank);
      total = __reduce_add_sync(kAll, kept);
      const int reach = __reduce_add_sync(kAll, gb) + __reduce_add_sync(kAll, eb);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      if (counts_sent && first && rank == 0) {
        // Block 1 pushed its first histogram, and its list if it fit above `half`, in the
        // collect: block 0 waits for their bytes, whether it reads them (below) or takes the
        // exact path and reuses the memory.
        const int g1 = __shfl_sync(kAll, gb, 1);
        if (tid == 0) {
          (void)::cuda::ptx::mbarrier_arrive_expect_tx(
              ::cuda::ptx::sem_release, ::cuda::ptx::scope_cta, ::cuda::ptx::space_shared,
              &s_spec_bar, unsigned(g1 <= cap - half ? g1 : 0) * 8u + 1024u);
        }
        detail::wait_cluster_stores(&s_spec_bar);
      }
#endif
      if (exact || !(trunc || total > cap || reach < kk)) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if (counts_sent && first) {
          // Block 1's list follows block 0's own entries, which start at half - own0.
          if (rank != 0) return;
          const int own0 = __shfl_sync(kAll, kept, 0);  // block 0's entries
          lst = s_list + (half - own0);
          first_hist = true;
          hist_add = s_hist_in;
        } else if (csize > 1) {
          // The other blocks push their kept entries into block 0's list with st.async, whose
          // bytes block 0's mbarrier counts, and leave: no cluster barrier at the end. Measured
          // on an H100 (radix_topk_bench, unsorted): remote stores and a cluster.sync() took
          // 64x65536 f32 16.0 us (clusters of 2), 1x65536 10.7, 8x131072 13.4 (of 8); this
          // 15.5, 9.9, 12.6.
          const int own = __shfl_sync(kAll, kept, 0);  // block 0's kept entries
          if (rank != 0) {
            std::uint64_t* dst =
                reinterpret_cast<std::uint64_t*>(cluster.map_shared_rank(s_list, 0) + offset);
            std::uint64_t* bar = cluster.map_shared_rank(&s_list_bar, 0);
            const auto put = [&](int slot, uint2 entry) {
              ::cuda::ptx::st_async(dst + slot, (std::uint64_t(entry.y) << 32) | entry.x, bar);
            };
            const int n = G + (E < cap_eq ? E : cap_eq);
            if (E <= my_room) {  // every entry (always so in the fast form: E = 0)
              for (int i = tid; i < n; i += kT) put(i, s_list[i]);
            } else {
              compact_list<kT>(s_list, n, prefix, mask, my_room, scan_tmp, put);
            }
            if (kStage && staged_hist && !exact && tid < 256) {  // its first histogram's bins
              ::cuda::ptx::red_async(::cuda::ptx::op_add,
                                     cluster.map_shared_rank(&s_hist[0][tid], 0), s_hist[0][tid],
                                     bar);
            }
            return;
          }
          // The pushed histograms: 256 bins of 4 bytes from each other block.
          const bool hist_in = kStage && staged_hist && !exact;
          if (tid == 0) {  // block 0: the others' kept entries, 8 bytes each
            (void)::cuda::ptx::mbarrier_arrive_expect_tx(
                ::cuda::ptx::sem_release, ::cuda::ptx::scope_cta, ::cuda::ptx::space_shared,
                &s_list_bar,
                unsigned(total - own) * 8u + (hist_in ? unsigned(csize - 1) * 1024u : 0u));
          }
          detail::wait_cluster_stores(&s_list_bar);
          first_hist = hist_in;
        }
#endif
        break;
      }
    }
    // The sample misled (or ties crowd at T0): the exact threshold, by up to three histogram
    // passes over the chunk merged over the cluster (histograms in the list's memory), then
    // collect again.
    exact = true;
    int* hist = reinterpret_cast<int*>(s_list);  // [2][kBins]
    for (int b = tid; b < 2 * kBins; b += kT) hist[b] = 0;
    __syncthreads();
    prefix = 0;
    mask = 0;
    int want = kk;
#pragma unroll 1
    for (int pass = 0, buf = 0; pass < 3; ++pass, buf ^= 1) {
      const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
      const std::uint32_t dmask = pass == 2 ? 0x3ffu : 0x7ffu;
      int* h = hist + buf * kBins;
#pragma unroll 1
      for (int base = c_begin; base < c_end; base += kTile) {
        const int pos = base + kPer * tid;
        std::uint32_t w[kW];
        load_run(v, pos, c_end, aligned, w);  // (no prefetch: the rare path)
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const std::uint32_t key = key_of_bits(elem_bits<T>(w, i));
          if (pos + i < c_end && (key & mask) == prefix) {
            atomicAdd(&h[(key >> shift) & dmask], 1);
          }
        }
      }
      csync();
      pick_bucket2048<kT>(cluster, csize, rank, h, hist + (buf ^ 1) * kBins, want, scan_tmp, s_sel);
      prefix |= std::uint32_t(s_sel[0]) << shift;
      mask |= dmask << shift;
      want = s_sel[1];
      if (s_sel[2] == want) break;
    }
    cap_eq = want;
    csync();  // every block is done reading the others' histograms and counts
    load_first();
    collect(std::true_type{});
  }

  MOER_STREAM_STAMP(4);
  // 4. Block 0: the exact k-th key among the `total` candidates (index order), then output.
  //    Every candidate is >= T0 (the sampled bound, or the exact threshold whose candidates
  //    are exactly the kk chosen). First digit: the top 16 bits as an offset from T0's
  //    (clamped to 255: "far above"), then bits 15..8 and 7..0; should the k-th largest be far
  //    above T0, four 8-bit passes from the top instead.
  std::uint32_t fp = 0, fm = 0;
  int take = kk;  // candidates equal to the threshold (under fm) to take
  if (total > kk) {
    const std::uint32_t base16 = prefix >> 16;
    if (!first_hist) {
      for (int b = tid; b < 512; b += kT) (&s_hist[0][0])[b] = 0;
      __syncthreads();
      for (int i = tid; i < total; i += kT) {
        atomicAdd(&s_hist[0][top16_bin(s_list[i].x, base16)], 1);
      }
      __syncthreads();
    }
    // bf16 keys: all keys of one 16-bit bucket are the same number (a bf16's key has low bits
    // 0x0000, or 0xffff when negative; NaN is one key, 1), so the top 16 bits decide: no
    // passes over bits 15..0, which only piled every candidate into one bin twice. Measured on
    // an H100 (radix_topk_bench --quick, unsorted, two runs): bf16 1x262144 11.6 -> 10.1 us,
    // 64x65536 15.0 -> 13.4, 1024x8192 26.3 -> 22.4, 4096x16384 119.6 -> 106.8-107.4.
    select_top16<kT, sizeof(T) == 2 ? 2 : 4>(
        total, base16, [&](int i) { return key_of_bits(lst[i].x); }, s_hist, s_sel, fp, fm, take,
        hist_add);
  }
  MOER_STREAM_STAMP(5);
  if (!a.sorted) {
    compact_list<kT>(lst, total, fp, fm, take, scan_tmp, [&](int slot, uint2 entry) {
      out_idx[slot] = std::int32_t(entry.y);
      if (out_val) out_val[slot] = __uint_as_float(entry.x);
    });
    MOER_STREAM_STAMP(11);
    pad_from(kk);
    MOER_STREAM_STAMP(6);
    return;
  }
  std::uint32_t* s_sort_key = reinterpret_cast<std::uint32_t*>(s_list + cap);
  std::int32_t* s_sort_idx = reinterpret_cast<std::int32_t*>(s_sort_key + k);
  compact_list<kT>(lst, total, fp, fm, take, scan_tmp, [&](int slot, uint2 entry) {
    s_sort_key[slot] = key_of_bits(entry.x);
    s_sort_idx[slot] = std::int32_t(entry.y);
  });
  __syncthreads();  // the list is dead: its memory is the sort's scratch
  // k <= 1024: the bitonic network; k > 1024: CUB's block radix sort (faster there).
  unsigned long long* buf = reinterpret_cast<unsigned long long*>(s_list);
  if (k <= kT) {
    bitonic_output<1, kT>(buf, s_sort_key, s_sort_idx, kk, k, v, out_idx, out_val);
  } else if (k <= 2 * kT) {
    bitonic_output<2, kT>(buf, s_sort_key, s_sort_idx, kk, k, v, out_idx, out_val);
  } else if (k <= 4 * kT && k <= 1024) {
    if constexpr (kT == 256) {
      bitonic_output<4, kT>(buf, s_sort_key, s_sort_idx, kk, k, v, out_idx, out_val);
    }
  } else {
    constexpr int kN = kRadixMaxK / kT;
    using Sort = typename SortN<kN, kT>::TempStorage;
    static_assert(sizeof(Sort) <= std::size_t(stream_capacity(1025)) * 8, "sort scratch");
    sorted_output<kN, kT>(*reinterpret_cast<Sort*>(s_list), s_sort_key, s_sort_idx,
                          reinterpret_cast<int(*)[2]>(&s_hist[0][0]), kk, k, fp, v, out_idx,
                          out_val);
  }
}

}  // namespace kernels
}  // namespace moerouter
