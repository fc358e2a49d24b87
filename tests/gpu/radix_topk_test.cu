// Large-k top-k (radix select) and unsorted output against the CPU backend (bit for bit:
// indices, values, padding) and the float64 oracle, over the indexer's shapes and hard data.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gpu_testbed.h"
#include "moerouter/cpu.h"
#include "moerouter/cuda.h"
#include "moerouter/oracle.h"
#include "moerouter/synthetic.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;

class GpuRadixTopk : public testing::GpuTest {};

enum class Data { kRandom, kSorted, kReverse, kEqual, kFewLevels, kSpecial };

std::vector<float> make_rows(std::int64_t n, std::int64_t len, Data d, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n * len));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t i = 0; i < len; ++i) {
      float& x = v[r * len + i];
      switch (d) {
        case Data::kRandom: x = float(rng.normal()); break;
        case Data::kSorted: x = float(i) * 0.5f; break;
        case Data::kReverse: x = float(len - i); break;
        case Data::kEqual: x = 2.0f; break;
        case Data::kFewLevels: x = float(rng.below(8)); break;
        case Data::kSpecial: {
          const double u = rng.uniform();
          x = u < 0.1 ? testing::kNaN : u < 0.2 ? -testing::kInf : u < 0.25 ? testing::kInf
                                                                 : float(rng.normal());
          break;
        }
      }
    }
  }
  return v;
}

// GPU == CPU backend bit for bit, sorted and unsorted; sorted also == the oracle's indices.
void check(std::int64_t n, std::int64_t len, int k, Data d, bool lengths, bool sorted,
           std::uint64_t seed) {
  const std::string cfg = "n=" + std::to_string(n) + " len=" + std::to_string(len) +
                          " k=" + std::to_string(k) + " data=" + std::to_string(int(d)) +
                          " lengths=" + std::to_string(lengths) + " sorted=" + std::to_string(sorted);
  const auto vals = make_rows(n, len, d, seed);
  std::vector<std::int32_t> lens(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < n; ++r) {
    const std::int64_t choices[] = {0, 1, k - 1, k, k + 1, len};
    lens[r] = static_cast<std::int32_t>(std::clamp<std::int64_t>(choices[r % 6], 0, len));
  }
  TopkParams p;
  p.n = n;
  p.length = len;
  p.k = k;
  p.sorted = sorted;
  std::vector<std::int32_t> cpu_idx(n * k);
  std::vector<float> cpu_val(n * k);
  p.values = vals.data();
  p.lengths = lengths ? lens.data() : nullptr;
  p.indices = cpu_idx.data();
  p.out_values = cpu_val.data();
  ASSERT_TRUE(cpu::topk(p).ok());

  DeviceBuffer<float> d_vals(vals);
  DeviceBuffer<std::int32_t> d_lens(lens);
  DeviceBuffer<std::int32_t> d_idx(n * k);
  DeviceBuffer<float> d_val(n * k);
  d_idx.fill_bytes(0x7f);
  d_val.fill_bytes(0x7f);
  p.values = d_vals.get();
  p.lengths = lengths ? d_lens.get() : nullptr;
  p.indices = d_idx.get();
  p.out_values = d_val.get();
  const Status st = cuda::topk(p);
  ASSERT_TRUE(st.ok()) << cfg << ": " << st.to_string();
  MOER_CUDA_OK(cudaDeviceSynchronize());
  const auto gpu_idx = d_idx.download();
  const auto gpu_val = d_val.download();
  for (std::size_t i = 0; i < gpu_idx.size(); ++i) {
    ASSERT_EQ(gpu_idx[i], cpu_idx[i]) << cfg << " row " << i / k << " slot " << i % k;
  }
  std::size_t diff = 0;
  ASSERT_TRUE(testing::same_bits(gpu_val, cpu_val, &diff)) << cfg << " value slot " << diff;
  if (sorted && n * len <= (1 << 22)) {
    TopkParams hp = p;
    hp.values = vals.data();
    hp.lengths = lengths ? lens.data() : nullptr;
    const auto ref = oracle::topk(hp);
    for (std::size_t i = 0; i < gpu_idx.size(); ++i) {
      ASSERT_EQ(gpu_idx[i], ref.indices[i]) << cfg << " (oracle) row " << i / k;
    }
  }
}

TEST_F(GpuRadixTopk, SweepAgainstCpuAndOracle) {
  std::uint64_t seed = 1;
  for (int k : {1, 6, 32, 512, 1024, 2048}) {
    for (std::int64_t len : {std::int64_t(1), std::int64_t(k) - 1, std::int64_t(k),
                             std::int64_t(k) + 1, std::int64_t(8192)}) {
      if (len < 1) continue;
      for (Data d : {Data::kRandom, Data::kSorted, Data::kReverse, Data::kEqual, Data::kFewLevels,
                     Data::kSpecial}) {
        for (bool sorted : {true, false}) {
          ++seed;
          check(64, len, k, d, /*lengths=*/seed % 2 == 0, sorted, seed);
        }
      }
    }
  }
}

TEST_F(GpuRadixTopk, IndexerShapes) {
  // The sparse-attention indexer: k = 512 / 1024 / 2048 over long rows, few and many rows.
  check(1, 262144, 512, Data::kRandom, false, false, 11);
  check(1, 1048576, 1024, Data::kFewLevels, false, true, 12);
  check(4, 65536, 2048, Data::kSpecial, true, true, 13);
  check(1024, 8192, 512, Data::kRandom, true, false, 14);
  check(4096, 1024, 1024, Data::kRandom, false, true, 15);
}

TEST_F(GpuRadixTopk, Bf16Rows) {
  const std::int64_t n = 16, len = 5000;
  const int k = 700;
  const auto vals = testing::make_bf16(n * len, 1.0, 3);
  std::vector<std::int32_t> cpu_idx(n * k);
  TopkParams p;
  p.values = vals.data();
  p.values_dtype = DType::kBF16;
  p.indices = cpu_idx.data();
  p.n = n;
  p.length = len;
  p.k = k;
  ASSERT_TRUE(cpu::topk(p).ok());
  DeviceBuffer<bf16> d_vals(vals);
  DeviceBuffer<std::int32_t> d_idx(n * k);
  p.values = d_vals.get();
  p.indices = d_idx.get();
  ASSERT_TRUE(cuda::topk(p).ok());
  EXPECT_EQ(d_idx.download(), cpu_idx);
}

}  // namespace
}  // namespace moerouter
