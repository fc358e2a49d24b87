// moerouter: detail::sqrt_softplus (math.h) for the GPU without branches, bit for bit.
//
// math.h's fp32 score is built from IEEE division and sqrt, which nvcc compiles to a fast path
// and a range check that branches to a slow-path subroutine, plus two early returns (NaN, and
// exp of very negative arguments) and a subnormal-scaling branch in exp. Every branch ends a
// basic block, so a lane that evaluates several scores runs them one after another: measured
// on an H100, four exact scores per lane took ~0.8 us of a block-per-row route's ~1.7 us chain.
//
// sqrt_softplus_nobranch computes the same fp32 operations with selects instead of branches:
//   - division t / (2 + t), t in [0, 1]: the fast path's reciprocal-and-correction sequence
//     (correctly rounded where nvcc's range check passes, which it does for t >= 2^-100);
//     below that 2 + t rounds to 2 and t / 2 is the exact product t * 0.5;
//   - sqrt: the fast path's rsqrt-and-correction sequence on x scaled into its range
//     (x < 2^-100 times 2^100, the root times 2^-50: both exact), selects for 0, inf and NaN;
//   - exp's early return and its two scalings: both computed, one selected; its rounding of
//     the reduction (rintf, int()) by an add of 1.5 * 2^23 instead of the FRND / F2I
//     conversions;
//   - the NaN result by a PTX select (select_nan): a C++ `?:` there became a branch again.
// Check the SASS (cuobjdump -sass) after a change: nvcc turns some selects back into branches.
// Equality with detail::sqrt_softplus is checked for all 2^32 inputs by
// tests/gpu/route_topk_test.cu (FusedRouteApprox.BranchlessScoreEqualsTheReferenceEverywhere).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/detail/ptx_approx.cuh"

namespace moerouter {
namespace detail {

namespace exact_detail {

/// exp_nonpositive (math.h) without branches. Its operations repeat math.h's on purpose:
/// helpers shared with math.h compiled to the same operations but made route_topk_kernel's
/// small-batch variant spill registers (measured with ptxas -v).
__device__ __forceinline__ float exp_nonpositive_nobranch(float x) {
  const bool zero = !(x >= -104.0f);  // also -inf and NaN, as the reference
  const float xc = zero ? 0.0f : x;
  // n = rintf(xc * log2(e)) by the round-to-nearest-even of an add of 1.5 * 2^23 (|xc * log2(e)|
  // <= 151, so the sum's unit is 1 and n, and int(n) from its bits, are exact): an FADD and an
  // integer subtract instead of the conversions FRND and F2I in the score's dependent chain.
  const float shifted = __fadd_rn(__fmul_rn(xc, 1.44269504088896341f), 12582912.0f);
  const float n = __fsub_rn(shifted, 12582912.0f);
  float r = __fmaf_rn(n, -0.693145751953125f, xc);
  r = __fmaf_rn(n, -1.428606765330187045e-06f, r);
  float p = 1.0f / 5040.0f;
  p = __fmaf_rn(p, r, 1.0f / 720.0f);
  p = __fmaf_rn(p, r, 1.0f / 120.0f);
  p = __fmaf_rn(p, r, 1.0f / 24.0f);
  p = __fmaf_rn(p, r, 1.0f / 6.0f);
  p = __fmaf_rn(p, r, 0.5f);
  p = __fmaf_rn(p, r, 1.0f);
  p = __fmaf_rn(p, r, 1.0f);
  const int e = __float_as_int(shifted) - 0x4b400000;  // int(n), in [-150, 0]
  const float normal = __fmul_rn(p, __uint_as_float(std::uint32_t(127 + e) << 23));
  const float sub =
      __fmul_rn(__fmul_rn(p, __uint_as_float(std::uint32_t(127 + e + 64) << 23)), 0x1p-64f);
  return zero ? 0.0f : (e >= -126 ? normal : sub);
}

/// t / (2 + t) for t in [0, 1], correctly rounded (see the file comment).
__device__ __forceinline__ float div_unit_nobranch(float t) {
  const float d = __fadd_rn(2.0f, t);
  float r = rcp_approx(d);
  r = __fmaf_rn(__fmaf_rn(-d, r, 1.0f), r, r);
  const float q0 = __fmul_rn(t, r);
  const float q = __fmaf_rn(__fmaf_rn(-d, q0, t), r, q0);
  return t < 0x1p-100f ? __fmul_rn(t, 0.5f) : q;
}

/// sqrtf for x >= 0, +inf or NaN, correctly rounded (see the file comment).
__device__ __forceinline__ float sqrt_nobranch(float x) {
  const bool tiny = x < 0x1p-100f;
  const float xs = tiny ? __fmul_rn(x, 0x1p100f) : x;
  const float r = rsqrt_approx(xs);
  float y = __fmul_rn(xs, r);
  const float h = __fmul_rn(0.5f, r);
  y = __fmaf_rn(__fmaf_rn(-y, y, xs), h, y);
  y = tiny ? __fmul_rn(y, 0x1p-50f) : y;
  return (x == 0.0f || x == INFINITY || x != x) ? x : y;
}

/// z if z is NaN, else r, by a PTX select: written as `z != z ? z : r`, nvcc made it a branch
/// around r's whole computation (the sqrt's MUFU.RSQ and its corrections, with a BSSY/BSYNC
/// pair), so a lane's several scores ran their square roots one after another.
__device__ __forceinline__ float select_nan(float z, float r) {
  float out;
  asm("{\n\t.reg .pred p;\n\tsetp.nan.f32 p, %1, %1;\n\tselp.f32 %0, %1, %2, p;\n\t}"
      : "=f"(out)
      : "f"(z), "f"(r));
  return out;
}

}  // namespace exact_detail

/// detail::sqrt_softplus(z), bit for bit, without branches (see the file comment).
__device__ __forceinline__ float sqrt_softplus_nobranch(float z) {
  using namespace exact_detail;
  const float m = z > 0.0f ? z : 0.0f;
  const float t = exp_nonpositive_nobranch(-fabsf(z));
  // log1p_unit(t) (math.h) with the division above.
  const float s = div_unit_nobranch(t);
  const float s2 = __fmul_rn(s, s);
  float q = 1.0f / 17.0f;
  q = __fmaf_rn(q, s2, 1.0f / 15.0f);
  q = __fmaf_rn(q, s2, 1.0f / 13.0f);
  q = __fmaf_rn(q, s2, 1.0f / 11.0f);
  q = __fmaf_rn(q, s2, 1.0f / 9.0f);
  q = __fmaf_rn(q, s2, 1.0f / 7.0f);
  q = __fmaf_rn(q, s2, 1.0f / 5.0f);
  q = __fmaf_rn(q, s2, 1.0f / 3.0f);
  const float two_s = __fadd_rn(s, s);
  const float lp = __fmaf_rn(two_s, __fmul_rn(s2, q), two_s);
  const float sp = __fadd_rn(m, lp);
  return select_nan(z, sqrt_nobranch(sp));
}

}  // namespace detail
}  // namespace moerouter
