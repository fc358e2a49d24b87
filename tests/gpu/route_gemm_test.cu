// The one-launch decode router (cuda::launch_route_gemm) against the float64 oracle, with
// SPEC.md's GEMM error bound: each logit may be off by H * 2^-24 * sum_h |x_h W_eh|, ids may
// differ only inside a near tie under that bound (oracle::compare_route applies it).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moerouter/detail/math.h"
#include "moerouter/device.h"
#include "moerouter/oracle.h"
#include "moerouter/route_gemm.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::kInf;

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// A device buffer freed on scope exit.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit DeviceBuffer(std::size_t n) : count(n) {
    if (cudaMalloc(&ptr, n * sizeof(T) + 16) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& v) {
    ASSERT_EQ(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(count);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

// One routing problem: host inputs (x with row stride), the device copies, the outputs.
struct Problem {
  std::int64_t n = 0, hidden = 0, experts = 0, x_stride = 0;
  int k = 0;
  float scale = 2.5f;
  bool with_bias = true;
  DType ids_dtype = DType::kI32;
  std::int64_t weights_stride = 0, ids_stride = 0;  // 0 = k
  std::vector<bf16> x, w;
  std::vector<float> bias;

  std::int64_t ws() const { return weights_stride ? weights_stride : k; }
  std::int64_t is() const { return ids_stride ? ids_stride : k; }

  // Host params (for the oracle) over the first `rows` tokens.
  RouteParams host(std::int64_t rows) const {
    RouteParams p;
    p.x = x.data();
    p.w = w.data();
    p.bias = with_bias ? bias.data() : nullptr;
    p.n = rows;
    p.hidden = hidden;
    p.experts = experts;
    p.k = k;
    p.scale = scale;
    p.ids_dtype = ids_dtype;
    p.x_stride = x_stride;
    p.weights = reinterpret_cast<float*>(std::uintptr_t(16));  // not written by the oracle
    p.ids = reinterpret_cast<void*>(std::uintptr_t(16));
    return p;
  }
  std::string config(std::int64_t rows) const {
    return testing::config(rows, experts, k,
                           "H=" + std::to_string(hidden) + " x_stride=" +
                               std::to_string(x_stride) + " ids=" + dtype_name(ids_dtype) +
                               (with_bias ? "" : " no-bias"));
  }
};

// x ~ N(0, 1) (an RMS-normalized hidden state), W ~ N(0, (1.5 / sqrt(H))^2), bias ~ 8.08.
Problem make_problem(std::int64_t n, std::int64_t hidden, std::int64_t experts, int k,
                     std::uint64_t seed, std::int64_t x_pad = 0) {
  Problem pr;
  pr.n = n;
  pr.hidden = hidden;
  pr.experts = experts;
  pr.x_stride = hidden + x_pad;
  pr.k = k;
  pr.x = testing::make_bf16(n * pr.x_stride, 1.0, seed);
  pr.w = testing::make_bf16(experts * hidden, 1.5 / std::sqrt(double(hidden)), seed + 1);
  pr.bias = testing::make_bias(experts, seed + 2);
  return pr;
}

// The oracle's result restricted to its first `rows` rows (each row depends on itself only).
oracle::RouteResult first_rows(const oracle::RouteResult& r, std::int64_t rows) {
  oracle::RouteResult s = r;
  s.n = rows;
  s.ids.resize(std::size_t(rows * r.k));
  s.weights.resize(std::size_t(rows * r.k));
  s.logits.resize(std::size_t(rows * r.experts));
  if (!s.logit_bound.empty()) s.logit_bound.resize(std::size_t(rows * r.experts));
  s.bad_row.resize(std::size_t(rows));
  return s;
}

// Device state of one Problem; run(rows) routes the first `rows` tokens.
struct GpuRun {
  const Problem& pr;
  DeviceBuffer<bf16> x, w;
  DeviceBuffer<float> bias, weights;
  DeviceBuffer<std::int64_t> ids;  // big enough for i64
  DeviceBuffer<unsigned char> workspace;
  std::size_t ws_bytes;

  explicit GpuRun(const Problem& p)
      : pr(p), x(p.x.size()), w(p.w.size()), bias(p.bias.size()), weights(p.n * p.ws()),
        ids(p.n * p.is()), workspace(cuda::route_gemm_workspace_size(64, p.experts)),
        ws_bytes(cuda::route_gemm_workspace_size(64, p.experts)) {
    x.upload(p.x);
    w.upload(p.w);
    bias.upload(p.bias);
    EXPECT_EQ(cudaMemset(workspace.ptr, 0, ws_bytes), cudaSuccess);
  }
  RouteParams params(std::int64_t rows) const {
    RouteParams p = pr.host(rows);
    p.x = x.ptr;
    p.w = w.ptr;
    p.bias = pr.with_bias ? bias.ptr : nullptr;
    p.weights = weights.ptr;
    p.ids = ids.ptr;
    p.weights_stride = pr.weights_stride;
    p.ids_stride = pr.ids_stride;
    return p;
  }
  // Poisons the outputs (NaN weights, 0x7f.. ids), launches (with the tiling's groups per
  // tile forced when force_groups > 0), waits.
  Status run(std::int64_t rows, cudaStream_t stream = nullptr, bool pdl = false,
             int force_groups = 0, int force_routers = 0,
             int force_kernel = cuda::kRouteGemmAuto) {
    EXPECT_EQ(cudaMemset(weights.ptr, 0xff, weights.count * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemset(ids.ptr, 0x7f, ids.count * sizeof(std::int64_t)), cudaSuccess);
    Status st = cuda::launch_route_gemm_tiled(params(rows), workspace.ptr, ws_bytes, stream, pdl,
                                              force_groups, force_routers, force_kernel);
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    return st;
  }
  // Compares the first `rows` rows with the oracle; also checks the padding between rows
  // (strided outputs) was left alone.
  void expect_matches(const oracle::RouteResult& ref, std::int64_t rows,
                      const std::string& what) {
    const std::vector<float> wv = weights.download();
    const std::vector<std::int64_t> iv = ids.download();
    const oracle::RouteComparison c = oracle::compare_route(
        first_rows(ref, rows), iv.data(), pr.ids_dtype, pr.is(), wv.data(), pr.ws());
    EXPECT_TRUE(c.ok()) << what << " " << pr.config(rows) << ": " << c.first_failure
                        << " (mismatched rows " << c.rows_mismatched << ", weights out of "
                        << "tolerance " << c.weights_out_of_tolerance << ")";
    std::uint32_t wbits;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = pr.k; j < pr.ws(); ++j) {
        std::memcpy(&wbits, &wv[std::size_t(r * pr.ws() + j)], 4);
        ASSERT_EQ(wbits, 0xffffffffu) << what << ": weights padding written, row " << r;
      }
    }
  }
  // The outputs' bits as they are now, to compare launches and paths bit for bit.
  struct Bits {
    std::vector<float> weights;
    std::vector<std::int64_t> ids;
  };
  Bits bits() const { return {weights.download(), ids.download()}; }
  // The outputs now are `want`'s bits (a fatal failure otherwise: call it through
  // ASSERT_NO_FATAL_FAILURE).
  void expect_bits(const Bits& want, const std::string& what) const {
    const Bits now = bits();
    ASSERT_EQ(std::memcmp(now.weights.data(), want.weights.data(),
                          want.weights.size() * sizeof(float)),
              0)
        << what << ": weights differ";
    ASSERT_EQ(std::memcmp(now.ids.data(), want.ids.data(),
                          want.ids.size() * sizeof(std::int64_t)),
              0)
        << what << ": ids differ";
  }
};

bool have_gpu() { return cuda_available(); }

#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: " << cuda_device_description()

// Every n from 1 to 64 at DSV4-Pro's shape (all token-tile variants, partial tiles).
TEST(RouteGemm, ProEveryN) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(64, 7168, 384, 6, 11);
  const oracle::RouteResult ref = oracle::route(pr.host(64));
  GpuRun g(pr);
  for (std::int64_t n = 1; n <= 64; ++n) {
    ASSERT_TRUE(g.run(n).ok());
    g.expect_matches(ref, n, "every-n");
    if (HasFailure()) return;
  }
}

// H in {4096, 5120, 7168, 1032 and 4104 (odd multiples of 8)} x E in {256, 384, 1000}, k in
// {1, 6, 8}.
TEST(RouteGemm, Shapes) {
  SKIP_WITHOUT_GPU();
  const std::int64_t hs[] = {4096, 5120, 7168, 1032, 4104};
  const std::int64_t es[] = {256, 384, 1000};
  const int ks[] = {1, 6, 8};
  int combo = 0;
  for (std::int64_t h : hs) {
    for (std::int64_t e : es) {
      for (int kk = 0; kk < 2; ++kk, ++combo) {
        const int k = kk == 0 ? 6 : ks[(combo / 2) % 2 == 0 ? 0 : 2];
        // Enough rows for two token tiles where it is cheap, one row elsewhere.
        const std::int64_t rows = (h == 1032 || e == 256) ? 40 : 20;
        Problem pr = make_problem(rows, h, e, k, 100 + std::uint64_t(combo));
        pr.scale = 1.5f;
        const oracle::RouteResult ref = oracle::route(pr.host(rows));
        GpuRun g(pr);
        for (std::int64_t n : {std::int64_t(1), std::int64_t(7), rows}) {
          ASSERT_TRUE(g.run(n).ok()) << pr.config(n);
          g.expect_matches(ref, n, "shapes");
        }
        if (HasFailure()) return;
      }
    }
  }
}

// Every tiling the cost model can pick (1..16 groups per tile: one split, many splits, warps
// without chunks; one router for every row, 4 rows a router, 3 routers of uneven rows) gives a
// correct route, at token counts of every token-tile variant.
TEST(RouteGemm, EveryTiling) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    std::int64_t h, e;
  };
  for (const Shape sh : {Shape{7168, 384}, Shape{4096, 256}, Shape{1032, 1000}, Shape{40, 384}}) {
    Problem pr = make_problem(64, sh.h, sh.e, 6, 300 + std::uint64_t(sh.e + sh.h));
    const oracle::RouteResult ref = oracle::route(pr.host(64));
    GpuRun g(pr);
    for (int groups : {1, 2, 3, 4, 5, 6, 8, 12, 16}) {
      for (int routers : {1, 0, 3}) {
        for (std::int64_t n : {1, 3, 16, 17, 64}) {
          ASSERT_TRUE(g.run(n, nullptr, false, groups, routers).ok())
              << pr.config(n) << " groups " << groups << " routers " << routers;
          g.expect_matches(ref, n,
                           "tiling groups=" + std::to_string(groups) + " routers=" +
                               std::to_string(routers));
          if (HasFailure()) return;
        }
      }
    }
  }
}

// E = 1000 at 64 tokens (the widest top-k and the largest tile), k = 32 (the largest k).
TEST(RouteGemm, WideExpertsFullBatch) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(64, 1032, 1000, 32, 7);
  const oracle::RouteResult ref = oracle::route(pr.host(64));
  GpuRun g(pr);
  ASSERT_TRUE(g.run(64).ok());
  g.expect_matches(ref, 64, "wide");
}

// Exact ties (duplicated W rows with equal bias), a zero hidden state (every logit 0), huge
// logits that underflow softplus, an inf in x (inf and NaN scores), a Flash-like bias.
TEST(RouteGemm, HardRows) {
  SKIP_WITHOUT_GPU();
  for (bool with_bias : {true, false}) {
    Problem pr = make_problem(16, 4096, 256, 6, 21);
    pr.with_bias = with_bias;
    pr.scale = 1.5f;
    const std::int64_t H = pr.hidden;
    // Experts 2j and 2j + 1 (j < 40) share a W row and a bias: exact ties in s + bias.
    for (std::int64_t e = 0; e < 80; e += 2) {
      std::copy(pr.w.begin() + e * H, pr.w.begin() + (e + 1) * H, pr.w.begin() + (e + 1) * H);
      pr.bias[std::size_t(e + 1)] = pr.bias[std::size_t(e)];
    }
    // Row 1: all zero (every logit exactly 0: all experts tie on s).
    std::fill(pr.x.begin() + 1 * H, pr.x.begin() + 2 * H, bf16{0});
    // Row 2: x scaled by 64 (logits near +-100: softplus saturates or underflows).
    for (std::int64_t h = 0; h < H; ++h) {
      bf16& v = pr.x[std::size_t(2 * H + h)];
      v = detail::float_to_bf16(detail::bf16_to_float(v) * 64.0f);
    }
    // Row 3: x aligned with expert 5's row (a clear winner) times 4.
    for (std::int64_t h = 0; h < H; ++h) {
      pr.x[std::size_t(3 * H + h)] =
          detail::float_to_bf16(4.0f * std::sqrt(float(H)) / 1.5f *
                                detail::bf16_to_float(pr.w[std::size_t(5 * H + h)]));
    }
    // Row 0: one +inf element (scores +inf, 0 or NaN).
    pr.x[std::size_t(0 * H + 100)] = detail::float_to_bf16(kInf);
    const oracle::RouteResult ref = oracle::route(pr.host(16));
    GpuRun g(pr);
    // The mma kernel on 16 rows, the one-pass kernel on the first 4 (every hard row).
    for (const int rows : {16, 4}) {
      const int kernel = rows == 4 ? cuda::kRouteGemmForceGemv : cuda::kRouteGemmForceMma;
      ASSERT_TRUE(g.run(rows, nullptr, false, 0, 0, kernel).ok());
      g.expect_matches(ref, rows,
                       std::string(with_bias ? "hard rows" : "hard rows, no bias") +
                           (rows == 4 ? " (one-pass)" : " (mma)"));
      // Exact ties must break to the lower id: row 1 without bias is experts 0..5.
      if (!with_bias) {
        const std::vector<std::int64_t> iv = g.ids.download();
        const std::int32_t* ids = reinterpret_cast<const std::int32_t*>(iv.data());
        for (int j = 0; j < 6; ++j) EXPECT_EQ(ids[1 * 6 + j], j) << "tie order, slot " << j;
      }
    }
  }
}

// The one-pass kernel (n <= 4, no H split) forced on every shape it takes: H in {7168, 4096,
// 5120, 1032, 4104, 40}, E from 8 to 1000 (1 to 8 experts per block), k in {1, 6, 8, 16, 32},
// n = 1..4; each launch twice (its flag words must be cleared for the next launch), the same
// bits.
TEST(RouteGemm, OnePassKernel) {
  SKIP_WITHOUT_GPU();
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  struct Shape {
    std::int64_t h, e;
    int k;
  };
  int tried = 0;
  for (const Shape sh : {Shape{7168, 384, 6}, Shape{4096, 256, 6}, Shape{5120, 384, 8},
                         Shape{1032, 1000, 1}, Shape{4104, 384, 8}, Shape{40, 384, 6},
                         Shape{4096, 64, 1}, Shape{1024, 8, 8}, Shape{7168, 520, 6},
                         Shape{2048, 1000, 8}, Shape{7168, 384, 32}, Shape{1032, 1000, 32},
                         Shape{4096, 256, 16}}) {
    Problem pr = make_problem(4, sh.h, sh.e, sh.k, 700 + std::uint64_t(sh.h + sh.e + sh.k));
    const oracle::RouteResult ref = oracle::route(pr.host(4));
    GpuRun g(pr);
    for (std::int64_t n = 1; n <= 4; ++n) {
      const int epb = cuda::route_gemv_experts_per_block(n, sh.e, sh.k, sms);
      if (epb == 0) {
        EXPECT_EQ(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).code(),
                  StatusCode::kUnsupported);
        continue;
      }
      ++tried;
      const std::string what = "one-pass, " + std::to_string(epb) + " experts per block";
      ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok())
          << pr.config(n);
      g.expect_matches(ref, n, what);
      const GpuRun::Bits first = g.bits();
      ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok());
      g.expect_matches(ref, n, what + ", again");
      ASSERT_NO_FATAL_FAILURE(g.expect_bits(first, what));
      if (HasFailure()) return;
    }
  }
  EXPECT_GE(tried, 38);
}

// The one-pass kernel's selection on hard rows: the best crowded into two 32-expert pieces
// (one lane holds several winners: its second best is promoted, then it rescans), all-equal
// rows (every round a tie, the lowest expert first), NaN and inf scores, with and without bias.
TEST(RouteGemm, OnePassSelection) {
  SKIP_WITHOUT_GPU();
  for (bool with_bias : {true, false}) {
    Problem pr = make_problem(4, 1024, 384, 6, 808);
    pr.with_bias = with_bias;
    const std::int64_t H = pr.hidden;
    // Experts 0..39 (pieces 0 and 1) get W rows 3x larger: rows 1 and 3 crowd there.
    for (std::int64_t e = 0; e < 40; ++e) {
      for (std::int64_t h = 0; h < H; ++h) {
        bf16& v = pr.w[std::size_t(e * H + h)];
        v = detail::float_to_bf16(3.0f * detail::bf16_to_float(v));
      }
    }
    // Row 1: x = W row 7 (expert 7 wins clearly, pieces 0-1 crowd); row 2: all zero (every
    // logit 0: all experts tie); row 3: x scaled by 8; row 0: one +inf element.
    for (std::int64_t h = 0; h < H; ++h) {
      pr.x[std::size_t(1 * H + h)] = pr.w[std::size_t(7 * H + h)];
      pr.x[std::size_t(2 * H + h)] = bf16{0};
      bf16& v = pr.x[std::size_t(3 * H + h)];
      v = detail::float_to_bf16(8.0f * detail::bf16_to_float(v));
    }
    pr.x[std::size_t(0 * H + 5)] = detail::float_to_bf16(kInf);
    const oracle::RouteResult ref = oracle::route(pr.host(4));
    GpuRun g(pr);
    for (std::int64_t n = 1; n <= 4; ++n) {
      ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok());
      g.expect_matches(ref, n, with_bias ? "one-pass selection" : "one-pass selection, no bias");
    }
    if (!with_bias) {  // row 2: all tie, the lowest ids first
      const std::vector<std::int64_t> iv = g.ids.download();
      const std::int32_t* ids = reinterpret_cast<const std::int32_t*>(iv.data());
      for (int j = 0; j < 6; ++j) EXPECT_EQ(ids[2 * 6 + j], j) << "tie order, slot " << j;
    }
  }
}

// The one-pass kernel's two selections with every winner in one lane: experts 5 + 32 j (one
// lane's experts) get W rows (1 - j / 64) x W row 5, and token 0's x is W row 5, so that lane
// holds the row's best (E = 256: its sorted list of 8 shifts up to k times; E = 384 and 520:
// its best two and rescans), for tokens 0 and 1. With ties: those rows all equal and no bias
// (exact ties: the lane's experts in increasing order). Tokens 2-3: random.
TEST(RouteGemm, OnePassOneLaneHoldsEveryWinner) {
  SKIP_WITHOUT_GPU();
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  int tried = 0;
  for (const std::int64_t E : {256, 384, 520}) {
    for (const int k : {6, 8, 16}) {
      for (const bool ties : {false, true}) {
        Problem pr = make_problem(4, 1024, E, k, 900 + std::uint64_t(E + k));
        pr.with_bias = !ties;
        const std::int64_t H = pr.hidden;
        for (std::int64_t e = 5 + 32; e < E; e += 32) {
          const float f = ties ? 1.0f : 1.0f - float((e - 5) / 32) / 64.0f;
          for (std::int64_t h = 0; h < H; ++h) {
            pr.w[std::size_t(e * H + h)] =
                detail::float_to_bf16(f * detail::bf16_to_float(pr.w[std::size_t(5 * H + h)]));
          }
        }
        for (std::int64_t h = 0; h < H; ++h) {
          pr.x[std::size_t(0 * H + h)] = pr.w[std::size_t(5 * H + h)];
          pr.x[std::size_t(1 * H + h)] = pr.w[std::size_t(5 * H + h)];
        }
        const oracle::RouteResult ref = oracle::route(pr.host(4));
        GpuRun g(pr);
        const std::string what = "one lane, E=" + std::to_string(E) + " k=" +
                                 std::to_string(k) + (ties ? " ties" : "");
        for (std::int64_t n = 1; n <= 4; ++n) {
          if (cuda::route_gemv_experts_per_block(n, E, k, sms) == 0) continue;  // E=520, n=4
          ++tried;
          ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok())
              << what << " n=" << n;
          g.expect_matches(ref, n, what);
        }
        // With ties, tokens 0 and 1 take the lane's experts in order 5, 37, 69, ...
        if (!ties) continue;
        const std::vector<std::int64_t> iv = g.ids.download();
        const std::int32_t* ids = reinterpret_cast<const std::int32_t*>(iv.data());
        const std::int64_t lane_experts = (E - 5 + 31) / 32;
        for (std::int64_t row = 0; row < 2; ++row) {
          for (std::int64_t j = 0; j < std::min<std::int64_t>(k, lane_experts); ++j) {
            EXPECT_EQ(ids[row * k + j], 5 + 32 * j) << what << ", row " << row << " slot " << j;
          }
        }
        if (HasFailure()) return;
      }
    }
  }
  EXPECT_GE(tried, 3 * 3 * 2 * 3);
}

// The one-pass kernel's selection by ranks (route_gemv.cuh): the candidates are the keys at
// or above T, the largest maximum of a 32-expert group that k group maxima reach. Rows whose
// best crowd into a few groups give 17..32 candidates (both halves of the ranks) or more than
// 32 (the rounds take over); k above the group count or E <= 32 make every key a candidate.
// Logits set exactly: x = (1, 0, ...), so logit e = W[e][0].
TEST(RouteGemm, OnePassRankCandidatesAndFallback) {
  SKIP_WITHOUT_GPU();
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  struct Case {
    std::int64_t E;
    int k;
    int hot;        // experts 0 .. hot - 1: well above the rest
    int mid_group;  // >= 0: that group's experts just above the rest, below every hot one
    const char* what;
  };
  const Case cases[] = {
      {384, 6, 24, -1, "24 hot experts in one group: 17..32 candidates"},
      {384, 6, 160, 5, "5 hot groups above a 6th: more than 32 candidates"},
      {256, 6, 20, -1, "Flash: 20 hot experts"},
      {256, 8, 224, 7, "Flash: 7 hot groups above an 8th"},
      {384, 32, 40, -1, "k = 32 > 12 groups: every key"},
      {40, 6, 0, -1, "E = 40, k > 2 groups: every key, more than 32"},
      {24, 6, 0, -1, "E = 24: every key, at most 32"},
  };
  int tried = 0;
  for (const Case& c : cases) {
    for (const bool ties : {false, true}) {
      Problem pr = make_problem(4, 64, c.E, c.k, 1300 + std::uint64_t(c.E + c.k));
      const std::int64_t H = pr.hidden;
      for (std::int64_t t = 0; t < 4; ++t) {
        for (std::int64_t h = 0; h < H; ++h) {
          pr.x[std::size_t(t * H + h)] = detail::float_to_bf16(h == 0 ? 1.0f : 0.0f);
        }
      }
      for (std::int64_t e = 0; e < c.E; ++e) {
        float v = float((e * 37) % 101) / 101.0f - 0.5f;  // the rest: [-0.5, 0.5)
        if (e < c.hot) {
          v = ties ? 7.0f : 7.0f + float((e * 13) % 17) / 16.0f;
        } else if (e / 32 == c.mid_group) {
          v = ties ? 6.0f : 6.0f + float((e * 7) % 11) / 64.0f;
        }
        pr.w[std::size_t(e * H)] = detail::float_to_bf16(v);
      }
      pr.with_bias = !ties;
      const oracle::RouteResult ref = oracle::route(pr.host(4));
      GpuRun g(pr);
      const std::string what = std::string(c.what) + " E=" + std::to_string(c.E) + " k=" +
                               std::to_string(c.k) + (ties ? " ties" : "");
      for (std::int64_t n = 1; n <= 4; ++n) {
        if (cuda::route_gemv_experts_per_block(n, c.E, c.k, sms) == 0) continue;
        ++tried;
        ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok())
            << what << " n=" << n;
        g.expect_matches(ref, n, what);
        if (HasFailure()) return;
      }
    }
  }
  EXPECT_GE(tried, 7 * 2 * 4);
}

// One workspace serves both kernels in any order: the mma kernel's regions never touch the
// one-pass kernel's flag words.
TEST(RouteGemm, WorkspaceSharedByBothKernels) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(64, 7168, 384, 6, 77);
  const oracle::RouteResult ref = oracle::route(pr.host(64));
  GpuRun g(pr);
  for (const std::int64_t n : {1, 64, 4, 20, 2, 64, 3, 1}) {
    ASSERT_TRUE(g.run(n).ok()) << n;
    g.expect_matches(ref, n, "shared workspace");
    if (HasFailure()) return;
  }
}

// A fresh workspace of route_gemm_workspace_size(n, E) bytes whose only zeroed bytes are
// route_gemm_workspace_zeroed_bytes(E) (the rest 0xff), as the torch op allocates it: both
// kernels route correctly, twice in a row on it.
TEST(RouteGemm, FreshWorkspaceWithOnlyTheZeroedPrefix) {
  SKIP_WITHOUT_GPU();
  struct Case {
    std::int64_t h, e, n;
  };
  for (const Case c : {Case{7168, 384, 1}, Case{7168, 384, 16}, Case{7168, 384, 64},
                       Case{1032, 1000, 3}, Case{4096, 256, 40}}) {
    Problem pr = make_problem(c.n, c.h, c.e, 6, 900 + std::uint64_t(c.n + c.e));
    const oracle::RouteResult ref = oracle::route(pr.host(c.n));
    GpuRun g(pr);
    const std::size_t bytes = cuda::route_gemm_workspace_size(c.n, c.e);
    const std::size_t zeroed = cuda::route_gemm_workspace_zeroed_bytes(c.e);
    ASSERT_GT(zeroed, 0u);
    ASSERT_LE(zeroed, bytes);
    DeviceBuffer<unsigned char> fresh(bytes);
    ASSERT_EQ(cudaMemset(fresh.ptr, 0xff, bytes), cudaSuccess);
    ASSERT_EQ(cudaMemset(fresh.ptr, 0, zeroed), cudaSuccess);
    for (int rep = 0; rep < 2; ++rep) {
      ASSERT_EQ(cudaMemset(g.weights.ptr, 0xff, g.weights.count * sizeof(float)), cudaSuccess);
      // The whole ids buffer (sized for int64; these ids are int32): expect_matches downloads
      // all of it, and compute-sanitizer initcheck reported the never-written half.
      ASSERT_EQ(cudaMemset(g.ids.ptr, 0x7f, g.ids.count * sizeof(std::int64_t)), cudaSuccess);
      ASSERT_TRUE(cuda::launch_route_gemm(g.params(c.n), fresh.ptr, bytes, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      g.expect_matches(ref, c.n, "fresh workspace, launch " + std::to_string(rep));
      if (HasFailure()) return;
    }
  }
}

// launch_route_gemm_fresh on a workspace none of whose bytes were zeroed (0xff throughout,
// and never-written memory for compute-sanitizer initcheck): DSV4's shapes at n = 1..64 give
// launch_route_gemm's bits on a zeroed workspace, twice on the same workspace (no flag or
// counter read); other shapes are kUnsupported; validate's errors come first.
TEST(RouteGemm, FreshWorkspaceNeedsNoZeroedBytes) {
  SKIP_WITHOUT_GPU();
  struct Case {
    std::int64_t h, e, n;
  };
  for (const Case c : {Case{7168, 384, 1}, Case{7168, 384, 2}, Case{7168, 384, 5},
                       Case{7168, 384, 16}, Case{7168, 384, 64}, Case{4096, 256, 1},
                       Case{4096, 256, 3}, Case{4096, 256, 33}}) {
    Problem pr = make_problem(c.n, c.h, c.e, 6, 1300 + std::uint64_t(c.n + c.e));
    const oracle::RouteResult ref = oracle::route(pr.host(c.n));
    GpuRun g(pr);
    const std::string what = "E=" + std::to_string(c.e) + " n=" + std::to_string(c.n);
    // launch_route_gemm on GpuRun's zeroed workspace: the reference bits.
    ASSERT_TRUE(g.run(c.n).ok()) << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    g.expect_matches(ref, c.n, what + ", launch_route_gemm");
    const GpuRun::Bits want = g.bits();
    const std::size_t bytes = cuda::route_gemm_workspace_size(c.n, c.e);
    for (const bool poison : {true, false}) {
      DeviceBuffer<unsigned char> fresh(bytes);  // poison false: never written (initcheck)
      if (poison) ASSERT_EQ(cudaMemset(fresh.ptr, 0xff, bytes), cudaSuccess);
      for (int rep = 0; rep < 2; ++rep) {
        ASSERT_EQ(cudaMemset(g.weights.ptr, 0xff, g.weights.count * sizeof(float)),
                  cudaSuccess);
        ASSERT_EQ(cudaMemset(g.ids.ptr, 0x7f, g.ids.count * sizeof(std::int64_t)),
                  cudaSuccess);
        ASSERT_TRUE(
            cuda::launch_route_gemm_fresh(g.params(c.n), fresh.ptr, bytes, nullptr).ok())
            << what;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_NO_FATAL_FAILURE(g.expect_bits(
            want, what + (poison ? ", 0xff workspace" : ", unwritten workspace") + ", launch " +
                      std::to_string(rep)));
      }
    }
  }
  // Other shapes need the zeroed bytes: kUnsupported, nothing launched.
  for (const auto& ek : {std::pair<std::int64_t, int>{1000, 6}, {384, 8}, {256, 4}}) {
    Problem pr = make_problem(2, 1032, ek.first, ek.second, 1400);
    GpuRun g(pr);
    const std::size_t bytes = cuda::route_gemm_workspace_size(2, ek.first);
    DeviceBuffer<unsigned char> fresh(bytes);
    EXPECT_EQ(cuda::launch_route_gemm_fresh(g.params(2), fresh.ptr, bytes, nullptr).code(),
              StatusCode::kUnsupported)
        << "E=" << ek.first << " k=" << ek.second;
  }
  // validate's error before the shape's.
  Problem pr = make_problem(1, 1032, 1000, 6, 1401);
  GpuRun g(pr);
  RouteParams bad = g.params(1);
  bad.weights = nullptr;
  const std::size_t bytes = cuda::route_gemm_workspace_size(1, 1000);
  DeviceBuffer<unsigned char> fresh(bytes);
  EXPECT_EQ(cuda::launch_route_gemm_fresh(bad, fresh.ptr, bytes, nullptr).code(),
            StatusCode::kNullPointer);
}

// int64 ids, strided x and strided outputs (the padding must stay untouched).
TEST(RouteGemm, Int64IdsAndStrides) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(33, 5120, 384, 8, 31, /*x_pad=*/24);
  pr.ids_dtype = DType::kI64;
  pr.weights_stride = 11;
  pr.ids_stride = 9;
  const oracle::RouteResult ref = oracle::route(pr.host(33));
  GpuRun g(pr);
  for (std::int64_t n : {1, 4, 17, 33}) {
    ASSERT_TRUE(g.run(n).ok());
    g.expect_matches(ref, n, "i64+strides");
    const std::vector<std::int64_t> iv = g.ids.download();
    for (std::int64_t r = 0; r < n; ++r) {
      for (std::int64_t j = pr.k; j < pr.ids_stride; ++j) {
        ASSERT_EQ(iv[std::size_t(r * pr.ids_stride + j)], 0x7f7f7f7f7f7f7f7fLL) << "ids padding";
      }
    }
  }
}

// The same inputs give the same bits, launch after launch (fixed reduction order), with and
// without programmatic dependent launch.
TEST(RouteGemm, DeterministicAndPdl) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(48, 7168, 384, 6, 41);
  const oracle::RouteResult ref = oracle::route(pr.host(48));
  GpuRun g(pr);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const std::int64_t n : {48, 3}) {  // the mma kernel, the one-pass kernel
    ASSERT_TRUE(g.run(n).ok());
    const GpuRun::Bits first = g.bits();
    g.expect_matches(ref, n, "first");
    for (int rep = 0; rep < 5; ++rep) {
      ASSERT_TRUE(g.run(n, stream, /*pdl=*/rep % 2 == 1).ok());
      ASSERT_NO_FATAL_FAILURE(
          g.expect_bits(first, "n " + std::to_string(n) + " rep " + std::to_string(rep)));
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

// The two-launch paths (what launch_route_gemm takes at DSV4's shapes from 2 to 64 tokens):
// the mma kernel's partials, then the block-per-row route over them (kRouteGemmForceMmaSplit),
// give the one-launch mma kernel's ids and weights bit for bit (the same splits added in the
// same order); the one-pass kernel's logits, then that route (kRouteGemmForceGemvSplit), the
// one-pass kernel's; both the oracle's. With and without bias, int32 and int64 ids, every
// token-tile variant, the chosen tiling and forced ones (every batch of the route's split
// loads). Other shapes are rejected.
TEST(RouteGemm, TwoLaunchPathMatchesTheOneLaunchKernel) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    std::int64_t h, e;
  };
  int combo = 0;
  for (const Shape sh : {Shape{7168, 384}, Shape{4096, 256}, Shape{1032, 384}}) {
    for (int variant = 0; variant < 2; ++variant, ++combo) {
      Problem pr = make_problem(64, sh.h, sh.e, 6, 900 + std::uint64_t(combo));
      pr.with_bias = variant == 0;
      pr.ids_dtype = variant == 0 ? DType::kI32 : DType::kI64;
      const oracle::RouteResult ref = oracle::route(pr.host(64));
      GpuRun g(pr);
      for (std::int64_t n : {1, 4, 5, 8, 16, 17, 33, 64}) {
        // The chosen tiling (0) and forced ones: 1, 3, 6 and 12 groups a tile give Pro 2, 8,
        // 16 and 32 H splits (Flash 4, 12, 22, 32): every batch of the route's split loads
        // (kernels::SplitPartials<4 / 8 / 16>, 16 in two rounds).
        const int chosen = cuda::route_gemm_two_launch_groups(n, sh.e);
        for (const int groups : {0, 1, 3, 6, 12}) {
          // The one-launch kernel at the tiling the two-launch run takes: the same sums.
          const int same = groups > 0 ? groups : chosen;
          ASSERT_TRUE(g.run(n, nullptr, false, same, 0, cuda::kRouteGemmForceMma).ok())
              << pr.config(n);
          const GpuRun::Bits one = g.bits();
          ASSERT_TRUE(g.run(n, nullptr, false, groups, 0, cuda::kRouteGemmForceMmaSplit).ok())
              << pr.config(n);
          const std::string what = "two launches, groups " + std::to_string(groups);
          g.expect_matches(ref, n, what);
          ASSERT_NO_FATAL_FAILURE(
              g.expect_bits(one, what + " against the one-launch kernel, " + pr.config(n)));
        }
        if (n <= 4) {
          // The one-pass kernel's logits, then the same route: its own bits.
          ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemv).ok());
          const GpuRun::Bits poller = g.bits();
          ASSERT_TRUE(g.run(n, nullptr, false, 0, 0, cuda::kRouteGemmForceGemvSplit).ok());
          g.expect_matches(ref, n, "one-pass logits, then the route");
          ASSERT_NO_FATAL_FAILURE(
              g.expect_bits(poller, "against the one-pass kernel's poller, " + pr.config(n)));
        }
        if (HasFailure()) return;
      }
    }
  }
  Problem wide = make_problem(4, 1032, 1000, 6, 950);
  GpuRun g(wide);
  EXPECT_EQ(g.run(4, nullptr, false, 0, 0, cuda::kRouteGemmForceMmaSplit).code(),
            StatusCode::kUnsupported);
  Problem k8 = make_problem(4, 1032, 384, 8, 951);
  GpuRun g8(k8);
  EXPECT_EQ(g8.run(4, nullptr, false, 0, 0, cuda::kRouteGemmForceMmaSplit).code(),
            StatusCode::kUnsupported);
  EXPECT_EQ(g8.run(4, nullptr, false, 0, 0, cuda::kRouteGemmForceGemvSplit).code(),
            StatusCode::kUnsupported);
}

// Captured once in a CUDA graph (with PDL edges), replayed with new x each time: the kernel
// resets its own counter (the one-pass kernel its flag words), so every replay is right.
void replay_with_new_inputs(std::int64_t n) {
  Problem pr = make_problem(n, 4096, 256, 6, 51);
  pr.scale = 1.5f;
  GpuRun g(pr);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  // Two back-to-back routes (the second with PDL) into the same outputs.
  const RouteParams p = g.params(n);
  Status s1 = cuda::launch_route_gemm(p, g.workspace.ptr, g.ws_bytes, stream, false);
  Status s2 = cuda::launch_route_gemm(p, g.workspace.ptr, g.ws_bytes, stream, true);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(s1.ok()) << s1.to_string();
  ASSERT_TRUE(s2.ok()) << s2.to_string();
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 4; ++rep) {
    pr.x = testing::make_bf16(n * pr.x_stride, 1.0, 1000 + std::uint64_t(rep));
    g.x.upload(pr.x);
    CUDA_OK(cudaMemset(g.weights.ptr, 0xff, g.weights.count * 4));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    g.expect_matches(oracle::route(pr.host(n)), n, "graph replay " + std::to_string(rep));
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
}

TEST(RouteGemm, GraphReplayWithNewInputs) {
  SKIP_WITHOUT_GPU();
  for (const std::int64_t n : {16, 2}) {  // the mma kernel, the one-pass kernel
    replay_with_new_inputs(n);
    if (HasFailure()) return;
  }
}

// Bad requests fail before any launch, with the documented codes.
TEST(RouteGemm, Rejects) {
  SKIP_WITHOUT_GPU();
  Problem pr = make_problem(4, 1024, 256, 6, 61);
  GpuRun g(pr);
  RouteParams p = g.params(4);
  auto code = [&](RouteParams q, std::size_t bytes) {
    return cuda::launch_route_gemm(q, g.workspace.ptr, bytes, nullptr).code();
  };
  EXPECT_EQ(code(p, g.ws_bytes), StatusCode::kSuccess);
  RouteParams q = p;
  q.n = 65;
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kUnsupported);
  q = p;
  q.hidden = 1020;  // not a multiple of 8
  q.x_stride = 1024;
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kUnsupported);
  q = p;
  q.k = 0;
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kInvalidArgument);
  q = p;
  q.x_stride = 1028;  // rows not 16-byte aligned
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kUnsupported);
  EXPECT_EQ(code(p, cuda::route_gemm_workspace_size(4, 256) - 1), StatusCode::kInvalidArgument);
  q = p;
  q.experts = 1025;
  q.bias = nullptr;
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kUnsupported);
  q = p;
  q.x = pr.x.data();  // host memory
  EXPECT_EQ(code(q, g.ws_bytes), StatusCode::kInvalidArgument);
  q = p;
  q.n = 0;
  EXPECT_EQ(code(q, 0), StatusCode::kSuccess);
  EXPECT_EQ(cuda::route_gemm_workspace_size(65, 256), 0u);
  // The prefix that must be zero: counters and flag words, inside every workspace size.
  EXPECT_EQ(cuda::route_gemm_workspace_zeroed_bytes(1025), 0u);
  EXPECT_GE(cuda::route_gemm_workspace_zeroed_bytes(384), 1024u + 4 * 384 * 8);
  EXPECT_LE(cuda::route_gemm_workspace_zeroed_bytes(384), cuda::route_gemm_workspace_size(1, 384));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace moerouter
