// The hash route on the GPU, all three weight sources, against the CPU backend (bit for bit
// from logits and uniform) and the float64 oracle (from x and W, with SPEC.md's GEMM bound).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gpu_testbed.h"
#include "late_writer.cuh"
#include "moerouter/cpu.h"
#include "moerouter/cuda.h"
#include "moerouter/oracle.h"
#include "testbed.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;

struct HashConfig {
  std::int64_t n = 37, h = 256, e = 64, vocab = 1000;
  int k = 6;
  bool token_i64 = false, table_i64 = false, ids_i64 = false;
  std::int64_t x_stride = 0, logits_stride = 0;
  bool bf16_logits = false;
};

// A DSV4 model's layer (hidden, experts, k) at batch n, vocabulary 5000.
HashConfig model_config(const ModelShape& m, std::int64_t n) {
  HashConfig c;
  c.n = n;
  c.h = m.hidden;
  c.e = m.experts;
  c.k = m.k;
  c.vocab = 5000;
  return c;
}

// Host data of one case, the same for the GPU, the CPU backend and the oracle.
struct HashData {
  HashConfig c;
  std::vector<std::int32_t> tok32, tab32;
  std::vector<std::int64_t> tok64, tab64;
  std::vector<bf16> x, w, logits_bf16;
  std::vector<float> logits;

  HashData(const HashConfig& cfg, std::uint64_t seed) : c(cfg) {
    const std::int64_t xs = c.x_stride ? c.x_stride : c.h;
    const std::int64_t ls = c.logits_stride ? c.logits_stride : c.e;
    x = testing::make_bf16(c.n * xs, 1.0, seed);
    w = testing::make_bf16(c.e * c.h, 1.5 / std::sqrt(double(c.h)), seed + 1);
    logits = testing::make_logits(c.n, ls, testing::LogitPattern::kNormal, seed + 2);
    logits_bf16.resize(logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i) logits_bf16[i] = detail::float_to_bf16(logits[i]);
    SeededRng rng(seed + 3);
    for (std::int64_t t = 0; t < c.n; ++t) tok64.push_back(std::int64_t(rng.below(c.vocab)));
    for (std::int64_t v = 0; v < c.vocab * c.k; ++v) tab64.push_back(std::int64_t(rng.below(c.e)));
    sync32();
  }
  void sync32() {
    tok32.assign(tok64.begin(), tok64.end());
    tab32.assign(tab64.begin(), tab64.end());
  }

  HashRouteParams params(HashWeights src, const void* tok, const void* tab, const void* xp,
                         const void* wp, const void* lp, float* wout, void* ids,
                         std::int32_t* flag) const {
    HashRouteParams p;
    p.token_ids = tok;
    p.token_dtype = c.token_i64 ? DType::kI64 : DType::kI32;
    p.table = tab;
    p.table_dtype = c.table_i64 ? DType::kI64 : DType::kI32;
    p.weights = wout;
    p.ids = ids;
    p.ids_dtype = c.ids_i64 ? DType::kI64 : DType::kI32;
    p.error_flag = flag;
    p.source = src;
    p.x = xp;
    p.w = wp;
    p.hidden = c.h;
    p.x_stride = c.x_stride;
    p.logits = lp;
    p.logits_dtype = c.bf16_logits ? DType::kBF16 : DType::kF32;
    p.logits_stride = c.logits_stride;
    p.n = c.n;
    p.vocab = c.vocab;
    p.experts = c.e;
    p.k = c.k;
    p.scale = 2.5f;
    return p;
  }

  const void* host_tok() const {
    return c.token_i64 ? static_cast<const void*>(tok64.data()) : tok32.data();
  }
  const void* host_tab() const {
    return c.table_i64 ? static_cast<const void*>(tab64.data()) : tab32.data();
  }
  const void* host_logits() const {
    return c.bf16_logits ? static_cast<const void*>(logits_bf16.data()) : logits.data();
  }
};

struct HashOut {
  std::vector<float> weights;
  std::vector<std::int64_t> ids;
  std::int32_t flag = 0;
  StatusCode code = StatusCode::kSuccess;
  std::string message;
  bool ok() const { return code == StatusCode::kSuccess; }
  void set(const Status& st) {
    code = st.code();
    message = st.to_string();
  }
};

HashOut run_gpu(const HashData& d, HashWeights src) {
  DeviceBuffer<std::int32_t> tok32(d.tok32), tab32(d.tab32), flag(1);
  DeviceBuffer<std::int64_t> tok64(d.tok64), tab64(d.tab64);
  DeviceBuffer<bf16> x(d.x), w(d.w), lb(d.logits_bf16);
  DeviceBuffer<float> lf(d.logits), wout(std::size_t(d.c.n * d.c.k));
  DeviceBuffer<std::int32_t> ids32(std::size_t(d.c.n * d.c.k));
  DeviceBuffer<std::int64_t> ids64(std::size_t(d.c.n * d.c.k));
  wout.fill_bytes(0x7f);
  ids32.fill_bytes(0x7f);
  ids64.fill_bytes(0x7f);
  flag.fill_bytes(0);
  const HashRouteParams p = d.params(
      src, d.c.token_i64 ? static_cast<const void*>(tok64.get()) : tok32.get(),
      d.c.table_i64 ? static_cast<const void*>(tab64.get()) : tab32.get(), x.get(), w.get(),
      d.c.bf16_logits ? static_cast<const void*>(lb.get()) : lf.get(), wout.get(),
      d.c.ids_i64 ? static_cast<void*>(ids64.get()) : ids32.get(), flag.get());
  HashOut out;
  out.set(cuda::hash_route(p));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  out.weights = wout.download();
  if (d.c.ids_i64) {
    out.ids = ids64.download();
  } else {
    for (std::int32_t v : ids32.download()) out.ids.push_back(v);
  }
  out.flag = flag.download()[0];
  return out;
}

HashOut run_cpu(const HashData& d, HashWeights src) {
  HashOut out;
  out.weights.assign(std::size_t(d.c.n * d.c.k), 0.0f);
  out.ids.assign(std::size_t(d.c.n * d.c.k), 0);
  HashRouteParams p = d.params(src, d.host_tok(), d.host_tab(), d.x.data(), d.w.data(),
                               d.host_logits(), out.weights.data(), out.ids.data(), &out.flag);
  p.ids_dtype = DType::kI64;
  out.set(cpu::hash_route(p));
  return out;
}

oracle::RouteResult run_oracle(const HashData& d, HashWeights src) {
  return oracle::hash_route(d.params(src, d.host_tok(), d.host_tab(), d.x.data(), d.w.data(),
                                     d.host_logits(), nullptr, nullptr, nullptr));
}

void check_case(const HashData& d, HashWeights src, const std::string& cfg) {
  const HashOut gpu = run_gpu(d, src);
  ASSERT_TRUE(gpu.ok()) << cfg << ": " << gpu.message;
  const HashOut cpu = run_cpu(d, src);
  ASSERT_EQ(gpu.ids, cpu.ids) << cfg;
  EXPECT_EQ(gpu.flag, cpu.flag) << cfg;
  if (src != HashWeights::kFromX) {
    std::size_t diff = 0;
    ASSERT_TRUE(testing::same_bits(gpu.weights, cpu.weights, &diff))
        << cfg << ": weight " << diff << " differs: " << gpu.weights[diff] << " vs "
        << cpu.weights[diff];
  }
  const oracle::RouteResult ref = run_oracle(d, src);
  const auto cmp =
      oracle::compare_route(ref, gpu.ids.data(), DType::kI64, d.c.k, gpu.weights.data(), d.c.k);
  ASSERT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;
}

class GpuHashRoute : public testing::GpuTest {};

TEST_F(GpuHashRoute, AllSourcesSweep) {
  std::uint64_t seed = 100;
  for (std::int64_t n : {0, 1, 7, 64, 4096}) {
    for (int k : {1, 6, 8, 9, 32}) {
      for (HashWeights src : {HashWeights::kFromLogits, HashWeights::kUniform, HashWeights::kFromX}) {
        HashConfig c;
        c.n = n;
        c.k = k;
        c.e = 384;
        c.h = (n >= 4096 && src == HashWeights::kFromX) ? 512 : 1024;
        c.token_i64 = seed % 2;
        c.table_i64 = (seed / 2) % 2;
        c.ids_i64 = (seed / 4) % 2;
        c.bf16_logits = seed % 3 == 0;
        HashData d(c, ++seed);
        check_case(d, src,
                   testing::config(n, c.e, k, std::string("source=") + hash_weights_name(src)));
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(GpuHashRoute, FromXDsv4ShapesAllClusterSizes) {
  for (const ModelShape& s : {dsv4_flash(), dsv4_pro()}) {
    for (std::int64_t n : {1, 2, 16, 64, 1000}) {
      const HashConfig c = model_config(s, n);
      HashData d(c, 7 + n);
      check_case(d, HashWeights::kFromX, s.name + " " + testing::config(n, c.e, c.k));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuHashRoute, OddHiddenStridesAndScalarPaths) {
  std::uint64_t seed = 300;
  for (std::int64_t h : {1, 7, 100, 1001}) {
    for (std::int64_t xs : {std::int64_t(0), h + 3}) {
      HashConfig c;
      c.n = 21;
      c.h = h;
      c.x_stride = xs;
      c.logits_stride = c.e + 5;
      HashData d(c, ++seed);
      check_case(d, HashWeights::kFromX, "h=" + std::to_string(h) + " x_stride=" + std::to_string(xs));
      check_case(d, HashWeights::kFromLogits, "logits_stride=" + std::to_string(c.logits_stride));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(GpuHashRoute, BadTokenIdsAndTableEntriesNeverReadOutOfBounds) {
  for (HashWeights src : {HashWeights::kFromX, HashWeights::kFromLogits, HashWeights::kUniform}) {
    HashConfig c;
    c.n = 40;
    c.token_i64 = true;
    c.table_i64 = true;
    HashData d(c, 55);
    d.tok64[3] = -1;
    d.tok64[7] = c.vocab;
    d.tok64[9] = std::int64_t(1) << 40;
    d.tab64[d.tok64[11] * c.k + 2] = c.e;  // a table entry out of range
    d.tab64[d.tok64[12] * c.k + 0] = -5;
    d.sync32();
    const std::string cfg = std::string("source=") + hash_weights_name(src);
    const HashOut gpu = run_gpu(d, src);
    ASSERT_TRUE(gpu.ok()) << gpu.message;
    EXPECT_EQ(gpu.flag, 1) << cfg;
    for (std::int64_t t : {3, 7, 9, 11, 12}) {
      for (int j = 0; j < c.k; ++j) {
        EXPECT_EQ(gpu.ids[t * c.k + j], -1) << cfg << " row " << t;
        EXPECT_EQ(gpu.weights[t * c.k + j], 0.0f) << cfg << " row " << t;
      }
    }
    const HashOut cpu = run_cpu(d, src);
    EXPECT_EQ(cpu.code, StatusCode::kInvalidTokenId);
    EXPECT_EQ(gpu.ids, cpu.ids) << cfg;
    if (src != HashWeights::kFromX) {
      EXPECT_TRUE(testing::same_bits(gpu.weights, cpu.weights)) << cfg;
    }
    const oracle::RouteResult ref = run_oracle(d, src);
    const auto cmp =
        oracle::compare_route(ref, gpu.ids.data(), DType::kI64, c.k, gpu.weights.data(), c.k);
    EXPECT_TRUE(cmp.ok()) << cfg << ": " << cmp.first_failure;
  }
}

// With PDL, the x kernel reads the ids, the table and its rows of W before it waits, the
// gather kernel the ids and the table: x or the logits, written by the kernel before, must
// still be read after it ends. Same bits as a launch without PDL, which matches the CPU.
TEST_F(GpuHashRoute, PdlWaitsForTheKernelThatWritesXOrTheLogits) {
  cudaStream_t stream;
  MOER_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::uint64_t seed = 500;
  for (const ModelShape& m : {dsv4_flash(), dsv4_pro()}) {
    for (const std::int64_t n : {1, 16, 300}) {
      for (HashWeights src : {HashWeights::kFromX, HashWeights::kFromLogits}) {
        const HashConfig c = model_config(m, n);
        HashData d(c, ++seed);
        const std::string cfg = m.name + " " + testing::config(n, c.e, c.k) + " source=" +
                                hash_weights_name(src);
        const HashOut want = run_gpu(d, src);  // without PDL
        ASSERT_TRUE(want.ok()) << cfg << ": " << want.message;
        ASSERT_EQ(want.ids, run_cpu(d, src).ids) << cfg;
        DeviceBuffer<std::int32_t> tok(d.tok32), tab(d.tab32), ids(std::size_t(n * c.k));
        DeviceBuffer<bf16> w(d.w), x_src(d.x), x_dst(d.x.size());
        DeviceBuffer<float> l_src(d.logits), l_dst(d.logits.size()), wout(std::size_t(n * c.k));
        const bool from_x = src == HashWeights::kFromX;
        const auto* from = static_cast<const std::uint32_t*>(
            from_x ? static_cast<const void*>(x_src.get()) : l_src.get());
        auto* to = static_cast<std::uint32_t*>(from_x ? static_cast<void*>(x_dst.get())
                                                      : l_dst.get());
        const std::size_t words = from_x ? d.x.size() / 2 : d.logits.size();
        for (int rep = 0; rep < 2; ++rep) {
          x_dst.fill_bytes(0);
          l_dst.fill_bytes(0);
          wout.fill_bytes(0x7f);
          ids.fill_bytes(0x7f);
          MOER_CUDA_OK(cudaDeviceSynchronize());
          const HashRouteParams p = d.params(src, tok.get(), tab.get(), x_dst.get(), w.get(),
                                             l_dst.get(), wout.get(), ids.get(), nullptr);
          testing::late_writer_kernel<<<8, 256, 0, stream>>>(from, to, words, 200000);
          ASSERT_TRUE(cuda::hash_route(p, stream, /*pdl=*/true).ok()) << cfg;
          MOER_CUDA_OK(cudaStreamSynchronize(stream));
          const std::vector<float> got_w = wout.download();
          const std::vector<std::int32_t> got_i = ids.download();
          ASSERT_EQ(std::vector<std::int64_t>(got_i.begin(), got_i.end()), want.ids)
              << cfg << " rep " << rep;
          std::size_t diff = 0;
          ASSERT_TRUE(testing::same_bits(got_w, want.weights, &diff))
              << cfg << " rep " << rep << ": weight " << diff << " differs";
        }
      }
    }
  }
  MOER_CUDA_OK(cudaStreamDestroy(stream));
}

TEST_F(GpuHashRoute, CheckErrorFlag) {
  DeviceBuffer<std::int32_t> flag(1);
  flag.fill_bytes(0);
  EXPECT_TRUE(cuda::check_error_flag(flag.get()).ok());
  flag.upload({1});
  EXPECT_EQ(cuda::check_error_flag(flag.get()).code(), StatusCode::kInvalidTokenId);
  EXPECT_EQ(cuda::check_error_flag(nullptr).code(), StatusCode::kNullPointer);
}

TEST_F(GpuHashRoute, RejectsKAbove32AndHostPointers) {
  HashConfig c;
  c.k = 33;
  c.e = 64;
  HashData d(c, 9);
  const HashOut out = run_gpu(d, HashWeights::kFromLogits);
  EXPECT_EQ(out.code, StatusCode::kUnsupported);
  c.k = 6;
  HashData d2(c, 10);
  DeviceBuffer<float> wout(std::size_t(c.n * c.k));
  DeviceBuffer<std::int32_t> ids(std::size_t(c.n * c.k));
  DeviceBuffer<std::int32_t> tab(d2.tab32);
  HashRouteParams p = d2.params(HashWeights::kUniform, d2.tok32.data(), tab.get(), nullptr,
                                nullptr, nullptr, wout.get(), ids.get(), nullptr);
  const Status st = cuda::hash_route(p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("token_ids"), std::string::npos) << st.message();
  // Weights from x: hidden below kHashXMaxHidden (checked before any pointer).
  HashRouteParams px = d2.params(HashWeights::kUniform, d2.tok32.data(), tab.get(), nullptr,
                                 nullptr, nullptr, wout.get(), ids.get(), nullptr);
  px.source = HashWeights::kFromX;
  px.hidden = std::int64_t(1) << 27;  // kernels::kHashXMaxHidden
  px.x = wout.get();  // any non-null pointers: the bound is checked first
  px.w = wout.get();
  const Status sx = cuda::hash_route(px);
  EXPECT_EQ(sx.code(), StatusCode::kUnsupported) << sx.to_string();
  EXPECT_NE(sx.message().find("hidden"), std::string::npos) << sx.message();
}

}  // namespace
}  // namespace moerouter
