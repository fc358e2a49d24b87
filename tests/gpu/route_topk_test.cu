// The fused route on the GPU (route_logits, and route = cuBLASLt GEMM + fused route) against
// the CPU backend (bit for bit from the same logits) and the float64 oracle (SPEC.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <set>
#include <type_traits>
#include <vector>

#include "gpu_testbed.h"
#include "late_writer.cuh"
#include "moerouter/cpu.h"
#include "moerouter/cuda.h"
#include "moerouter/detail/exact_math.cuh"
#include "moerouter/kernels/route_topk.cuh"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;
using testing::LogitPattern;

// MOER_GPU_TEST_QUICK=1 (for compute-sanitizer runs) caps the batch sizes.
bool quick() {
  const char* q = std::getenv("MOER_GPU_TEST_QUICK");
  return q != nullptr && q[0] == '1';
}

struct RouteOut {
  std::vector<float> weights;
  std::vector<std::int64_t> ids;
};

// Widens [n, k] ids of either dtype with row stride `stride` to a dense int64 [n, k].
std::vector<std::int64_t> widen_ids(const std::vector<std::int32_t>& v32,
                                    const std::vector<std::int64_t>& v64, bool i64,
                                    std::int64_t n, int k, std::int64_t stride) {
  std::vector<std::int64_t> out(std::size_t(n * k));
  for (std::int64_t r = 0; r < n; ++r) {
    for (int j = 0; j < k; ++j) out[r * k + j] = i64 ? v64[r * stride + j] : v32[r * stride + j];
  }
  return out;
}

// route_logits on the GPU and on the CPU from the same host logits (f32 or bf16).
template <typename T>
struct RouteCase {
  std::int64_t n, e, stride;
  int k;
  float scale;
  bool i64;
  std::vector<T> logits;
  std::vector<float> bias;

  RouteLogitsParams params(const void* lg, const float* b, float* w, void* ids) const {
    RouteLogitsParams p;
    p.logits = lg;
    p.logits_dtype = std::is_same<T, float>::value ? DType::kF32 : DType::kBF16;
    p.logits_stride = stride;
    p.bias = bias.empty() ? nullptr : b;
    p.weights = w;
    p.ids = ids;
    p.ids_dtype = i64 ? DType::kI64 : DType::kI32;
    p.n = n;
    p.experts = e;
    p.k = k;
    p.scale = scale;
    return p;
  }

  RouteOut run_gpu(Status* status = nullptr) const {
    DeviceBuffer<T> d_logits(logits);
    DeviceBuffer<float> d_bias(bias.empty() ? std::vector<float>(1, 0.0f) : bias);
    DeviceBuffer<float> d_w(std::size_t(n * k));
    DeviceBuffer<std::int32_t> d_i32(std::size_t(i64 ? 1 : n * k));
    DeviceBuffer<std::int64_t> d_i64(std::size_t(i64 ? n * k : 1));
    d_w.fill_bytes(0x7f);
    d_i32.fill_bytes(0x7f);
    d_i64.fill_bytes(0x7f);
    const RouteLogitsParams p = params(d_logits.get(), d_bias.get(), d_w.get(),
                                       i64 ? static_cast<void*>(d_i64.get()) : d_i32.get());
    const Status st = cuda::route_logits(p);
    if (status != nullptr) *status = st;
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    RouteOut out;
    out.weights = d_w.download();
    out.ids = widen_ids(d_i32.download(), d_i64.download(), i64, n, k, k);
    return out;
  }

  RouteOut run_cpu() const {
    RouteOut out{std::vector<float>(std::size_t(n * k)), std::vector<std::int64_t>(n * k)};
    const RouteLogitsParams p = params(logits.data(), bias.data(), out.weights.data(),
                                       out.ids.data());
    RouteLogitsParams p64 = p;
    p64.ids_dtype = DType::kI64;
    const Status st = cpu::route_logits(p64);
    EXPECT_TRUE(st.ok()) << st.to_string();
    return out;
  }

  // The oracle on the first `rows` rows.
  oracle::RouteResult oracle_rows(std::int64_t rows) const {
    RouteLogitsParams p = params(logits.data(), bias.data(), nullptr, nullptr);
    p.n = rows;
    return oracle::route_logits(p);
  }
};

// GPU == CPU bit for bit on every row, and GPU == oracle (SPEC.md tolerances) on the first
// rows (all of them up to 2048).
template <typename T>
void check_route_case(const RouteCase<T>& c, const std::string& cfg) {
  const RouteOut gpu = c.run_gpu();
  const RouteOut cpu = c.run_cpu();
  ASSERT_EQ(gpu.ids.size(), cpu.ids.size());
  for (std::size_t i = 0; i < gpu.ids.size(); ++i) {
    ASSERT_EQ(gpu.ids[i], cpu.ids[i]) << cfg << ": id differs from the CPU backend at row "
                                      << i / c.k << " slot " << i % c.k;
  }
  std::size_t diff = 0;
  ASSERT_TRUE(testing::same_bits(gpu.weights, cpu.weights, &diff))
      << cfg << ": weight differs from the CPU backend at row " << diff / c.k << " slot "
      << diff % c.k << ": " << gpu.weights[diff] << " vs " << cpu.weights[diff];
  const std::int64_t rows = std::min<std::int64_t>(c.n, 2048);
  const oracle::RouteResult ref = c.oracle_rows(rows);
  const auto cmp = oracle::compare_route(ref, gpu.ids.data(), DType::kI64, c.k,
                                         gpu.weights.data(), c.k);
  // Not fatal: the ids already equal the CPU backend's, so a sweep goes on past a row the
  // oracle comparison refuses (and every refused config is listed).
  EXPECT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;
}

// |s~ - s| <= kApproxRel * s~ + kApproxAbs over all 2^32 inputs (the filter's premise), and
// s~ is NaN / inf exactly where the exact s is.
__global__ void approx_bound_kernel(unsigned long long* violations, unsigned* worst_bits,
                                    unsigned long long* special_mismatch) {
  unsigned long long bad = 0, special = 0;
  float worst = 0.0f;
  const std::uint64_t stride = std::uint64_t(gridDim.x) * blockDim.x;
  for (std::uint64_t i = std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < (std::uint64_t(1) << 32); i += stride) {
    const float z = __uint_as_float(std::uint32_t(i));
    const float a = kernels::approx_sqrt_softplus(z);
    const float s = detail::sqrt_softplus(z);
    if (isnan(a) != isnan(s) || isinf(a) != isinf(s) || isnan(a) != isnan(z)) {
      ++special;
      continue;
    }
    if (isnan(a) || isinf(a)) continue;
    const double err = fabs(double(a) - double(s));
    if (err > double(kernels::kApproxRel) * a + double(kernels::kApproxAbs)) ++bad;
    if (a > 0.0f && err > double(kernels::kApproxAbs)) {
      worst = fmaxf(worst, float((err - double(kernels::kApproxAbs)) / a));
    }
  }
  atomicAdd(violations, bad);
  atomicAdd(special_mismatch, special);
  atomicMax(worst_bits, __float_as_uint(worst));
}

TEST(FusedRouteApprox, ScoreBoundHoldsForEveryFloat) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_device_description();
  DeviceBuffer<unsigned long long> d_counts(2);
  DeviceBuffer<unsigned> d_worst(1);
  d_counts.fill_bytes(0);
  d_worst.fill_bytes(0);
  approx_bound_kernel<<<132 * 8, 256>>>(d_counts.get(), d_worst.get(), d_counts.get() + 1);
  MOER_CUDA_OK(cudaGetLastError());
  MOER_CUDA_OK(cudaDeviceSynchronize());
  const auto counts = d_counts.download();
  const unsigned worst_bits = d_worst.download()[0];
  float worst;
  std::memcpy(&worst, &worst_bits, 4);
  std::printf("approx sqrt-softplus: worst (|s~ - s| - kApproxAbs) / s~ = %.3g (bound %.3g)\n",
              worst, kernels::kApproxRel);
  EXPECT_EQ(counts[0], 0u) << "inputs violating the bound";
  EXPECT_EQ(counts[1], 0u) << "inputs where s~ and s disagree on NaN / inf";
  EXPECT_LE(worst, kernels::kApproxRel);
}

// detail::sqrt_softplus_nobranch (the kernels' score) equals detail::sqrt_softplus (math.h,
// the CPU backend's) bit for bit for all 2^32 inputs (NaN for NaN).
struct ScoreDiffers {
  __device__ bool operator()(std::uint32_t bits) const {
    const float z = __uint_as_float(bits);
    const float a = detail::sqrt_softplus_nobranch(z);
    const float s = detail::sqrt_softplus(z);
    return !((isnan(a) && isnan(s)) || __float_as_uint(a) == __float_as_uint(s));
  }
};

TEST(FusedRouteApprox, BranchlessScoreEqualsTheReferenceEverywhere) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_device_description();
  testing::BitSweep r;
  ASSERT_NO_FATAL_FAILURE(testing::sweep_all_bits(ScoreDiffers{}, &r));
  float z;
  std::memcpy(&z, &r.first, 4);
  EXPECT_EQ(r.count, 0u) << "inputs where the branchless score differs; the lowest bit pattern: 0x"
                         << std::hex << r.first << " (" << z << ")";
}

class GpuRouteLogits : public testing::GpuTest {};

TEST_F(GpuRouteLogits, SweepAgainstCpuAndOracle) {
  const LogitPattern all[] = {LogitPattern::kNormal, LogitPattern::kTies,
                              LogitPattern::kNearTies, LogitPattern::kExtreme,
                              LogitPattern::kSpecial};
  std::uint64_t seed = 1000;
  for (std::int64_t n : {0, 1, 7, 64, 4096, 65536}) {
    if (quick() && n > 4096) continue;
    for (std::int64_t e : {8, 64, 256, 384, 1000}) {
      for (int k : {1, 6, 8, 32}) {
        if (k > e) continue;
        std::vector<LogitPattern> pats(std::begin(all), std::end(all));
        if (n == 4096) pats = {LogitPattern::kNormal, LogitPattern::kSpecial};
        if (n > 4096) pats = {LogitPattern::kNormal};
        for (LogitPattern pat : pats) {
          ++seed;
          RouteCase<float> c{n, e, 0, k, 2.5f, seed % 2 == 0, {}, {}};
          c.logits = testing::make_logits(n, e, pat, seed);
          c.bias = testing::make_bias(e, seed + 7);
          check_route_case(c, testing::config(n, e, k, std::string("pattern=") +
                                                          testing::pattern_name(pat)));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// Batches for the one-warp kernels' logit filter (level 1 of route_topk.cuh), over every data
// pattern and bias shape, including ones where it must hand over to the next level: the
// small-batch variant (1000 rows, its short-chain steps) and the plain kernel with several
// rows a warp.
TEST_F(GpuRouteLogits, LargeBatchesAllPatternsAndBiasShapes) {
  const LogitPattern all[] = {LogitPattern::kNormal, LogitPattern::kTies,
                              LogitPattern::kNearTies, LogitPattern::kExtreme,
                              LogitPattern::kSpecial};
  std::uint64_t seed = 4000;
  // The plain kernel (from 3584 rows) tries level 1 on every row; rows beyond the resident
  // warps (16 blocks of 4 warps per SM bound the residency) make warps take several rows.
  int sms = 0;
  MOER_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const std::int64_t n_plain = std::int64_t(sms) * 16 * 4 * 2 + 1;
  for (const std::int64_t n : {std::int64_t(1000), n_plain}) {
    for (std::int64_t e : {256, 384, 1000}) {
      for (int k : {1, 6, 32}) {
        for (LogitPattern pat : all) {
          for (int bias_kind = 0; bias_kind < 4; ++bias_kind) {
            ++seed;
            RouteCase<float> c{n, e, 0, k, 2.5f, false, {}, {}};
            c.logits = testing::make_logits(n, e, pat, seed);
            if (bias_kind == 0) c.bias = testing::make_bias(e, seed + 1);        // DSV4-like
            if (bias_kind == 2) c.bias.assign(std::size_t(e), 8.08f);             // uniform
            if (bias_kind == 3) c.bias = testing::make_bias(e, seed + 1, 0.0);    // spread 0.02
            if (bias_kind == 3) for (auto& b : c.bias) b *= 50.0f;                // spread 1.0
            check_route_case(c, testing::config(n, e, k, std::string("pattern=") +
                                                            testing::pattern_name(pat) +
                                                            " bias=" + std::to_string(bias_kind)));
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// Batches on both sides of the launcher's kernel choice (route.cu: route_topk_kernel's kSmall
// variant below 3584 rows, the plain kernel from there on) with bf16 and f32 logits, padded row
// strides and int64 ids; the ties pattern takes the levels after the filters.
TEST_F(GpuRouteLogits, LargeBatchDtypesStridesAndTies) {
  std::uint64_t seed = 9000;
  const std::int64_t ns[] = {700, quick() ? 3600 : 6000};
  for (std::int64_t n : ns) {
    for (std::int64_t e : {64, 128, 256, 384}) {
      for (std::int64_t stride : {e, e + 4}) {
        RouteCase<bf16> c{n, e, stride, 6, 2.5f, true, {}, {}};
        c.logits = testing::make_bf16(n * stride, 2.0, ++seed);
        c.bias = testing::make_bias(e, ++seed);
        check_route_case(c, testing::config(n, e, 6, "bf16 stride=" + std::to_string(stride)));
        if (HasFatalFailure()) return;
        for (LogitPattern pat : {LogitPattern::kNormal, LogitPattern::kTies}) {
          RouteCase<float> f{n, e, stride, 8, 1.5f, false, {}, {}};
          f.logits = testing::make_logits(n, stride, pat, ++seed);
          f.bias = c.bias;
          check_route_case(f, testing::config(n, e, 8, std::string("f32 pattern=") +
                                                           testing::pattern_name(pat) +
                                                           " stride=" + std::to_string(stride)));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_F(GpuRouteLogits, NoBiasAndOddExpertCounts) {
  std::uint64_t seed = 77;
  for (std::int64_t e : {1, 3, 33, 129, 255, 641, 1023, 1024}) {
    for (int k : {1, 6, 32}) {
      if (k > e) continue;
      RouteCase<float> c{300, e, 0, k, 1.0f, false, {}, {}};
      c.logits = testing::make_logits(c.n, e, LogitPattern::kNormal, ++seed);
      check_route_case(c, testing::config(c.n, e, k, "no bias"));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuRouteLogits, Bf16LogitsRowStridesAndMisalignment) {
  std::uint64_t seed = 500;
  for (std::int64_t e : {256, 384, 1000, 37}) {
    for (std::int64_t stride : {e, e + 1, e + 4, e + 8}) {
      RouteCase<bf16> c{129, e, stride, 6, 1.5f, true, {}, {}};
      c.logits = testing::make_bf16(c.n * stride, 2.0, ++seed);
      c.bias = testing::make_bias(e, ++seed);
      check_route_case(c, testing::config(c.n, e, 6, "bf16 stride=" + std::to_string(stride)));
      if (HasFatalFailure()) return;
      RouteCase<float> f{129, e, stride, 6, 1.5f, false, {}, {}};
      f.logits = testing::make_logits(f.n, stride, LogitPattern::kNormal, ++seed);
      f.bias = c.bias;
      check_route_case(f, testing::config(f.n, e, 6, "f32 stride=" + std::to_string(stride)));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuRouteLogits, OutputStridesLeaveThePaddingAlone) {
  const std::int64_t n = 50, e = 384, ws = 9, is = 11;
  const int k = 6;
  const auto logits = testing::make_logits(n, e, LogitPattern::kNormal, 3);
  const auto bias = testing::make_bias(e, 4);
  DeviceBuffer<float> d_logits(logits), d_bias(bias), d_w(std::size_t(n * ws));
  DeviceBuffer<std::int32_t> d_ids(std::size_t(n * is));
  d_w.fill_bytes(0x55);
  d_ids.fill_bytes(0x55);
  RouteLogitsParams p;
  p.logits = d_logits.get();
  p.bias = d_bias.get();
  p.weights = d_w.get();
  p.ids = d_ids.get();
  p.n = n;
  p.experts = e;
  p.k = k;
  p.scale = 2.5f;
  p.weights_stride = ws;
  p.ids_stride = is;
  ASSERT_TRUE(cuda::route_logits(p).ok());
  const auto w = d_w.download();
  const auto ids = d_ids.download();
  std::vector<float> cw(std::size_t(n * k));
  std::vector<std::int32_t> cid(std::size_t(n * k));
  RouteLogitsParams hp = p;
  hp.logits = logits.data();
  hp.bias = bias.data();
  hp.weights = cw.data();
  hp.ids = cid.data();
  hp.weights_stride = hp.ids_stride = 0;
  ASSERT_TRUE(cpu::route_logits(hp).ok());
  std::uint32_t poison;
  std::memset(&poison, 0x55, 4);
  for (std::int64_t r = 0; r < n; ++r) {
    for (int j = 0; j < ws; ++j) {
      if (j < k) {
        EXPECT_EQ(std::memcmp(&w[r * ws + j], &cw[r * k + j], 4), 0) << "row " << r;
      } else {
        EXPECT_EQ(std::memcmp(&w[r * ws + j], &poison, 4), 0) << "padding written, row " << r;
      }
    }
    for (int j = 0; j < is; ++j) {
      if (j < k) {
        EXPECT_EQ(ids[r * is + j], cid[r * k + j]) << "row " << r;
      } else {
        EXPECT_EQ(std::uint32_t(ids[r * is + j]), poison) << "padding written, row " << r;
      }
    }
  }
}

// The block-per-row kernel of small DSV4 batches (route_topk_rowwide_kernel: E = 256 / 384
// in whole aligned vectors, k = 6, up to 512 rows), launched directly with fewer blocks than
// rows (its grid-stride loop, which the launcher uses only on GPUs with fewer resident
// blocks), with and without bias, over every data pattern: ids and weights equal the CPU
// backend's bit for bit.
template <int kChunks>
void check_rowblock_kernel(std::int64_t n, LogitPattern pat, int bias_kind, unsigned grid,
                           std::uint64_t seed) {
  const std::int64_t e = 128 * kChunks;
  const int k = kernels::kDsv4K;
  RouteCase<float> c{n, e, 0, k, 2.5f, false, {}, {}};
  c.logits = testing::make_logits(n, e, pat, seed);
  if (bias_kind != 0) c.bias = testing::make_bias(e, seed + 1);
  const RouteOut cpu = c.run_cpu();
  DeviceBuffer<float> d_logits(c.logits);
  DeviceBuffer<float> d_bias(c.bias.empty() ? std::vector<float>(1, 0.0f) : c.bias);
  DeviceBuffer<float> d_w(std::size_t(n * k));
  DeviceBuffer<std::int64_t> d_ids(std::size_t(n * k));
  d_w.fill_bytes(0x7f);
  d_ids.fill_bytes(0x7f);
  kernels::RouteTopkArgs a{};
  a.logits = d_logits.get();
  a.bias = c.bias.empty() ? nullptr : d_bias.get();
  a.weights = d_w.get();
  a.ids = d_ids.get();
  a.n = n;
  a.logits_stride = e;
  a.weights_stride = k;
  a.ids_stride = k;
  a.experts = int(e);
  a.k = k;
  a.scale = c.scale;
  a.ids_i64 = true;
  a.vector_logits = true;
  kernels::route_topk_rowwide_kernel<kernels::RowLogits<float>, kChunks * 4>
      <<<grid, kChunks * 128>>>(a, kernels::RowLogits<float>{});
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto ids = d_ids.download();
  const auto w = d_w.download();
  const std::string cfg = testing::config(n, e, k, std::string("pattern=") +
                                                       testing::pattern_name(pat) +
                                                       " bias=" + std::to_string(bias_kind) +
                                                       " grid=" + std::to_string(grid));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(ids[i], cpu.ids[i]) << cfg << ": id differs at row " << i / k << " slot " << i % k;
  }
  std::size_t diff = 0;
  ASSERT_TRUE(testing::same_bits(w, cpu.weights, &diff))
      << cfg << ": weight differs at row " << diff / k << " slot " << diff % k;
}

TEST_F(GpuRouteLogits, RowBlockKernelGridStrideBiasAndPatterns) {
  const LogitPattern all[] = {LogitPattern::kNormal, LogitPattern::kTies,
                              LogitPattern::kNearTies, LogitPattern::kExtreme,
                              LogitPattern::kSpecial};
  std::uint64_t seed = 6100;
  for (LogitPattern pat : all) {
    for (int bias_kind = 0; bias_kind < 2; ++bias_kind) {
      for (unsigned grid : {1u, 7u, 64u}) {
        check_rowblock_kernel<2>(150, pat, bias_kind, grid, ++seed);
        if (HasFatalFailure()) return;
        check_rowblock_kernel<3>(150, pat, bias_kind, grid, ++seed);
        if (HasFatalFailure()) return;
      }
    }
  }
}

// The block-per-row kernel's three rank steps (kernels/route_topk.cuh, route_row_block) on
// rows built so that a warp (128 experts, 4 a lane) has exact ties among its best lane maxima,
// at the k-th place, fewer than k numbers with a tie among them, only NaN, or ties between
// warps; through route_logits (E = 256 / 384, k = 6, the block-per-row batch sizes), with and
// without bias: the CPU backend's ids and weights bit for bit. (Written for REDUX rounds tried
// in place of the ranks, whose corner cases these are; see docs/benchmarks.md.) Rows 8..11 are
// the thread-per-expert kernel's (route_topk_rowwide_kernel) edges: 17, 32 and 33 equal keys
// at the top spread over every 32-expert warp (its candidate list half full, full, and over:
// the slow path), and numbers in only five of those warps (T = 0: every key a candidate).
TEST_F(GpuRouteLogits, RowBlockRanksDecideTiesAndNaNWarps) {
  constexpr float kNaN = testing::kNaN;
  for (std::int64_t e : {256, 384}) {
    for (bool with_bias : {false, true}) {
      const std::int64_t rows = 12;
      RouteCase<float> c{rows, e, 0, 6, 2.5f, with_bias, {}, {}};
      c.logits = testing::make_logits(rows, e, LogitPattern::kNormal, 7100 + e);
      if (with_bias) c.bias.assign(std::size_t(e), 8.0f);  // uniform: ties stay ties
      auto at = [&](std::int64_t r, std::int64_t expert) -> float& {
        return c.logits[std::size_t(r * e + expert)];
      };
      auto lane_first = [](int warp, int lane) { return std::int64_t(4 * (32 * warp + lane)); };
      // Row 0: warp 0's two largest lane maxima equal (a tie at the top).
      at(0, lane_first(0, 3)) = 9.0f;
      at(0, lane_first(0, 17) + 2) = 9.0f;
      // Row 1: a tie at the k-th place of warp 0 (lanes 1..5 distinct, lanes 6 and 7 equal).
      for (int l = 1; l <= 5; ++l) at(1, lane_first(0, l)) = 10.0f + float(l);
      at(1, lane_first(0, 6) + 1) = 9.5f;
      at(1, lane_first(0, 7) + 3) = 9.5f;
      // Row 2: warp 0 holds five numbers, two of them equal, the rest NaN (fewer than k
      // numbers in the warp).
      for (std::int64_t x = 0; x < 128; ++x) at(2, x) = kNaN;
      at(2, lane_first(0, 0)) = 3.0f;
      at(2, lane_first(0, 9) + 1) = 2.0f;
      at(2, lane_first(0, 11) + 2) = 2.0f;
      at(2, lane_first(0, 20)) = 1.0f;
      at(2, lane_first(0, 30) + 3) = 0.5f;
      // Row 3: warp 1 all NaN.
      for (std::int64_t x = 128; x < 256; ++x) at(3, x) = kNaN;
      // Row 4: the same value as each warp's best (ties between the warps' bests).
      for (int w = 0; w < int(e / 128); ++w) at(4, lane_first(w, 5) + 1) = 12.0f;
      // Row 5: all equal.
      for (std::int64_t x = 0; x < e; ++x) at(5, x) = 0.25f;
      // Row 6: six distinct numbers in warp 0, the rest -inf (rounds decide, nothing else).
      for (std::int64_t x = 0; x < e; ++x) at(6, x) = -testing::kInf;
      for (int l = 0; l < 6; ++l) at(6, lane_first(0, 4 * l + 1) + l % 4) = 1.0f + float(l);
      // Row 7: +inf in two lanes of warp 0 (equal order keys at the top).
      at(7, lane_first(0, 2)) = testing::kInf;
      at(7, lane_first(0, 8) + 1) = testing::kInf;
      // Rows 8..10: 17, 32, 33 equal keys at the top, spread over the row.
      const int equal_top[] = {17, 32, 33};
      for (int i = 0; i < 3; ++i) {
        const std::int64_t step = e / equal_top[i];
        for (int j = 0; j < equal_top[i]; ++j) at(8 + i, j * step) = 20.0f;
      }
      // Row 11: numbers in experts 0..159 only (five 32-expert warps), NaN above.
      for (std::int64_t x = 160; x < e; ++x) at(11, x) = kNaN;
      check_route_case(c, testing::config(rows, e, 6, with_bias ? "crafted, bias" : "crafted"));
      if (HasFatalFailure()) return;
    }
  }
}

// Through route_logits at DSV4 shapes on both sides of the launcher's switches (the
// block-per-row kernel up to 256 rows for E = 384 and 512 for E = 256, the one-warp kernels
// from there and from kernels::kRouteSmallMaxRows), with and without bias, f32 and bf16, int32
// and int64 ids.
TEST_F(GpuRouteLogits, SmallDsv4BatchesWithAndWithoutBias) {
  std::uint64_t seed = 6500;
  const std::int64_t ns[] = {1,   2,   33,  256, 257, 512, 513, kernels::kRouteSmallMaxRows - 1,
                             kernels::kRouteSmallMaxRows};
  for (std::int64_t n : ns) {
    for (std::int64_t e : {256, 384}) {
      for (bool with_bias : {false, true}) {
        RouteCase<float> c{n, e, 0, 6, 2.5f, with_bias, {}, {}};
        c.logits = testing::make_logits(n, e, LogitPattern::kNormal, ++seed);
        if (with_bias) c.bias = testing::make_bias(e, ++seed);
        check_route_case(c, testing::config(n, e, 6, with_bias ? "bias" : "no bias"));
        if (HasFatalFailure()) return;
        RouteCase<bf16> h{n, e, 0, 6, 1.5f, !with_bias, {}, {}};
        h.logits = testing::make_bf16(n * e, 2.0, ++seed);
        if (with_bias) h.bias = testing::make_bias(e, ++seed);
        check_route_case(h, testing::config(n, e, 6, with_bias ? "bf16 bias" : "bf16 no bias"));
        if (HasFatalFailure()) return;
      }
    }
  }
}

// Regressions seen in other routers.
TEST_F(GpuRouteLogits, AllUnderflowRowsGiveZeroWeightsNotNaN) {
  for (std::int64_t e : {256, 384}) {
    RouteCase<float> c{64, e, 0, 6, 2.5f, false, {}, {}};
    c.logits.assign(std::size_t(c.n * e), -200.0f);
    for (std::int64_t i = 0; i < c.n * e; i += 3) c.logits[i] = -1000.0f - float(i % 17);
    c.bias = testing::make_bias(e, 9);
    check_route_case(c, testing::config(c.n, e, 6, "all underflow"));
    const RouteOut out = c.run_gpu();
    for (float w : out.weights) {
      EXPECT_FALSE(std::isnan(w));
      EXPECT_EQ(w, 0.0f);
    }
  }
}

TEST_F(GpuRouteLogits, BiasOfEightWithTinyScoresWeighsByTheUnbiasedScore) {
  RouteCase<float> c{256, 256, 0, 6, 1.5f, false, {}, {}};
  SeededRng rng(5);
  c.logits.resize(std::size_t(c.n * c.e));
  for (auto& v : c.logits) v = float(-25.0 + 3.0 * rng.normal());  // s ~ 1e-6
  c.bias = testing::make_bias(c.e, 6, 8.08);
  check_route_case(c, "bias 8.08, tiny scores");
  const RouteOut out = c.run_gpu();
  // Weights must come from s, not s + bias: then they are far from uniform.
  double spread = 0.0;
  for (std::int64_t r = 0; r < c.n; ++r) {
    const auto row = out.weights.begin() + r * 6;
    const auto mm = std::minmax_element(row, row + 6);
    spread = std::max(spread, double(*mm.second - *mm.first));
  }
  EXPECT_GT(spread, 0.1) << "weights look like they were taken from the biased score";
}

TEST_F(GpuRouteLogits, NaNAndMinusInfRowsYieldDistinctValidIds) {
  const std::int64_t e = 384;
  for (int k : {1, 6, 32}) {
    RouteCase<float> c{6, e, 0, k, 2.5f, true, {}, {}};
    c.logits.resize(std::size_t(c.n * e));
    for (std::int64_t i = 0; i < e; ++i) {
      c.logits[0 * e + i] = testing::kNaN;
      c.logits[1 * e + i] = -testing::kInf;
      c.logits[2 * e + i] = i % 2 ? testing::kNaN : -testing::kInf;
      c.logits[3 * e + i] = i == 200 ? 1.0f : testing::kNaN;  // one number among NaN
      c.logits[4 * e + i] = testing::kInf;
      c.logits[5 * e + i] = i % 5 == 0 ? testing::kInf : -testing::kInf;
    }
    c.bias = testing::make_bias(e, 11);
    check_route_case(c, testing::config(c.n, e, k, "NaN/-inf rows"));
    const RouteOut out = c.run_gpu();
    for (std::int64_t r = 0; r < c.n; ++r) {
      std::set<std::int64_t> seen;
      for (int j = 0; j < k; ++j) {
        const std::int64_t id = out.ids[r * k + j];
        EXPECT_GE(id, 0);
        EXPECT_LT(id, e);
        EXPECT_TRUE(seen.insert(id).second) << "row " << r << " repeats id " << id;
      }
    }
    EXPECT_EQ(out.ids[3 * k], 200) << "the only number must rank first";
  }
}

TEST_F(GpuRouteLogits, ExactTiesRankTheLowerIdFirst) {
  RouteCase<float> c{3, 384, 0, 8, 1.0f, false, {}, {}};
  c.logits.assign(std::size_t(c.n * c.e), 0.5f);
  const RouteOut out = c.run_gpu();
  for (std::int64_t r = 0; r < c.n; ++r) {
    for (int j = 0; j < c.k; ++j) EXPECT_EQ(out.ids[r * c.k + j], j);
    // Equal scores give equal weights, 1/k up to the rounding of the sum.
    for (int j = 0; j < c.k; ++j) {
      EXPECT_EQ(out.weights[r * c.k + j], out.weights[r * c.k]);
      EXPECT_NEAR(out.weights[r * c.k + j], 1.0 / 8.0, 1e-6);
    }
  }
  check_route_case(c, "all ties");
}

// The large-batch kernel's selection rounds take a shorter form when no two candidates share a
// key (one __match_any_sync decides): rows with an exact tie among their candidates (a logit
// copied to another expert, the bias uniform so the biased keys tie too) must take the form
// that breaks ties to the lower id, at every rank of the top k and across the cut at k.
TEST_F(GpuRouteLogits, LargeBatchTiesAmongTheCandidates) {
  std::uint64_t seed = 7700;
  for (std::int64_t e : {256, 384}) {
    for (int bias_kind = 0; bias_kind < 2; ++bias_kind) {
      const std::int64_t n = kernels::kRouteSmallMaxRows + 300;
      RouteCase<float> c{n, e, 0, 6, 2.5f, false, {}, {}};
      c.logits = testing::make_logits(n, e, LogitPattern::kNormal, ++seed);
      if (bias_kind == 1) c.bias.assign(std::size_t(e), 8.08f);
      SeededRng rng(++seed);
      for (std::int64_t r = 0; r < n; ++r) {
        if (r % 3 == 2) continue;  // every third row untouched: both forms in one launch
        float* row = c.logits.data() + r * e;
        std::vector<int> order(static_cast<std::size_t>(e));
        for (int i = 0; i < int(e); ++i) order[std::size_t(i)] = i;
        std::partial_sort(order.begin(), order.begin() + 7, order.end(),
                          [&](int a, int b) { return row[a] > row[b]; });
        // The value at rank 0..6 copied to a random other expert, lower or higher than the
        // original (rank 5: the tie straddles the cut at k = 6; rank 6: a tie just below it).
        const int from = order[std::size_t(r % 7)];
        int to = int(rng.below(std::uint64_t(e)));
        if (to == from) to = (to + 1) % int(e);
        row[to] = row[from];
      }
      check_route_case(c, testing::config(n, e, 6, bias_kind == 1 ? "ties, uniform bias"
                                                                  : "ties, no bias"));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuRouteLogits, DeterministicAndCapturableInACudaGraph) {
  const std::int64_t n = 4096, e = 384;
  const int k = 6;
  const auto logits = testing::make_logits(n, e, LogitPattern::kNormal, 21);
  const auto bias = testing::make_bias(e, 22);
  DeviceBuffer<float> d_logits(logits), d_bias(bias), d_w(std::size_t(n * k)),
      d_w2(std::size_t(n * k));
  DeviceBuffer<std::int32_t> d_ids(std::size_t(n * k)), d_ids2(std::size_t(n * k));
  RouteLogitsParams p;
  p.logits = d_logits.get();
  p.bias = d_bias.get();
  p.weights = d_w.get();
  p.ids = d_ids.get();
  p.n = n;
  p.experts = e;
  p.k = k;
  p.scale = 2.5f;
  ASSERT_TRUE(cuda::route_logits(p).ok());
  const auto w1 = d_w.download();
  const auto i1 = d_ids.download();

  cudaStream_t stream;
  MOER_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  RouteLogitsParams p2 = p;
  p2.weights = d_w2.get();
  p2.ids = d_ids2.get();
  d_w2.fill_bytes(0);
  d_ids2.fill_bytes(0);
  cudaGraph_t graph;
  MOER_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const Status st = cuda::route_logits(p2, stream);
  MOER_CUDA_OK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(st.ok()) << st.to_string();
  cudaGraphExec_t exec;
  MOER_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 3; ++rep) MOER_CUDA_OK(cudaGraphLaunch(exec, stream));
  MOER_CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(testing::same_bits(w1, d_w2.download()));
  EXPECT_EQ(i1, d_ids2.download());
  MOER_CUDA_OK(cudaGraphExecDestroy(exec));
  MOER_CUDA_OK(cudaGraphDestroy(graph));
  MOER_CUDA_OK(cudaStreamDestroy(stream));
}

// route_logits with PDL behind a kernel that lets it start at once and writes the logits only
// later: every kernel (block per row, small-batch, large-batch) must wait for them and give the
// bits of a launch without PDL.
TEST_F(GpuRouteLogits, PdlWaitsForTheKernelThatWritesTheLogits) {
  cudaStream_t stream;
  MOER_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const std::int64_t e : {256, 384, 1000}) {
    for (const std::int64_t n : {1, 300, 1000, 20000}) {
      const int k = e == 1000 ? 8 : 6;
      RouteCase<float> c{n, e, 0, k, 2.5f, false, {}, {}};
      c.logits = testing::make_logits(n, e, LogitPattern::kNormal, 30 + n + e);
      c.bias = testing::make_bias(e, 31);
      const auto& logits = c.logits;
      DeviceBuffer<float> src(logits), dst(logits.size()), d_bias(c.bias),
          w0(std::size_t(n * k)), w1(std::size_t(n * k));
      DeviceBuffer<std::int32_t> i0(std::size_t(n * k)), i1(std::size_t(n * k));
      ASSERT_TRUE(cuda::route_logits(c.params(src.get(), d_bias.get(), w0.get(), i0.get())).ok());
      const RouteLogitsParams p = c.params(dst.get(), d_bias.get(), w1.get(), i1.get());
      dst.fill_bytes(0);
      w1.fill_bytes(0x7f);
      i1.fill_bytes(0x7f);
      MOER_CUDA_OK(cudaDeviceSynchronize());
      testing::late_writer_kernel<<<8, 256, 0, stream>>>(
          reinterpret_cast<const std::uint32_t*>(src.get()),
          reinterpret_cast<std::uint32_t*>(dst.get()), logits.size(), 200000);
      ASSERT_TRUE(cuda::route_logits(p, stream, /*pdl=*/true).ok());
      MOER_CUDA_OK(cudaStreamSynchronize(stream));
      const std::string cfg = testing::config(n, e, k);
      EXPECT_TRUE(testing::same_bits(w0.download(), w1.download())) << cfg;
      EXPECT_EQ(i0.download(), i1.download()) << cfg;
    }
  }
  MOER_CUDA_OK(cudaStreamDestroy(stream));
}

TEST_F(GpuRouteLogits, BadArgumentsLaunchNothing) {
  const std::int64_t n = 8, e = 64;
  DeviceBuffer<float> d_logits(std::size_t(n * 2048)), d_w(std::size_t(n * 64));
  DeviceBuffer<std::int32_t> d_ids(std::size_t(n * 64));
  d_w.fill_bytes(0x33);
  RouteLogitsParams p;
  p.logits = d_logits.get();
  p.weights = d_w.get();
  p.ids = d_ids.get();
  p.n = n;
  p.experts = e;
  p.k = 6;

  RouteLogitsParams bad = p;
  bad.k = 0;
  EXPECT_EQ(cuda::route_logits(bad).code(), StatusCode::kInvalidArgument);
  bad = p;
  bad.k = 33;
  EXPECT_EQ(cuda::route_logits(bad).code(), StatusCode::kUnsupported);
  bad = p;
  bad.experts = 1025;
  bad.logits_stride = 2048;
  EXPECT_EQ(cuda::route_logits(bad).code(), StatusCode::kUnsupported);
  bad = p;
  bad.logits_dtype = DType::kI32;
  EXPECT_EQ(cuda::route_logits(bad).code(), StatusCode::kUnsupportedDType);
  std::vector<float> host(std::size_t(n * e));
  bad = p;
  bad.logits = host.data();
  const Status st = cuda::route_logits(bad);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("logits"), std::string::npos) << st.message();
  bad = p;
  bad.n = 0;
  bad.logits = nullptr;
  bad.weights = nullptr;
  bad.ids = nullptr;
  EXPECT_TRUE(cuda::route_logits(bad).ok());
  MOER_CUDA_OK(cudaDeviceSynchronize());
  for (float w : d_w.download()) {
    std::uint32_t u;
    std::memcpy(&u, &w, 4);
    ASSERT_EQ(u, 0x33333333u) << "an output was written by a rejected call";
  }
}

// route = cuBLASLt GEMM + fused route (launched with PDL below kernels::kRouteSmallMaxRows rows,
// plainly from there: both launches are covered).
class GpuRoute : public testing::GpuTest {};

TEST_F(GpuRoute, FromXAndWAgainstOracleAndItsOwnLogits) {
  cuda::RouterGemm gemm;
  ASSERT_TRUE(gemm.init().ok());
  for (const ModelShape& shape : {dsv4_flash(), dsv4_pro()}) {
    const std::int64_t ns[] = {1, 7, 64, 1000, kernels::kRouteSmallMaxRows};
    for (std::int64_t n : ns) {
      const std::string cfg = shape.name + " " + testing::config(n, shape.experts, shape.k);
      const SyntheticLayer layer = make_synthetic_layer(shape, 31, false);
      const std::vector<bf16> x = make_hidden(n, shape.hidden, 32 + n);
      DeviceBuffer<bf16> d_x(x), d_wt(layer.w);
      DeviceBuffer<float> d_bias(layer.bias), d_w(std::size_t(n * shape.k));
      DeviceBuffer<std::int64_t> d_ids(std::size_t(n * shape.k));
      const std::size_t ws_bytes = cuda::route_workspace_size(n, shape.experts);
      DeviceBuffer<unsigned char> d_ws(ws_bytes);
      RouteParams p;
      p.x = d_x.get();
      p.w = d_wt.get();
      p.bias = d_bias.get();
      p.weights = d_w.get();
      p.ids = d_ids.get();
      p.ids_dtype = DType::kI64;
      p.n = n;
      p.hidden = shape.hidden;
      p.experts = shape.experts;
      p.k = shape.k;
      p.scale = shape.scale;
      const Status st = cuda::route(p, gemm, d_ws.get(), ws_bytes);
      ASSERT_TRUE(st.ok()) << cfg << ": " << st.to_string();
      MOER_CUDA_OK(cudaDeviceSynchronize());
      const auto w = d_w.download();
      const auto ids = d_ids.download();

      // The oracle, with the GEMM bound of SPEC.md (oracle::route computes it per logit).
      RouteParams hp = p;
      hp.x = x.data();
      hp.w = layer.w.data();
      hp.bias = layer.bias.data();
      const oracle::RouteResult ref = oracle::route(hp);
      const auto cmp = oracle::compare_route(ref, ids.data(), DType::kI64, shape.k, w.data(),
                                             shape.k);
      ASSERT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;

      // The CPU backend from the GEMM's own logits: bit for bit.
      std::vector<float> logits(std::size_t(n * shape.experts));
      MOER_CUDA_OK(cudaMemcpy(logits.data(), d_ws.get(), logits.size() * 4,
                              cudaMemcpyDeviceToHost));
      std::vector<float> cw(std::size_t(n * shape.k));
      std::vector<std::int64_t> cid(std::size_t(n * shape.k));
      RouteLogitsParams lp;
      lp.logits = logits.data();
      lp.bias = layer.bias.data();
      lp.weights = cw.data();
      lp.ids = cid.data();
      lp.ids_dtype = DType::kI64;
      lp.n = n;
      lp.experts = shape.experts;
      lp.k = shape.k;
      lp.scale = shape.scale;
      ASSERT_TRUE(cpu::route_logits(lp).ok());
      EXPECT_EQ(ids, cid) << cfg;
      EXPECT_TRUE(testing::same_bits(w, cw)) << cfg;
    }
  }
}

TEST_F(GpuRoute, RejectsASmallWorkspace) {
  cuda::RouterGemm gemm;
  ASSERT_TRUE(gemm.init().ok());
  DeviceBuffer<bf16> d_x(std::size_t(4 * 64)), d_wt(std::size_t(64 * 64));
  DeviceBuffer<float> d_w(std::size_t(4 * 6));
  DeviceBuffer<std::int32_t> d_ids(std::size_t(4 * 6));
  DeviceBuffer<unsigned char> d_ws(16);
  RouteParams p;
  p.x = d_x.get();
  p.w = d_wt.get();
  p.weights = d_w.get();
  p.ids = d_ids.get();
  p.n = 4;
  p.hidden = 64;
  p.experts = 64;
  p.k = 6;
  EXPECT_EQ(cuda::route(p, gemm, d_ws.get(), 16).code(), StatusCode::kInvalidArgument);
  cuda::RouterGemm uninitialized;
  EXPECT_EQ(cuda::route(p, uninitialized, d_ws.get(), 1 << 20).code(), StatusCode::kNullPointer);
}

}  // namespace
}  // namespace moerouter
