// moerouter: large-k top-k over short rows (at most kRowsMaxLen = 8192 elements), unsorted or
// sorted (k <= 1024): one block a row, the whole row in the block's shared memory (cuda::topk's
// choice for every such call; cuda::topk_rows forces it).
//
// The streaming kernel (radix_topk_stream.cuh) keeps each row in registers a tile at a time and
// its candidates as (value, index) pairs; for rows this short its per-row steps, repeated by
// every warp, cost more than the elements (Nsight Compute's source counters on an H100, f32
// 1024x8192, k = 512, 256 threads: 14.2 M warp instructions, per row ~3.9 k for the sample and
// its bound, ~3.9 k the collect, ~2.4 k the select, ~2.4 k the compaction). Here:
//   0. one bulk copy (TMA, cp.async.bulk) brings the row into shared memory (rows whose start
//      is 16-byte aligned; else, and for the last bytes, the threads' loads), NaN past its end;
//      once it has arrived, the block asks L2 for the row of the block that takes its place in
//      the next wave (where the rows make at least two waves);
//   1. meanwhile the sampled bound as the streaming kernel's register path (32 runs of 32
//      consecutive elements, or the whole row if it has at most 1024 elements, four a thread,
//      loaded from global memory before the bulk copy is issued);
//   2. each thread's `per` consecutive elements (8, 16 or 32, by the launch's length) compared
//      with T0 into a bit mask, its 16-byte vectors read in a rotated order so that the lanes
//      of a quarter warp meet distinct banks; one block scan of the masks' counts gives every
//      thread its place and the total, before anything is written (so the list never
//      overflows: with too many or too few candidates the bound is taken once more from the
//      sample at a scaled rank, then the exact path); the list (2k + 256 entries) holds only
//      indices (each candidate's order key takes its value's place in the row's copy), each
//      entry also counted into step 4's first histogram;
//   3. step 4 of the streaming kernel: the exact k-th key among the candidates, and the ordered
//      compaction, in ascending index order (sorted output: into shared memory, then the
//      bitonic network of kernels/radix_topk.cuh);
//   exact path (the sample misled twice, or T0 is no number): 8-bit radix passes over the whole
//   row's copy, then the ordered compaction of the row.
// Six unsorted blocks an SM for rows of 8192 f32 elements and k = 512 (five sorted); eight for
// bf16 rows and (kBlocks = 8, the host's kRowsEightMaxLen) f32 rows of at most 4096, sorted or
// not.
// Keys: radix_detail::key_of_bits (NaN at 1). Rows with fewer valid elements than k pad with
// index -1 and value -inf. No global workspace, no host sync.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cuda/ptx>
#include <type_traits>

#include "moerouter/kernels/radix_topk_stream.cuh"

namespace moerouter {
namespace kernels {

/// Threads of radix_topk_rows_kernel.
constexpr int kRowsThreads = 256;
/// Longest row of radix_topk_rows_kernel: 32 elements a thread (one 32-bit mask).
constexpr int kRowsMaxLen = kRowsThreads * 32;
/// Elements of the sample that bounds the threshold (4 a thread, in registers).
constexpr int kRowsSample = 4 * kRowsThreads;

/// Consecutive elements of a row a thread holds for rows of `length` (8, 16 or 32).
__host__ __device__ constexpr int rows_per_thread(std::int64_t length) {
  return length <= 8 * kRowsThreads ? 8 : length <= 16 * kRowsThreads ? 16 : 32;
}
/// Entries of the candidate list (16-bit indices): 2k + 256, or the row. The sampled bound
/// (rows_sample_want) expects k plus a few standard deviations; a row with more candidates (or
/// fewer than k) tries again at a scaled rank. Small, so that six blocks fit an H100's SM for
/// rows of 8192 f32 elements and k <= 592 (counted; measured at k = 512): 32 KB of row, the
/// list, 2.2 KB of static shared memory and 1 KB reserved, 38 KB each (the stream kernels'
/// 3k + 2048 left room for five).
__host__ __device__ constexpr int rows_list_entries(int k, std::int64_t length) {
  return std::int64_t(2 * k + 256) < length ? 2 * k + 256 : int(length);
}
/// Largest k of radix_topk_rows_kernel's sorted output (the bitonic network of kernels/
/// radix_topk.cuh, four pairs a thread).
constexpr int kRowsMaxSortedK = 4 * kRowsThreads;
/// Bytes of the row's copy in radix_topk_rows_kernel's shared memory; sorted output: at least
/// the bitonic network's k pairs of 8 bytes (the copy is dead by then).
__host__ __device__ constexpr std::size_t rows_copy_bytes(int k, std::int64_t length,
                                                          std::size_t esize, bool sorted) {
  const std::size_t copy = std::size_t(kRowsThreads) * std::size_t(rows_per_thread(length)) * esize;
  const int pairs = k <= kRowsThreads ? 1 : k <= 2 * kRowsThreads ? 2 : 4;  // a thread's
  const std::size_t net = sorted ? std::size_t(pairs) * kRowsThreads * 8 : 0;
  return copy > net ? copy : net;
}
/// Dynamic shared memory of radix_topk_rows_kernel: the row's copy (kRowsThreads *
/// rows_per_thread elements), then the list (2 bytes an entry); sorted output: then the k chosen
/// keys and indices.
__host__ __device__ constexpr std::size_t rows_smem_bytes(int k, std::int64_t length,
                                                          std::size_t esize, bool sorted = false) {
  return rows_copy_bytes(k, length, esize, sorted) +
         (std::size_t(rows_list_entries(k, length)) * 2 + 15) / 16 * 16 +
         (sorted ? std::size_t(k) * 8 : 0);
}

/// The rank wanted among the sampled keys of a row of len > kRowsSample elements: the sample's
/// share of k plus 2.5 standard deviations and 4 (a row the sample misleads tries again at
/// another rank). Measured on an H100 against 4 and 8, with the retry (radix_topk_bench --quick,
/// unsorted us, two runs each, one call): f32 1024x8192 22.1-22.2 -> 21.4-21.5, 4096x4096
/// 49.9-50.2 -> 49.0-49.1, bf16 1024x8192 16.3-16.5 -> 16.0; 3 and 4: 21.5-21.6, 2 and 4:
/// 22.3-22.4 (rows that try again, of 1024 at 1024x8192 and k = 512: 0-1 at rank 88 (2.5 and
/// 4), 3-5 at rank 84, ~60 at rank 76; one costs a launch ~1-2 us).
__host__ __device__ inline int rows_sample_want(int k, int len) {
  const float e = float(k) * float(kRowsSample) / float(len);
  const int m = int(ceilf(e + 2.5f * sqrtf(e) + 4.0f));
  return m < kRowsSample ? m : kRowsSample;
}

/// The sample's rank for a row's second bound, where the first (at rank `want`) left `total`
/// candidates, fewer than kk or more than cap: `want` scaled so that the count, were it
/// proportional to the rank, would land mid-way in [kk, cap]; clamped to [1, kRowsSample]
/// (the whole sample where none was counted).
__host__ __device__ constexpr int rows_retry_want(int want, int total, int kk, int cap) {
  const std::int64_t scaled =
      total > 0 ? std::int64_t(want) * ((kk + cap) / 2) / total : std::int64_t(kRowsSample);
  return scaled < 1 ? 1 : scaled > kRowsSample ? kRowsSample : int(scaled);
}

namespace radix_rows_detail {

/// Bit i set where element i of a thread's `per` consecutive elements in shared memory (raw
/// bits; per = 8, 16 or 32 and a whole number of 16-byte vectors) compares >= t0f. Its vectors
/// are read in an order rotated by lane, so that the lanes of a quarter warp meet distinct
/// banks. Measured on an H100 against bits set at fixed places by set.ge (an all-ones word
/// and'ed with each bit) and one rotate at the end (radix_topk_bench --quick, unsorted us, two
/// runs each, one call): f32 1024x8192 22.2 against 22.4, 8192x2048 82.8-82.9 against
/// 84.5-84.8, bf16 8192x2048 75.2-75.3 against 77.7-78.0.
template <typename T, typename Raw>
__device__ __forceinline__ std::uint32_t mask_at_least(const Raw* mine, int per, float t0f,
                                                       int lane) {
  using radix_stream_detail::elem_bits;
  constexpr int kVecElems = 16 / int(sizeof(T));  // elements of a 16-byte vector
  const int vecs = per / kVecElems;               // a power of two
  const uint4* vec = reinterpret_cast<const uint4*>(mine);
  std::uint32_t mask = 0;
#pragma unroll
  for (int j = 0; j < 32 / kVecElems; ++j) {
    if (j < vecs) {
      const int p = (j + lane) & (vecs - 1);
      const uint4 q = vec[p];
      const std::uint32_t w[4] = {q.x, q.y, q.z, q.w};
      std::uint32_t b = 0;
#pragma unroll
      for (int e = 0; e < kVecElems; ++e) {
        b |= std::uint32_t(__uint_as_float(elem_bits<T>(w, e)) >= t0f) << e;
      }
      mask |= b << (p * kVecElems);
    }
  }
  return mask;
}

}  // namespace radix_rows_detail

/// Grid: n blocks of kRowsThreads, dynamic shared memory rows_smem_bytes(k, length, sizeof(T),
/// kSorted); length <= kRowsMaxLen; kSorted (k <= kRowsMaxSortedK): rank order, else ascending
/// index order (a.sorted is not read). Unsorted: six blocks an SM (40 registers, no spills; the
/// list and the scans' storage as small as rows_list_entries says). Measured on an H100 against
/// five (48 registers, the stream kernels' list, the scans' storage apart; radix_topk_bench
/// --quick, unsorted us, two runs each, one call): f32 1024x8192 21.3-21.5 -> 20.6-20.7,
/// 4096x4096 48.9-49.2 -> 46.9, 8192x2048 82.6-83.1 -> 78.2-80.4; bf16 1024x8192 15.8-15.9 ->
/// 15.4-15.5, 8192x2048 75.4-75.6 -> 70.7-71.1; sorted the same. CUB's warp-scans algorithm
/// instead of raking (a smaller storage apart) was slower: 8192x2048 84.9-86.5. Sorted: five
/// (48 registers, no spills; k = 512 at 8192 elements) against four (55 registers; sorted us,
/// two runs each, one call): f32 1024x8192 34.3-34.4 -> 33.5, 4096x4096 107.3-107.4 -> 103.0,
/// 8192x2048 198.7-199.3 -> 189.5-190.4; bf16 8192x2048 189.5-190.3 -> 182.5-183.1. bf16
/// unsorted: eight (32 registers, no spills; a row of 8192 is a 16 KB copy), so that 1024 rows
/// make one wave, against six (unsorted us, two runs each, one call): 1024x8192 15.4-15.5 ->
/// 14.6-14.8, 4096x4096 41.2-41.3 -> 39.3-39.6, 8192x2048 70.6-70.7 -> 67.2-67.6. f32 at eight
/// too (32 registers, no spills; rows of 8192 stay at six, by shared memory): 4096x4096
/// 46.9-47.2 -> 45.0-45.1, 8192x2048 77.9-78.1 -> 72.5, but 1024x8192 19.7-19.9 -> 19.9; so
/// f32 rows of at most 4096 take eight, sorted too (kBlocks = 8, instantiations of their own:
/// the host's kRowsEightMaxLen, which has the measurements), and bf16 rows eight sorted as
/// well (measured there too). kBlocks: the blocks an SM of __launch_bounds__ (0: bf16 eight,
/// f32 six unsorted and five sorted).
template <typename T, bool kSorted, int kBlocks>
constexpr int rows_blocks_per_sm() {
  return kBlocks > 0 ? kBlocks : sizeof(T) == 2 ? 8 : (kSorted ? 5 : 6);
}
template <typename T, bool kSorted = false, int kBlocks = 0>
__global__ void __launch_bounds__(kRowsThreads, rows_blocks_per_sm<T, kSorted, kBlocks>())
    radix_topk_rows_kernel(RadixTopkArgs a) {
  using namespace radix_detail;
  using namespace radix_stream_detail;
  constexpr int kT = kRowsThreads;
  // The select's and the compaction's batch (radix_passes, compact_by): four entries a thread
  // where registers allow (at eight blocks an SM, 32 registers, it spilled 36-96 bytes; those
  // kernels keep the loops, their code unchanged).
  constexpr int kBatch = rows_blocks_per_sm<T, kSorted, kBlocks>() >= 8 ? 1 : kCompactBatch;
  // Raw element bits in the row's copy; float bits of raw r: fbits(r).
  using Raw = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint16_t>;
  constexpr Raw kNaN = sizeof(T) == 4 ? Raw(0x7fffffffu) : Raw(0x7fffu);
  auto fbits = [](Raw r) -> std::uint32_t {
    return sizeof(T) == 4 ? std::uint32_t(r) : std::uint32_t(r) << 16;
  };

  extern __shared__ __align__(16) unsigned char rows_smem[];
  // The two 256-bin histograms; the block scans' storage overlaps the second (free whenever a
  // scan runs: the bound's picks and the select's first zeroes it before its use).
  struct HistAndScan {
    int h0[256];
    typename Scan<kRowsThreads>::TempStorage scan;
  };
  __shared__ union {
    int hist[2][256];
    HistAndScan hs;
  } s_u;
  int(*s_hist)[256] = s_u.hist;
  typename Scan<kRowsThreads>::TempStorage& scan_tmp = s_u.hs.scan;
  __shared__ int s_sel[3];
  __shared__ __align__(8) std::uint64_t s_bar;

  const std::int64_t row = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const Raw* v = static_cast<const Raw*>(a.values) + row * a.values_stride;
  const int len = row_length(a, row);
  const int k = a.k;
  const int kk = len < k ? len : k;  // elements to choose
  std::int32_t* out_idx = a.indices + row * a.indices_stride;
  float* out_val = a.out_values ? a.out_values + row * a.out_values_stride : nullptr;
  auto pad_from = [&](int first) { pad_row(out_idx, out_val, first, k, tid, kT); };
  if (kk == 0) {
    pad_from(0);
    return;
  }

  // 0. The row into shared memory: thread t's elements are [per t, per (t + 1)).
  const int per = rows_per_thread(a.length);  // the copy's layout is the launch's
  Raw* s_row = reinterpret_cast<Raw*>(rows_smem);
  const std::size_t copy_bytes = rows_copy_bytes(k, a.length, sizeof(T), kSorted);
  std::uint16_t* s_list = reinterpret_cast<std::uint16_t*>(rows_smem + copy_bytes);
  // Sorted output: the chosen keys and indices, after the list.
  std::uint32_t* s_sort_key = reinterpret_cast<std::uint32_t*>(
      rows_smem + copy_bytes + (std::size_t(rows_list_entries(k, a.length)) * 2 + 15) / 16 * 16);
  std::int32_t* s_sort_idx = reinterpret_cast<std::int32_t*>(s_sort_key + k);
  // The sample's positions (-1: none): every element of a short row, else 32 runs of 32
  // consecutive elements spread over the row (warp w takes runs w, w + 8, ...: a lane an
  // element), and the rank wanted among them.
  int spos[4];
  int want = kk;
  int step = 0;
  if (len <= kRowsSample) {
#pragma unroll
    for (int j = 0; j < 4; ++j) spos[j] = j * kT + tid < len ? j * kT + tid : -1;
  } else {
    if (len == a.length && a.rows_want > 0) {  // the host's, for rows of the launch's length
      want = a.rows_want;
      step = a.rows_step;
    } else {
      want = rows_sample_want(k, len);
      step = stream_sample_step(2, len);  // 16 * 2 runs
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) spos[j] = stream_sample_run_at(warp + 8 * j, step) + lane;
  }
  // The sample from global memory, its loads issued before the bulk copy: the bound is found
  // while the row arrives. Measured on an H100 against the sample read from the row's copy
  // after it arrived (radix_topk_bench --quick, unsorted us, two runs each, one call): f32
  // 1024x8192 22.8-23.0 -> 22.2-22.3, 4096x4096 53.3 -> 50.7, bf16 1024x8192 17.8-18.0 -> 16.2.
  const T* vt = static_cast<const T*>(a.values) + row * a.values_stride;
  std::uint32_t sbits[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) sbits[j] = spos[j] >= 0 ? bits_at(vt, spos[j]) : 0u;
  const bool aligned = (reinterpret_cast<std::uintptr_t>(v) & 15u) == 0;
  const int bulk = aligned ? (len * int(sizeof(T))) & ~15 : 0;  // bytes of the bulk copy
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (tid == 0 && bulk > 0) {
    ::cuda::ptx::mbarrier_init(&s_bar, 1);
    ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);  // the init, seen by the copy
    (void)::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                                 ::cuda::ptx::space_shared, &s_bar, unsigned(bulk));
    ::cuda::ptx::cp_async_bulk(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, s_row, v,
                               unsigned(bulk), &s_bar);
  }
#endif
  // The rest of the row (all of it where unaligned), then NaN (no float compare takes it).
  const int copied = bulk / int(sizeof(T));
#pragma unroll 4
  for (int i = copied + tid; i < kT * per; i += kT) s_row[i] = i < len ? __ldg(v + i) : kNaN;
  s_hist[0][tid] = 0;  // kT = 256 bins
  s_hist[1][tid] = 0;
  __syncthreads();  // the barrier's init, the threads' part of the row, the histograms
  // 1. The sampled bound T0 (while the bulk copy flies).
  std::uint32_t t0;
  {
    std::uint32_t sk[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) sk[j] = spos[j] >= 0 ? key_of_bits(sbits[j]) : 0u;
    t0 = sampled_bound(sk, want, s_hist, s_sel);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (bulk > 0) {
    while (!::cuda::ptx::mbarrier_try_wait_parity(&s_bar, 0u)) {
    }
  }
  // The next wave's row into L2 while this block selects (issued after this block's own row
  // has arrived, so that the first wave's rows are not delayed by the prefetches).
  if (tid == 0 && a.rows_ahead > 0 && row + a.rows_ahead < a.n) {
    const Raw* next = v + a.rows_ahead * a.values_stride;
    const std::uint32_t bytes = std::uint32_t(a.length * std::int64_t(sizeof(T))) & ~15u;
    if ((reinterpret_cast<std::uintptr_t>(next) & 15u) == 0 && bytes != 0) {
      prefetch_l2(next, bytes);
    }
  }
#endif
  s_hist[0][tid] = 0;  // step 4's first histogram (the bound's picks read it before a barrier)

  // 2. This thread's elements >= T0 as a mask (bit i: element per * tid + i), their count.
  bool fast = t0 >= 0x00800000u;  // T0 is a number or an infinity
  const float t0f = float_of_key(t0);
  std::uint32_t mask =
      fast ? radix_rows_detail::mask_at_least<T>(s_row + tid * per, per, t0f, lane) : 0u;
  int off = 0, total = 0;
  Scan<kT>(scan_tmp).ExclusiveSum(__popc(mask), off, total);
  const int cap = rows_list_entries(k, a.length);
  const auto emit = [&](int slot, uint2 entry) {
    if constexpr (kSorted) {
      s_sort_key[slot] = key_of_bits(entry.x);
      s_sort_idx[slot] = std::int32_t(entry.y);
    } else {
      out_idx[slot] = std::int32_t(entry.y);
      if (out_val) out_val[slot] = __uint_as_float(entry.x);
    }
  };
  std::uint32_t fp = 0, fm = 0;
  int take = kk;  // keys equal to the threshold (under fm) to take
  constexpr int kPasses = sizeof(T) == 2 ? 2 : 4;
  // The sample misled a row longer than it (fewer than kk or more than cap candidates): once
  // more before the exact path, at the rank of the sample that scales this count to the middle
  // of [kk, cap] (the sample read from the row's copy). The exact path's passes over a whole row
  // of 8192 cost its block ~10 us on an H100: one such row in 1024 made the launch take 30-37 us
  // instead of 20; with the retry 19-20.
  if (fast && (total > cap || total < kk) && len > kRowsSample) {
    want = rows_retry_want(want, total, kk, cap);
    __syncthreads();  // the scan's storage (over s_hist[1]) read
    s_hist[1][tid] = 0;
    __syncthreads();  // both histograms zero
    std::uint32_t sk[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      sk[j] = key_of_bits(fbits(s_row[stream_sample_run_at(warp + 8 * j, step) + lane]));
    }
    t0 = sampled_bound(sk, want, s_hist, s_sel);
    s_hist[0][tid] = 0;
    fast = t0 >= 0x00800000u;
    mask = fast
               ? radix_rows_detail::mask_at_least<T>(s_row + tid * per, per, float_of_key(t0), lane)
               : 0u;
    Scan<kT>(scan_tmp).ExclusiveSum(__popc(mask), off, total);
  }
  if (fast && total <= cap && total >= kk) {
    // The list in index order (threads in order, each its bits in order), and step 4's first
    // histogram: each key's top 16 bits as an offset from T0's. Each candidate's order key
    // replaces its value in the row's copy (bf16: the key's top 16 bits; the rest are zero), so
    // that the select and the compaction read keys. Measured on an H100 against the values left
    // there (radix_topk_bench --quick, us, two runs each, one call): sorted f32 8192x2048
    // 202.6-202.9 -> 199.2-199.3, 4096x4096 110.0 -> 108.4-108.9, 1024x8192 35.4 -> 35.0-35.1;
    // unsorted f32 the same (1024x8192 22.0-22.1), bf16 1024x8192 16.6-16.7 -> 16.3-16.4.
    const std::uint32_t base16 = t0 >> 16;
    const auto key_at = [&](int i) { return fbits(s_row[s_list[i]]); };
    int o = off;
    while (mask != 0u) {
      const int i = __ffs(mask) - 1;
      mask &= mask - 1u;
      const int idx = tid * per + i;
      s_list[o++] = std::uint16_t(idx);
      const std::uint32_t key = key_of_number(fbits(s_row[idx]));
      s_row[idx] = Raw(sizeof(T) == 4 ? key : key >> 16);
      atomicAdd(&s_hist[0][top16_bin_of_key(key, base16)], 1);
    }
    __syncthreads();
    // 3. The exact k-th key among the candidates, then the ordered compaction.
    if (total > kk) {
      select_top16<kT, kPasses, kBatch>(total, base16, key_at, s_hist, s_sel, fp, fm, take);
    }
    compact_by<kT, kBatch>(
        total,
        [&](int i) {
          const std::uint32_t x = s_list[i];
          return make_uint2(fbits(s_row[x]), x);
        },
        [](std::uint32_t key) { return key; }, fp, fm, take, scan_tmp,
        [&](int slot, uint2 entry) {  // entry.x: the key
          if constexpr (kSorted) {
            s_sort_key[slot] = entry.x;
            s_sort_idx[slot] = std::int32_t(entry.y);
          } else {
            out_idx[slot] = std::int32_t(entry.y);
            if (out_val) {
              // The value's bits from its key (a number's), but a zero's sign from the row: both
              // zeros have +0's key.
              const std::uint32_t b = entry.x & 0x80000000u ? entry.x & 0x7fffffffu : ~entry.x;
              out_val[slot] =
                  __uint_as_float(entry.x == 0x80000000u ? bits_at(vt, int(entry.y))
                                                         : (sizeof(T) == 4 ? b : b & 0xffff0000u));
            }
          }
        });
  } else {
    // Exact path: 8-bit passes from the top over the whole row (s_hist[0] is zero and a barrier
    // has passed since), then the row's ordered compaction.
    radix_passes<kT, kPasses, 1>(
        len, 0, 0, [&](int i) { return key_of_bits(fbits(s_row[i])); }, s_hist, s_sel, fp, fm,
        take);
    compact_by<kT, kBatch>(
        len, [&](int i) { return make_uint2(fbits(s_row[i]), std::uint32_t(i)); },
        [](std::uint32_t b) { return key_of_bits(b); }, fp, fm, take, scan_tmp, emit);
  }
  if constexpr (kSorted) {
    // The kk chosen pairs sorted by the bitonic network (padding past kk), its exchanges in the
    // row's copy (dead now; the values come from global memory).
    __syncthreads();
    unsigned long long* net = reinterpret_cast<unsigned long long*>(rows_smem);
    if (k <= kT) {
      bitonic_output<1, kT>(net, s_sort_key, s_sort_idx, kk, k, vt, out_idx, out_val);
    } else if (k <= 2 * kT) {
      bitonic_output<2, kT>(net, s_sort_key, s_sort_idx, kk, k, vt, out_idx, out_val);
    } else {
      bitonic_output<4, kT>(net, s_sort_key, s_sort_idx, kk, k, vt, out_idx, out_val);
    }
  } else {
    pad_from(kk);
  }
}

}  // namespace kernels
}  // namespace moerouter
