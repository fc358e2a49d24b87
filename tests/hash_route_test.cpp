// The CPU backend's hash route against the oracle: three weight sources, id dtypes, bad ids.
#include <gtest/gtest.h>

#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

struct HashCase {
  std::int64_t n = 37, h = 256, e = 64, vocab = 1000;
  int k = 6;
  float scale = 1.5f;
  SyntheticLayer layer;
  std::vector<bf16> x;
  std::vector<float> logits;
  std::vector<std::int64_t> tokens;
  std::vector<float> weights;
  std::vector<std::int32_t> ids;

  explicit HashCase(std::uint64_t seed) {
    ModelShape s{"test", h, e, k, scale, vocab, 3, 4, 0};
    layer = make_synthetic_layer(s, seed, true);
    x = testing::make_bf16(n * h, 1.0, seed + 1);
    logits = testing::make_logits(n, e, testing::LogitPattern::kNormal, seed + 2);
    for (std::int32_t t : make_tokens(n, vocab, seed + 3)) tokens.push_back(t);
    weights.assign(n * k, -7.0f);
    ids.assign(n * k, -7);
  }

  HashRouteParams params(HashWeights source) {
    HashRouteParams p;
    p.token_ids = tokens.data();
    p.token_dtype = DType::kI64;
    p.table = layer.tid2eid.data();
    p.weights = weights.data();
    p.ids = ids.data();
    p.source = source;
    p.x = x.data();
    p.w = layer.w.data();
    p.hidden = h;
    p.logits = logits.data();
    p.n = n;
    p.vocab = vocab;
    p.experts = e;
    p.k = k;
    p.scale = scale;
    return p;
  }
};

TEST(CpuHashRoute, AllSourcesAgainstOracle) {
  for (HashWeights src : {HashWeights::kFromX, HashWeights::kFromLogits, HashWeights::kUniform}) {
    SCOPED_TRACE(hash_weights_name(src));
    HashCase c(42);
    const HashRouteParams p = c.params(src);
    ASSERT_TRUE(cpu::hash_route(p).ok());
    const auto ref = oracle::hash_route(p);
    const auto cmp =
        oracle::compare_route(ref, c.ids.data(), DType::kI32, c.k, c.weights.data(), c.k);
    EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
    EXPECT_EQ(cmp.ids_equal, cmp.ids_total);
    // Ids are the table row, in the table's order.
    for (std::int64_t n = 0; n < c.n; ++n) {
      for (int j = 0; j < c.k; ++j) {
        ASSERT_EQ(c.ids[n * c.k + j], c.layer.tid2eid[c.tokens[n] * c.k + j]);
      }
    }
    if (src == HashWeights::kUniform) {
      EXPECT_EQ(c.weights[0], 1.5f / 6.0f);
    }
  }
}

TEST(CpuHashRoute, FromXEqualsTheDenseRouteWeightsBitForBit) {
  // A hash route computes only k dot products, in the dense GEMM's order. With a table row
  // equal to the dense route's own choice, it must reproduce the dense weights bit for bit.
  HashCase c(7);
  RouteParams d;
  std::vector<float> dense_w(c.n * c.k);
  std::vector<std::int32_t> dense_ids(c.n * c.k);
  d.x = c.x.data();
  d.w = c.layer.w.data();
  d.bias = c.layer.bias.data();
  d.weights = dense_w.data();
  d.ids = dense_ids.data();
  d.n = c.n;
  d.hidden = c.h;
  d.experts = c.e;
  d.k = c.k;
  d.scale = c.scale;
  ASSERT_TRUE(cpu::route(d).ok());
  // Token n uses table row n, which holds the dense route's ids of token n.
  std::vector<std::int32_t> table = dense_ids;
  for (std::int64_t n = 0; n < c.n; ++n) c.tokens[n] = n;
  HashRouteParams p = c.params(HashWeights::kFromX);
  p.table = table.data();
  p.vocab = c.n;
  ASSERT_TRUE(cpu::hash_route(p).ok());
  EXPECT_EQ(c.ids, dense_ids);
  EXPECT_EQ(c.weights, dense_w);
}

TEST(CpuHashRoute, BadTokenIdsAndTableEntries) {
  HashCase c(9);
  c.tokens[3] = -1;
  c.tokens[5] = c.vocab;  // one past the end
  const std::int64_t t = c.tokens[8];
  c.layer.tid2eid[t * c.k + 2] = static_cast<std::int32_t>(c.e);  // a bad table entry
  std::int32_t flag = 0;
  HashRouteParams p = c.params(HashWeights::kFromX);
  p.error_flag = &flag;
  const Status st = cpu::hash_route(p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidTokenId) << st.to_string();
  EXPECT_NE(st.message().find("row 3"), std::string::npos) << st.message();
  EXPECT_EQ(flag, 1);
  const auto ref = oracle::hash_route(p);
  for (std::int64_t row : {3, 5}) EXPECT_EQ(ref.bad_row[row], 1);
  for (std::int64_t n = 0; n < c.n; ++n) {
    const bool bad = n == 3 || n == 5 || c.tokens[n] == t;
    for (int j = 0; j < c.k; ++j) {
      if (bad) {
        EXPECT_EQ(c.ids[n * c.k + j], -1) << "row " << n;
        EXPECT_EQ(c.weights[n * c.k + j], 0.0f) << "row " << n;
      }
    }
  }
  const auto cmp = oracle::compare_route(ref, c.ids.data(), DType::kI32, c.k, c.weights.data(), c.k);
  EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
}

}  // namespace
}  // namespace moerouter
