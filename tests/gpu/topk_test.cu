// The top-k primitive (k <= 32) on the GPU against the CPU backend and the oracle: both are
// exact, so indices and values must be identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gpu_testbed.h"
#include "moerouter/cpu.h"
#include "moerouter/cuda.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;

struct TopkCase {
  TopkCase(std::int64_t n_, std::int64_t length_, std::int64_t stride_, int k_)
      : n(n_), length(length_), stride(stride_), k(k_) {}
  std::int64_t n, length, stride;
  int k;
  bool bf16_values = false;
  bool with_lengths = false;
  bool with_values = true;
  std::vector<float> f32;
  std::vector<bf16> b16;
  std::vector<std::int32_t> lengths;

  TopkParams params(const void* values, const std::int32_t* lens, std::int32_t* idx,
                    float* vals) const {
    TopkParams p;
    p.values = values;
    p.values_dtype = bf16_values ? DType::kBF16 : DType::kF32;
    p.values_stride = stride;
    p.lengths = with_lengths ? lens : nullptr;
    p.indices = idx;
    p.out_values = with_values ? vals : nullptr;
    p.n = n;
    p.length = length;
    p.k = k;
    return p;
  }
};

TopkCase make_case(std::int64_t n, std::int64_t length, int k, testing::LogitPattern pat,
                   std::uint64_t seed) {
  TopkCase c(n, length, 0, k);
  c.f32 = testing::make_logits(n, length, pat, seed);
  return c;
}

void check(const TopkCase& c, const std::string& cfg) {
  const std::size_t out_n = std::size_t(c.n * c.k);
  DeviceBuffer<float> d_f32(c.f32.empty() ? std::vector<float>(1) : c.f32);
  DeviceBuffer<bf16> d_b16(c.b16.empty() ? std::vector<bf16>(1) : c.b16);
  DeviceBuffer<std::int32_t> d_len(c.lengths.empty() ? std::vector<std::int32_t>(1) : c.lengths);
  DeviceBuffer<std::int32_t> d_idx(out_n);
  DeviceBuffer<float> d_vals(out_n);
  d_idx.fill_bytes(0x7f);
  d_vals.fill_bytes(0x7f);
  const void* dv = c.bf16_values ? static_cast<const void*>(d_b16.get()) : d_f32.get();
  const Status st = cuda::topk(c.params(dv, d_len.get(), d_idx.get(), d_vals.get()));
  ASSERT_TRUE(st.ok()) << cfg << ": " << st.to_string();
  MOER_CUDA_OK(cudaDeviceSynchronize());
  const auto idx = d_idx.download();
  const auto vals = d_vals.download();

  std::vector<std::int32_t> cidx(out_n);
  std::vector<float> cvals(out_n);
  const void* hv = c.bf16_values ? static_cast<const void*>(c.b16.data()) : c.f32.data();
  ASSERT_TRUE(cpu::topk(c.params(hv, c.lengths.data(), cidx.data(), cvals.data())).ok());
  for (std::size_t i = 0; i < out_n; ++i) {
    ASSERT_EQ(idx[i], cidx[i]) << cfg << ": row " << i / c.k << " slot " << i % c.k;
  }
  if (c.with_values) {
    std::size_t diff = 0;
    ASSERT_TRUE(testing::same_bits(vals, cvals, &diff)) << cfg << ": value " << diff;
  }
  // The oracle on the first rows.
  TopkParams op = c.params(hv, c.lengths.data(), nullptr, nullptr);
  op.n = std::min<std::int64_t>(c.n, 256);
  const oracle::TopkResult ref = oracle::topk(op);
  for (std::int64_t i = 0; i < op.n * c.k; ++i) {
    ASSERT_EQ(idx[i], ref.indices[i]) << cfg << ": oracle, row " << i / c.k;
  }
}

class GpuTopk : public testing::GpuTest {};

TEST_F(GpuTopk, SweepAgainstCpuAndOracle) {
  const testing::LogitPattern pats[] = {testing::LogitPattern::kNormal,
                                        testing::LogitPattern::kTies,
                                        testing::LogitPattern::kSpecial};
  std::uint64_t seed = 9;
  for (std::int64_t n : {0, 1, 7, 64, 4096}) {
    for (std::int64_t len : {1, 8, 64, 256, 384, 1000, 5000}) {
      for (int k : {1, 6, 8, 32}) {
        if (n * len > 8'000'000) continue;
        for (auto pat : pats) {
          TopkCase c = make_case(n, len, k, pat, ++seed);
          check(c, testing::config(n, len, k, std::string("pattern=") + testing::pattern_name(pat)));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_F(GpuTopk, LongIndexerRows) {
  for (std::int64_t len : {65536, 262144}) {
    for (int k : {1, 32}) {
      TopkCase c = make_case(3, len, k, testing::LogitPattern::kNormal, len + k);
      check(c, testing::config(3, len, k, "long"));
      // Sorted rows (ascending and descending) stress the threshold.
      for (std::int64_t i = 0; i < len; ++i) {
        c.f32[i] = float(i);
        c.f32[len + i] = float(len - i);
      }
      check(c, testing::config(3, len, k, "sorted"));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuTopk, Bf16StridesLengthsAndPadding) {
  for (std::int64_t len : {100, 3000}) {
    TopkCase c(65, len, len + 3, 32);
    c.bf16_values = true;
    c.with_lengths = true;
    c.b16 = testing::make_bf16(c.n * c.stride, 1.0, len);
    SeededRng rng(len);
    for (std::int64_t r = 0; r < c.n; ++r) {
      c.lengths.push_back(std::int32_t(rng.below(std::uint64_t(len + 40))) - 20);  // < 0, > L too
    }
    check(c, testing::config(c.n, len, c.k, "bf16 lengths"));
    c.with_values = false;
    check(c, testing::config(c.n, len, c.k, "no out_values"));
  }
}

TEST_F(GpuTopk, RejectsKAbove2048) {
  DeviceBuffer<float> v(64);
  DeviceBuffer<std::int32_t> idx(2049);
  TopkParams p;
  p.values = v.get();
  p.indices = idx.get();
  p.n = 1;
  p.length = 64;
  p.k = 2049;
  EXPECT_EQ(cuda::topk(p).code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace moerouter
