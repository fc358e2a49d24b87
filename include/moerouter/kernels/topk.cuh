// moerouter: the top-k primitive for k <= 32 over rows of any length.
//
// Values are ranked by packed (order_key(value), ~index) keys: descending, ties to the lower
// index, NaN below every number. Each row is read twice:
//   pass 1  every thread takes the maximum key of its elements; each warp's k-th largest lane
//           maximum (k REDUX rounds) is a key that at least k elements of the row reach, so the
//           largest of them over the row's warps is a threshold T below the row's k-th key.
//   pass 2  the elements with key >= T (usually few more than k) are merged, 32 at a time, into
//           the warp's running top-k by a parallel rank merge; T rises to the list's k-th key
//           once it is full. With kWarps > 1, warp 0 then merges the other warps' lists.
// kWarps = 1: one warp per row (4 rows per block), for short rows; kWarps = 16: one 512-thread
// block per row, for long rows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Threads per block of topk_kernel.
constexpr int kTopkThreadsShort = 128;  // kWarps = 1: 4 rows per block
constexpr int kTopkThreadsLong = 512;   // kWarps = 16: 1 row per block

/// Resolved arguments of topk_kernel.
struct TopkArgs {
  const void* values;          ///< [n, length] f32 or bf16 (the kernel's T), row stride
  const std::int32_t* lengths; ///< optional [n]
  std::int32_t* indices;       ///< out [n, k]
  float* out_values;           ///< optional out [n, k]
  std::int64_t n;
  std::int64_t length;
  std::int64_t values_stride;
  std::int64_t indices_stride;
  std::int64_t out_values_stride;
  int k;                       ///< 1..32
};

namespace topk_detail {

template <typename T>
__device__ __forceinline__ float load_value(const T* p, std::int64_t i);
template <>
__device__ __forceinline__ float load_value<float>(const float* p, std::int64_t i) {
  return __ldg(p + i);
}
template <>
__device__ __forceinline__ float load_value<bf16>(const bf16* p, std::int64_t i) {
  return detail::bf16_bits_to_float(__ldg(reinterpret_cast<const unsigned short*>(p) + i));
}

}  // namespace topk_detail

template <typename T, int kWarps>
__global__ void __launch_bounds__(kWarps == 1 ? kTopkThreadsShort : kTopkThreadsLong)
    topk_kernel(const TopkArgs a) {
  constexpr int kBlockThreads = kWarps == 1 ? kTopkThreadsShort : kTopkThreadsLong;
  constexpr int kListsPerBlock = kBlockThreads / detail::kWarpSize;
  constexpr int kRowThreads = kWarps * detail::kWarpSize;
  __shared__ detail::WarpTopkList lists[kListsPerBlock];
  __shared__ std::uint64_t s_thr[kListsPerBlock];
  __shared__ int s_count[kListsPerBlock];

  const int lane = detail::lane_id();
  const int warp = int(threadIdx.x) / detail::kWarpSize;
  const std::int64_t row = kWarps == 1 ? std::int64_t(blockIdx.x) * kListsPerBlock + warp
                                       : std::int64_t(blockIdx.x);
  if (row >= a.n) return;  // whole warps (kWarps = 1) or the whole block (kWarps > 1)
  const int t = kWarps == 1 ? lane : int(threadIdx.x);
  const int row_warp = kWarps == 1 ? 0 : warp;
  std::int64_t len = a.length;
  if (a.lengths != nullptr) len = min(max(std::int64_t(a.lengths[row]), std::int64_t(0)), a.length);
  const T* vrow = static_cast<const T*>(a.values) + row * a.values_stride;

  // Pass 1: per-thread maximum, then this warp's k-th largest lane maximum.
  std::uint64_t mine = 0;
  for (std::int64_t i = t; i < len; i += kRowThreads) {
    const std::uint64_t key =
        detail::pack_rank_key(topk_detail::load_value(vrow, i), std::uint32_t(i));
    mine = key > mine ? key : mine;
  }
  std::uint64_t thr = 0;
  for (int r = 0; r < a.k; ++r) {
    thr = detail::warp_max_u64(mine);
    if (mine == thr) mine = 0;
  }
  if (kWarps > 1) {
    if (lane == 0) s_thr[warp] = thr;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) thr = s_thr[w] > thr ? s_thr[w] : thr;
  }

  // Pass 2: merge the candidates (key >= thr; thr = 0 admits all) into the warp's list.
  detail::WarpTopkList& list = lists[warp];
  int count = 0;
  for (std::int64_t base = std::int64_t(row_warp) * detail::kWarpSize; base < len;
       base += kRowThreads) {
    const std::int64_t i = base + lane;
    bool has = false;
    float v = 0.0f;
    std::uint64_t key = 0;
    if (i < len) {
      v = topk_detail::load_value(vrow, i);
      key = detail::pack_rank_key(v, std::uint32_t(i));
      has = key >= thr;
    }
    detail::warp_merge(list, count, a.k, has, key, v);
    if (count == a.k && list.key[a.k - 1] > thr) thr = list.key[a.k - 1];
  }

  if (kWarps > 1) {
    if (lane == 0) s_count[warp] = count;
    __syncthreads();
    if (warp != 0) return;
    for (int w = 1; w < kWarps; ++w) {
      const bool has = lane < s_count[w];
      detail::warp_merge(list, count, a.k, has, has ? lists[w].key[lane] : 0,
                         has ? lists[w].val[lane] : 0.0f);
    }
  }

  if (lane < a.k) {
    const bool valid = lane < count;
    a.indices[row * a.indices_stride + lane] =
        valid ? std::int32_t(detail::packed_index(list.key[lane])) : -1;
    if (a.out_values != nullptr) {
      a.out_values[row * a.out_values_stride + lane] = valid ? list.val[lane] : -INFINITY;
    }
  }
}

}  // namespace kernels
}  // namespace moerouter
