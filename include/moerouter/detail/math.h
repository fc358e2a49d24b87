// moerouter: the router math, once, for the oracle, the CPU backend and every kernel.
//
// Everything here compiles for host and device. The fp32 functions are built from IEEE
// operations that are correctly rounded on both sides (+, -, *, /, sqrt, fma) and from bit
// manipulation only, never from libm or CUDA's exp/log: that makes the CPU backend and the
// GPU kernels compute bit-identical scores, so their ids agree exactly (SPEC.md, "two backends
// that run the same fp32 operations in the same order must agree bit for bit").
//
// nvcc fuses a multiply feeding an add into one fma by default, g++ does not: every product
// whose rounded value feeds an addition is written as mul_rn() (never fused) or as an explicit
// fmaf (fused on both sides).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "moerouter/types.h"

#if defined(__CUDACC__)
#define MOER_HD __host__ __device__ __forceinline__
#else
#define MOER_HD inline
#endif

namespace moerouter {
namespace detail {

/// The renormalization floor of SPEC.md: w = s / max(sum, 1e-20) * scale.
constexpr float kRenormFloor = 1e-20f;
constexpr double kRenormFloorF64 = 1e-20;

// ---------------------------------------------------------------------------------------------
// Bits
// ---------------------------------------------------------------------------------------------

MOER_HD std::uint32_t float_as_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

MOER_HD float bits_as_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

/// A product that is never fused into a following addition (see the file comment).
MOER_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

MOER_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// ---------------------------------------------------------------------------------------------
// bf16 <-> fp32
// ---------------------------------------------------------------------------------------------

/// Exact: a bf16 is the upper half of a float32.
MOER_HD float bf16_bits_to_float(std::uint16_t b) { return bits_as_float(std::uint32_t(b) << 16); }

/// Round to nearest, ties to even. NaN stays a (quiet) NaN with its sign; +-inf stays +-inf;
/// values past the largest bf16 round to +-inf.
MOER_HD std::uint16_t float_to_bf16_bits(float f) {
  std::uint32_t u = float_as_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

MOER_HD float bf16_to_float(bf16 b) { return bf16_bits_to_float(b.bits); }
MOER_HD bf16 float_to_bf16(float f) { return bf16{float_to_bf16_bits(f)}; }

// ---------------------------------------------------------------------------------------------
// softplus and sqrt(softplus), fp32 (bit-identical host/device) and fp64 (the oracle)
// ---------------------------------------------------------------------------------------------

/// exp(x) for x <= 0 (and 0 for x < -104, where the true value is below half the smallest
/// subnormal). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a degree-7 Taylor
/// polynomial (truncation error < 0.1 ulp) and an exact scaling by 2^n. Max error ~1 ulp.
MOER_HD float exp_nonpositive(float x) {
  if (!(x >= -104.0f)) return 0.0f;  // also -inf
  const float n = rintf(x * 1.44269504088896341f);
  float r = fma_rn(n, -0.693145751953125f, x);  // ln2 high part: n * hi is exact
  r = fma_rn(n, -1.428606765330187045e-06f, r);
  float p = 1.0f / 5040.0f;
  p = fma_rn(p, r, 1.0f / 720.0f);
  p = fma_rn(p, r, 1.0f / 120.0f);
  p = fma_rn(p, r, 1.0f / 24.0f);
  p = fma_rn(p, r, 1.0f / 6.0f);
  p = fma_rn(p, r, 0.5f);
  p = fma_rn(p, r, 1.0f);
  p = fma_rn(p, r, 1.0f);
  const int e = int(n);  // in [-150, 0]
  if (e >= -126) return mul_rn(p, bits_as_float(std::uint32_t(127 + e) << 23));
  // 2^e is subnormal: scale in two exact-then-rounding steps so the result rounds once.
  return mul_rn(mul_rn(p, bits_as_float(std::uint32_t(127 + e + 64) << 23)), 0x1p-64f);
}

/// log1p(t) for t in [0, 1]: log(1 + t) = 2 atanh(s) with s = t / (2 + t) in [0, 1/3], by its
/// series 2s (1 + s^2/3 + ... + s^16/17) (truncation < 3e-10 relative). No 1 + t is formed, so
/// nothing of a small t is lost. Max error ~1.5 ulp.
MOER_HD float log1p_unit(float t) {
  const float s = t / (2.0f + t);
  const float s2 = mul_rn(s, s);
  float q = 1.0f / 17.0f;
  q = fma_rn(q, s2, 1.0f / 15.0f);
  q = fma_rn(q, s2, 1.0f / 13.0f);
  q = fma_rn(q, s2, 1.0f / 11.0f);
  q = fma_rn(q, s2, 1.0f / 9.0f);
  q = fma_rn(q, s2, 1.0f / 7.0f);
  q = fma_rn(q, s2, 1.0f / 5.0f);
  q = fma_rn(q, s2, 1.0f / 3.0f);
  const float two_s = s + s;
  return fma_rn(two_s, mul_rn(s2, q), two_s);
}

/// softplus(z) = max(z, 0) + log1p(exp(-|z|)), the stable form of SPEC.md. NaN -> NaN,
/// +inf -> +inf, -inf -> 0; below about -87 the result is subnormal.
MOER_HD float softplus(float z) {
  if (z != z) return z;
  const float m = z > 0.0f ? z : 0.0f;
  return m + log1p_unit(exp_nonpositive(-fabsf(z)));
}

MOER_HD double softplus(double z) {
  if (z != z) return z;
  const double m = z > 0.0 ? z : 0.0;
  return m + log1p(exp(-fabs(z)));
}

/// The DSV4 score s = sqrt(softplus(logit)).
MOER_HD float sqrt_softplus(float z) { return sqrtf(softplus(z)); }
MOER_HD double sqrt_softplus(double z) { return sqrt(softplus(z)); }

// ---------------------------------------------------------------------------------------------
// Ranking order: larger first; equal values (+0 == -0) rank the lower index first; NaN ranks
// below every number (-inf included), and NaNs among themselves by index.
// ---------------------------------------------------------------------------------------------

/// An unsigned key whose order is the ranking order of the values (larger key ranks first):
/// NaN -> 0, -inf -> 0x007fffff, -0 and +0 -> 0x80000000, +inf -> 0xff800000. Radix select
/// and packed (key, index) comparisons use it.
/// Written with selects, not early returns: nvcc compiled the returns to a branch around every
/// key (a dozen instructions with its convergence barrier) in the GPU's loops over keys.
MOER_HD std::uint32_t order_key(float v) {
  const std::uint32_t u = float_as_bits(v);
  const std::uint32_t mag = u & 0x7fffffffu;
  // ~u for a negative number, u | 0x80000000 for a positive one.
  const std::uint32_t k = u ^ (std::uint32_t(std::int32_t(u) >> 31) | 0x80000000u);
  return mag > 0x7f800000u ? 0u : mag == 0u ? 0x80000000u : k;
}

/// True when (a, index ia) ranks before (b, index ib).
MOER_HD bool ranks_before(float a, std::int64_t ia, float b, std::int64_t ib) {
  const std::uint32_t ka = order_key(a), kb = order_key(b);
  return ka != kb ? ka > kb : ia < ib;
}

MOER_HD bool ranks_before(double a, std::int64_t ia, double b, std::int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return (na && nb) ? ia < ib : nb;
  return a != b ? a > b : ia < ib;
}

/// Inserts (v, id) into the sorted list vals/ids of `count` <= k entries (best first), keeping
/// the best k. Ties and NaN follow ranks_before. Used by per-thread top-k lists.
template <typename T, typename I>
MOER_HD void topk_insert(T* vals, I* ids, int k, int& count, T v, I id) {
  if (count == k && !ranks_before(v, std::int64_t(id), vals[k - 1], std::int64_t(ids[k - 1]))) {
    return;
  }
  int pos = count < k ? count++ : k - 1;
  while (pos > 0 && ranks_before(v, std::int64_t(id), vals[pos - 1], std::int64_t(ids[pos - 1]))) {
    vals[pos] = vals[pos - 1];
    ids[pos] = ids[pos - 1];
    --pos;
  }
  vals[pos] = v;
  ids[pos] = id;
}

// ---------------------------------------------------------------------------------------------
// Renormalization
// ---------------------------------------------------------------------------------------------

/// max(sum, floor) that keeps NaN (std::max/fmaxf would turn a NaN sum into the floor).
MOER_HD float renorm_denominator(float sum) { return sum < kRenormFloor ? kRenormFloor : sum; }
MOER_HD double renorm_denominator(double sum) {
  return sum < kRenormFloorF64 ? kRenormFloorF64 : sum;
}

/// w[j] = s[j] / max(s[0] + ... + s[k-1], 1e-20) * scale, summed left to right in rank
/// order: every backend sums in this order, so their weights agree bit for bit.
template <typename T>
MOER_HD void renormalize(const T* s, int k, T scale, T* w) {
  T sum = T(0);
  for (int j = 0; j < k; ++j) sum += s[j];
  const T denom = renorm_denominator(sum);
  for (int j = 0; j < k; ++j) w[j] = s[j] / denom * scale;
}

}  // namespace detail
}  // namespace moerouter
