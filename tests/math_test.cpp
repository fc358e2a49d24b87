// detail/math.h: the shared router math.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "moerouter/detail/math.h"
#include "moerouter/synthetic.h"
#include "testbed.h"

namespace moerouter {
namespace {

using detail::bf16_bits_to_float;
using detail::float_to_bf16_bits;
using testing::kInf;
using testing::kNaN;

// Distance in units in the last place between two finite floats of the same sign.
std::int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    const std::int64_t u = detail::float_as_bits(f);
    return (u & 0x80000000) ? -(u & 0x7fffffff) : u;
  };
  return std::llabs(ordered(a) - ordered(b));
}

TEST(Softplus, Fp32WithinTwoUlpOfFloat64) {
  SeededRng rng(1);
  std::int64_t worst = 0;
  float worst_z = 0;
  for (int i = 0; i < 200000; ++i) {
    // Cover [-87, 90] densely, where softplus is a normal float.
    const float z = float(-87.0 + 177.0 * rng.uniform());
    const float got = detail::softplus(z);
    const float want = float(detail::softplus(double(z)));
    const std::int64_t d = ulp_distance(got, want);
    if (d > worst) {
      worst = d;
      worst_z = z;
    }
  }
  EXPECT_LE(worst, 2) << "worst at z=" << worst_z;
}

TEST(Softplus, SqrtSoftplusWithinTwoUlp) {
  SeededRng rng(2);
  for (int i = 0; i < 100000; ++i) {
    const float z = float(-80.0 + 160.0 * rng.uniform());
    ASSERT_LE(ulp_distance(detail::sqrt_softplus(z), float(detail::sqrt_softplus(double(z)))), 2)
        << "z=" << z;
  }
}

TEST(Softplus, SpecialValues) {
  EXPECT_TRUE(std::isnan(detail::softplus(kNaN)));
  EXPECT_EQ(detail::softplus(kInf), kInf);
  EXPECT_EQ(detail::softplus(-kInf), 0.0f);
  EXPECT_EQ(detail::softplus(-200.0f), 0.0f);  // underflows to 0, never NaN
  EXPECT_EQ(detail::softplus(100.0f), 100.0f);
  EXPECT_FLOAT_EQ(detail::softplus(0.0f), std::log(2.0f));
  // Subnormal range: a few bits of precision, but the right magnitude.
  const float sub = detail::softplus(-100.0f);
  EXPECT_GT(sub, 0.0f);
  EXPECT_NEAR(sub, std::exp(-100.0), 1e-44);
  EXPECT_TRUE(std::isnan(detail::softplus(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(detail::softplus(-1000.0), 0.0);
}

TEST(Bf16, RoundTripAndRoundToNearestEven) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_bits_to_float(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: ties to even -> up.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(kInf), 0x7f80);
  EXPECT_EQ(float_to_bf16_bits(-kInf), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(kNaN))));
  EXPECT_EQ(float_to_bf16_bits(3.4e38f), 0x7f80);  // past the largest bf16: +inf
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = bf16_bits_to_float(bits);
    if (!std::isnan(f)) {
      ASSERT_EQ(float_to_bf16_bits(f), bits) << std::hex << b;
    }
  }
}

TEST(Ranking, OrderKeyIsTheRankingOrder) {
  const float ordered[] = {kInf, 3.0e38f, 2.0f, 1e-40f, 0.0f, -1e-40f, -2.0f, -3.0e38f, -kInf,
                           kNaN};
  for (std::size_t i = 0; i + 1 < std::size(ordered); ++i) {
    EXPECT_GT(detail::order_key(ordered[i]), detail::order_key(ordered[i + 1])) << i;
  }
  EXPECT_EQ(detail::order_key(0.0f), detail::order_key(-0.0f));
  EXPECT_EQ(detail::order_key(kNaN), detail::order_key(-kNaN));
}

// order_key (written with selects for the GPU) against its definition: NaN -> 0, -0 and +0 ->
// 0x80000000, a positive number -> bits | 2^31, a negative one -> ~bits. Every pattern of the
// top 24 bits (sign, exponent, 15 mantissa bits), each with the low 8 bits 0x00, 0x01, 0x7f,
// 0x80 and 0xff (zeros, the smallest NaN payloads and subnormals included).
TEST(Ranking, OrderKeyMatchesItsDefinition) {
  std::uint64_t bad = 0;
  std::uint32_t first = 0;
  for (std::uint64_t x = 0; x < (std::uint64_t(1) << 24) * 5; ++x) {
    const std::uint32_t low[] = {0x00u, 0x01u, 0x7fu, 0x80u, 0xffu};
    const std::uint32_t u = std::uint32_t(x / 5) << 8 | low[x % 5];
    const std::uint32_t mag = u & 0x7fffffffu;
    std::uint32_t want = 0;
    if (mag > 0x7f800000u) {
      want = 0u;
    } else if (mag == 0u) {
      want = 0x80000000u;
    } else if (u & 0x80000000u) {
      want = ~u;
    } else {
      want = u | 0x80000000u;
    }
    if (detail::order_key(detail::bits_as_float(u)) != want && bad++ == 0) first = u;
  }
  EXPECT_EQ(bad, 0u) << "first bit pattern: 0x" << std::hex << first;
}

TEST(Ranking, TiesGoToTheLowerIndexAndNaNIsLast) {
  EXPECT_TRUE(detail::ranks_before(1.0f, 3, 1.0f, 5));
  EXPECT_FALSE(detail::ranks_before(1.0f, 5, 1.0f, 3));
  EXPECT_TRUE(detail::ranks_before(0.0f, 1, -0.0f, 2));
  EXPECT_TRUE(detail::ranks_before(-0.0f, 1, 0.0f, 2));
  EXPECT_TRUE(detail::ranks_before(-kInf, 9, kNaN, 0));
  EXPECT_TRUE(detail::ranks_before(kNaN, 0, kNaN, 1));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(detail::ranks_before(-1e308, 9, nan, 0));
  EXPECT_FALSE(detail::ranks_before(nan, 0, -1e308, 9));
  EXPECT_TRUE(detail::ranks_before(2.0, 9, 1.0, 0));
}

TEST(Ranking, TopkInsertKeepsTheBestSorted) {
  float vals[3];
  int ids[3];
  int count = 0;
  const float in[] = {1.0f, kNaN, 5.0f, 1.0f, 5.0f, -kInf, 2.0f};
  for (int i = 0; i < 7; ++i) detail::topk_insert(vals, ids, 3, count, in[i], i);
  ASSERT_EQ(count, 3);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 4);
  EXPECT_EQ(ids[2], 6);
}

TEST(Renormalize, FloorAndNaN) {
  const float s[] = {0.0f, 0.0f};
  float w[2];
  detail::renormalize(s, 2, 2.5f, w);
  EXPECT_EQ(w[0], 0.0f);
  EXPECT_EQ(w[1], 0.0f);
  const float tiny[] = {1e-30f, 3e-30f};
  detail::renormalize(tiny, 2, 1.0f, w);  // sum below the floor: divided by 1e-20
  EXPECT_FLOAT_EQ(w[0], 1e-10f);
  EXPECT_FLOAT_EQ(w[1], 3e-10f);
  const float with_nan[] = {1.0f, kNaN};
  detail::renormalize(with_nan, 2, 1.0f, w);
  EXPECT_TRUE(std::isnan(w[0]));  // a NaN sum is not hidden by the floor
  const double d[] = {1.0, 3.0};
  double wd[2];
  detail::renormalize(d, 2, 2.0, wd);
  EXPECT_DOUBLE_EQ(wd[0], 0.5);
  EXPECT_DOUBLE_EQ(wd[1], 1.5);
}

}  // namespace
}  // namespace moerouter
