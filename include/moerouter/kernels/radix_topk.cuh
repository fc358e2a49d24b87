// moerouter: the pieces of the large-k top-k (kernels/radix_topk_stream.cuh) that are not the
// kernel: its arguments and limits, order keys with NaN at 1, and the sorted output of the k
// chosen (key, index) pairs, by a bitonic network or by CUB's block radix sort.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_radix_sort.cuh>

#include "moerouter/detail/math.h"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Largest k of the radix top-k: the chosen pairs are sorted in one block's shared memory.
constexpr int kRadixMaxK = 2048;
/// Most blocks of one row's thread-block cluster (non-portable size; 8 is portable).
constexpr int kClusterMaxBlocks = 16;

struct RadixTopkArgs {
  const void* values;          ///< [n, length] f32 or bf16 (the kernel's T), row stride
  const std::int32_t* lengths; ///< optional [n], clamped to [0, length]
  std::int32_t* indices;       ///< out [n, k]
  float* out_values;           ///< optional out [n, k]
  std::int64_t n, length, values_stride, indices_stride, out_values_stride;
  int k;
  bool sorted;
  // Grid mode only (radix_topk_stream_kernel<T, kT, true>): the blocks of a row cooperate
  // through this workspace (layout: radix_stream_grid_* in radix_topk_stream.cuh) instead of a
  // cluster's shared memory.
  std::uint32_t* grid_ws;
  int grid_blocks;  ///< blocks per row
  int grid_slot;    ///< list entries a block may leave in the workspace
  /// Each block asks L2 for the rest of its chunk once it has its sample, so that the chunk
  /// streams from HBM while the block selects the bound (few blocks, rows that fit in L2).
  bool l2_prefetch;
  /// radix_topk_rows_kernel only: once its own row has arrived, a block asks L2 for row
  /// row + rows_ahead (the resident blocks: the row of the block that takes this one's place in
  /// the next wave); 0: none (topk_rows: fewer than two waves of rows).
  int rows_ahead;
  /// radix_topk_rows_kernel only: the sample's rank wanted and the distance between its runs
  /// for rows of a.length elements (from the host: the same for every such row); 0: computed.
  int rows_want, rows_step;
  /// radix_topk_stream_kernel<..., kStage> only: the tiles (1, 2 or 4) of every block's chunk
  /// where the host found every row's chunks staged (no per-row lengths, aligned rows of whole
  /// tiles split evenly over the cluster, the sample in registers): each block then issues its
  /// copies first thing; 0: the kernel decides per row, after the sample's loads.
  int stage_tiles;
  /// radix_topk_stream_kernel<..., kStage> only: where the chunk's copy starts in the dynamic
  /// shared memory (stream_stage_offset).
  unsigned stage_offset;
  /// radix_topk_stream_kernel<..., kStage> with stage_tiles: the distance between the sample's
  /// runs in a row of a.length elements (stream_sample_step of stream_stage_sample_runs).
  int stage_step;
};

namespace radix_detail {

/// Default threads of the sort helpers' block.
constexpr int kRadixThreads = 512;
/// Bins of an 11-bit radix digit.
constexpr int kBins = 2048;

/// Order key with NaN at 1 (detail::order_key gives it 0); 0 = no element.
__device__ __forceinline__ std::uint32_t key_of(float f) {
  const std::uint32_t k = moerouter::detail::order_key(f);
  return k == 0u ? 1u : k;
}

/// Valid elements of row `row`: a.lengths[row] clamped to [0, a.length], or a.length.
__device__ __forceinline__ int row_length(const RadixTopkArgs& a, std::int64_t row) {
  const std::int64_t len = a.lengths ? a.lengths[row] : a.length;
  return int(len < 0 ? 0 : (len > a.length ? a.length : len));  // a.length < 2^31
}

/// A row's output slots [first, k), thread `tid` of `threads`: index -1, value -inf.
__device__ __forceinline__ void pad_row(std::int32_t* out_idx, float* out_val, int first, int k,
                                        int tid, int threads) {
  for (int j = first + tid; j < k; j += threads) {
    out_idx[j] = -1;
    if (out_val) out_val[j] = -INFINITY;
  }
}

__device__ __forceinline__ float load_value(const float* v, std::int64_t i) { return v[i]; }
__device__ __forceinline__ float load_value(const bf16* v, std::int64_t i) {
  return moerouter::detail::bf16_to_float(v[i]);
}

template <int kN, int kThreads = kRadixThreads>
using SortN = cub::BlockRadixSort<std::uint32_t, kThreads, kN, std::int32_t>;

/// Sorted output by CUB's block radix sort: the `chosen` gathered (key, index) pairs in slot
/// (= index) order, kN per thread (k <= kN * kThreads), sorted by key descending and written to
/// out.
/// Keys relative to the prefix (every chosen key is >= it), so that only the bits where the
/// chosen keys differ are sorted. Padding (0) stays after the elements equal to the prefix: the
/// sort is stable and padding comes last in slot order.
template <int kN, int kThreads = kRadixThreads, typename T>
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

/// Sorted output by a bitonic network: the `chosen` gathered pairs as
/// unique 64-bit composites (key << 32 | ~index), so that descending composite order is key
/// descending, index ascending, a total order; padding (composite 0) sorts last. kN per thread
/// (element e = threadIdx.x + e' * kThreads); strides below 32 exchange by shuffles, up to
/// kThreads / 2 through `buf` (kN * kThreads words), larger within the thread.
template <int kN, int kThreads = kRadixThreads, typename T>
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

}  // namespace radix_detail

}  // namespace kernels
}  // namespace moerouter
