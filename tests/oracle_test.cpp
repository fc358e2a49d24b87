// The float64 oracle on hand-computed cases and on the independent reference vectors of
// testdata/dsv4_gate_vectors.json; the CPU backend on the same vectors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/detail/math.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::kInf;
using testing::kNaN;

oracle::RouteResult oracle_from_logits(const std::vector<float>& logits,
                                       const std::vector<float>& bias, int k, float scale) {
  RouteLogitsParams p;
  p.logits = logits.data();
  p.bias = bias.empty() ? nullptr : bias.data();
  p.n = 1;
  p.experts = static_cast<std::int64_t>(logits.size());
  p.k = k;
  p.scale = scale;
  return oracle::route_logits(p);
}

TEST(Oracle, HandComputedTwoExperts) {
  // s(1) = 1.145976303209723, s(0) = sqrt(ln 2) = 0.8325546111576977. The bias flips the order.
  const auto r = oracle_from_logits({1.0f, 0.0f}, {0.0f, 0.5f}, 2, 2.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{1, 0}));
  EXPECT_NEAR(r.weights[0], 0.8415886808863773, 1e-15);
  EXPECT_NEAR(r.weights[1], 1.1584113191136227, 1e-15);
}

TEST(Oracle, WeightsComeFromTheUnbiasedScore) {
  // A Flash-like bias of 8 on tiny scores chooses experts 0 and 1 over the large expert 2; the
  // weights are s / sum(s), never (s + bias) / sum or anything derived from s + bias - bias.
  const auto r = oracle_from_logits({-10.0f, -12.0f, 3.0f}, {8.0f, 8.0f, 0.0f}, 2, 2.5f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{0, 1}));
  EXPECT_NEAR(r.weights[0], 1.827641622828615, 1e-14);
  EXPECT_NEAR(r.weights[1], 0.672358377171385, 1e-14);
}

TEST(Oracle, ExactTiesRankTheLowerIndexFirst) {
  const auto r = oracle_from_logits({0.5f, 1.0f, 0.5f, 1.0f, 0.5f}, {}, 3, 1.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{1, 3, 0}));
  EXPECT_NEAR(r.weights[0] + r.weights[1] + r.weights[2], 1.0, 1e-15);
  EXPECT_DOUBLE_EQ(r.weights[0], r.weights[1]);
}

TEST(Oracle, NaNRanksBelowEveryNumber) {
  const auto r = oracle_from_logits({kNaN, -kInf, kNaN, 0.0f}, {}, 4, 1.0f);
  // 0 first, then -inf (s = 0), then the NaNs by index: k distinct ids, never a repeat.
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{3, 1, 0, 2}));
  // A NaN score in the chosen set makes the sum NaN: every weight is NaN (not hidden).
  EXPECT_TRUE(std::isnan(r.weights[0]));
}

TEST(Oracle, AllMinusInfinityGivesDistinctIdsAndZeroWeights) {
  const auto r = oracle_from_logits({-kInf, -kInf, -kInf, -kInf}, {}, 2, 1.5f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(r.weights[0], 0.0);
  EXPECT_EQ(r.weights[1], 0.0);
}

TEST(Oracle, PlusInfinityWins) {
  const auto r = oracle_from_logits({0.0f, kInf, 1.0f}, {}, 2, 1.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(std::isnan(r.weights[0]));  // inf / inf, as the formula says
  EXPECT_EQ(r.weights[1], 0.0);           // finite / inf
}

TEST(Oracle, UnderflowingRowHasFiniteWeights) {
  // softplus(-200) = 1.4e-87 in float64; s = 3.7e-44; the sum is below the 1e-20 floor.
  const auto r = oracle_from_logits(std::vector<float>(8, -200.0f), {}, 2, 1.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{0, 1}));
  EXPECT_NEAR(r.weights[0], 3.720075976020836e-24, 1e-36);
  EXPECT_FALSE(std::isnan(r.weights[1]));
}

TEST(Oracle, KEqualsOneAndKEqualsE) {
  const std::vector<float> logits = {0.3f, -1.0f, 2.0f, 0.1f, 2.0f};
  auto r = oracle_from_logits(logits, {}, 1, 2.5f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{2}));
  EXPECT_DOUBLE_EQ(r.weights[0], 2.5);
  r = oracle_from_logits(logits, {}, 5, 1.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{2, 4, 0, 3, 1}));
}

TEST(Oracle, ExpertsNotAMultipleOf32) {
  std::vector<float> logits(37);
  for (int e = 0; e < 37; ++e) logits[e] = float(e % 5) - float(e) * 0.01f;
  const auto r = oracle_from_logits(logits, {}, 3, 1.0f);
  EXPECT_EQ(r.ids, (std::vector<std::int64_t>{4, 9, 14}));
}

TEST(Oracle, EmptyBatch) {
  RouteLogitsParams p;
  p.n = 0;
  p.experts = 8;
  p.k = 2;
  const auto r = oracle::route_logits(p);
  EXPECT_TRUE(r.ids.empty());
  EXPECT_TRUE(r.weights.empty());
}

// --- reference vectors ---------------------------------------------------------------------

struct VectorCase {
  std::string name;
  std::int64_t H, E, N;
  int k;
  float scale;
  std::vector<bf16> x, w;
  std::vector<float> bias;
  std::vector<std::int32_t> table, tokens;
  nlohmann::json expect;
};

std::vector<VectorCase> load_vectors() {
  std::ifstream in(std::string(MOER_TESTDATA_DIR) + "/dsv4_gate_vectors.json");
  EXPECT_TRUE(in.good()) << "cannot open the reference vectors";
  const nlohmann::json doc = nlohmann::json::parse(in);
  std::vector<VectorCase> cases;
  for (const auto& c : doc.at("cases")) {
    VectorCase v;
    v.name = c.at("name");
    v.H = c.at("H");
    v.E = c.at("E");
    v.N = c.at("N");
    v.k = c.at("k");
    v.scale = c.at("scale");
    for (const auto& row : c.at("x")) {
      for (double f : row) v.x.push_back(detail::float_to_bf16(float(f)));
    }
    for (const auto& row : c.at("W")) {
      for (double f : row) v.w.push_back(detail::float_to_bf16(float(f)));
    }
    if (!c.at("bias").is_null()) v.bias = c.at("bias").get<std::vector<float>>();
    if (c.contains("tid2eid")) {
      for (const auto& row : c.at("tid2eid")) {
        for (int id : row) v.table.push_back(id);
      }
      v.tokens = c.at("tokens").get<std::vector<std::int32_t>>();
    }
    v.expect = c.at("expect");
    cases.push_back(std::move(v));
  }
  return cases;
}

TEST(ReferenceVectors, OracleAndCpuBackendReproduceThem) {
  const auto cases = load_vectors();
  ASSERT_GE(cases.size(), 8u);
  for (const VectorCase& v : cases) {
    SCOPED_TRACE(v.name);
    std::vector<float> weights(static_cast<std::size_t>(v.N * v.k));
    std::vector<std::int64_t> ids(weights.size());
    oracle::RouteResult ref;
    Status st;
    if (!v.table.empty()) {
      HashRouteParams p;
      p.token_ids = v.tokens.data();
      p.table = v.table.data();
      p.source = HashWeights::kFromX;
      p.x = v.x.data();
      p.w = v.w.data();
      p.hidden = v.H;
      p.n = v.N;
      p.vocab = static_cast<std::int64_t>(v.table.size()) / v.k;
      p.experts = v.E;
      p.k = v.k;
      p.scale = v.scale;
      p.weights = weights.data();
      p.ids = ids.data();
      p.ids_dtype = DType::kI64;
      ref = oracle::hash_route(p);
      st = cpu::hash_route(p);
    } else {
      RouteParams p;
      p.x = v.x.data();
      p.w = v.w.data();
      p.bias = v.bias.empty() ? nullptr : v.bias.data();
      p.n = v.N;
      p.hidden = v.H;
      p.experts = v.E;
      p.k = v.k;
      p.scale = v.scale;
      p.weights = weights.data();
      p.ids = ids.data();
      p.ids_dtype = DType::kI64;
      ref = oracle::route(p);
      st = cpu::route(p);
    }
    ASSERT_TRUE(st.ok()) << st.to_string();
    for (std::int64_t n = 0; n < v.N; ++n) {
      const auto& e = v.expect.at(n);
      const auto want_ids = e.at("ids").get<std::vector<std::int64_t>>();
      const auto want_w = e.at("weights").get<std::vector<double>>();
      const auto want_logits = e.at("logits").get<std::vector<double>>();
      for (int j = 0; j < v.k; ++j) {
        EXPECT_EQ(ref.ids[n * v.k + j], want_ids[j]) << "oracle, row " << n << " col " << j;
        // 1e-9: the vectors' generator evidently drops log1p(exp(-z)) for z > 20 (as
        // torch.nn.functional.softplus does), a relative change near 5e-12 in a weight.
        EXPECT_NEAR(ref.weights[n * v.k + j], want_w[j], 1e-9 * std::fabs(want_w[j]) + 1e-300)
            << "oracle, row " << n << " col " << j;
        // The CPU backend: exact ids (these vectors have no near ties) and fp32 weights.
        EXPECT_EQ(ids[n * v.k + j], want_ids[j]) << "cpu, row " << n << " col " << j;
      }
      ASSERT_EQ(static_cast<std::int64_t>(want_logits.size()), v.E);
      for (std::int64_t e_id = 0; e_id < v.E; ++e_id) {
        const double got = ref.logits[n * v.E + e_id];
        if (std::isnan(got)) continue;  // a hash route computes only the gathered logits
        EXPECT_NEAR(got, want_logits[e_id], 1e-12) << "oracle logit, row " << n;
      }
    }
    const auto cmp =
        oracle::compare_route(ref, ids.data(), DType::kI64, v.k, weights.data(), v.k);
    EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  }
}

}  // namespace
}  // namespace moerouter
