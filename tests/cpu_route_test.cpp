// The CPU backend's dense route against the float64 oracle: seeded sweeps, hard data,
// determinism.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::LogitPattern;

struct Outputs {
  std::vector<float> weights;
  std::vector<std::int64_t> ids;
};

Outputs route_logits_cpu(const std::vector<float>& logits, const std::vector<float>& bias,
                         std::int64_t n, std::int64_t e, int k, float scale,
                         oracle::RouteResult* ref = nullptr) {
  Outputs out{std::vector<float>(n * k, -7.0f), std::vector<std::int64_t>(n * k, -7)};
  RouteLogitsParams p;
  p.logits = logits.data();
  p.bias = bias.empty() ? nullptr : bias.data();
  p.weights = out.weights.data();
  p.ids = out.ids.data();
  p.ids_dtype = DType::kI64;
  p.n = n;
  p.experts = e;
  p.k = k;
  p.scale = scale;
  const Status st = cpu::route_logits(p);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (ref) *ref = oracle::route_logits(p);
  return out;
}

TEST(CpuRouteLogits, SweepAgainstOracle) {
  const LogitPattern patterns[] = {LogitPattern::kNormal, LogitPattern::kTies,
                                   LogitPattern::kNearTies, LogitPattern::kExtreme,
                                   LogitPattern::kSpecial};
  std::uint64_t seed = 10;
  for (std::int64_t n : {0, 1, 7, 64, 300}) {
    for (std::int64_t e : {8, 64, 256, 384, 1000, 37}) {
      for (int k : {1, 6, 8, 32}) {
        if (k > e) continue;
        for (LogitPattern pat : patterns) {
          const std::string cfg =
              testing::config(n, e, k, std::string("pattern=") + testing::pattern_name(pat));
          const auto logits = testing::make_logits(n, e, pat, ++seed);
          const auto bias = testing::make_bias(e, ++seed);
          oracle::RouteResult ref;
          const Outputs out = route_logits_cpu(logits, bias, n, e, k, 2.5f, &ref);
          const auto cmp =
              oracle::compare_route(ref, out.ids.data(), DType::kI64, k, out.weights.data(), k);
          ASSERT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;
          // Exact fp32 ties are ranked exactly as the oracle ranks them.
          if (pat == LogitPattern::kTies) {
            EXPECT_EQ(cmp.ids_equal, cmp.ids_total) << cfg;
          }
        }
      }
    }
  }
}

TEST(CpuRouteLogits, Bf16LogitsAndStrides) {
  const std::int64_t n = 33, e = 256, stride = 300;
  const int k = 6;
  const auto vals = testing::make_bf16(n * stride, 2.0, 5);
  const auto bias = testing::make_bias(e, 6);
  std::vector<float> weights(n * 8, -7.0f);
  std::vector<std::int32_t> ids(n * 10, -7);
  RouteLogitsParams p;
  p.logits = vals.data();
  p.logits_dtype = DType::kBF16;
  p.logits_stride = stride;
  p.bias = bias.data();
  p.weights = weights.data();
  p.weights_stride = 8;
  p.ids = ids.data();
  p.ids_stride = 10;
  p.n = n;
  p.experts = e;
  p.k = k;
  p.scale = 1.5f;
  ASSERT_TRUE(cpu::route_logits(p).ok());
  const auto ref = oracle::route_logits(p);
  const auto cmp = oracle::compare_route(ref, ids.data(), DType::kI32, 10, weights.data(), 8);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  // Padding between rows is never written.
  for (std::int64_t r = 0; r < n; ++r) {
    EXPECT_EQ(weights[r * 8 + 6], -7.0f);
    EXPECT_EQ(ids[r * 10 + 9], -7);
  }
}

TEST(CpuRouteLogits, BiasOfEightWithTinyScores) {
  // The failure mode of routers that recover s as (s + bias) - bias in fp32: with a bias of 8
  // the tiny scores lose all their digits. Weights must come from the unbiased score.
  const std::int64_t e = 64;
  const int k = 6;
  std::vector<float> logits(e);
  for (std::int64_t i = 0; i < e; ++i) logits[i] = -30.0f + 0.25f * float(i % 13);
  const auto bias = testing::make_bias(e, 3, 8.0);
  oracle::RouteResult ref;
  const Outputs out = route_logits_cpu(logits, bias, 1, e, k, 2.5f, &ref);
  const auto cmp = oracle::compare_route(ref, out.ids.data(), DType::kI64, k, out.weights.data(), k);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  for (int j = 0; j < k; ++j) EXPECT_NEAR(out.weights[j], ref.weights[j], 1e-6 * ref.weights[j]);
}

TEST(CpuRouteLogits, LargeLogitsAndUnderflow) {
  const std::int64_t e = 16;
  std::vector<float> logits(2 * e, -200.0f);  // row 0 underflows completely
  for (std::int64_t i = 0; i < e; ++i) logits[e + i] = (i % 2 ? 100.0f : -100.0f) + float(i);
  oracle::RouteResult ref;
  const Outputs out = route_logits_cpu(logits, {}, 2, e, 4, 1.0f, &ref);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(out.ids[j], j);  // ties among the underflowed: lowest indices
    EXPECT_EQ(out.weights[j], 0.0f) << "an all-underflow row gets weights 0, never NaN";
  }
  const auto cmp = oracle::compare_route(ref, out.ids.data(), DType::kI64, 4, out.weights.data(), 4);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
}

TEST(CpuRouteLogits, AllNaNOrMinusInfRowsYieldDistinctIds) {
  const std::int64_t e = 40;
  std::vector<float> logits(2 * e, testing::kNaN);
  for (std::int64_t i = 0; i < e; ++i) logits[e + i] = -testing::kInf;
  const Outputs out = route_logits_cpu(logits, {}, 2, e, 6, 1.0f);
  for (int r = 0; r < 2; ++r) {
    for (int j = 0; j < 6; ++j) EXPECT_EQ(out.ids[r * 6 + j], j) << "row " << r;
  }
  for (int j = 0; j < 6; ++j) EXPECT_EQ(out.weights[6 + j], 0.0f);
}

// --- from x and W -------------------------------------------------------------------------

struct DenseCase {
  std::int64_t n, h, e;
  int k;
};

TEST(CpuRoute, SweepFromXAndWAgainstOracle) {
  const DenseCase cases[] = {{0, 64, 16, 6},    {1, 4096, 256, 6}, {7, 7168, 384, 6},
                             {64, 512, 256, 8}, {33, 120, 1000, 32}, {5, 8, 8, 1},
                             {9, 1000, 37, 37}};
  std::uint64_t seed = 100;
  for (const DenseCase& c : cases) {
    const std::string cfg = testing::config(c.n, c.e, c.k, "H=" + std::to_string(c.h));
    const auto x = testing::make_bf16(c.n * c.h, 1.0, ++seed);
    const auto w = testing::make_bf16(c.e * c.h, 1.5 / std::sqrt(double(c.h)), ++seed);
    const auto bias = testing::make_bias(c.e, ++seed);
    std::vector<float> weights(c.n * c.k);
    std::vector<std::int32_t> ids(c.n * c.k);
    RouteParams p;
    p.x = x.data();
    p.w = w.data();
    p.bias = bias.data();
    p.weights = weights.data();
    p.ids = ids.data();
    p.n = c.n;
    p.hidden = c.h;
    p.experts = c.e;
    p.k = c.k;
    p.scale = 2.5f;
    ASSERT_TRUE(cpu::route(p).ok()) << cfg;
    const auto ref = oracle::route(p);
    const auto cmp =
        oracle::compare_route(ref, ids.data(), DType::kI32, c.k, weights.data(), c.k);
    EXPECT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;
  }
}

TEST(CpuRoute, DeterministicAndIndependentOfThreadCount) {
  const std::int64_t n = 50, h = 1024, e = 256;
  const int k = 6;
  const auto x = testing::make_bf16(n * h, 1.0, 1);
  const auto w = testing::make_bf16(e * h, 0.05, 2);
  const auto bias = testing::make_bias(e, 3);
  auto run = [&](int threads) {
    cpu::set_num_threads(threads);
    Outputs out{std::vector<float>(n * k), std::vector<std::int64_t>(n * k)};
    RouteParams p;
    p.x = x.data();
    p.w = w.data();
    p.bias = bias.data();
    p.weights = out.weights.data();
    p.ids = out.ids.data();
    p.ids_dtype = DType::kI64;
    p.n = n;
    p.hidden = h;
    p.experts = e;
    p.k = k;
    p.scale = 1.5f;
    EXPECT_TRUE(cpu::route(p).ok());
    return out;
  };
  const Outputs a = run(0), b = run(0), c = run(1), d = run(7);
  cpu::set_num_threads(0);
  for (const Outputs* o : {&b, &c, &d}) {
    EXPECT_EQ(o->ids, a.ids);
    EXPECT_EQ(0, std::memcmp(o->weights.data(), a.weights.data(), a.weights.size() * 4))
        << "weights must be bit-identical";
  }
}

TEST(CpuRoute, FromXEqualsFromItsOwnLogitsBitForBit) {
  // route(x, W) == GEMM then route_logits: the same fp32 operations in the same order.
  const std::int64_t n = 9, h = 256, e = 64;
  const int k = 6;
  const auto x = testing::make_bf16(n * h, 1.0, 11);
  const auto w = testing::make_bf16(e * h, 0.1, 12);
  const auto bias = testing::make_bias(e, 13);
  Outputs a{std::vector<float>(n * k), std::vector<std::int64_t>(n * k)};
  RouteParams p;
  p.x = x.data();
  p.w = w.data();
  p.bias = bias.data();
  p.weights = a.weights.data();
  p.ids = a.ids.data();
  p.ids_dtype = DType::kI64;
  p.n = n;
  p.hidden = h;
  p.experts = e;
  p.k = k;
  p.scale = 1.5f;
  ASSERT_TRUE(cpu::route(p).ok());
  // The CPU GEMM's documented order: lane i % 8 accumulates in order, lanes summed 0..7.
  std::vector<float> logits(n * e);
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t j = 0; j < e; ++j) {
      float lanes[8] = {};
      for (std::int64_t i = 0; i < h; ++i) {
        lanes[i % 8] += detail::bf16_to_float(x[t * h + i]) * detail::bf16_to_float(w[j * h + i]);
      }
      float sum = 0.0f;
      for (float l : lanes) sum += l;
      logits[t * e + j] = sum;
    }
  }
  const Outputs b = route_logits_cpu(logits, bias, n, e, k, 1.5f);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(0, std::memcmp(a.weights.data(), b.weights.data(), a.weights.size() * 4));
}

}  // namespace
}  // namespace moerouter
