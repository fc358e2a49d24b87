// moerouter: warp-level selection helpers shared by the CUDA kernels (device code only).
//
// Ranking keys are packed into 64 bits, (order_key(value) << 32) | ~index, so that one unsigned
// comparison is math.h's ranks_before: larger value first, ties to the lower index, NaN below
// every number. A packed key is never 0 for index < 2^32 - 1, so 0 means "no entry".
#pragma once

#include <cstdint>

#include "moerouter/detail/math.h"

namespace moerouter {
namespace detail {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;
/// The largest k of the warp-resident top-k lists.
constexpr int kMaxWarpK = 32;

/// (key, index) as one 64-bit key: a larger key, or an equal key and a lower index, is larger.
__device__ __forceinline__ std::uint64_t pack_key_index(std::uint32_t key, std::uint32_t index) {
  return (std::uint64_t(key) << 32) | std::uint32_t(~index);
}

__device__ __forceinline__ std::uint64_t pack_rank_key(float v, std::uint32_t index) {
  return pack_key_index(order_key(v), index);
}

__device__ __forceinline__ std::uint32_t packed_index(std::uint64_t key) {
  return ~std::uint32_t(key);
}

__device__ __forceinline__ std::uint64_t shfl_u64(std::uint64_t v, int src) {
  const std::uint32_t lo = __shfl_sync(kFullMask, std::uint32_t(v), src);
  const std::uint32_t hi = __shfl_sync(kFullMask, std::uint32_t(v >> 32), src);
  return (std::uint64_t(hi) << 32) | lo;
}

/// s[0] + s[1] + ... + s[k - 1] from 0, left to right: detail::renormalize's order, so every
/// backend's weights agree bit for bit. The loads of eight go out before their additions
/// (adding the +0 past k changes no bit of the sum).
__device__ __forceinline__ float rank_order_sum(const float* s, int k) {
  float sum = 0.0f;
  for (int r0 = 0; r0 < k; r0 += 8) {
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = r0 + i < k ? s[r0 + i] : 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) sum += v[i];
  }
  return sum;
}

/// Writes slot j of output row `row` of a route: weight w and id (int64 or int32 by
/// a.ids_i64) at a's row strides (RouteTopkArgs, HashRouteArgs).
template <typename Args>
__device__ __forceinline__ void store_route_slot(const Args& a, std::int64_t row, int j,
                                                 std::int64_t id, float w) {
  a.weights[row * a.weights_stride + j] = w;
  if (a.ids_i64) {
    static_cast<std::int64_t*>(a.ids)[row * a.ids_stride + j] = id;
  } else {
    static_cast<std::int32_t*>(a.ids)[row * a.ids_stride + j] = std::int32_t(id);
  }
}

/// The warp's maximum of a 64-bit key: two single-instruction REDUX reductions.
__device__ __forceinline__ std::uint64_t warp_max_u64(std::uint64_t v) {
  const std::uint32_t hi = __reduce_max_sync(kFullMask, std::uint32_t(v >> 32));
  const std::uint32_t lo =
      __reduce_max_sync(kFullMask, std::uint32_t(v >> 32) == hi ? std::uint32_t(v) : 0u);
  return (std::uint64_t(hi) << 32) | lo;
}

__device__ __forceinline__ int lane_id() { return int(threadIdx.x) & (kWarpSize - 1); }

/// A warp's running top-k list (best first) in shared memory: the packed key and a payload.
struct WarpTopkList {
  std::uint64_t key[kMaxWarpK];
  float val[kMaxWarpK];
};

/// Merges a batch, at most one entry per lane (`has`, `key`, `val`), into `list`, which holds
/// `count` entries, keeping the best k <= 32. Keys must be distinct from each other and from
/// the list's (they are: they carry the element index). Warp-collective; `count` is
/// warp-uniform and updated. Every entry's new position is its rank among list + batch, so
/// the merge is a permutation computed in parallel, never a serial insertion.
__device__ __forceinline__ void warp_merge(WarpTopkList& list, int& count, int k, bool has,
                                           std::uint64_t key, float val) {
  const unsigned batch = __ballot_sync(kFullMask, has);
  if (batch == 0) return;
  const int lane = lane_id();
  const bool old = lane < count;
  const std::uint64_t old_key = old ? list.key[lane] : 0;
  const float old_val = old ? list.val[lane] : 0.0f;
  int rank = 0;         // the batch entry's rank among batch + list
  int old_rank = lane;  // the list entry's rank among batch + list
  for (unsigned m = batch; m != 0; m &= m - 1) {
    const std::uint64_t other = shfl_u64(key, __ffs(m) - 1);
    rank += other > key;
    old_rank += other > old_key;
  }
  if (has) {
    for (int j = 0; j < count; ++j) rank += list.key[j] > key;
  }
  __syncwarp();  // every lane has read the list before any lane rewrites it
  if (old && old_rank < k) {
    list.key[old_rank] = old_key;
    list.val[old_rank] = old_val;
  }
  if (has && rank < k) {
    list.key[rank] = key;
    list.val[rank] = val;
  }
  count = min(k, count + __popc(batch));
  __syncwarp();
}

/// Length of a lane's sorted list of packed keys (merge_top8).
constexpr int kTop8 = 8;

/// Orders a pair of packed keys descending (a >= b after): a compare and selects, no branch.
__device__ __forceinline__ void order_pair(std::uint64_t& a, std::uint64_t& b) {
  const bool swap = b > a;
  const std::uint64_t hi = swap ? b : a;
  b = swap ? a : b;
  a = hi;
}

/// Sorts a bitonic sequence of 8 descending: three layers of four compare-exchanges.
__device__ __forceinline__ void bitonic_clean8(std::uint64_t (&c)[kTop8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) order_pair(c[i], c[i + 4]);
#pragma unroll
  for (int i : {0, 1, 4, 5}) order_pair(c[i], c[i + 2]);
#pragma unroll
  for (int i = 0; i < 8; i += 2) order_pair(c[i], c[i + 1]);
}

/// l := the 8 largest of l and p, both sorted descending (0: no entry). max(l[i], p[7 - i])
/// is a bitonic sequence holding them, which bitonic_clean8 sorts.
__device__ __forceinline__ void merge_top8(std::uint64_t (&l)[kTop8],
                                           const std::uint64_t (&p)[kTop8]) {
#pragma unroll
  for (int i = 0; i < kTop8; ++i) l[i] = p[kTop8 - 1 - i] > l[i] ? p[kTop8 - 1 - i] : l[i];
  bitonic_clean8(l);
}

/// Sorts four packed keys descending (five compare-exchanges).
__device__ __forceinline__ void sort4(std::uint64_t (&q)[4]) {
  order_pair(q[0], q[1]);
  order_pair(q[2], q[3]);
  order_pair(q[0], q[2]);
  order_pair(q[1], q[3]);
  order_pair(q[1], q[2]);
}

}  // namespace detail
}  // namespace moerouter
