// moerouter: top-k for large k (the sparse-attention indexer's: k = 512 / 1024 / 2048 over rows
// up to 262144 and beyond) by radix select, one block per row.
//
// 1. Four histogram passes over the row's 32-bit order keys (detail::order_key: larger key =
//    ranks first, NaN lowest), 8 bits each from the top, find the key T of the k-th ranked
//    element and how many elements equal to T belong in the top k (the rest of the top k is
//    every key > T).
// 2. One ordered compaction pass (block-wide scans, in index order) writes the chosen elements:
//    every key > T and the lowest-index elements with key == T, so ties go to the lower index.
//    The result lands in index order, which is the "unsorted" output: deterministic and cheap.
// 3. Sorted output: the k chosen (key, index) pairs are sorted in shared memory by CUB's block
//    radix sort on (key descending, index ascending).
// Rows with fewer valid elements than k pad with index -1 and value -inf.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include "moerouter/detail/math.h"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Threads of a radix top-k block.
constexpr int kRadixThreads = 1024;
/// Largest k of the radix top-k: the chosen pairs are sorted in shared memory by one block
/// (kRadixThreads threads x kRadixItems items).
constexpr int kRadixItems = 2;
constexpr int kRadixMaxK = kRadixThreads * kRadixItems;

struct RadixTopkArgs {
  const void* values;          ///< [n, length] f32 or bf16 (the kernel's T), row stride
  const std::int32_t* lengths; ///< optional [n], clamped to [0, length]
  std::int32_t* indices;       ///< out [n, k]
  float* out_values;           ///< optional out [n, k]
  std::int64_t n, length, values_stride, indices_stride, out_values_stride;
  int k;
  bool sorted;
};

namespace radix_detail {

__device__ __forceinline__ float load(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const bf16* p, std::int64_t i) {
  return moerouter::detail::bf16_to_float(p[i]);
}

}  // namespace radix_detail

template <typename T>
__global__ void __launch_bounds__(kRadixThreads, 1) radix_topk_kernel(RadixTopkArgs a) {
  using Scan = cub::BlockScan<int, kRadixThreads>;
  using Sort = cub::BlockRadixSort<std::uint64_t, kRadixThreads, kRadixItems>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Sort::TempStorage sort;
  } temp;
  __shared__ int hist[256];
  __shared__ std::uint32_t s_prefix, s_mask;
  __shared__ int s_remaining;   // elements equal to the threshold still to take
  __shared__ int s_gt_base;     // output slots taken so far by the ordered compaction
  __shared__ int s_eq_base;     // threshold-equal elements seen so far
  __shared__ std::uint32_t s_keys[kRadixMaxK];
  __shared__ std::int32_t s_idx[kRadixMaxK];

  const std::int64_t row = blockIdx.x;
  const T* v = static_cast<const T*>(a.values) + row * a.values_stride;
  std::int64_t len = a.lengths ? a.lengths[row] : a.length;
  len = len < 0 ? 0 : (len > a.length ? a.length : len);
  const int k = a.k;
  const int tid = threadIdx.x;
  const bool take_all = len <= k;

  // 1. The threshold key T: after the passes, s_prefix = T, s_remaining = how many of the
  //    elements equal to T are in the top k.
  if (tid == 0) {
    s_prefix = 0;
    s_mask = 0;
    s_remaining = k;
  }
  __syncthreads();
  if (!take_all) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += kRadixThreads) hist[b] = 0;
      __syncthreads();
      const std::uint32_t prefix = s_prefix, mask = s_mask;
      for (std::int64_t i = tid; i < len; i += kRadixThreads) {
        const std::uint32_t key = moerouter::detail::order_key(radix_detail::load(v, i));
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
      }
      __syncthreads();
      if (tid == 0) {
        // The bucket, from the top, where the running count reaches the remaining rank.
        int cum = 0, remaining = s_remaining, b = 255;
        for (; b > 0; --b) {
          if (cum + hist[b] >= remaining) break;
          cum += hist[b];
        }
        s_remaining = remaining - cum;
        s_prefix = prefix | (std::uint32_t(b) << shift);
        s_mask = mask | (255u << shift);
      }
      __syncthreads();
    }
  }
  const std::uint32_t threshold = s_prefix;

  // 2. Ordered compaction: chunks of kRadixThreads elements in index order; a block-wide scan
  //    of the "equal to T" flags decides which ties are taken (the lowest indices), a second
  //    one gives each chosen element its slot.
  if (tid == 0) {
    s_gt_base = 0;
    s_eq_base = 0;
  }
  __syncthreads();
  for (std::int64_t base = 0; base < len; base += kRadixThreads) {
    const std::int64_t i = base + tid;
    std::uint32_t key = 0;
    int gt = 0, eq = 0;
    if (i < len) {
      key = moerouter::detail::order_key(radix_detail::load(v, i));
      gt = take_all || key > threshold;
      eq = !take_all && key == threshold;
    }
    int eq_rank, eq_total;
    Scan(temp.scan).ExclusiveSum(eq, eq_rank, eq_total);
    const int take = gt || (eq && s_eq_base + eq_rank < s_remaining);
    __syncthreads();
    int slot, taken;
    Scan(temp.scan).ExclusiveSum(take, slot, taken);
    if (take) {
      s_keys[s_gt_base + slot] = key;
      s_idx[s_gt_base + slot] = static_cast<std::int32_t>(i);
    }
    __syncthreads();
    if (tid == 0) {
      s_gt_base += taken;
      s_eq_base += eq_total;
    }
    __syncthreads();
    if (s_gt_base >= k) break;  // every later element ranks below the k chosen
  }
  const int chosen = s_gt_base;  // min(k, len)

  // 3. Sorted: (key desc, index asc) as one 64-bit key (key, ~index) sorted descending. Every
  //    real element's key is > 0 (its low half ~index >= 2^31), so the padding 0 sorts last.
  if (a.sorted) {
    std::uint64_t items[kRadixItems];
#pragma unroll
    for (int j = 0; j < kRadixItems; ++j) {
      const int s = tid * kRadixItems + j;
      items[j] = s < chosen ? (std::uint64_t(s_keys[s]) << 32) | (~std::uint32_t(s_idx[s])) : 0ull;
    }
    __syncthreads();
    Sort(temp.sort).SortDescending(items);
#pragma unroll
    for (int j = 0; j < kRadixItems; ++j) {
      const int s = tid * kRadixItems + j;
      if (s < chosen) {
        s_idx[s] = static_cast<std::int32_t>(~std::uint32_t(items[j]));
      }
    }
    __syncthreads();
  }

  std::int32_t* out_idx = a.indices + row * a.indices_stride;
  float* out_val = a.out_values ? a.out_values + row * a.out_values_stride : nullptr;
  for (int j = tid; j < k; j += kRadixThreads) {
    const bool valid = j < chosen;
    const std::int32_t idx = valid ? s_idx[j] : -1;
    out_idx[j] = idx;
    if (out_val) out_val[j] = valid ? radix_detail::load(v, idx) : -INFINITY;
  }
}

}  // namespace kernels
}  // namespace moerouter
