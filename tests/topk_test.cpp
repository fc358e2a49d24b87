// The CPU top-k against the float64 oracle and std::partial_sort.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

enum class Data { kRandom, kSorted, kReverse, kEqual, kFewLevels, kSpecial, kLowBits };

std::vector<float> make_rows(std::int64_t n, std::int64_t len, Data d, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<float> v(n * len);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t i = 0; i < len; ++i) {
      float& x = v[r * len + i];
      switch (d) {
        case Data::kRandom: x = float(rng.normal()); break;
        case Data::kSorted: x = float(i); break;
        case Data::kReverse: x = float(len - i); break;
        case Data::kEqual: x = 1.0f; break;
        case Data::kFewLevels: x = float(rng.below(8)); break;
        case Data::kSpecial: {
          const double u = rng.uniform();
          x = u < 0.2 ? testing::kNaN : u < 0.4 ? -testing::kInf : float(rng.normal());
          break;
        }
        case Data::kLowBits: x = testing::low_bits_value(rng); break;
      }
    }
  }
  return v;
}

TEST(CpuTopk, SweepAgainstOracleAndPartialSort) {
  std::uint64_t seed = 0;
  for (std::int64_t n : {1, 4, 64}) {
    for (std::int64_t len : {1, 5, 6, 7, 100, 8192}) {
      for (int k : {1, 6, 32, 512}) {
        for (Data d : {Data::kRandom, Data::kSorted, Data::kReverse, Data::kEqual,
                       Data::kFewLevels, Data::kSpecial, Data::kLowBits}) {
          const auto vals = make_rows(n, len, d, ++seed);
          std::vector<std::int32_t> lengths(n);
          for (std::int64_t r = 0; r < n; ++r) lengths[r] = std::int32_t((r * 7919) % (len + 1));
          for (bool use_lengths : {false, true}) {
            const std::string cfg = "n=" + std::to_string(n) + " len=" + std::to_string(len) +
                                    " k=" + std::to_string(k) + " data=" +
                                    std::to_string(int(d)) + " lengths=" +
                                    std::to_string(use_lengths);
            std::vector<std::int32_t> idx(n * k, -7);
            std::vector<float> out(n * k, -7.0f);
            TopkParams p;
            p.values = vals.data();
            p.lengths = use_lengths ? lengths.data() : nullptr;
            p.indices = idx.data();
            p.out_values = out.data();
            p.n = n;
            p.length = len;
            p.k = k;
            ASSERT_TRUE(cpu::topk(p).ok()) << cfg;
            const auto ref = oracle::topk(p);
            for (std::int64_t i = 0; i < n * k; ++i) {
              ASSERT_EQ(idx[i], ref.indices[i]) << cfg << " at " << i;
              if (ref.indices[i] >= 0 && !std::isnan(ref.values[i])) {
                ASSERT_EQ(out[i], float(ref.values[i])) << cfg;
              }
              if (ref.indices[i] < 0) {
                ASSERT_EQ(out[i], -testing::kInf) << cfg;
              }
            }
            // std::partial_sort on (value desc, index asc) over finite data agrees too.
            if (d != Data::kSpecial && d != Data::kLowBits) {
              for (std::int64_t r = 0; r < n; ++r) {
                const std::int64_t l = use_lengths ? lengths[r] : len;
                std::vector<std::int32_t> order(l);
                std::iota(order.begin(), order.end(), 0);
                const std::int64_t kept = std::min<std::int64_t>(k, l);
                const float* row = vals.data() + r * len;
                std::partial_sort(order.begin(), order.begin() + kept, order.end(),
                                  [&](std::int32_t a, std::int32_t b) {
                                    return row[a] != row[b] ? row[a] > row[b] : a < b;
                                  });
                for (std::int64_t j = 0; j < kept; ++j) {
                  ASSERT_EQ(idx[r * k + j], order[j]) << cfg << " row " << r;
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(CpuTopk, Bf16AndStridesAndClampedLengths) {
  const std::int64_t n = 3, len = 50, stride = 64;
  const int k = 4;
  const auto vals = testing::make_bf16(n * stride, 1.0, 3);
  const std::int32_t lengths[] = {-5, 2, 1000};  // clamped to [0, len]
  std::vector<std::int32_t> idx(n * 5, -7);
  TopkParams p;
  p.values = vals.data();
  p.values_dtype = DType::kBF16;
  p.values_stride = stride;
  p.lengths = lengths;
  p.indices = idx.data();
  p.indices_stride = 5;
  p.n = n;
  p.length = len;
  p.k = k;
  ASSERT_TRUE(cpu::topk(p).ok());
  const auto ref = oracle::topk(p);
  for (std::int64_t r = 0; r < n; ++r) {
    for (int j = 0; j < k; ++j) EXPECT_EQ(idx[r * 5 + j], ref.indices[r * k + j]);
    EXPECT_EQ(idx[r * 5 + 4], -7);
  }
  EXPECT_EQ(idx[0], -1);            // length 0: all padding
  EXPECT_EQ(idx[5 + 2], -1);        // length 2: two valid, then padding
  EXPECT_GE(idx[10 + 3], 0);        // length clamped to 50
}

}  // namespace
}  // namespace moerouter

namespace moerouter {
namespace {

TEST(CpuTopk, UnsortedGivesTheSameElementsInIndexOrder) {
  const std::int64_t n = 8, len = 1000;
  const int k = 100;
  const auto vals = make_rows(n, len, Data::kFewLevels, 77);
  std::vector<std::int32_t> s_idx(n * k), u_idx(n * k);
  std::vector<float> u_val(n * k);
  TopkParams p;
  p.values = vals.data();
  p.indices = s_idx.data();
  p.n = n;
  p.length = len;
  p.k = k;
  ASSERT_TRUE(cpu::topk(p).ok());
  p.sorted = false;
  p.indices = u_idx.data();
  p.out_values = u_val.data();
  ASSERT_TRUE(cpu::topk(p).ok());
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<std::int32_t> want(s_idx.begin() + r * k, s_idx.begin() + (r + 1) * k);
    std::sort(want.begin(), want.end());
    for (int j = 0; j < k; ++j) {
      ASSERT_EQ(u_idx[r * k + j], want[j]) << "row " << r;
      ASSERT_EQ(u_val[r * k + j], vals[r * len + want[j]]);
    }
  }
}

}  // namespace
}  // namespace moerouter
