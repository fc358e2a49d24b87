// moerouter: the fused dense route from logits, one warp per row (E <= 1024, k <= 32):
// sqrt-softplus, + bias, top-k, gather of the unbiased score, renormalize, scale.
//
// Exactness. The ids and weights are those of the exact fp32 math of detail/math.h (the CPU
// backend's, bit for bit). Evaluating that math for all E experts costs ~70 instructions per
// element, more than the memory time of a large batch, so the kernel evaluates it only for a
// few candidates that provably contain the top k, found by the first level that applies:
//   1. Logit filter (2 instructions per expert). The score s = sqrt(softplus(logit)) grows
//      with the logit, and the bias only moves keys within [b_lo, b_hi]. With t = the k-th
//      largest of the 32 lane maxima of the logits (k rounds of a REDUX max), k experts have
//      logit >= t, so the row's k-th key is >= s(t) + b_lo, and an expert whose logit is below
//      s^-1(s(t) - (b_hi - b_lo)) cannot reach it. Applies when the bias range is small
//      against the scores (DSV4's bias is nearly uniform) and leaves at most 32 candidates.
//   2. Approximate keys. Each lane computes ka = s~ + bias from the MUFU ex2/lg2/sqrt
//      approximations, whose error against the exact fp32 s is bounded by
//      |s~ - s| <= kApproxRel * s~ + kApproxAbs for every float input (checked exhaustively
//      over all 2^32 floats by tests/gpu/route_topk_test.cu). With T = the k-th largest lane
//      maximum of ka and D bounding |exact key - ka| over the row, every expert of the exact
//      top k has ka >= T - 2D, so the candidates {ka >= T - 3D} hold it.
//   3. Otherwise (NaN/inf, huge values, more than 32 candidates such as many exact ties):
//      every expert, 32 at a time, merged into a running top-k list. Slower, same results.
// Levels 1 and 2 move the (usually k plus a few) candidates to one lane each, compute their
// exact keys and select the k best by k rounds of a warp max (equal keys: the lower expert).
//
// Three kernels run this method (route_row): route_topk_kernel for large batches, its kSmall
// variant for small ones, where one row's chain of latencies is the time, and the decode
// kernel (route_gemm.cuh). Small DSV4 batches take route_topk_rowwide_kernel instead (a block
// per row, a thread per expert: every exact key at once, no filter, the shortest chain).
// Levels 1 and 2 and the block-per-row kernel evaluate the exact score with
// detail::sqrt_softplus_nobranch (exact_math.cuh: math.h's bits without branches, so several
// evaluations overlap); level 3, the rare path, with math.h's form.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "moerouter/detail/exact_math.cuh"
#include "moerouter/detail/math.h"
#include "moerouter/detail/pdl.cuh"
#include "moerouter/detail/ptx_approx.cuh"
#include "moerouter/detail/timer.cuh"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Warps (rows in flight) per block of the fused route.
constexpr int kRouteWarps = 4;
/// k of the DSV4 fast path (route_topk_kernel's kDsv4).
constexpr int kDsv4K = 6;
/// Blocks per SM that route_topk_kernel's register budget allows at least (64 registers;
/// on an H100, 8 blocks and 7 measured alike, and unbounded took 96 registers and 5 blocks).
constexpr int kRouteMinBlocks = 8;
/// The same for route_topk_kernel's kSmall variant, which holds a second row (80 registers: no
/// spills, where 64 spill).
constexpr int kRouteSmallMinBlocks = 6;
/// Batch size from which the launcher (src/cuda/route.cu) takes route_topk_kernel's plain
/// (large-batch) variant instead of the kSmall one; cuda::route launches it without PDL.
constexpr std::int64_t kRouteSmallMaxRows = 3584;
/// Bound of the approximate score: |s~ - s| <= kApproxRel * s~ + kApproxAbs (see file comment).
constexpr float kApproxRel = 0x1p-13f;
constexpr float kApproxAbs = 0x1p-61f;

/// Resolved arguments of route_topk_kernel (strides resolved, alignment decided on the host).
struct RouteTopkArgs {
  const void* logits;            ///< [n, experts] f32 or bf16 (the kernel's T), row stride
  const float* bias;             ///< [experts] fp32 or null (zeros)
  float* weights;                ///< out [n, k] fp32
  void* ids;                     ///< out [n, k] i32 or i64
  std::int64_t n;
  std::int64_t logits_stride;    ///< elements
  std::int64_t weights_stride;
  std::int64_t ids_stride;
  int experts;                   ///< E <= 128 * kChunks
  int k;                         ///< 1..min(E, 32)
  float scale;
  bool ids_i64;
  bool vector_logits;            ///< E % 4 == 0 and 4-element chunks aligned (16 B f32, 8 B bf16)
  bool vector_bias;              ///< bias 16-byte aligned and E % 4 == 0
};

namespace route_detail {

#if defined(MOER_ROUTE_TRACE)
// Diagnosis builds only: clock64 at each phase of a row's route, thread 0 of block 0.
__device__ long long g_route_trace[16];
// `dep`: a value the stamp waits for (so the phase that computes it ends before the stamp).
__device__ __forceinline__ void route_trace(int slot, unsigned dep = 0) {
  long long t;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(t) : "r"(dep) : "memory");
  if (threadIdx.x == 0 && blockIdx.x == 0) g_route_trace[slot] = t;
}
#else
__device__ __forceinline__ void route_trace(int, unsigned = 0) {}
#endif

using detail::grid_dependency_wait;

}  // namespace route_detail

/// s~ ~= sqrt(softplus(z)) from three MUFU operations; only ever used to filter (file comment).
/// log1p(e) takes a series below e = 2^-6, where lg2.approx(1 + e) has too little relative
/// accuracy. NaN -> NaN, +inf -> +inf, -inf -> 0.
__device__ __forceinline__ float approx_sqrt_softplus(float z) {
  using namespace detail;
  const float e = ex2_approx(fabsf(z) * -1.44269504088896341f);  // exp(-|z|), in [0, 1]
  const float lg = lg2_approx(1.0f + e) * 0.693147180559945309f;
  float q = fmaf(e, 0.333333333f, -0.5f);
  q = fmaf(q, e, 1.0f);
  const float lp = e < 0.015625f ? e * q : lg;
  return sqrt_approx(fmaxf(z, 0.0f) + lp);
}

namespace route_detail {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<bf16>(bf16 v) {
  return detail::bf16_to_float(v);
}

/// Four consecutive elements starting at an aligned address.
__device__ __forceinline__ void load4(const float* p, float* out) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(p));
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load4(const bf16* p, float* out) {
  const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
  out[0] = detail::bf16_bits_to_float(std::uint16_t(v.x & 0xffffu));
  out[1] = detail::bf16_bits_to_float(std::uint16_t(v.x >> 16));
  out[2] = detail::bf16_bits_to_float(std::uint16_t(v.y & 0xffffu));
  out[3] = detail::bf16_bits_to_float(std::uint16_t(v.y >> 16));
}

/// Inverse of order_key for a non-zero key.
__device__ __forceinline__ float key_to_float(std::uint32_t key) {
  return detail::bits_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

/// Per-warp shared memory: the compacted candidates and the top-k list.
struct RouteWarpSmem {
  /// Candidate i: (logit bits, expert), then (selection key, expert) for the ranks.
  __align__(16) uint2 cand[detail::kWarpSize];
  detail::WarpTopkList list;
};

}  // namespace route_detail

/// Expert index of slot v (chunk v / 4, element v % 4) of a lane.
__device__ __forceinline__ int route_slot_expert(int v, int lane) {
  return ((v / 4) * detail::kWarpSize + lane) * 4 + (v % 4);
}

namespace route_detail {

/// T: the k-th largest of the lanes' order keys (0 when fewer than k lanes have a number), by
/// k rounds of one REDUX max each (lanes holding an equal key leave together, so T may fall
/// lower, never higher). At least k lanes hold a value whose key is >= T. Measured on an H100
/// in the small-batch kernel against every lane ranking its key among all 32 read back from
/// shared memory (the shorter chain on paper): Pro N=1024 3.57 against 3.68 us, Flash 3.17
/// against 3.28 (in-kernel stamps: 337 against 546 cycles). Ranks from 32 shuffles measured
/// slower than both.
__device__ __forceinline__ std::uint32_t kth_lane_key(std::uint32_t mine, int k) {
  std::uint32_t t = 0;
#pragma unroll
  for (int r = 0; r < k; ++r) {
    t = __reduce_max_sync(detail::kFullMask, mine);
    if (mine == t) mine = 0;
  }
  return t;
}

/// How many of the kCount keys at `keys` (16-byte aligned; 0 for an empty slot, which never
/// ranks above a key) rank before `mine`: broadcast 16-byte shared-memory loads.
template <int kCount>
__device__ __forceinline__ int rank_among(std::uint64_t mine, const std::uint64_t* keys) {
  static_assert(kCount % 2 == 0, "pairs of keys per load");
  // Four partial counts: with one, nvcc chains an increment and a select per key (measured on
  // an H100: Pro N=1 route 2.25-2.27 -> 2.19-2.22 us, N=16 2.46-2.49 -> 2.41-2.42).
  int acc[4] = {0, 0, 0, 0};
#pragma unroll
  for (int j = 0; j < kCount; j += 2) {
    const ulonglong2 q = *reinterpret_cast<const ulonglong2*>(keys + j);
    acc[(j / 2) % 4] += int(q.x > mine) + int(q.y > mine);
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/// The candidates (bits of `mask`) of one row, at most 32 and at least k of them over the
/// warp: moves them to one lane each (lane by lane: a prefix sum of the per-lane counts),
/// computes their exact keys (detail/math.h, bias from s_bias), selects the k best and writes
/// them renormalized in rank order. Returns false, having written nothing, when the count is
/// outside [k, 32]. Selection: kLatency, all-pairs ranks of the (key, expert) pairs as unique
/// 64-bit keys read back from shared memory as broadcast 16-byte loads (the shorter chain);
/// otherwise k rounds of a REDUX max of the 32-bit key, a round that several lanes win (equal
/// keys: an exact tie, or NaN) going to the lowest expert among them (fewer instructions).
/// Measured on an H100 and dropped: ranks by shuffles (~2x the instructions, no less latency)
/// and positions from one ballot per slot (no shorter chain in practice).
template <int kSlots, int kFixedK, bool kLatency>
__device__ __forceinline__ bool finish_candidates(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                                  const float* s_bias, std::int64_t row,
                                                  unsigned mask, const float (&l)[kSlots]) {
  const int lane = detail::lane_id();
  const int k = kFixedK > 0 ? kFixedK : a.k;
  const int mine = __popc(mask);
  // The counts of the lanes up to this one (inclusive) and of the warp.
  int upto = 0, total = 0;
  if constexpr (kLatency) {
    // Bit by bit of the count: one ballot per bit, all independent (a shorter chain than a
    // scan of shuffles; measured on an H100: Pro N=1024 3.52 -> 3.50-3.52 us, Flash 3.11 ->
    // 3.06; the large-batch kernel lost with it, Flash N=16384 11.69 -> 11.89).
    const unsigned upto_mask = 0xffffffffu >> (detail::kWarpSize - 1 - lane);
#pragma unroll
    for (int bit = 0; (1 << bit) <= kSlots; ++bit) {
      const unsigned b = __ballot_sync(detail::kFullMask, (mine >> bit) & 1);
      upto += __popc(b & upto_mask) << bit;
      total += __popc(b) << bit;
    }
  } else {
    upto = mine;  // a scan of shuffles
#pragma unroll
    for (int d = 1; d < detail::kWarpSize; d *= 2) {
      const int up = __shfl_up_sync(detail::kFullMask, upto, d);
      if (lane >= d) upto += up;
    }
    total = __shfl_sync(detail::kFullMask, upto, detail::kWarpSize - 1);
  }
  if (total < k || total > detail::kWarpSize) return false;
  __syncwarp();  // every lane has read the warp's previous candidates (an earlier row)
  // An advancing pointer rather than an index (measured on an H100, Flash N=16384: 12.65
  // against 13.27 us; Pro unchanged).
  uint2* dst = sm.cand + (upto - mine);
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    if ((mask >> v) & 1u) {
      *dst++ = make_uint2(__float_as_uint(l[v]), unsigned(route_slot_expert(v, lane)));
    }
  }
  __syncwarp();
  route_trace(4);
  // Selection key: the order key + 1 (NaN: 1), 0 for no candidate or one already taken.
  float s = 0.0f;
  std::uint32_t key = 0, index = 0;
  if (lane < total) {
    const uint2 cand = sm.cand[lane];
    index = cand.y;
    // The branchless form in every kernel. Large batches had kept the reference form (Flash
    // N=16384 13.1 against 13.8 us) until the branchless one lost its last branch (the NaN
    // select) and its conversions; then, on an H100 in one device call: Pro N=16384 14.30 ->
    // 14.23 us, N=65536 47.45 -> 47.23, Flash N=16384 11.63 -> 11.64, N=65536 40.86 -> 40.95.
    const float logit = __uint_as_float(cand.x);
    s = detail::sqrt_softplus_nobranch(logit);
    key = detail::order_key(s + s_bias[index]) + 1u;  // s_bias is 0 without bias: s + 0 == s
  }
  route_trace(5, key);
  int out_rank = -1;
  float sum = 0.0f;  // detail::renormalize's order: 0 + s0 + s1 + ... in rank order
  if constexpr (kLatency) {
    // The (key, expert) pairs as unique 64-bit keys, (key << 32) | ~expert: a larger key, or
    // an equal key and a lower expert, ranks first. Lane i overwrites only its own slot: no
    // barrier between its read and this write. Lanes without a candidate write key 0, below
    // every candidate's (key >= 1). The second half only where there are more than 16
    // candidates (the usual count is k plus a few). Measured on an H100 against pairs of
    // 32-bit compares over all 32 slots: Pro N=1024 3.55-3.64 -> 3.51-3.52 us, Flash 3.18 ->
    // 3.12 (in-kernel stamps: 624 -> 433 cycles).
    auto* keys = reinterpret_cast<std::uint64_t*>(sm.cand);
    const std::uint64_t own = detail::pack_key_index(key, index);
    keys[lane] = own;
    __syncwarp();
    constexpr int kHalf = detail::kWarpSize / 2;
    int rank = rank_among<kHalf>(own, keys);
    if (total > kHalf) rank += rank_among<kHalf>(own, keys + kHalf);
    if (lane < total && rank < k) {
      sm.list.val[rank] = s;
      out_rank = rank;
    }
    __syncwarp();
    if (out_rank >= 0) sum = detail::rank_order_sum(sm.list.val, k);
  } else {
    // k rounds of a REDUX maximum; the lane whose key equals it wins (several lanes only on
    // equal keys: then the lowest expert among them). The winners' scores are summed in rank
    // order from shared memory afterwards: no shuffle and no winner's lane in the rounds
    // (measured on an H100, N=16384: Pro 14.57 -> 14.37 us, Flash 11.97 -> 11.70; 4% fewer
    // instructions).
    // Equal keys among the candidates (an exact tie of biased scores, or NaN) are rare: one
    // MATCH finds whether any exist, and only then do the rounds check each winner for ties
    // (measured on an H100, with the address form of load_row: Pro N=16384 14.52 -> 14.08-14.17
    // us, N=65536 47.1-47.3 -> 45.2-45.3, Flash 11.93-11.98 -> 11.62-11.66; Nsight Compute:
    // 508 -> 467 warp instructions a row).
    const unsigned same = __match_any_sync(detail::kFullMask, key);
    const bool tied = key != 0 && (same & (same - 1)) != 0;
    if (!__any_sync(detail::kFullMask, tied)) {
#pragma unroll
      for (int r = 0; r < k; ++r) {  // unique keys: one lane wins each round
        const std::uint32_t top = __reduce_max_sync(detail::kFullMask, key);
        if (key == top) {
          out_rank = r;
          key = 0;
        }
      }
    } else {
#pragma unroll
      for (int r = 0; r < k; ++r) {  // total >= k: every round has a winner (key >= 1)
        const std::uint32_t top = __reduce_max_sync(detail::kFullMask, key);
        bool won = key == top;
        const unsigned all = __ballot_sync(detail::kFullMask, won);
        if ((all & (all - 1)) != 0) {  // warp-uniform; every lane takes part in the REDUX
          const std::uint32_t lowest = __reduce_min_sync(detail::kFullMask, won ? index : ~0u);
          won = won && index == lowest;
        }
        if (won) {
          out_rank = r;
          key = 0;
        }
      }
    }
    if (out_rank >= 0) sm.list.val[out_rank] = s;
    __syncwarp();
    if (out_rank >= 0) sum = detail::rank_order_sum(sm.list.val, k);
  }
  route_trace(6, unsigned(out_rank));
  if (out_rank >= 0) {
    detail::store_route_slot(a, row, out_rank, index,
                             s / detail::renorm_denominator(sum) * a.scale);
  }
  route_trace(8);
  return true;
}

/// One row's logits for this lane (slot v = expert route_slot_expert(v, lane); NaN past E).
/// kDsv4: E == 128 * kChunks and vector_logits (every chunk a whole aligned vector).
template <typename T, int kChunks, bool kDsv4>
__device__ __forceinline__ void load_row(const RouteTopkArgs& a, std::int64_t row, int lane,
                                         float* l) {
  const T* lrow = static_cast<const T*>(a.logits) + row * a.logits_stride;
  if constexpr (kDsv4) {
    // One 64-bit address a row; the chunks at constant offsets from it (route_slot_expert(4 c,
    // lane) = 4 lane + 128 c). Written as lrow + route_slot_expert(...), nvcc formed each
    // chunk's address in 64 bits from the row (~20 more instructions a row in the large-batch
    // kernel's SASS; with finish_candidates' MATCH, Pro N=16384 14.52 -> 14.08-14.17 us, H100).
    const T* lane_row = lrow + 4 * lane;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) load4(lane_row + 128 * c, &l[4 * c]);
  } else {
    constexpr float kNaN = __builtin_nanf("");
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int e0 = route_slot_expert(4 * c, lane);
      if (a.vector_logits) {
        if (e0 < a.experts) {
          load4(lrow + e0, &l[4 * c]);
        } else {
#pragma unroll
          for (int t = 0; t < 4; ++t) l[4 * c + t] = kNaN;
        }
      } else {
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          l[4 * c + t] = e0 + t < a.experts ? to_float(lrow[e0 + t]) : kNaN;
        }
      }
    }
  }
}

/// The bias's range over the row, the same for every row of a launch.
struct RouteBias {
  float bmax;          ///< max |bias| (NaN ignored), 0 without bias
  float b_range;       ///< (b_hi - b_lo), rounded up
  bool logit_filter;   ///< level 1 allowed (the bias is finite)
};

/// A warp's share of the bias range (RouteBiasAcc::part), to combine over a block.
struct RouteBiasPart {
  float bmax;
  std::uint32_t hi_key, lo_key;  ///< order keys of the largest and smallest bias
  int bad;                       ///< a bias is NaN or infinite
};

/// Accumulates the range of four bias values of experts e0.. (those below E count; kFull: all
/// of them, E a multiple of 128 per chunk).
struct RouteBiasAcc {
  float bmax = 0.0f, b_hi = -INFINITY, b_lo = INFINITY;
  bool bad = false;
  template <bool kFull = false>
  __device__ __forceinline__ void add(const float (&b)[4], int e0, int experts) {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      bmax = fmaxf(bmax, fabsf(b[t]));  // NaN ignored
      if (kFull || e0 + t < experts) {
        b_hi = fmaxf(b_hi, b[t]);
        b_lo = fminf(b_lo, b[t]);
        bad |= !isfinite(b[t]);
      }
    }
  }
  /// Warp-collective: the warp's share.
  __device__ __forceinline__ RouteBiasPart part() const {
    RouteBiasPart p;
    p.bmax = __uint_as_float(__reduce_max_sync(detail::kFullMask, __float_as_uint(bmax)));
    p.hi_key = __reduce_max_sync(detail::kFullMask, detail::order_key(b_hi));
    p.lo_key = __reduce_min_sync(detail::kFullMask, detail::order_key(b_lo));
    p.bad = __any_sync(detail::kFullMask, bad);
    return p;
  }
  /// The range from the shares. The logit filter needs a finite bias and its range (rounded
  /// up by a relative margin).
  __device__ __forceinline__ static RouteBias finish(const RouteBiasPart& p) {
    RouteBias rb;
    rb.bmax = p.bmax;
    rb.logit_filter = !p.bad;
    rb.b_range = (key_to_float(p.hi_key) - key_to_float(p.lo_key)) * (1.0f + 0x1p-20f);
    return rb;
  }
  /// Warp-collective: the warp's range.
  __device__ __forceinline__ RouteBias reduce() const { return finish(part()); }
};

/// Loads the bias (zeros past E or without bias) into s_bias (128 * kChunks floats) and
/// returns its range; block-collective, ends with a block barrier. kSplit: warp w loads only
/// the chunks c % kRouteWarps == w and reduces their range, the warps' shares meet in s_part
/// (kFull: E = 128 * kChunks, no bounds checks). Otherwise every warp loads and reduces the
/// whole bias and stores its chunks c % kRouteWarps == w. Measured on an H100, the split (with
/// kFull) against every warp's whole bias: the small-batch variant Pro N=1024 3.50-3.57 ->
/// 3.29 us, N=2048 4.49 -> 4.20, Flash 3.05 -> 2.98 and 3.80 -> 3.64 (before, ~200 of its
/// ~740 instructions a row were this setup); the large-batch kernel lost with it (Pro N=16384
/// 14.38 -> 14.90: 24 bytes of spills), so it keeps the whole bias a warp.
template <int kChunks, bool kFull, bool kSplit>
__device__ __forceinline__ RouteBias load_bias(const RouteTopkArgs& a, int warp, int lane,
                                               float* s_bias, RouteBiasPart* s_part) {
  constexpr bool kNoBounds = kFull && kSplit;
  RouteBiasAcc acc;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    if (kSplit && c % kRouteWarps != warp) continue;  // warp-uniform
    const int e0 = route_slot_expert(4 * c, lane);
    float b[4];
    if (a.bias != nullptr && a.vector_bias && (kNoBounds || e0 < a.experts)) {
      load4(a.bias + e0, b);
    } else {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        b[t] = (a.bias != nullptr && (kNoBounds || e0 + t < a.experts)) ? a.bias[e0 + t] : 0.0f;
      }
    }
    acc.add<kNoBounds>(b, e0, a.experts);
    if (c % kRouteWarps == warp) {
      *reinterpret_cast<float4*>(s_bias + e0) = make_float4(b[0], b[1], b[2], b[3]);
    }
  }
  if constexpr (!kSplit) {
    const RouteBias rb = acc.reduce();
    __syncthreads();  // s_bias
    return rb;
  } else {
    const RouteBiasPart mine = acc.part();
    if (lane == 0) s_part[warp] = mine;
    __syncthreads();  // s_bias, s_part
    RouteBiasPart all = s_part[0];
#pragma unroll
    for (int w = 1; w < kRouteWarps; ++w) {
      const RouteBiasPart p = s_part[w];
      all.bmax = fmaxf(all.bmax, p.bmax);
      all.hi_key = max(all.hi_key, p.hi_key);
      all.lo_key = min(all.lo_key, p.lo_key);
      all.bad |= p.bad;
    }
    return RouteBiasAcc::finish(all);
  }
}

/// The largest of l[kBegin, kEnd) by a tree of fmaxf (NaN skipped; NaN if all are): a chain of
/// log2 steps instead of one step per slot, for the latency-bound kernels.
template <int kBegin, int kEnd, int kSlots>
__device__ __forceinline__ float max_tree(const float (&l)[kSlots]) {
  if constexpr (kEnd - kBegin == 1) {
    return l[kBegin];
  } else {
    constexpr int kMid = kBegin + (kEnd - kBegin) / 2;
    return fmaxf(max_tree<kBegin, kMid>(l), max_tree<kMid, kEnd>(l));
  }
}

/// Level 1's bound (route_row's comment): given the order key of a logit t that at least k
/// experts of the row reach (0: none), the cut below which a logit cannot be among the row's
/// k best; NaN where the filter does not apply (t not finite or huge, or the bias range too
/// wide against s(t)).
__device__ __forceinline__ float logit_cut(std::uint32_t t_key, const RouteBias& rb) {
  constexpr float kNaN = __builtin_nanf("");
  const float t = t_key != 0 ? key_to_float(t_key) : kNaN;
  if (!(fabsf(t) < 1e30f)) return kNaN;
  const float low_s = approx_sqrt_softplus(t) * (1.0f - 0x1p-10f) - 1e-18f;
  const float y = low_s - rb.b_range - 1e-3f * (low_s + rb.bmax) - 1e-6f;
  if (!(y >= 0.01f)) return kNaN;
  const float u = y * y;
  // The MUFU approximations themselves, without __logf / __expf / __fdividef's range fixups
  // (measured on an H100: N=16384 Pro 14.78 -> 14.63 us, Flash 12.16 -> 12.00): u >= 1e-4
  // keeps every operand normal, and an exp that flushes to 0 gives log(1) = 0.
  const float l_raw =
      u + detail::lg2_approx(1.0f - detail::ex2_approx(u * -1.44269504088896341f)) *
              0.693147180559945309f;
  return l_raw - 0.01f * (1.0f + fabsf(l_raw)) - 3e-7f * detail::rcp_approx(u);
}

/// Routes one row whose logits `l` this lane holds (levels 1 to 3 of the file comment) and
/// writes its k ids and weights; s_bias: the bias in shared memory, 128 * kSlots / 4 floats,
/// 0 past E and without bias. Every fused-route kernel and the decode kernel (route_gemm.cuh)
/// run it; kFixedK > 0: k (a.k) known at compile time; kLatency: the short-chain selection
/// (finish_candidates) for kernels whose time is one row's chain of latencies.
template <int kSlots, int kFixedK, bool kLatency>
__device__ __forceinline__ void route_row(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                          const float* s_bias, std::int64_t row,
                                          const float (&l)[kSlots], const RouteBias& rb) {
  constexpr float kNaN = __builtin_nanf("");
  const int lane = detail::lane_id();
  const int k = kFixedK > 0 ? kFixedK : a.k;

  // Level 1, the logit filter. The exact score is monotone in the logit up to fp32
  // rounding. t = the k-th largest lane maximum: k experts have logit >= t, so exact
  // score >= s(t) (1 - 2^-10) = low_s, and the row's k-th key >= low_s + b_lo (less
  // rounding). An expert with score below y = low_s - (b_hi - b_lo) - margin cannot reach
  // it, and its score is below y when its logit is below L = s^-1(y) - margin, with
  // s^-1(y) = log(exp(y^2) - 1) = u + log(1 - exp(-u)), u = y^2 (all margins >= 100x the
  // errors of the approximations; see the file comment for s~).
  if (rb.logit_filter) {
    const float l_max = max_tree<0, kSlots>(l);  // NaN only if every slot is NaN
    route_trace(1, __float_as_uint(l_max));
    const std::uint32_t t_key = kth_lane_key(detail::order_key(l_max), k);
    route_trace(2, t_key);
    const float cut = logit_cut(t_key, rb);
    if (!isnan(cut)) {
      unsigned mask = 0;
#pragma unroll
      for (int v = 0; v < kSlots; ++v) mask |= unsigned(l[v] >= cut) << v;
      route_trace(3, mask);
      if (finish_candidates<kSlots, kFixedK, kLatency>(a, sm, s_bias, row, mask, l)) return;
    }
  }

  // Level 2, the approximate-key filter: approximate keys, the lane maximum and the row's
  // largest approximate score.
  route_trace(9);
  float b[kSlots];
#pragma unroll
  for (int c = 0; c < kSlots / 4; ++c) {
    const float4 v = *reinterpret_cast<const float4*>(s_bias + route_slot_expert(4 * c, lane));
    b[4 * c] = v.x;
    b[4 * c + 1] = v.y;
    b[4 * c + 2] = v.z;
    b[4 * c + 3] = v.w;
  }
  float ka[kSlots];
  float lane_max = kNaN;
  float s_max = 0.0f;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const float s = approx_sqrt_softplus(l[v]);
    ka[v] = s + b[v];
    s_max = fmaxf(s_max, s);
    lane_max = fmaxf(lane_max, ka[v]);
  }
  s_max = __uint_as_float(__reduce_max_sync(detail::kFullMask, __float_as_uint(s_max)));
  const std::uint32_t t_key = kth_lane_key(detail::order_key(lane_max), k);
  // D >= |exact key - ka| for every expert of the row: the score error plus the two
  // roundings of + bias (2^-24 |key| each, |key| <= s_max + bmax), with a margin for the
  // rounding of this very expression.
  const float d = (kApproxRel * s_max + kApproxAbs + 0x1p-22f * (s_max + rb.bmax)) * 1.001f;
  const float thr = t_key != 0 ? key_to_float(t_key) - 3.0f * d : kNaN;
  const bool fast = isfinite(thr) && s_max + rb.bmax < 0x1p100f;

  // Every expert of the exact top k is a candidate, and there are at least k of them: k
  // experts have ka >= the k-th lane maximum >= thr (fast), or all E >= k experts are.
  unsigned mask = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool cand = fast ? ka[v] >= thr : route_slot_expert(v, lane) < a.experts;
    mask |= unsigned(cand) << v;
  }
  if (finish_candidates<kSlots, kFixedK, kLatency>(a, sm, s_bias, row, mask, l)) return;

  // Level 3, more than 32 candidates (ties, NaN/inf, huge values): exact keys of every
  // candidate, 32 at a time, merged into the warp's top-k list.
  route_trace(10);
  int count = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool has = (mask >> v) & 1u;
    if (__any_sync(detail::kFullMask, has)) {
      float s = 0.0f;
      std::uint64_t key = 0;
      if (has) {
        s = detail::sqrt_softplus(l[v]);
        key = detail::pack_rank_key(s + b[v], std::uint32_t(route_slot_expert(v, lane)));
      }
      detail::warp_merge(sm.list, count, a.k, has, key, s);
    }
  }
  if (lane < a.k) {
    const float sum = detail::rank_order_sum(sm.list.val, a.k);
    detail::store_route_slot(a, row, lane, detail::packed_index(sm.list.key[lane]),
                             sm.list.val[lane] / detail::renorm_denominator(sum) * a.scale);
  }
  __syncwarp();
}

}  // namespace route_detail

/// One warp per row, rows strided over the grid; see the file comment for the method.
/// kDsv4: the DSV4 fast path, rows of whole aligned vectors (E = 128 * kChunks, see
/// load_row) and k = kDsv4K known at compile time.
/// kSmall: the small-batch variant (route.cu uses it below kRouteSmallMaxRows rows, where a
/// row's chain of dependent latencies is the time): same levels, same results, the short-chain
/// selection; a warp loads its first row before the bias (both latencies overlap) and its next
/// row before it routes the current one (80 registers). Otherwise at least kRouteMinBlocks
/// blocks per SM (64 registers): rows in flight hide the loads.
template <typename T, int kChunks, bool kDsv4, bool kSmall>
__global__ void __launch_bounds__(kRouteWarps* detail::kWarpSize,
                                  kSmall ? kRouteSmallMinBlocks : kRouteMinBlocks)
    route_topk_kernel(const RouteTopkArgs a) {
  using namespace route_detail;
  // Before any global access (PDL launches: route_logits with pdl, route() below
  // kRouteSmallMaxRows rows).
  grid_dependency_wait();
  constexpr int kSlots = 4 * kChunks;
  constexpr int kFixedK = kDsv4 ? kDsv4K : 0;
  __shared__ RouteWarpSmem smem_all[kRouteWarps];
  __shared__ __align__(16) float s_bias[kSlots * detail::kWarpSize];  // 0 past E / without bias
  __shared__ RouteBiasPart s_part[kRouteWarps];
  const int warp = int(threadIdx.x) / detail::kWarpSize;
  const int lane = detail::lane_id();
  RouteWarpSmem& sm = smem_all[warp];
  const std::int64_t warps_total = std::int64_t(gridDim.x) * kRouteWarps;
  std::int64_t row = std::int64_t(blockIdx.x) * kRouteWarps + warp;
  route_trace(0);

  [[maybe_unused]] float next[kSmall ? kSlots : 1];  // kSmall: the next row
  if constexpr (kSmall) {
    if (row < a.n) load_row<T, kChunks, kDsv4>(a, row, lane, next);
  }
  // The bias is the same for every row: once per block, with its range.
  const RouteBias rb = load_bias<kChunks, kDsv4, kSmall>(a, warp, lane, s_bias, s_part);
  route_trace(11);

  for (; row < a.n; row += warps_total) {
    float l[kSlots];
    if constexpr (kSmall) {
#pragma unroll
      for (int v = 0; v < kSlots; ++v) l[v] = next[v];
      if (row + warps_total < a.n) load_row<T, kChunks, kDsv4>(a, row + warps_total, lane, next);
    } else {
      load_row<T, kChunks, kDsv4>(a, row, lane, l);
    }
    route_row<kSlots, kFixedK, kSmall>(a, sm, s_bias, row, l, rb);
  }
}

namespace route_detail {

/// Shared memory of route_topk_rowwide_kernel (kWarps warps, a thread per expert).
template <int kWarps>
struct RowWideSmem {
  static constexpr int kExperts = kWarps * detail::kWarpSize;
  static constexpr int kCand = detail::kWarpSize;  // the common path's candidates
  __align__(16) std::uint32_t gmax[16];            // the warps' largest order keys
  __align__(16) std::uint64_t cand[kCand];         // packed keys >= T, 0 past the count
  float cand_s[kCand];
  __align__(16) std::uint64_t key[kExperts];       // every expert's packed key (the fallback)
  float final_s[kDsv4K];
  int count;
};

}  // namespace route_detail

#if defined(MOER_ROWWIDE_TRACE)
// Diagnosis builds only: %globaltimer of thread 0 of route_topk_rowwide_kernel's blocks (the
// last row of each): [0] past the dependency wait, [1] the row's logit and key, [2] done.
__device__ unsigned long long g_rowwide_trace[4096][4];
__device__ __forceinline__ void rowwide_trace(int slot) {
  if (threadIdx.x == 0 && blockIdx.x < 4096) {
    g_rowwide_trace[blockIdx.x][slot] = detail::global_timer();
  }
}
#else
__device__ __forceinline__ void rowwide_trace(int) {}
#endif

/// Logit sources of route_topk_rowwide_kernel: src(a, row, e) is the logit of expert e of row.
/// Rows of a.logits (T = float or bf16), row stride a.logits_stride.
template <typename T>
struct RowLogits {
  __device__ __forceinline__ float operator()(const RouteTopkArgs& a, std::int64_t row,
                                              int e) const {
    const T* p = static_cast<const T*>(a.logits) + row * a.logits_stride + e;
    if constexpr (std::is_same<T, float>::value) {
      return __ldg(p);
    } else {
      return detail::bf16_to_float(*p);
    }
  }
};
/// The decode mma kernel's H-split partial sums (route_gemm.cuh, RouteGemmArgs::partials:
/// [tiles * splits][n][tile_e]), added in split order as its routers add them (the same
/// bits). After the first split's load, kBatch splits' loads are in flight at once, then their
/// adds run in order; launch_route_gemm takes the smallest kBatch in {4, 8, 16} that covers
/// the other splits in one round trip. A batch wider than the splits costs time (H100,
/// two-launch path, Pro n = 32 at 5 splits: 9.55-9.60 us with 4, 9.93-9.97 with 8,
/// 10.35-10.37 with 16), and so did four at a time with the rest one by one (Flash n = 32 at 4
/// splits: 6.93-6.94 against 6.50-6.52 with 8; Pro n = 8 at 8 splits: 8.04-8.08 against
/// 7.42-7.46).
template <int kBatch>
struct SplitPartials {
  static_assert(kBatch == 4 || kBatch == 8 || kBatch == 16, "a batch of 4, 8 or 16 splits");
  const float* partials;
  std::int64_t items;  ///< floats of one block's partials: n * tile_e
  int splits;
  int tile_e;          ///< experts per tile
  __device__ __forceinline__ float operator()(const RouteTopkArgs&, std::int64_t row,
                                              int e) const {
    const float* p = partials + std::int64_t(e / tile_e) * splits * items + row * tile_e +
                     e % tile_e;
    float sum = __ldcg(p);
#pragma unroll 1
    for (int s0 = 1; s0 < splits; s0 += kBatch) {
      float v[kBatch];
      const float* q = p + s0 * items;
#pragma unroll
      for (int j = 0; j < kBatch; ++j, q += items) v[j] = s0 + j < splits ? __ldcg(q) : 0.0f;
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (s0 + j < splits) sum += v[j];  // not past the last: -0.0f + 0.0f is +0.0f
      }
    }
    return sum;
  }
};

/// The fused route for small DSV4 batches with a thread per expert (E = 32 * kWarps = 256 or
/// 384, k = kDsv4K, whole aligned rows), a block per row, rows strided over the grid. A row:
///   1. every thread's exact key (detail::sqrt_softplus_nobranch + bias, packed with its
///      expert: unique), its warp's largest order key (one REDUX), a barrier;
///   2. T = the k-th largest of the kWarps warp maxima (every warp computes it: lane g ranks
///      warp g's maximum, one REDUX picks it). At least k keys are >= T, so the row's k best
///      are among the keys >= T (usually k plus a few): each warp appends its own (a ballot
///      and one shared atomic), a barrier (the first warp alone gathering them in expert
///      order, a ballot a group and a named barrier for the others, measured slower on an
///      H200: route_gemm_bench's route from logits, Pro N = 1 1.69 -> 1.74-1.77 us, Flash
///      unchanged, and as the decode route Pro n = 16 7.23-7.24 -> 7.28-7.33);
///   3. up to 32 candidates: the first warp ranks them (unique packed keys) and writes the k
///      best renormalized in rank order; more (many exact ties, NaN rows): every candidate
///      ranks itself among all E keys (slow, same result).
/// Same ids and weights as route_row and the CPU backend, bit for bit.
/// It replaced a block of E / 4 threads (4 experts a lane; three rank steps: the warp's k-th
/// lane maximum, the warp's k best of its candidates, the row's k best of the warps'). Measured
/// on an H100 (moerouter_bench, CUDA graph, logits cold; two runs each in one call), us, that
/// kernel / this one: Pro N = 1 2.00-2.04 / 1.84, N = 16 2.27-2.28 / 2.07-2.09, N = 64
/// 2.36-2.38 / 2.14-2.28, N = 256 2.70-2.73 / 2.43-2.50; Flash N = 1 2.02-2.08 / 1.78-1.86,
/// N = 16 2.21-2.23 / 1.83-2.01, N = 256 2.38-2.68 / 2.21-2.32, N = 512 2.66-2.81 / 2.67-2.73.
/// Src: the logits' source (RowLogits, or the decode kernel's SplitPartials).
template <typename Src, int kWarps>
__global__ void __launch_bounds__(kWarps* detail::kWarpSize)
    route_topk_rowwide_kernel(const RouteTopkArgs a, const Src src) {
  using namespace route_detail;
  using Smem = RowWideSmem<kWarps>;
  static_assert(kWarps % 4 == 0 && kWarps <= 16, "warp maxima read as 16-byte vectors");
  constexpr int kK = kDsv4K;
  __shared__ Smem sm;
  grid_dependency_wait();  // before any global access (PDL launches)
  rowwide_trace(0);
  const int e = int(threadIdx.x);
  const int warp = e / detail::kWarpSize;
  const int lane = detail::lane_id();
  const auto load_logit = [&](std::int64_t r) { return src(a, r, e); };
  std::int64_t row = blockIdx.x;
  float l = row < a.n ? load_logit(row) : 0.0f;
  const float b = a.bias != nullptr ? __ldg(a.bias + e) : 0.0f;  // s + 0 == s without bias
  for (; row < a.n; row += gridDim.x) {
    const bool more = row + gridDim.x < a.n;  // block-uniform
    float next = 0.0f;  // the next row's load overlaps this row's route
    if (more) next = load_logit(row + gridDim.x);
    if (e == 0) sm.count = 0;
    if (e < Smem::kCand) sm.cand[e] = 0;
    const float s = detail::sqrt_softplus_nobranch(l);
    const std::uint32_t ok = detail::order_key(s + b);
    const std::uint64_t key = detail::pack_key_index(ok, std::uint32_t(e));  // unique
    sm.key[e] = key;
    const std::uint32_t m = __reduce_max_sync(detail::kFullMask, ok);
    if (lane == 0) sm.gmax[warp] = m;
    rowwide_trace(1);
    __syncthreads();
    // 2. T: lane g < kWarps holds warp g's maximum and counts the maxima that reach it; T is
    // the largest maximum that k maxima reach (0, every key, where fewer than k warps have a
    // number).
    const std::uint32_t mine = lane < kWarps ? sm.gmax[lane] : 0u;  // (only written below kWarps)
    int reach = 0;
#pragma unroll
    for (int g = 0; g < kWarps; g += 4) {
      const uint4 q = *reinterpret_cast<const uint4*>(sm.gmax + g);
      reach += int(q.x >= mine) + int(q.y >= mine) + int(q.z >= mine) + int(q.w >= mine);
    }
    const bool qualifies = lane < kWarps && mine != 0u && reach >= kK;
    const std::uint32_t thr = __reduce_max_sync(detail::kFullMask, qualifies ? mine : 0u);
    const bool c = ok >= thr;
    const unsigned bal = __ballot_sync(detail::kFullMask, c);
    int off = 0;
    if (lane == 0 && bal != 0u) off = atomicAdd(&sm.count, __popc(bal));
    off = __shfl_sync(detail::kFullMask, off, 0) + __popc(bal & ((1u << lane) - 1u));
    if (c && off < Smem::kCand) {
      sm.cand[off] = key;
      sm.cand_s[off] = s;
    }
    __syncthreads();
    // 3. The k best, renormalized in rank order.
    const int count = sm.count;  // >= k (at least k keys reach T)
    if (count <= Smem::kCand) {
      if (warp == 0) {
        const std::uint64_t cand = sm.cand[lane];
        const float sv = sm.cand_s[lane];
        constexpr int kHalf = Smem::kCand / 2;
        int rank = rank_among<kHalf>(cand, sm.cand);
        if (count > kHalf) rank += rank_among<kHalf>(cand, sm.cand + kHalf);
        const bool win = cand != 0 && rank < kK;
        if (win) sm.final_s[rank] = sv;
        __syncwarp();
        if (win) {
          const float sum = detail::rank_order_sum(sm.final_s, kK);
          detail::store_route_slot(a, row, rank, detail::packed_index(cand),
                                   sv / detail::renorm_denominator(sum) * a.scale);
        }
      }
    } else {
      // Rare (exact ties or NaN fill the candidates): every candidate against every key, 32
      // keys a step (rolled: unrolled, this path was most of the kernel's code, and the
      // common path jumped over it).
      int rank = kK;
      if (c) {
        rank = 0;
#pragma unroll 1
        for (int j = 0; j < Smem::kExperts; j += detail::kWarpSize) {
          rank += rank_among<detail::kWarpSize>(key, sm.key + j);
        }
      }
      if (rank < kK) sm.final_s[rank] = s;
      __syncthreads();
      if (rank < kK) {
        const float sum = detail::rank_order_sum(sm.final_s, kK);
        detail::store_route_slot(a, row, rank, e, s / detail::renorm_denominator(sum) * a.scale);
      }
    }
    rowwide_trace(2);
    if (more) __syncthreads();  // this row's shared memory read before the next row's writes
    l = next;
  }
}

}  // namespace kernels
}  // namespace moerouter
