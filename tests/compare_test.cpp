// The oracle comparison itself: it must fail on real errors and excuse only near ties.
#include <gtest/gtest.h>

#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

struct Routed {
  oracle::RouteResult ref;
  std::vector<float> weights;
  std::vector<std::int32_t> ids;
};

Routed route(const std::vector<float>& logits, std::int64_t e, int k) {
  Routed r;
  const std::int64_t n = static_cast<std::int64_t>(logits.size()) / e;
  r.weights.resize(n * k);
  r.ids.resize(n * k);
  RouteLogitsParams p;
  p.logits = logits.data();
  p.weights = r.weights.data();
  p.ids = r.ids.data();
  p.n = n;
  p.experts = e;
  p.k = k;
  p.scale = 2.5f;
  EXPECT_TRUE(cpu::route_logits(p).ok());
  r.ref = oracle::route_logits(p);
  return r;
}

oracle::RouteComparison compare(const Routed& r, int k) {
  return oracle::compare_route(r.ref, r.ids.data(), DType::kI32, k, r.weights.data(), k);
}

TEST(CompareRoute, DetectsAWrongExpert) {
  Routed r = route({3.0f, 2.0f, 1.0f, 0.0f}, 4, 2);
  ASSERT_TRUE(compare(r, 2).ok());
  r.ids[1] = 3;  // expert 3 is far below expert 1
  EXPECT_FALSE(compare(r, 2).ok());
  r.ids[1] = 0;  // a repeated id
  EXPECT_FALSE(compare(r, 2).ok());
  r.ids[1] = 9;  // out of range
  EXPECT_FALSE(compare(r, 2).ok());
}

TEST(CompareRoute, ExcusesOnlyNearTies) {
  // Experts 1 and 2 differ in the last bit: swapping them is a near tie, allowed.
  const float a = 1.0f, b = std::nextafter(1.0f, 0.0f);
  Routed r = route({3.0f, a, b, 0.0f}, 4, 2);
  ASSERT_TRUE(compare(r, 2).ok());
  r.ids[1] = 2;
  const auto cmp = compare(r, 2);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  EXPECT_EQ(cmp.rows_near_tie, 1);
}

TEST(CompareRoute, DetectsAWeightOffByMoreThanTheTolerance) {
  Routed r = route({0.3f, -1.0f, 2.0f, 0.5f}, 4, 3);
  ASSERT_TRUE(compare(r, 3).ok());
  r.weights[1] *= 1.0f + 4e-6f;
  EXPECT_FALSE(compare(r, 3).ok());
}

TEST(CompareRoute, NaNRanksExactlyButFiniteNearTiesAreExcused) {
  Routed r = route({testing::kNaN, 1.0f, testing::kNaN, 0.0f}, 4, 3);
  ASSERT_TRUE(compare(r, 3).ok());
  std::swap(r.ids[1], r.ids[2]);  // a NaN before a number
  EXPECT_FALSE(compare(r, 3).ok());
  r = route({testing::kNaN, 1.0f, testing::kNaN, 0.0f}, 4, 3);
  r.ids[2] = 2;  // the other NaN: NaNs rank by index, exactly
  EXPECT_FALSE(compare(r, 3).ok());
  // A near tie between finite experts in a row that also holds NaN and inf.
  const float a = 1.0f, b = std::nextafter(1.0f, 0.0f);
  r = route({testing::kNaN, a, testing::kInf, b, -1.0f}, 5, 2);
  ASSERT_TRUE(compare(r, 2).ok());
  EXPECT_EQ(r.ids[1], 1);
  r.ids[1] = 3;
  const auto cmp = compare(r, 2);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  EXPECT_EQ(cmp.rows_near_tie, 1);
}

}  // namespace
}  // namespace moerouter
