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
// exact keys, rank the packed (order_key, ~index) keys in parallel and write the k best.
//
// Two kernels run this method: route_topk_kernel for large batches, route_topk_small_kernel
// (bottom of the file) for small ones, where one row's chain of latencies is the time.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace kernels {

/// Warps (rows in flight) per block of the fused route.
constexpr int kRouteWarps = 4;
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
  bool logit_filter;             ///< try level 1 (file comment): saves instructions on large
                                 ///< batches, adds latency to small ones
};

namespace route_detail {

__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float lg2_approx(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float sqrt_approx(float x) {
  float y;
  asm("sqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/// Programmatic dependent launch: waits until the previous kernel in the stream has completed
/// and its memory is visible (a no-op when the launch did not allow programmatic
/// serialization).
__device__ __forceinline__ void grid_dependency_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

}  // namespace route_detail

/// s~ ~= sqrt(softplus(z)) from three MUFU operations; only ever used to filter (file comment).
/// log1p(e) takes a series below e = 2^-6, where lg2.approx(1 + e) has too little relative
/// accuracy. NaN -> NaN, +inf -> +inf, -inf -> 0.
__device__ __forceinline__ float approx_sqrt_softplus(float z) {
  using namespace route_detail;
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

/// Per-warp shared memory: the compacted candidates and the running top-k list.
struct RouteWarpSmem {
  float logit[detail::kWarpSize];
  float bias[detail::kWarpSize];
  std::uint32_t index[detail::kWarpSize];
  detail::WarpTopkList list;
};

}  // namespace route_detail

/// Expert index of slot v (chunk v / 4, element v % 4) of a lane.
__device__ __forceinline__ int route_slot_expert(int v, int lane) {
  return ((v / 4) * detail::kWarpSize + lane) * 4 + (v % 4);
}

namespace route_detail {

/// T: the k-th largest of the lanes' order keys (0 when fewer than k lanes have a number).
/// At least k lanes hold a value whose key is >= T.
__device__ __forceinline__ std::uint32_t kth_lane_key(std::uint32_t mine, int k) {
  std::uint32_t t = 0;
  for (int r = 0; r < k; ++r) {
    t = __reduce_max_sync(detail::kFullMask, mine);
    if (mine == t) mine = 0;
  }
  return t;
}

/// Moves the candidates (bits of `mask`, `total` <= 32 of them over the warp) so that lane i
/// holds candidate i, computes their exact keys (detail/math.h), ranks them in parallel and
/// writes the k best of the row, renormalized in rank order.
template <int kSlots>
__device__ __forceinline__ void finish_candidates(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                                  std::int64_t row, unsigned mask, int total,
                                                  const float* l, const float* b) {
  const int lane = detail::lane_id();
  const int mine_count = __popc(mask);
  int pos = mine_count;
#pragma unroll
  for (int d = 1; d < detail::kWarpSize; d *= 2) {
    const int up = __shfl_up_sync(detail::kFullMask, pos, d);
    if (lane >= d) pos += up;
  }
  pos -= mine_count;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    if (mask & (1u << v)) {
      sm.logit[pos] = l[v];
      sm.bias[pos] = b[v];
      sm.index[pos] = std::uint32_t(route_slot_expert(v, lane));
      ++pos;
    }
  }
  __syncwarp();
  const bool has = lane < total;
  float s = 0.0f;
  std::uint64_t key = 0;
  std::uint32_t index = 0;
  if (has) {
    index = sm.index[lane];
    s = detail::sqrt_softplus(sm.logit[lane]);
    key = detail::pack_rank_key(a.bias != nullptr ? s + sm.bias[lane] : s, index);
  }
  // Rank = candidates with a larger key. Eight independent shuffles per step keep the
  // latency down; lanes >= total hold key 0 and never count.
  int rank = 0;
  for (int j0 = 0; j0 < total; j0 += 8) {
    std::uint64_t other[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) other[i] = detail::shfl_u64(key, (j0 + i) & 31);
#pragma unroll
    for (int i = 0; i < 8; ++i) rank += (j0 + i < detail::kWarpSize) && other[i] > key;
  }
  const bool out = has && rank < a.k;
  if (out) sm.list.val[rank] = s;
  __syncwarp();
  if (out) {
    // detail::renormalize's order: 0 + s0 + s1 + ... in rank order (loads first, then adds;
    // adding +0 to the non-negative sum changes no bit).
    float sum = 0.0f;
    for (int j0 = 0; j0 < a.k; j0 += 8) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = j0 + i < a.k ? sm.list.val[j0 + i] : 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[i];
    }
    a.weights[row * a.weights_stride + rank] = s / detail::renorm_denominator(sum) * a.scale;
    if (a.ids_i64) {
      static_cast<std::int64_t*>(a.ids)[row * a.ids_stride + rank] = std::int64_t(index);
    } else {
      static_cast<std::int32_t*>(a.ids)[row * a.ids_stride + rank] = std::int32_t(index);
    }
  }
  __syncwarp();
}

/// Bits of the lanes below this one.
__device__ __forceinline__ unsigned lanemask_lt() {
  unsigned m;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
  return m;
}

/// The number of candidates (bits of `mask`) over the warp.
__device__ __forceinline__ int count_candidates(unsigned mask) {
  return int(__reduce_add_sync(detail::kFullMask, unsigned(__popc(mask))));
}

/// finish_candidates for route_topk_small_kernel: the bias from the block's s_bias, positions
/// from one ballot per slot. Moves the candidates (bits of `mask`, `total` <= 32 of them over
/// the warp) so that lane i holds candidate i, computes their exact keys (detail/math.h),
/// ranks them in parallel and writes the k best of the row, renormalized in rank order.
template <int kSlots>
__device__ __forceinline__ void finish_candidates_sb(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                                     const float* s_bias, std::int64_t row,
                                                     unsigned mask, int total, const float* l) {
  const int lane = detail::lane_id();
  const unsigned below = lanemask_lt();
  // Slot-major order: candidate position = candidates of the earlier slots + lower lanes.
  int base = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const unsigned ballot = __ballot_sync(detail::kFullMask, (mask >> v) & 1u);
    if (mask & (1u << v)) {
      const int pos = base + __popc(ballot & below);
      sm.logit[pos] = l[v];
      sm.index[pos] = std::uint32_t(route_slot_expert(v, lane));
    }
    base += __popc(ballot);
  }
  __syncwarp();
  const bool has = lane < total;
  float s = 0.0f;
  std::uint64_t key = 0;
  std::uint32_t index = 0;
  if (has) {
    index = sm.index[lane];
    const float bias = s_bias[index];
    s = detail::sqrt_softplus(sm.logit[lane]);
    key = detail::pack_rank_key(a.bias != nullptr ? s + bias : s, index);
  }
  // Rank = candidates with a larger key. Eight independent shuffles per step keep the
  // latency down; lanes >= total hold key 0 and never count.
  int rank = 0;
  for (int j0 = 0; j0 < total; j0 += 8) {
    std::uint64_t other[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) other[i] = detail::shfl_u64(key, (j0 + i) & 31);
#pragma unroll
    for (int i = 0; i < 8; ++i) rank += (j0 + i < detail::kWarpSize) && other[i] > key;
  }
  const bool out = has && rank < a.k;
  if (out) sm.list.val[rank] = s;
  __syncwarp();
  if (out) {
    // detail::renormalize's order: 0 + s0 + s1 + ... in rank order (loads first, then adds;
    // adding +0 to the non-negative sum changes no bit).
    float sum = 0.0f;
    for (int j0 = 0; j0 < a.k; j0 += 8) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = j0 + i < a.k ? sm.list.val[j0 + i] : 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[i];
    }
    a.weights[row * a.weights_stride + rank] = s / detail::renorm_denominator(sum) * a.scale;
    if (a.ids_i64) {
      static_cast<std::int64_t*>(a.ids)[row * a.ids_stride + rank] = std::int64_t(index);
    } else {
      static_cast<std::int32_t*>(a.ids)[row * a.ids_stride + rank] = std::int32_t(index);
    }
  }
  __syncwarp();
}

/// One row's logits for this lane (slot v = expert route_slot_expert(v, lane); NaN past E).
template <typename T, int kChunks>
__device__ __forceinline__ void load_row(const RouteTopkArgs& a, std::int64_t row, int lane,
                                         float* l) {
  constexpr float kNaN = __builtin_nanf("");
  const T* lrow = static_cast<const T*>(a.logits) + row * a.logits_stride;
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

/// The bias of this lane's slots and its range over the row, computed once per warp.
struct RouteBias {
  float bmax;          ///< max |bias| (NaN ignored), 0 without bias
  float b_range;       ///< (b_hi - b_lo), rounded up
  bool logit_filter;   ///< level 1 allowed (requested, and the bias is finite)
};

}  // namespace route_detail

namespace route_detail {

/// Levels 1 to 3 of the file comment for one row whose logits `l` (NaN past E; l_max = their
/// lane maximum) and bias slots `b` (0 where absent) this lane holds, one warp; writes the
/// row's k ids and weights. route_topk_kernel and the decode kernel (route_gemm.cuh) share it.
template <int kSlots>
__device__ __forceinline__ void route_row_levels(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                                 std::int64_t row, const float (&l)[kSlots],
                                                 float l_max, const float (&b)[kSlots],
                                                 float bmax, float b_range, bool logit_filter) {
  constexpr float kNaN = __builtin_nanf("");
  const int lane = detail::lane_id();
  // Level 1, the logit filter. The exact score is monotone in the logit up to fp32
  // rounding. t = the k-th largest lane maximum: k experts have logit >= t, so exact
  // score >= s(t) (1 - 2^-10) = low_s, and the row's k-th key >= low_s + b_lo (less
  // rounding). An expert with score below y = low_s - (b_hi - b_lo) - margin cannot reach
  // it, and its score is below y when its logit is below L = s^-1(y) - margin, with
  // s^-1(y) = log(exp(y^2) - 1) = u + log(1 - exp(-u)), u = y^2 (all margins >= 100x the
  // errors of the approximations; see the file comment for s~).
  if (logit_filter) {
    const std::uint32_t t_key = kth_lane_key(detail::order_key(l_max), a.k);
    const float t = t_key != 0 ? key_to_float(t_key) : kNaN;
    if (fabsf(t) < 1e30f) {
      const float low_s = approx_sqrt_softplus(t) * (1.0f - 0x1p-10f) - 1e-18f;
      const float y = low_s - b_range - 1e-3f * (low_s + bmax) - 1e-6f;
      if (y >= 0.01f) {
        const float u = y * y;
        const float l_raw = u + __logf(1.0f - __expf(-u));
        const float cut = l_raw - 0.01f * (1.0f + fabsf(l_raw)) - 3e-7f / u;
        unsigned mask = 0;
#pragma unroll
        for (int v = 0; v < kSlots; ++v) mask |= unsigned(l[v] >= cut) << v;
        const int total = int(__reduce_add_sync(detail::kFullMask, unsigned(__popc(mask))));
        if (total >= a.k && total <= detail::kWarpSize) {
          finish_candidates<kSlots>(a, sm, row, mask, total, l, b);
          return;
        }
      }
    }
  }

  // Level 2, the approximate-key filter: approximate keys, the lane maximum and the row's
  // largest approximate score.
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
  const std::uint32_t t_key = kth_lane_key(detail::order_key(lane_max), a.k);
  // D >= |exact key - ka| for every expert of the row: the score error plus the two
  // roundings of + bias (2^-24 |key| each, |key| <= s_max + bmax), with a margin for the
  // rounding of this very expression.
  const float d = (kApproxRel * s_max + kApproxAbs + 0x1p-22f * (s_max + bmax)) * 1.001f;
  const float thr = t_key != 0 ? key_to_float(t_key) - 3.0f * d : kNaN;
  const bool fast = isfinite(thr) && s_max + bmax < 0x1p100f;

  unsigned mask = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool cand = fast ? ka[v] >= thr : route_slot_expert(v, lane) < a.experts;
    mask |= unsigned(cand) << v;
  }
  const int total = int(__reduce_add_sync(detail::kFullMask, unsigned(__popc(mask))));
  if (total <= detail::kWarpSize) {
    finish_candidates<kSlots>(a, sm, row, mask, total, l, b);
    return;
  }

  // Level 3, more than 32 candidates (ties, NaN/inf, huge values): exact keys of every
  // candidate, 32 at a time, merged into the warp's top-k list.
  int count = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool has = (mask >> v) & 1u;
    if (__any_sync(detail::kFullMask, has)) {
      float s = 0.0f;
      std::uint64_t key = 0;
      if (has) {
        s = detail::sqrt_softplus(l[v]);
        key = detail::pack_rank_key(a.bias != nullptr ? s + b[v] : s,
                                    std::uint32_t(route_slot_expert(v, lane)));
      }
      detail::warp_merge(sm.list, count, a.k, has, key, s);
    }
  }
  if (lane < a.k) {
    // detail::renormalize's order: 0 + s0 + s1 + ... in rank order.
    float sum = 0.0f;
    for (int j = 0; j < a.k; ++j) sum += sm.list.val[j];
    const float w = sm.list.val[lane] / detail::renorm_denominator(sum) * a.scale;
    const std::uint32_t id = detail::packed_index(sm.list.key[lane]);
    a.weights[row * a.weights_stride + lane] = w;
    if (a.ids_i64) {
      static_cast<std::int64_t*>(a.ids)[row * a.ids_stride + lane] = std::int64_t(id);
    } else {
      static_cast<std::int32_t*>(a.ids)[row * a.ids_stride + lane] = std::int32_t(id);
    }
  }
  __syncwarp();
}

}  // namespace route_detail

/// One warp per row, rows strided over the grid; see the file comment for the method.
template <typename T, int kChunks>
__global__ void __launch_bounds__(kRouteWarps* detail::kWarpSize)
    route_topk_kernel(const RouteTopkArgs a) {
  using namespace route_detail;
  // Before any global access (cuda::route launches this kernel with PDL after its GEMM).
  grid_dependency_wait();
  constexpr int kSlots = 4 * kChunks;
  constexpr float kNaN = __builtin_nanf("");
  __shared__ RouteWarpSmem smem_all[kRouteWarps];
  const int warp = int(threadIdx.x) / detail::kWarpSize;
  const int lane = detail::lane_id();
  RouteWarpSmem& sm = smem_all[warp];

  // The bias is the same for every row: load it once per warp, with its range.
  float b[kSlots];
  float bmax = 0.0f, b_hi = -INFINITY, b_lo = INFINITY;
  bool b_bad = false;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int e0 = route_slot_expert(4 * c, lane);
    if (a.bias != nullptr && a.vector_bias && e0 < a.experts) {
      load4(a.bias + e0, &b[4 * c]);
    } else {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        b[4 * c + t] = (a.bias != nullptr && e0 + t < a.experts) ? a.bias[e0 + t] : 0.0f;
      }
    }
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float v = b[4 * c + t];
      bmax = fmaxf(bmax, fabsf(v));  // NaN ignored
      if (e0 + t < a.experts) {
        b_hi = fmaxf(b_hi, v);
        b_lo = fminf(b_lo, v);
        b_bad |= !isfinite(v);
      }
    }
  }
  bmax = __uint_as_float(__reduce_max_sync(detail::kFullMask, __float_as_uint(bmax)));
  b_hi = key_to_float(__reduce_max_sync(detail::kFullMask, detail::order_key(b_hi)));
  b_lo = key_to_float(__reduce_min_sync(detail::kFullMask, detail::order_key(b_lo)));
  // The logit filter needs a finite bias and its range (rounded up by a relative margin).
  const bool logit_filter = a.logit_filter && !__any_sync(detail::kFullMask, b_bad);
  const float b_range = (b_hi - b_lo) * (1.0f + 0x1p-20f);

  const std::int64_t warps_total = std::int64_t(gridDim.x) * kRouteWarps;
  for (std::int64_t row = std::int64_t(blockIdx.x) * kRouteWarps + warp; row < a.n;
       row += warps_total) {
    const T* lrow = static_cast<const T*>(a.logits) + row * a.logits_stride;
    float l[kSlots];
    float l_max = kNaN;  // "nothing yet" (fmaxf skips NaN)
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
#pragma unroll
      for (int t = 0; t < 4; ++t) l_max = fmaxf(l_max, l[4 * c + t]);
    }

    route_detail::route_row_levels<kSlots>(a, sm, row, l, l_max, b, bmax, b_range, logit_filter);
  }
}

namespace route_detail {

/// Routes one row whose logits `l` this lane holds (levels 1 to 3 of the file comment).
template <int kSlots>
__device__ __forceinline__ void route_row(const RouteTopkArgs& a, RouteWarpSmem& sm,
                                          const float* s_bias, std::int64_t row, const float* l,
                                          const RouteBias& rb) {
  constexpr float kNaN = __builtin_nanf("");
  const int lane = detail::lane_id();

  // Level 1, the logit filter. The exact score is monotone in the logit up to fp32
  // rounding. t = the k-th largest lane maximum: k experts have logit >= t, so exact
  // score >= s(t) (1 - 2^-10) = low_s, and the row's k-th key >= low_s + b_lo (less
  // rounding). An expert with score below y = low_s - (b_hi - b_lo) - margin cannot reach
  // it, and its score is below y when its logit is below L = s^-1(y) - margin, with
  // s^-1(y) = log(exp(y^2) - 1) = u + log(1 - exp(-u)), u = y^2 (all margins >= 100x the
  // errors of the approximations; see the file comment for s~).
  if (rb.logit_filter) {
    float l_max = kNaN;  // "nothing yet" (fmaxf skips NaN)
#pragma unroll
    for (int v = 0; v < kSlots; ++v) l_max = fmaxf(l_max, l[v]);
    const std::uint32_t t_key = kth_lane_key(detail::order_key(l_max), a.k);
    const float t = t_key != 0 ? key_to_float(t_key) : kNaN;
    if (fabsf(t) < 1e30f) {
      const float low_s = approx_sqrt_softplus(t) * (1.0f - 0x1p-10f) - 1e-18f;
      const float y = low_s - rb.b_range - 1e-3f * (low_s + rb.bmax) - 1e-6f;
      if (y >= 0.01f) {
        const float u = y * y;
        const float l_raw = u + __logf(1.0f - __expf(-u));
        const float cut = l_raw - 0.01f * (1.0f + fabsf(l_raw)) - 3e-7f / u;
        unsigned mask = 0;
#pragma unroll
        for (int v = 0; v < kSlots; ++v) mask |= unsigned(l[v] >= cut) << v;
        const int total = count_candidates(mask);
        if (total >= a.k && total <= detail::kWarpSize) {
          finish_candidates_sb<kSlots>(a, sm, s_bias, row, mask, total, l);
          return;
        }
      }
    }
  }

  // Level 2, the approximate-key filter: approximate keys, the lane maximum and the row's
  // largest approximate score.
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
  const std::uint32_t t_key = kth_lane_key(detail::order_key(lane_max), a.k);
  // D >= |exact key - ka| for every expert of the row: the score error plus the two
  // roundings of + bias (2^-24 |key| each, |key| <= s_max + bmax), with a margin for the
  // rounding of this very expression.
  const float d = (kApproxRel * s_max + kApproxAbs + 0x1p-22f * (s_max + rb.bmax)) * 1.001f;
  const float thr = t_key != 0 ? key_to_float(t_key) - 3.0f * d : kNaN;
  const bool fast = isfinite(thr) && s_max + rb.bmax < 0x1p100f;

  unsigned mask = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool cand = fast ? ka[v] >= thr : route_slot_expert(v, lane) < a.experts;
    mask |= unsigned(cand) << v;
  }
  const int total = count_candidates(mask);
  if (total <= detail::kWarpSize) {
    finish_candidates_sb<kSlots>(a, sm, s_bias, row, mask, total, l);
    return;
  }

  // Level 3, more than 32 candidates (ties, NaN/inf, huge values): exact keys of every
  // candidate, 32 at a time, merged into the warp's top-k list.
  int count = 0;
#pragma unroll
  for (int v = 0; v < kSlots; ++v) {
    const bool has = (mask >> v) & 1u;
    if (__any_sync(detail::kFullMask, has)) {
      float s = 0.0f;
      std::uint64_t key = 0;
      if (has) {
        s = detail::sqrt_softplus(l[v]);
        key = detail::pack_rank_key(a.bias != nullptr ? s + b[v] : s,
                                    std::uint32_t(route_slot_expert(v, lane)));
      }
      detail::warp_merge(sm.list, count, a.k, has, key, s);
    }
  }
  if (lane < a.k) {
    // detail::renormalize's order: 0 + s0 + s1 + ... in rank order.
    float sum = 0.0f;
    for (int j = 0; j < a.k; ++j) sum += sm.list.val[j];
    const float w = sm.list.val[lane] / detail::renorm_denominator(sum) * a.scale;
    const std::uint32_t id = detail::packed_index(sm.list.key[lane]);
    a.weights[row * a.weights_stride + lane] = w;
    if (a.ids_i64) {
      static_cast<std::int64_t*>(a.ids)[row * a.ids_stride + lane] = std::int64_t(id);
    } else {
      static_cast<std::int32_t*>(a.ids)[row * a.ids_stride + lane] = std::int32_t(id);
    }
  }
  __syncwarp();
}

}  // namespace route_detail

namespace route_detail {

/// Loads the bias (every warp; zeros past E or without bias) and reduces its range; warp w
/// stores chunks c % kRouteWarps == w of it to s_bias (the caller syncs the block).
template <int kChunks>
__device__ __forceinline__ RouteBias load_bias(const RouteTopkArgs& a, int warp, int lane,
                                               float* s_bias) {
  float bmax = 0.0f, b_hi = -INFINITY, b_lo = INFINITY;
  bool b_bad = false;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int e0 = route_slot_expert(4 * c, lane);
    float b[4];
    if (a.bias != nullptr && a.vector_bias && e0 < a.experts) {
      load4(a.bias + e0, b);
    } else {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        b[t] = (a.bias != nullptr && e0 + t < a.experts) ? a.bias[e0 + t] : 0.0f;
      }
    }
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float v = b[t];
      bmax = fmaxf(bmax, fabsf(v));  // NaN ignored
      if (e0 + t < a.experts) {
        b_hi = fmaxf(b_hi, v);
        b_lo = fminf(b_lo, v);
        b_bad |= !isfinite(v);
      }
    }
    if (c % kRouteWarps == warp) {
      *reinterpret_cast<float4*>(s_bias + e0) = make_float4(b[0], b[1], b[2], b[3]);
    }
  }
  RouteBias rb;
  rb.bmax = __uint_as_float(__reduce_max_sync(detail::kFullMask, __float_as_uint(bmax)));
  b_hi = key_to_float(__reduce_max_sync(detail::kFullMask, detail::order_key(b_hi)));
  b_lo = key_to_float(__reduce_min_sync(detail::kFullMask, detail::order_key(b_lo)));
  // The logit filter needs a finite bias and its range (rounded up by a relative margin).
  rb.logit_filter = a.logit_filter && !__any_sync(detail::kFullMask, b_bad);
  rb.b_range = (b_hi - b_lo) * (1.0f + 0x1p-20f);
  return rb;
}

}  // namespace route_detail

/// The small-batch variant of route_topk_kernel (route.cu uses it below 2048 rows, where a
/// row's chain of dependent latencies is the time): same levels, same results. A warp loads its
/// first row before the bias (both latencies overlap), keeps the bias in shared memory rather
/// than registers, and loads its next row before it routes the current one.
template <typename T, int kChunks>
__global__ void __launch_bounds__(kRouteWarps* detail::kWarpSize)
    route_topk_small_kernel(const RouteTopkArgs a) {
  using namespace route_detail;
  // Before any global access (cuda::route launches this kernel with PDL after its GEMM).
  grid_dependency_wait();
  constexpr int kSlots = 4 * kChunks;
  __shared__ RouteWarpSmem smem_all[kRouteWarps];
  __shared__ __align__(16) float s_bias[kSlots * detail::kWarpSize];  // 0 past E / without bias
  const int warp = int(threadIdx.x) / detail::kWarpSize;
  const int lane = detail::lane_id();
  RouteWarpSmem& sm = smem_all[warp];
  const std::int64_t warps_total = std::int64_t(gridDim.x) * kRouteWarps;
  std::int64_t row = std::int64_t(blockIdx.x) * kRouteWarps + warp;

  float next[kSlots];
  if (row < a.n) load_row<T, kChunks>(a, row, lane, next);
  const RouteBias rb = load_bias<kChunks>(a, warp, lane, s_bias);
  __syncthreads();  // s_bias

  for (; row < a.n; row += warps_total) {
    float l[kSlots];
#pragma unroll
    for (int v = 0; v < kSlots; ++v) l[v] = next[v];
    if (row + warps_total < a.n) load_row<T, kChunks>(a, row + warps_total, lane, next);
    route_row<kSlots>(a, sm, s_bias, row, l, rb);
  }
}

}  // namespace kernels
}  // namespace moerouter
