// Bad inputs: every backend entry point returns the documented error, naming the argument,
// and writes nothing.
#include <gtest/gtest.h>

#include <vector>

#include "moerouter/cpu.h"
#include "testbed.h"

namespace moerouter {
namespace {

// Valid dense-route inputs whose outputs start poisoned, so a write is visible.
struct RouteFixture {
  std::int64_t n = 4, h = 64, e = 16;
  int k = 6;
  std::vector<bf16> x = testing::make_bf16(n * h, 1.0, 1);
  std::vector<bf16> w = testing::make_bf16(e * h, 0.2, 2);
  std::vector<float> bias = testing::make_bias(e, 3);
  std::vector<float> logits = testing::make_logits(n, e, testing::LogitPattern::kNormal, 4);
  std::vector<float> weights = std::vector<float>(n * k, -7.0f);
  std::vector<std::int32_t> ids = std::vector<std::int32_t>(n * k, -7);

  RouteParams route() {
    RouteParams p;
    p.x = x.data();
    p.w = w.data();
    p.bias = bias.data();
    p.weights = weights.data();
    p.ids = ids.data();
    p.n = n;
    p.hidden = h;
    p.experts = e;
    p.k = k;
    p.scale = 2.5f;
    return p;
  }
  RouteLogitsParams route_logits() {
    RouteLogitsParams p;
    p.logits = logits.data();
    p.bias = bias.data();
    p.weights = weights.data();
    p.ids = ids.data();
    p.n = n;
    p.experts = e;
    p.k = k;
    p.scale = 2.5f;
    return p;
  }
  bool untouched() const {
    for (float v : weights) {
      if (v != -7.0f) return false;
    }
    for (std::int32_t v : ids) {
      if (v != -7) return false;
    }
    return true;
  }
};

void expect_error(const Status& s, StatusCode code, const std::string& names) {
  EXPECT_EQ(s.code(), code) << s.to_string();
  EXPECT_NE(s.message().find(names), std::string::npos)
      << "message should name '" << names << "': " << s.message();
}

TEST(Validation, RouteRejectsBadArgumentsAndWritesNothing) {
  struct Bad {
    const char* what;
    StatusCode code;
    void (*mutate)(RouteParams&);
  };
  const Bad cases[] = {
      {"x", StatusCode::kNullPointer, [](RouteParams& p) { p.x = nullptr; }},
      {"w", StatusCode::kNullPointer, [](RouteParams& p) { p.w = nullptr; }},
      {"weights", StatusCode::kNullPointer, [](RouteParams& p) { p.weights = nullptr; }},
      {"ids", StatusCode::kNullPointer, [](RouteParams& p) { p.ids = nullptr; }},
      {"k must be in [1, experts=16], got 0", StatusCode::kInvalidArgument,
       [](RouteParams& p) { p.k = 0; }},
      {"k must be in [1, experts=16], got 17", StatusCode::kInvalidArgument,
       [](RouteParams& p) { p.k = 17; }},
      {"n must be >= 0", StatusCode::kInvalidArgument, [](RouteParams& p) { p.n = -1; }},
      {"hidden", StatusCode::kInvalidArgument, [](RouteParams& p) { p.hidden = 0; }},
      {"experts", StatusCode::kInvalidArgument, [](RouteParams& p) { p.experts = 0; }},
      {"scale", StatusCode::kInvalidArgument, [](RouteParams& p) { p.scale = testing::kNaN; }},
      {"x_stride", StatusCode::kShapeMismatch, [](RouteParams& p) { p.x_stride = 63; }},
      {"weights_stride", StatusCode::kShapeMismatch,
       [](RouteParams& p) { p.weights_stride = 5; }},
      {"ids_stride", StatusCode::kShapeMismatch, [](RouteParams& p) { p.ids_stride = 2; }},
      {"ids_dtype", StatusCode::kUnsupportedDType,
       [](RouteParams& p) { p.ids_dtype = DType::kF32; }},
  };
  for (const Bad& b : cases) {
    RouteFixture f;
    RouteParams p = f.route();
    b.mutate(p);
    SCOPED_TRACE(b.what);
    expect_error(cpu::route(p), b.code, b.what);
    EXPECT_TRUE(f.untouched());
  }
}

TEST(Validation, RouteLogitsRejectsBadArguments) {
  RouteFixture f;
  RouteLogitsParams p = f.route_logits();
  p.logits_dtype = DType::kI32;
  expect_error(cpu::route_logits(p), StatusCode::kUnsupportedDType, "logits_dtype");
  p = f.route_logits();
  p.logits_stride = 3;
  expect_error(cpu::route_logits(p), StatusCode::kShapeMismatch, "logits_stride");
  p = f.route_logits();
  p.logits = nullptr;
  expect_error(cpu::route_logits(p), StatusCode::kNullPointer, "logits");
  p = f.route_logits();
  p.k = 100;
  expect_error(cpu::route_logits(p), StatusCode::kInvalidArgument, "k");
  EXPECT_TRUE(f.untouched());
}

TEST(Validation, EmptyBatchIsANoOpThatNeedsNoBuffers) {
  RouteLogitsParams p;
  p.n = 0;
  p.experts = 8;
  p.k = 2;
  EXPECT_TRUE(cpu::route_logits(p).ok());
  RouteParams r;
  r.n = 0;
  r.hidden = 8;
  r.experts = 8;
  r.k = 2;
  std::vector<bf16> w(64);
  r.w = w.data();
  EXPECT_TRUE(cpu::route(r).ok());
  TopkParams t;
  t.n = 0;
  t.length = 10;
  t.k = 3;
  EXPECT_TRUE(cpu::topk(t).ok());
}

TEST(Validation, HashRouteChecksOnlyWhatItsSourceReads) {
  std::vector<std::int32_t> table = {0, 1, 2, 3};
  std::vector<std::int32_t> tokens = {1};
  std::vector<float> weights(2, -7.0f);
  std::vector<std::int32_t> ids(2, -7);
  HashRouteParams p;
  p.token_ids = tokens.data();
  p.table = table.data();
  p.weights = weights.data();
  p.ids = ids.data();
  p.n = 1;
  p.vocab = 2;
  p.experts = 4;
  p.k = 2;
  p.source = HashWeights::kUniform;
  EXPECT_TRUE(cpu::hash_route(p).ok());  // no x, W or logits needed
  EXPECT_EQ(ids[0], 2);
  p.source = HashWeights::kFromX;
  p.hidden = 8;
  expect_error(cpu::hash_route(p), StatusCode::kNullPointer, "w");
  p.source = HashWeights::kFromLogits;
  expect_error(cpu::hash_route(p), StatusCode::kNullPointer, "logits");
  p.source = static_cast<HashWeights>(9);
  expect_error(cpu::hash_route(p), StatusCode::kInvalidArgument, "source");
  p.source = HashWeights::kUniform;
  p.table_dtype = DType::kBF16;
  expect_error(cpu::hash_route(p), StatusCode::kUnsupportedDType, "table_dtype");
  p.table_dtype = DType::kI32;
  p.token_ids = nullptr;
  expect_error(cpu::hash_route(p), StatusCode::kNullPointer, "token_ids");
}

TEST(Validation, TopkRejectsBadArguments) {
  std::vector<float> v(20);
  std::vector<std::int32_t> idx(4, -7);
  TopkParams p;
  p.values = v.data();
  p.indices = idx.data();
  p.n = 2;
  p.length = 10;
  p.k = 0;
  expect_error(cpu::topk(p), StatusCode::kInvalidArgument, "k must be >= 1");
  p.k = 2;
  p.values_stride = 5;
  expect_error(cpu::topk(p), StatusCode::kShapeMismatch, "values_stride");
  p.values_stride = 0;
  p.values_dtype = DType::kI64;
  expect_error(cpu::topk(p), StatusCode::kUnsupportedDType, "values_dtype");
  for (std::int32_t i : idx) EXPECT_EQ(i, -7);
}

TEST(Status, NamesAndMessages) {
  const Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.to_string(), "kSuccess");
  const Status bad(StatusCode::kInvalidArgument, "k must be in [1, experts=8], got 9");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.to_string(), "kInvalidArgument: k must be in [1, experts=8], got 9");
  EXPECT_STREQ(status_code_name(StatusCode::kInvalidTokenId), "kInvalidTokenId");
  EXPECT_STREQ(dtype_name(DType::kBF16), "bf16");
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
}

}  // namespace
}  // namespace moerouter
