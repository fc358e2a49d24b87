// Large-k top-k (radix select) and unsorted output against the CPU backend (bit for bit:
// indices, values, padding) and the float64 oracle, over the indexer's shapes and hard data:
// cuda::topk (the streaming kernel, configured by shape) and, forced through
// cuda::topk_radix_config, the streaming kernel's cluster sizes, block sizes and exact fallback.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_testbed.h"
#include "moerouter/cpu.h"
#include "moerouter/cuda.h"
#include "moerouter/kernels/radix_topk_rows.cuh"
#include "moerouter/kernels/radix_topk_stream.cuh"
#include "moerouter/oracle.h"
#include "moerouter/synthetic.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;

class GpuRadixTopk : public testing::GpuTest {};

// kHighSample / kLowSample: rows arranged against the streaming kernel's sample (the sampled
// runs hold the largest / smallest values of the row), so that its sampled bound is too high /
// too low and the exact fallback runs (rows longer than their sample).
enum class Data {
  kRandom,
  kSorted,
  kReverse,
  kEqual,
  kFewLevels,
  kSpecial,
  kHighSample,
  kLowSample,
  kNearTies,     // normal values on a grid of 1/256: a few exact ties at every key near the k-th
  kSampleAbove,  // normal values, the sample's 0.4 higher: at 8192 and k = 512 its bound leaves
                 // ~370 candidates, the short-row kernel's retry at a scaled rank ~1000
  kSampleBelow,  // the sample's 0.7 lower: ~1900 candidates (more than its list holds), then ~1100
  kLowBits,      // testing::low_bits_value: every bit of the keys decides, zeros tie, NaNs rank
                 // last whatever their sign and payload
  kCrowdFirst,   // normal values, and every 21st element of the row's first half (outside the
                 // sampled runs) raised to 10 and above: with two blocks a row of 65536 (k =
                 // 512), that block's list holds ~2200 candidates (more than half the list's
                 // room) and the other's ~650
  kCrowdLast     // the same in the row's last half
};

std::vector<float> make_rows(std::int64_t n, std::int64_t len, Data d, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n * len));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t i = 0; i < len; ++i) {
      float& x = v[r * len + i];
      switch (d) {
        case Data::kRandom:
          x = float(rng.normal());
          break;
        case Data::kSorted:
          x = float(i) * 0.5f;
          break;
        case Data::kReverse:
          x = float(len - i);
          break;
        case Data::kEqual:
          x = 2.0f;
          break;
        case Data::kFewLevels:
          x = float(rng.below(8));
          break;
        case Data::kHighSample:
        case Data::kLowSample:
        case Data::kSampleAbove:
        case Data::kSampleBelow:
        case Data::kCrowdFirst:
        case Data::kCrowdLast:
          x = float(rng.normal());
          break;
        case Data::kNearTies:
          x = float(std::round(rng.normal() * 256.0) / 256.0);
          break;
        case Data::kLowBits:
          x = testing::low_bits_value(rng);
          break;
        case Data::kSpecial: {
          const double u = rng.uniform();
          x = u < 0.1    ? testing::kNaN
              : u < 0.2  ? -testing::kInf
              : u < 0.25 ? testing::kInf
                         : float(rng.normal());
          break;
        }
      }
    }
    // The sampled runs of both layouts: stream_sample_runs', and that of staged rows with the
    // host's geometry (stream_stage_sample_runs: twice as many for f32 rows of 32768..131071),
    // each element once.
    const bool against_sample = d == Data::kHighSample || d == Data::kLowSample ||
                                d == Data::kSampleAbove || d == Data::kSampleBelow ||
                                d == Data::kCrowdFirst || d == Data::kCrowdLast;
    const int runs = kernels::stream_sample_runs(len);
    const int stage_runs = kernels::stream_stage_sample_runs(int(len), sizeof(float));
    if (!against_sample || len <= 512 * runs) continue;
    std::vector<int> sampled(static_cast<std::size_t>(len), -1);  // 0, 1, ...: sampled
    for (const int rr : {runs, stage_runs}) {
      for (int g = 0; g < 16 * rr; ++g) {
        const std::int64_t at = kernels::stream_sample_run(g, rr, int(len));
        for (int l = 0; l < 32; ++l) sampled[std::size_t(at + l)] = 0;
      }
    }
    int count = 0;  // the sampled elements numbered in index order
    for (int& s : sampled) s = s < 0 ? -1 : count++;
    if (d == Data::kHighSample || d == Data::kLowSample || d == Data::kSampleAbove ||
        d == Data::kSampleBelow) {
      for (std::int64_t i = 0; i < len; ++i) {
        const int g = sampled[std::size_t(i)];
        if (g < 0) continue;
        float& x = v[r * len + i];
        if (d == Data::kSampleAbove || d == Data::kSampleBelow) {
          x += d == Data::kSampleAbove ? 0.4f : -0.7f;
        } else {
          x = d == Data::kHighSample ? 100.0f + float(g) : -100.0f;
        }
      }
    }
    if (d == Data::kCrowdFirst || d == Data::kCrowdLast) {
      const std::int64_t from = d == Data::kCrowdFirst ? 0 : len / 2;
      for (std::int64_t i = from; i < from + len / 2; i += 21) {
        if (sampled[std::size_t(i)] < 0) v[r * len + i] = 10.0f + float(i) * 1e-3f;
      }
    }
  }
  return v;
}

// GPU == CPU backend bit for bit, sorted and unsorted; sorted also == the oracle's indices.
// cluster >= 1: through cuda::topk_radix_config(cluster, threads) (threads 0: as topk chooses);
// cluster 0: through cuda::topk_rows (the short-row kernel);
// stride > len: rows `stride` apart (the gap holds values that must never be read as elements).
// grid > 0: grid mode with `grid` blocks per row (cuda::topk_radix_grid); grid < 0: cuda::topk
// with the workspace it asks for. Both run twice on one workspace (its counters zeroed once):
// the first call must leave it ready for the next; the second call's output is checked.
void check(std::int64_t n, std::int64_t len, int k, Data d, bool lengths, bool sorted,
           std::uint64_t seed, int cluster = -1, int threads = 0, std::int64_t stride = 0,
           int grid = 0) {
  const std::string cfg =
      "n=" + std::to_string(n) + " len=" + std::to_string(len) + " k=" + std::to_string(k) +
      " data=" + std::to_string(int(d)) + " lengths=" + std::to_string(lengths) +
      " sorted=" + std::to_string(sorted) + " cluster=" + std::to_string(cluster) +
      " threads=" + std::to_string(threads) + " stride=" + std::to_string(stride) +
      " grid=" + std::to_string(grid);
  const std::int64_t ld = stride > len ? stride : len;
  auto vals = make_rows(n, ld, d, seed);
  if (ld > len) {
    for (std::int64_t r = 0; r < n; ++r) {
      for (std::int64_t i = len; i < ld; ++i) vals[r * ld + i] = testing::kInf;
    }
  }
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
  p.values_stride = ld;
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
  const std::size_t ws_bytes = grid > 0   ? cuda::topk_radix_grid_workspace_size(p, grid)
                               : grid < 0 ? cuda::topk_workspace_size(p)
                                          : 0;
  ASSERT_TRUE(grid <= 0 || ws_bytes > 0) << cfg;
  DeviceBuffer<unsigned char> ws(ws_bytes > 0 ? ws_bytes : 16);
  // Only the rows' arrival counters zeroed (what cuda.h says is enough): the rest of the
  // workspace is left as allocated, so compute-sanitizer's initcheck sees any read of it that
  // the call did not write first.
  const std::size_t counters = 4 * std::size_t(kernels::radix_stream_grid_counts(n));
  MOER_CUDA_OK(cudaMemset(ws.get(), 0, std::min(ws_bytes, counters)));
  auto run = [&]() -> Status {
    if (grid > 0) return cuda::topk_radix_grid(p, grid, ws.get(), ws_bytes);
    if (grid < 0) return cuda::topk(p, ws_bytes > 0 ? ws.get() : nullptr, ws_bytes);
    if (cluster == 0) return cuda::topk_rows(p);
    return cluster >= 1 ? cuda::topk_radix_config(p, cluster, threads) : cuda::topk(p);
  };
  const Status st = run();
  ASSERT_TRUE(st.ok()) << cfg << ": " << st.to_string();
  if (grid != 0) {  // again on the same workspace; the second call's output is checked
    MOER_CUDA_OK(cudaDeviceSynchronize());
    d_idx.fill_bytes(0x7f);
    d_val.fill_bytes(0x7f);
    const Status again = run();
    ASSERT_TRUE(again.ok()) << cfg << ": " << again.to_string();
    MOER_CUDA_OK(cudaDeviceSynchronize());
    // Every row's arrival counter is back at zero (only the counters are copied back: the
    // rest of the workspace is partly unwritten, which initcheck would report).
    std::vector<std::int32_t> left(std::size_t(n), -1);
    if (ws_bytes > 0) {
      MOER_CUDA_OK(cudaMemcpy(left.data(), ws.get(), 4 * std::size_t(n), cudaMemcpyDeviceToHost));
    }
    for (std::int64_t r = 0; r < n && ws_bytes > 0; ++r) {
      ASSERT_EQ(left[std::size_t(r)], 0) << cfg << " row " << r;
    }
  }
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
                     Data::kSpecial, Data::kLowBits}) {
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

// The choice by shape (blocks per row, threads) around its switches: long and short rows, few
// and many rows.
TEST_F(GpuRadixTopk, ChoiceByShape) {
  check(2, 262144, 2048, Data::kEqual, false, true, 23);
  check(2, 262145, 1024, Data::kRandom, true, true, 24);
  check(3, 131073, 512, Data::kFewLevels, true, false, 25);
  check(300, 9000, 600, Data::kRandom, true, true, 26);  // 256-thread blocks
  check(300, 9000, 2048, Data::kSpecial, false, false, 27);
}

// The streaming kernel (the default path) with each cluster size forced: rows that end inside
// a block's first tile, fill whole tiles, or leave blocks of the cluster without a chunk; data
// whose ties straddle the blocks' chunks; k that is small or large against the sample.
TEST_F(GpuRadixTopk, StreamConfigs) {
  std::uint64_t seed = 3000;
  for (int threads : {256, 512}) {
    for (int c : {1, 2, 3, 4, 8, 16}) {
      for (std::int64_t len : {std::int64_t(3000), std::int64_t(8192), std::int64_t(c) * 8192 + 7,
                               std::int64_t(100000)}) {
        for (int k : {33, 512, 1000, 2048}) {
          for (Data d :
               {Data::kRandom, Data::kEqual, Data::kFewLevels, Data::kSorted, Data::kSpecial}) {
            ++seed;
            check(c >= 8 ? 2 : 5, len, k, d, seed % 3 != 0, seed % 2 == 0, seed, c, threads);
          }
        }
      }
    }
  }
}

// Rows arranged against the sample: the sampled bound is too high (fewer than k elements reach
// it) or too low (the candidates overflow the list); the exact fallback must give the same
// result. Also ties straddling the chunks in the fallback (few levels after the sample).
TEST_F(GpuRadixTopk, StreamFallback) {
  std::uint64_t seed = 4000;
  for (int c : {1, 4, 16}) {
    for (std::int64_t len : {std::int64_t(20000), std::int64_t(262144)}) {
      for (int k : {33, 512, 2048}) {
        for (Data d : {Data::kHighSample, Data::kLowSample}) {
          for (bool sorted : {true, false}) {
            ++seed;
            check(2, len, k, d, false, sorted, seed, c, c == 1 && seed % 2 == 0 ? 256 : 512);
          }
        }
      }
    }
  }
  // Rows of 2^19 and more: the 16384-element sample.
  check(1, 600000, 512, Data::kHighSample, false, false, 4102, 16);
  check(1, 600000, 1024, Data::kLowSample, false, true, 4103, 8);
  check(3, 50000, 700, Data::kLowSample, false, true, 4100);  // the choice by shape
  check(3, 50000, 700, Data::kHighSample, false, false, 4101);
}

// Grid mode (a row's blocks cooperate through a workspace): block counts that leave blocks
// without a chunk (short rows), whole and partial tiles, every data pattern, per-row lengths.
TEST_F(GpuRadixTopk, GridConfigs) {
  std::uint64_t seed = 7000;
  for (int g : {2, 3, 17, 64, 128}) {
    for (std::int64_t len : {std::int64_t(3000), std::int64_t(100000), std::int64_t(262149)}) {
      if (len > 200000 && g != 17 && g != 128) continue;
      for (int k : {33, 512, 2048}) {
        for (Data d :
             {Data::kRandom, Data::kEqual, Data::kFewLevels, Data::kSorted, Data::kSpecial}) {
          ++seed;
          check(seed % 3 == 0 ? 1 : 3, len, k, d, seed % 4 == 1, seed % 2 == 0, seed, -1, 0, 0, g);
        }
      }
    }
  }
}

// The final select's last digits (f32: the 16-bit bucket at the k-th key holds ~10-100
// candidates, resolved by the 8-bit passes): rows with exact ties among that bucket's keys
// (kNearTies), random rows, and rows whose bucket holds a whole level (kFewLevels); one block,
// clusters and grid mode, sorted and unsorted.
TEST_F(GpuRadixTopk, NearThresholdTies) {
  std::uint64_t seed = 9000;
  for (Data d : {Data::kNearTies, Data::kRandom, Data::kFewLevels, Data::kLowBits}) {
    for (int k : {33, 512, 2048}) {
      for (bool sorted : {false, true}) {
        ++seed;
        check(8, 8192, k, d, seed % 2 == 0, sorted, seed, 1, 256);
        check(3, 65536, k, d, false, sorted, seed, 2, 512);
        check(2, 100000, k, d, false, sorted, seed, 4);
        check(1, 262144, k, d, false, sorted, seed, -1, 0, 0, 32);
        check(2, 262144, k, d, false, sorted, seed, -1, 0, 0, -1);
      }
    }
  }
}

// The bound by a bit-by-bit search over each thread's largest sampled key (kSearch: few rows of
// four or more 512-thread blocks, chunks of at most two tiles): grid mode, clusters of 4, 8 and
// 16 through topk's choice and forced; rows whose largest values sit together (ascending,
// descending: the threads' largest keys must still count them one by one), rows arranged against
// the sample (the exact fallback), ties at the threshold, NaN and infinities; k large against
// the sample (2 m > threads: the histograms inside the same kernel). Ascending rows in grid mode
// also leave one list with most candidates, which the last block gathers with all its threads.
TEST_F(GpuRadixTopk, SearchedBound) {
  std::uint64_t seed = 9500;
  for (Data d : {Data::kRandom, Data::kSorted, Data::kReverse, Data::kNearTies, Data::kSpecial,
                 Data::kHighSample, Data::kLowSample, Data::kFewLevels}) {
    for (bool sorted : {false, true}) {
      ++seed;
      check(1, 262144, 512, d, false, sorted, seed, -1, 0, 0, 32);    // grid mode, one tile
      check(1, 262144, 1024, d, false, sorted, seed);                 // clusters of 16
      check(2, 65536, 1024, d, seed % 2 == 0, sorted, seed, 4, 512);  // two tiles a block
      check(3, 131072, 2048, d, false, sorted, seed, 8, 512);
      check(2, 9000, 2048, d, false, sorted, seed, 4, 512);  // 2 m > 512: the histograms
    }
  }
}

// Grid mode when the sample misleads: the last block takes the exact path over the whole row.
TEST_F(GpuRadixTopk, GridFallback) {
  std::uint64_t seed = 7500;
  for (int g : {4, 64}) {
    for (std::int64_t len : {std::int64_t(20000), std::int64_t(262144)}) {
      for (int k : {33, 512, 2048}) {
        for (Data d : {Data::kHighSample, Data::kLowSample}) {
          ++seed;
          check(2, len, k, d, false, seed % 2 == 0, seed, -1, 0, 0, g);
        }
      }
    }
  }
}

// topk with the workspace topk_workspace_size asks for: grid mode where rows are few and long,
// the cluster path (no workspace needed) elsewhere.
TEST_F(GpuRadixTopk, WorkspaceByShape) {
  check(1, 262144, 512, Data::kRandom, false, false, 7601, -1, 0, 0, -1);
  check(1, 1048576, 1024, Data::kFewLevels, false, true, 7602, -1, 0, 0, -1);
  check(4, 262144, 2048, Data::kSpecial, true, true, 7603, -1, 0, 0, -1);
  check(2, 524288, 33, Data::kLowSample, false, false, 7604, -1, 0, 0, -1);
  check(64, 8192, 512, Data::kRandom, true, false, 7605, -1, 0, 0, -1);  // none needed
}

// Grid mode's arguments: a missing, small or misaligned workspace and a bad block count are
// refused before anything runs.
TEST_F(GpuRadixTopk, GridArguments) {
  DeviceBuffer<float> d_vals(std::size_t(262144));
  DeviceBuffer<std::int32_t> d_idx(std::size_t(512));
  TopkParams p;
  p.values = d_vals.get();
  p.indices = d_idx.get();
  p.n = 1;
  p.length = 262144;
  p.k = 512;
  p.sorted = false;
  const std::size_t bytes = cuda::topk_workspace_size(p);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer<unsigned char> ws(bytes + 16);
  EXPECT_EQ(cuda::topk_radix_grid(p, 32, nullptr, bytes).code(), StatusCode::kNullPointer);
  EXPECT_EQ(cuda::topk_radix_grid(p, 32, ws.get(), bytes - 8).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::topk(p, ws.get(), bytes - 8).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::topk(p, ws.get() + 4, bytes).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::topk_radix_grid(p, 1, ws.get(), bytes).code(), StatusCode::kUnsupported);
  EXPECT_EQ(cuda::topk_radix_grid(p, 257, ws.get(), bytes).code(), StatusCode::kUnsupported);
  p.k = 6;
  p.sorted = true;
  EXPECT_EQ(cuda::topk_radix_grid(p, 32, ws.get(), bytes).code(), StatusCode::kUnsupported);
  MOER_CUDA_OK(cudaDeviceSynchronize());
}

// The streaming kernel's branchless order key (radix_stream_detail::key_of_bits) against the
// reference radix_detail::key_of for every 32-bit pattern: mismatches counted, the lowest kept.
struct KeyDiffers {
  __device__ bool operator()(std::uint32_t b) const {
    return kernels::radix_stream_detail::key_of_bits(b) !=
           kernels::radix_detail::key_of(__uint_as_float(b));
  }
};

TEST_F(GpuRadixTopk, BranchlessKeyEqualsTheReferenceEverywhere) {
  testing::BitSweep r;
  ASSERT_NO_FATAL_FAILURE(testing::sweep_all_bits(KeyDiffers{}, &r));
  EXPECT_EQ(r.count, 0u) << "bit patterns where the keys differ; the lowest: 0x" << std::hex
                         << r.first;
}

// The workspace size by shape (no device needed): grid mode only for k > 32 or unsorted output,
// at most 4 rows, rows of at least 262144 (32 blocks of one 8192-element tile each); blocks a
// row a power of two, at most 128 over all rows.
TEST(RadixTopkWorkspace, SizeByShape) {
  TopkParams p;
  p.n = 1;
  p.length = 262144;
  p.k = 512;
  p.sorted = false;
  const std::size_t one = cuda::topk_workspace_size(p);
  EXPECT_EQ(one, kernels::radix_stream_grid_bytes(1, 262144, 32, 512));
  EXPECT_EQ(one, cuda::topk_radix_grid_workspace_size(p, 32));
  // Counters and lengths (1 + 32 ints, rounded to 16 bytes), then 32 lists of 3584 entries.
  EXPECT_EQ(one, 144u + 32u * 3584 * 8);
  p.n = 4;
  EXPECT_EQ(cuda::topk_workspace_size(p), kernels::radix_stream_grid_bytes(4, 262144, 32, 512));
  p.n = 8;  // 16 blocks a row: a cluster does it
  EXPECT_EQ(cuda::topk_workspace_size(p), 0u);
  p.n = 1;
  p.length = 262143;
  EXPECT_EQ(cuda::topk_workspace_size(p), 0u);
  p.length = 1 << 20;
  EXPECT_EQ(cuda::topk_workspace_size(p), kernels::radix_stream_grid_bytes(1, 1 << 20, 128, 512));
  p.n = 2;
  EXPECT_EQ(cuda::topk_workspace_size(p), kernels::radix_stream_grid_bytes(2, 1 << 20, 64, 512));
  p.n = 1;
  p.k = 6;
  p.sorted = true;  // the small-k kernel
  EXPECT_EQ(cuda::topk_workspace_size(p), 0u);
  p.k = 4096;  // unsupported on the GPU
  EXPECT_EQ(cuda::topk_workspace_size(p), 0u);
  p.k = 512;
  EXPECT_EQ(cuda::topk_radix_grid_workspace_size(p, 1), 0u);
  EXPECT_EQ(cuda::topk_radix_grid_workspace_size(p, 257), 0u);
}

// The sample's runs (host-side arithmetic, no GPU): 32 elements each, starting at multiples of
// 8 (16-byte vectors on aligned rows), increasing, the last one inside the row, spread over
// it (the gap to the row's end below one step plus 8), for every run count the kernel uses
// and lengths up to 2^31 - 1.
// The short-row kernel's layout (host-side sizes): a thread's elements, the list's 16-bit
// indices, the bitonic network's room in the row's copy (sorted output), and the f32 8192-long
// k = 512 launch's 39 KB of dynamic shared memory (five blocks an SM).
TEST(RadixTopkRows, LayoutAndSharedMemory) {
  EXPECT_EQ(kernels::rows_per_thread(1), 8);
  EXPECT_EQ(kernels::rows_per_thread(2048), 8);
  EXPECT_EQ(kernels::rows_per_thread(2049), 16);
  EXPECT_EQ(kernels::rows_per_thread(4096), 16);
  EXPECT_EQ(kernels::rows_per_thread(4097), 32);
  EXPECT_EQ(kernels::rows_per_thread(kernels::kRowsMaxLen), 32);
  EXPECT_EQ(kernels::kRowsMaxLen, kernels::kRowsThreads * 32);  // one 32-bit mask a thread
  EXPECT_EQ(kernels::rows_smem_bytes(512, 8192, 4), 32768u + 1280u * 2u);
  for (const std::int64_t len : {1, 100, 2048, 2049, 4096, 5000, 8192}) {
    for (const int k : {1, 32, 256, 257, 512, 513, 1000, 1024, 2048}) {
      const int entries = kernels::rows_list_entries(k, len);
      EXPECT_LE(entries, 65536) << len << " " << k;  // 16-bit indices
      EXPECT_EQ(entries, std::min<std::int64_t>(len, 2 * k + 256));
      for (const std::size_t esize : {std::size_t(2), std::size_t(4)}) {
        const std::size_t copy =
            std::size_t(kernels::kRowsThreads) * std::size_t(kernels::rows_per_thread(len)) * esize;
        EXPECT_EQ(kernels::rows_copy_bytes(k, len, esize, false), copy);
        if (k <= kernels::kRowsMaxSortedK) {
          const std::size_t pairs = k <= 256 ? 1 : k <= 512 ? 2 : 4;  // bitonic_output's kN
          EXPECT_GE(kernels::rows_copy_bytes(k, len, esize, true), pairs * 256 * 8);
          EXPECT_EQ(kernels::rows_smem_bytes(k, len, esize, true),
                    kernels::rows_copy_bytes(k, len, esize, true) +
                        (std::size_t(entries) * 2 + 15) / 16 * 16 + std::size_t(k) * 8);
        }
      }
    }
  }
  for (const int len : {1025, 2048, 4096, 8192}) {
    for (const int k : {1, 64, 512, 1024, 2048}) {
      const int want = kernels::rows_sample_want(k, len);
      const double share = double(k) * kernels::kRowsSample / len;
      EXPECT_GE(want, std::min(int(share), kernels::kRowsSample)) << len << " " << k;
      EXPECT_LE(want, kernels::kRowsSample) << len << " " << k;
    }
  }
}

// The short-row kernel's second bound: its rank moves the way the count must (up for too few
// candidates, down for too many), and where the count is proportional to the rank (a sample
// that misled by its density only) it lands in [kk, cap]; clamped to the sample.
TEST(RadixTopkRows, RetryRankScalesTheCountIntoTheList) {
  static_assert(kernels::rows_retry_want(88, 507, 512, 1280) == 155);  // 88 * 896 / 507
  EXPECT_EQ(kernels::rows_retry_want(88, 0, 512, 1280), kernels::kRowsSample);
  EXPECT_EQ(kernels::rows_retry_want(1, 8192, 512, 1280), 1);
  EXPECT_EQ(kernels::rows_retry_want(1000, 10, 512, 1280), kernels::kRowsSample);
  for (const int k : {1, 33, 512, 1000, 2048}) {
    for (const int len : {1025, 3001, 8192}) {
      const int kk = std::min(k, len);
      const int cap = kernels::rows_list_entries(k, len);
      const int want = kernels::rows_sample_want(k, len);
      for (int total = 0; total <= len; total += 7) {
        if (total >= kk && total <= cap) continue;  // no retry
        const int w = kernels::rows_retry_want(want, total, kk, cap);
        ASSERT_GE(w, 1);
        ASSERT_LE(w, kernels::kRowsSample);
        if (total < kk) ASSERT_GE(w, want) << k << " " << len << " " << total;
        if (total > cap) ASSERT_LE(w, want) << k << " " << len << " " << total;
        // Count proportional to the rank (total / want a sampled key), unless clamped.
        if (total > 0 && w > 1 && w < kernels::kRowsSample) {
          const double count = double(total) * w / want;
          EXPECT_GE(count, kk - double(total) / want) << k << " " << len << " " << total;
          EXPECT_LE(count, cap) << k << " " << len << " " << total;
        }
      }
    }
  }
}

TEST(RadixTopkSample, RunsAreAlignedInsideTheRowAndSpread) {
  for (const int len : {1025, 4097, 8192, 65536, 262143, 262144, 1048576, 600000, 0x7fffffff}) {
    const int runs = kernels::stream_sample_runs(len);
    if (len <= 512 * runs) continue;  // the whole row is the sample
    const int step = kernels::stream_sample_step(runs, len);
    ASSERT_GT(step, 0) << len;
    int prev = -1;
    for (int g = 0; g < 16 * runs; ++g) {
      const int r = kernels::stream_sample_run(g, runs, len);
      ASSERT_EQ(r % 8, 0) << len << " run " << g;
      ASSERT_GT(r, prev) << len << " run " << g;
      ASSERT_LE(std::int64_t(r) + 32, len) << len << " run " << g;
      prev = r;
    }
    EXPECT_LT(std::int64_t(len) - 32 - prev, std::int64_t(step) + 8) << len;
  }
}

// Staged chunks' layout (kStage): the copy starts 128-byte aligned past everything else of the
// dynamic shared memory, holds four 512-thread tiles (f32 or bf16), and with the largest k
// sorted still leaves room in an H100's 227 KB for the kernel's static shared memory (4.6 KB);
// chunk tiles by row length and blocks a row (1, 2 and 4: staged; others stream).
TEST(RadixTopkStage, LayoutAndChunkTiles) {
  EXPECT_EQ(kernels::stream_stage_bytes(4), std::size_t(4) * 512 * kernels::kStreamPer * 4);
  EXPECT_EQ(kernels::stream_stage_bytes(2), std::size_t(4) * 512 * kernels::kStreamPer * 2);
  for (int k : {1, 33, 512, 1024, 2048}) {
    for (bool sorted : {false, true}) {
      for (std::int64_t len : {std::int64_t(16385), std::int64_t(65536), std::int64_t(131071)}) {
        const std::size_t at = kernels::stream_stage_offset(k, sorted, len);
        EXPECT_EQ(at % 128, 0u) << k;
        EXPECT_GE(at, kernels::stream_smem_bytes(k, sorted, len)) << k;
        EXPECT_LT(at - kernels::stream_smem_bytes(k, sorted, len), 128u) << k;
        EXPECT_LE(at + kernels::stream_stage_bytes(4) + 8 * 1024, std::size_t(227) * 1024) << k;
        EXPECT_EQ(kernels::stream_launch_smem_bytes(k, sorted, len, true, 2),
                  at + kernels::stream_stage_bytes(2))
            << k;
        EXPECT_EQ(kernels::stream_launch_smem_bytes(k, sorted, len, false, 4),
                  kernels::stream_smem_bytes(k, sorted, len))
            << k;
      }
    }
  }
  EXPECT_EQ(kernels::stream_chunk_tiles(65536, 2), 4);
  EXPECT_EQ(kernels::stream_chunk_tiles(32768, 2), 2);
  EXPECT_EQ(kernels::stream_chunk_tiles(8192, 2), 1);
  EXPECT_EQ(kernels::stream_chunk_tiles(20000, 2), 2);  // three tiles: 2 + 1 (partial)
  EXPECT_EQ(kernels::stream_chunk_tiles(100000, 2), 7);
  EXPECT_EQ(kernels::stream_chunk_tiles(65536, 4), 2);
  // The sample in registers: more elements than the sample of 1024 or 2048.
  EXPECT_FALSE(kernels::stream_sample_in_registers(1024));
  EXPECT_TRUE(kernels::stream_sample_in_registers(1025));
  EXPECT_TRUE(kernels::stream_sample_in_registers(65536));
  EXPECT_TRUE(kernels::stream_sample_in_registers(131071));
  EXPECT_FALSE(kernels::stream_sample_in_registers(131072));  // 4096 sampled: shared memory
  // Every row's chunks staged (the copies first thing): whole tiles split evenly, 1, 2 or 4 a
  // block, the sample in registers; else 0 (the kernel decides per row).
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(65536, 2), 4);
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(32768, 2), 2);
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(65536, 4), 2);
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(16384, 2), 1);
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(65536, 1), 0);     // no cluster
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(65537, 2), 0);     // a partial tile
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(3 * 8192, 2), 0);  // uneven split
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(6 * 8192, 2), 0);  // three tiles a block
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(131072, 4), 0);    // sample in shared memory
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(8192, 2), 0);      // half a tile a block
  EXPECT_EQ(kernels::stream_uniform_stage_tiles(0, 2), 0);
  // Staged f32 rows with the host's geometry sample twice the runs where stream_sample_runs
  // gives 4 (eight sampled elements a thread); bf16 rows and other lengths keep its runs.
  EXPECT_EQ(kernels::stream_stage_sample_runs(65536, 4), 8);
  EXPECT_EQ(kernels::stream_stage_sample_runs(32768, 4), 8);
  EXPECT_EQ(kernels::stream_stage_sample_runs(131071, 4), 8);
  EXPECT_EQ(kernels::stream_stage_sample_runs(65536, 2), 4);
  EXPECT_EQ(kernels::stream_stage_sample_runs(16384, 4), 2);
  EXPECT_EQ(kernels::stream_stage_sample_runs(32767, 4), 2);
  EXPECT_EQ(kernels::stream_stage_sample_runs(131072, 4), 8);  // stream_sample_runs' own 8
  for (std::int64_t len = 8192; len <= 131072; len += 8192) {
    for (int blocks : {2, 4, 8, 16}) {
      const int t = kernels::stream_uniform_stage_tiles(len, blocks);
      if (t != 0) {  // the kernel's own chunk geometry for every block
        EXPECT_EQ(kernels::stream_chunk_tiles(len, blocks), t) << len;
        EXPECT_EQ(std::int64_t(t) * blocks * 512 * kernels::kStreamPer, len) << len;
      }
    }
  }
}

// Many rows (one 256-thread block each, the sample's keys in registers where a vector a thread
// holds it): per-row lengths (rows no longer than their sample), an odd stride (scalar loads),
// the sample arranged against the row in every row (the exact fallback), both orders, CUB's
// sort (k > 1024), a 2048-element sample (too large for the registers: shared memory).
TEST_F(GpuRadixTopk, ManyRows) {
  int sms = 0;
  MOER_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const std::int64_t n = 9 * std::int64_t(sms);
  check(n, 20000, 512, Data::kRandom, true, false, 61);
  check(n, 20000, 1100, Data::kFewLevels, true, true, 62);
  check(n, 9000, 600, Data::kLowSample, false, true, 63);
  check(n, 9000, 64, Data::kSpecial, true, false, 64, -1, 0, 9001);
  check(n, 40000, 700, Data::kHighSample, false, false, 65);
  check(n, 8192, 512, Data::kEqual, false, false, 66, 1, 256);  // every sample at one key
  check(n, 8192, 512, Data::kRandom, true, false, 67);          // the short-row kernel
  check(n, 5000, 1024, Data::kFewLevels, false, false, 68);
  check(n, 8000, 700, Data::kLowSample, true, false, 69);
}

// The short-row kernel (cuda::topk_rows; topk's choice for rows of at most 8192, unsorted, or
// sorted with k <= 1024): every layout (8, 16, 32 elements a thread), rows within and beyond
// the sample, k from 1 to 2048, both orders (sorted for k <= 1024: the bitonic network's one,
// two and four pairs a thread), every kind of data, rows arranged against the sample (the bound
// again at another rank of the sample, or the exact path over the row's copy), per-row lengths,
// and odd row strides (no bulk copy) as well as rows whose bytes are no multiple of 16 (a bulk
// copy and the threads' tail).
TEST_F(GpuRadixTopk, ShortRows) {
  std::uint64_t seed = 9000;
  for (const std::int64_t len : {1, 100, 1024, 1500, 2048, 3001, 4096, 5000, 8191, 8192}) {
    for (const int k : {1, 33, 512, 1000, 2048}) {
      for (const Data d : {Data::kRandom, Data::kSorted, Data::kReverse, Data::kEqual,
                           Data::kFewLevels, Data::kSpecial, Data::kHighSample, Data::kLowSample,
                           Data::kNearTies, Data::kSampleAbove, Data::kSampleBelow,
                           Data::kLowBits}) {
        ++seed;
        const bool sorted = k <= kernels::kRowsMaxSortedK && seed % 2 == 0;
        check(3, len, k, d, seed % 3 != 0, sorted, seed, 0, 0, seed % 4 == 0 ? len + 3 : 0);
      }
    }
  }
}

TEST_F(GpuRadixTopk, ShortRowsArguments) {
  TopkParams p;
  DeviceBuffer<float> vals(4 * 9000);
  DeviceBuffer<std::int32_t> idx(4 * 64);
  vals.fill_bytes(0);
  p.values = vals.get();
  p.indices = idx.get();
  p.n = 4;
  p.length = 8192;
  p.k = 64;
  p.sorted = true;
  EXPECT_TRUE(cuda::topk_rows(p).ok());
  p.k = 1500;
  EXPECT_EQ(cuda::topk_rows(p).code(), StatusCode::kUnsupported);  // sorted, k > 1024
  p.sorted = false;
  p.k = 64;
  EXPECT_TRUE(cuda::topk_rows(p).ok());
  p.length = 8193;
  EXPECT_EQ(cuda::topk_rows(p).code(), StatusCode::kUnsupported);  // too long a row
  p.length = 8192;
  p.k = 4096;
  EXPECT_EQ(cuda::topk_rows(p).code(), StatusCode::kUnsupported);  // k > 2048
}

// Row stride: aligned (16-byte vector loads) and odd strides (scalar loads).
TEST_F(GpuRadixTopk, RowStride) {
  check(9, 8000, 512, Data::kRandom, true, true, 31, -1, 0, 8004);
  check(9, 8000, 512, Data::kFewLevels, true, false, 32, -1, 0, 8003);
  check(5, 30001, 1024, Data::kSpecial, false, true, 33, 4, 0, 30007);
  check(5, 30001, 1024, Data::kEqual, true, false, 34, 8, 256, 30001);
}

// Small shapes for compute-sanitizer (memcheck, racecheck): every cluster size, both block
// sizes, both sorts and the exact fallback once.
TEST_F(GpuRadixTopk, SanitizerSmall) {
  check(3, 3000, 64, Data::kFewLevels, true, true, 41, 1, 512);
  check(3, 3000, 64, Data::kRandom, true, false, 42, 1, 256);
  check(2, 20000, 100, Data::kSpecial, true, true, 43, 3, 0);
  check(2, 20000, 100, Data::kEqual, false, false, 44, 2, 0);
  check(2, 20000, 100, Data::kRandom, false, true, 45, 16, 0);
  check(2, 3000, 64, Data::kRandom, true, true, 46);              // the choice by shape
  check(2, 20000, 1100, Data::kFewLevels, true, true, 47, 3, 0);  // CUB's sort (k > 1024)
  check(2, 20000, 1100, Data::kRandom, false, true, 48, 1, 256);
  check(2, 20000, 100, Data::kRandom, true, true, 51, 1, 0);
  check(2, 20000, 1100, Data::kFewLevels, true, false, 52, 3, 0);
  check(2, 40000, 600, Data::kSpecial, false, true, 53, 16, 0);
  check(2, 40000, 600, Data::kLowSample, false, true, 54, 4, 0);  // the exact fallback
  check(2, 40000, 1500, Data::kHighSample, false, false, 55, 16, 0);
  check(3, 20000, 1100, Data::kRandom, true, true, 56, 1, 256);  // 256 threads, CUB sort
  check(3, 20000, 700, Data::kLowSample, false, true, 57, 2, 256);
  check(2, 30000, 100, Data::kRandom, true, false, 58, -1, 0, 0, 5);      // grid mode
  check(1, 30000, 1100, Data::kLowSample, false, true, 59, -1, 0, 0, 3);  // and its fallback
  check(2, 20000, 1000, Data::kNearTies, false, false, 60, 2, 0);         // ties near the k-th key
  check(1, 30000, 1000, Data::kNearTies, true, true, 61, -1, 0, 0, 4);
  check(1, 20000, 33, Data::kSorted, false, false, 62, 4, 512);  // the searched bound
  int sms = 0;                                                   // many rows: 256-thread blocks
  MOER_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  check(5 * std::int64_t(sms), 3000, 64, Data::kRandom, true, false, 60);
  check(5 * std::int64_t(sms), 3000, 600, Data::kLowSample, false, true, 67);
  check(3, 8192, 512, Data::kRandom, true, false, 68, 0);            // the short-row kernel
  check(3, 8000, 512, Data::kLowSample, false, false, 69, 0);        // its exact path
  check(3, 5000, 100, Data::kSpecial, true, false, 70, 0, 0, 5001);  // no bulk copy
  check(3, 8192, 700, Data::kFewLevels, true, true, 71, 0);          // sorted: four pairs
  check(3, 2000, 2048, Data::kSpecial, true, false, 72, 0);          // every element chosen
  check(3, 1000, 1000, Data::kFewLevels, false, true, 73, 0);        // and sorted
  check(3, 8192, 512, Data::kSampleAbove, false, false, 74, 0);      // the bound's retry
  check(3, 6000, 700, Data::kSampleAbove, false, true, 75, 0);       // and sorted
  check(3, 8192, 512, Data::kSampleBelow, true, false, 76, 0);       // from too many
  check(3, 6000, 700, Data::kSampleBelow, false, true, 77, 0);       // and sorted
  check(2, 32768, 512, Data::kRandom, true, false, 78, 2, 512);      // staged chunks (kStage)
  check(2, 65536, 600, Data::kLowSample, false, true, 79, 2, 512);   // and the exact fallback
  check(2, 65536, 300, Data::kSpecial, false, false, 80, 2, 512, 65537);  // unaligned rows
  check(2, 32768, 512, Data::kRandom, false, true, 81, 2, 512);           // block 1's list pushed
  check(2, 65536, 512, Data::kCrowdFirst, false, false, 82, 2, 512);      // then the exact path
  check(2, 65536, 512, Data::kCrowdLast, false, true, 83, 2, 512);        // not pushed
}

// Staged chunks (kStage: f32 rows of few 512-thread clusters of two or more blocks, each block
// copying its chunk of 1, 2 or 4 whole tiles into shared memory from the kernel's start), by
// topk's own choice: 64 rows of 65536 (two blocks of four tiles) and 40 of 32768 (two of two),
// every data kind, rows arranged against the sample (the exact fallback reads global memory
// once the copies have landed), per-row lengths (short rows and partial chunks take the
// streaming collect), rows that start unaligned (no copies), sorted and unsorted, k from 33 to
// 2048.
TEST_F(GpuRadixTopk, StagedChunks) {
  std::uint64_t seed = 9700;
  for (Data d :
       {Data::kRandom, Data::kSorted, Data::kReverse, Data::kEqual, Data::kFewLevels,
        Data::kSpecial, Data::kNearTies, Data::kLowBits, Data::kHighSample, Data::kLowSample}) {
    for (int k : {33, 512, 2048}) {
      ++seed;
      if (k != 33) check(64, 65536, k, d, seed % 3 == 0, seed % 2 == 0, seed);
      check(40, 32768, k, d, seed % 3 == 1, seed % 2 == 1, seed);
    }
  }
  check(40, 32768, 512, Data::kRandom, false, false, 9800, -1, 0, 32769);  // unaligned rows
  check(40, 32768, 512, Data::kLowBits, true, true, 9801, -1, 0, 32772);   // aligned, strided
  // One block's list longer than half the list's room: block 1 pushes its list into block 0's
  // upper half as it places it, so this takes the exact path (block 1's list pushed or not).
  for (Data d : {Data::kCrowdFirst, Data::kCrowdLast}) {
    for (int k : {33, 512}) {
      ++seed;
      check(64, 65536, k, d, false, seed % 2 == 0, seed);
    }
  }
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

// bf16 rows `vals` (n x len, optional per-row lengths) on the GPU == the CPU backend, indices
// and values: through cuda::topk_radix_config(cluster, threads) for cluster >= 1,
// cuda::topk_rows for cluster 0, else cuda::topk.
// grid > 0: grid mode with `grid` blocks a row; grid < 0: cuda::topk with the workspace it asks
// for (each on a workspace whose counters alone were zeroed, called twice, the second checked).
void check_bf16(const std::vector<bf16>& vals, std::int64_t n, std::int64_t len, int k, bool sorted,
                const std::vector<std::int32_t>* lens, int cluster, int threads, int grid = 0) {
  const std::string cfg = "n=" + std::to_string(n) + " len=" + std::to_string(len) +
                          " k=" + std::to_string(k) + " sorted=" + std::to_string(sorted) +
                          " cluster=" + std::to_string(cluster) + " grid=" + std::to_string(grid);
  std::vector<std::int32_t> cpu_idx(n * k);
  std::vector<float> cpu_val(n * k);
  TopkParams p;
  p.values = vals.data();
  p.values_dtype = DType::kBF16;
  p.lengths = lens ? lens->data() : nullptr;
  p.indices = cpu_idx.data();
  p.out_values = cpu_val.data();
  p.n = n;
  p.length = len;
  p.k = k;
  p.sorted = sorted;
  ASSERT_TRUE(cpu::topk(p).ok());
  DeviceBuffer<bf16> d_vals(vals);
  DeviceBuffer<std::int32_t> d_lens(lens ? *lens : std::vector<std::int32_t>(1));
  DeviceBuffer<std::int32_t> d_idx(n * k);
  DeviceBuffer<float> d_val(n * k);
  d_idx.fill_bytes(0x7f);
  p.values = d_vals.get();
  p.lengths = lens ? d_lens.get() : nullptr;
  p.indices = d_idx.get();
  p.out_values = d_val.get();
  if (grid != 0) {
    const std::size_t ws_bytes =
        grid > 0 ? cuda::topk_radix_grid_workspace_size(p, grid) : cuda::topk_workspace_size(p);
    ASSERT_GT(ws_bytes, 0u) << cfg;
    DeviceBuffer<unsigned char> ws(ws_bytes);
    MOER_CUDA_OK(cudaMemset(
        ws.get(), 0, std::min(ws_bytes, 4 * std::size_t(kernels::radix_stream_grid_counts(n)))));
    for (int call = 0; call < 2; ++call) {
      d_idx.fill_bytes(0x7f);
      ASSERT_TRUE((grid > 0 ? cuda::topk_radix_grid(p, grid, ws.get(), ws_bytes)
                            : cuda::topk(p, ws.get(), ws_bytes))
                      .ok())
          << cfg;
      MOER_CUDA_OK(cudaDeviceSynchronize());
    }
  } else {
    ASSERT_TRUE((cluster == 0   ? cuda::topk_rows(p)
                 : cluster >= 1 ? cuda::topk_radix_config(p, cluster, threads)
                                : cuda::topk(p))
                    .ok())
        << cfg;
  }
  EXPECT_EQ(d_idx.download(), cpu_idx) << cfg;
  std::size_t diff = 0;
  EXPECT_TRUE(testing::same_bits(d_val.download(), cpu_val, &diff)) << cfg << " slot " << diff;
}

// Many bf16 rows (256-thread blocks, the sample in registers), unsorted with values.
TEST_F(GpuRadixTopk, Bf16ManyRows) {
  int sms = 0;
  MOER_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const std::int64_t n = 6 * std::int64_t(sms), len = 9000;
  check_bf16(testing::make_bf16(n * len, 1.0, 8), n, len, 512, false, nullptr, -1, 0);
}

// bf16 staged chunks (kStage, as StagedChunks for f32): 64x65536 and 40x32768 by topk's choice,
// random rows and few distinct values, per-row lengths (short rows and partial chunks stream),
// k from 33 to 2048, both orders.
TEST_F(GpuRadixTopk, Bf16StagedChunks) {
  std::uint64_t seed = 9900;
  for (const std::int64_t len : {std::int64_t(65536), std::int64_t(32768)}) {
    const std::int64_t n = len == 65536 ? 64 : 40;
    for (int k : {33, 512, 2048}) {
      for (bool sorted : {false, true}) {
        ++seed;
        auto vals = testing::make_bf16(n * len, 1.0, seed);
        if (seed % 2 == 0) {  // few distinct values: ties at the threshold across the chunks
          for (auto& b : vals) {
            b = moerouter::detail::float_to_bf16(
                float(int(moerouter::detail::bf16_to_float(b) * 2)));
          }
        }
        std::vector<std::int32_t> lens(static_cast<std::size_t>(n));
        for (std::int64_t r = 0; r < n; ++r) {
          const std::int64_t choices[] = {len, 0, k - 1, len / 2 + 3, len, k + 1};
          lens[r] = std::int32_t(choices[r % 6]);
        }
        check_bf16(vals, n, len, k, sorted, seed % 3 == 0 ? &lens : nullptr, -1, 0);
      }
    }
  }
}

// Small bf16 staged launches for compute-sanitizer (SanitizerSmall's staged rows are f32): the
// copies issued first thing (no per-row lengths) and after the sample's loads (per-row lengths:
// a whole row staged, a partial one streamed), both orders, two-block clusters.
TEST_F(GpuRadixTopk, Bf16SanitizerSmall) {
  const std::vector<std::int32_t> lens = {32768, 20001};
  check_bf16(testing::make_bf16(2 * 32768, 1.0, 9950), 2, 32768, 512, false, nullptr, 2, 512);
  check_bf16(testing::make_bf16(2 * 32768, 1.0, 9951), 2, 32768, 600, true, &lens, 2, 512);
}

// bf16 through the cluster sizes and block sizes, ties straddling chunks (few levels), lengths.
// bf16 rows in grid mode, whose blocks keep the keys equal to T0 too (each block's first k):
// random rows, ramps (each value repeated thousands of times near the top, T0 on a tie group),
// few distinct values, per-row lengths; blocks forced and chosen by topk.
TEST_F(GpuRadixTopk, Bf16Grid) {
  std::uint64_t seed = 70;
  for (const std::int64_t len : {std::int64_t(262144), std::int64_t(1048576)}) {
    for (int pattern = 0; pattern < 3; ++pattern) {
      for (bool sorted : {false, true}) {
        ++seed;
        const std::int64_t n = 2;
        auto vals = testing::make_bf16(n * len, 1.0, seed);
        for (std::int64_t i = 0; i < n * len; ++i) {
          const float f = moerouter::detail::bf16_to_float(vals[std::size_t(i)]);
          if (pattern == 1) {  // a ramp per row
            vals[std::size_t(i)] = moerouter::detail::float_to_bf16(float(i % len) / float(len));
          } else if (pattern == 2) {  // few distinct values
            vals[std::size_t(i)] = moerouter::detail::float_to_bf16(float(int(f * 2)));
          }
        }
        const std::vector<std::int32_t> lens = {std::int32_t(len), std::int32_t(len / 3 + 7)};
        const int k = seed % 2 == 0 ? 1024 : 512;
        check_bf16(vals, n, len, k, sorted, nullptr, -1, 0, len > 262144 ? 64 : 32);
        check_bf16(vals, n, len, k, sorted, &lens, -1, 0, -1);
      }
    }
  }
}

// bf16 through the short-row kernel: random rows, ramps, few distinct values, per-row lengths.
TEST_F(GpuRadixTopk, Bf16ShortRows) {
  std::uint64_t seed = 90;
  for (const std::int64_t len : {std::int64_t(100), std::int64_t(3001), std::int64_t(8192)}) {
    for (int pattern = 0; pattern < 3; ++pattern) {
      for (const int k : {64, 512, 2048}) {
        ++seed;
        const std::int64_t n = 4;
        auto vals = testing::make_bf16(n * len, 1.0, seed);
        for (std::int64_t i = 0; i < n * len; ++i) {
          const float f = moerouter::detail::bf16_to_float(vals[std::size_t(i)]);
          if (pattern == 1) {
            vals[std::size_t(i)] = moerouter::detail::float_to_bf16(float(i % len) / float(len));
          } else if (pattern == 2) {
            vals[std::size_t(i)] = moerouter::detail::float_to_bf16(float(int(f * 2)));
          }
        }
        const std::vector<std::int32_t> lens = {0, std::int32_t(k - 1), std::int32_t(len),
                                                std::int32_t(len / 2 + 1)};
        check_bf16(vals, n, len, k, k <= kernels::kRowsMaxSortedK && seed % 3 == 0,
                   seed % 2 == 0 ? &lens : nullptr, 0, 0);
      }
    }
  }
}

TEST_F(GpuRadixTopk, Bf16Cluster) {
  const int configs[][2] = {{1, 0}, {1, 256}, {2, 0}, {4, 0}, {5, 512}, {16, 0}};
  std::uint64_t seed = 50;
  for (const auto& c : configs) {
    const std::int64_t len = 40000 + 3 * c[0];
    for (int k : {64, 1024}) {
      for (bool sorted : {true, false}) {
        ++seed;
        const std::int64_t n = 4;
        auto vals = testing::make_bf16(n * len, 1.0, seed);
        if (seed % 2 == 0) {  // few distinct values
          for (auto& b : vals) {
            const float f = moerouter::detail::bf16_to_float(b);
            b = moerouter::detail::float_to_bf16(float(int(f * 2)));
          }
        }
        const std::vector<std::int32_t> lens = {0, std::int32_t(k - 1), std::int32_t(len),
                                                std::int32_t(len / 2)};
        check_bf16(vals, n, len, k, sorted, &lens, c[0], c[1]);
      }
    }
  }
}

}  // namespace
}  // namespace moerouter
