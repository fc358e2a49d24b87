// The Router on the GPU: a checkpoint loaded, uploaded once, every layer routed at decode and
// prefill sizes through whichever dense path the dispatch picks, each equal to the float64
// oracle; checked mode.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_testbed.h"
#include "late_writer.cuh"
#include "moerouter/oracle.h"
#include "moerouter/router.h"
#include "moerouter/synthetic.h"

namespace moerouter {
namespace {

using testing::DeviceBuffer;

class RouterGpu : public testing::GpuTest {};

// A small DSV4-Flash-shaped checkpoint (hidden 1024, 4 layers: hash and dense) in a fresh
// temporary directory `name`; returns its path.
std::string write_small_checkpoint(const std::string& name) {
  SyntheticCheckpointOptions o;
  o.shape = dsv4_flash();
  o.shape.hidden = 1024;
  o.shape.vocab = 2000;
  o.layers = 4;
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  write_synthetic_checkpoint(dir, o);
  return dir;
}

TEST_F(RouterGpu, EveryLayerAtDecodeAndPrefillSizesMatchesOracle) {
  const std::string dir = write_small_checkpoint("moer_router_gpu");
  RouterOptions ro;
  ro.device = RouterDevice::kCuda;
  ro.max_batch = 4096;
  const Router r = Router::from_pretrained(dir, ro);
  ASSERT_TRUE(r.on_gpu());
  const ModelShape& c = r.config();
  // Both sides of the decode kernel's crossover (route_gemm_crossover_tokens: 64 at this
  // size, the decode kernel's limit), the one-pass kernel's limit (4), the two-launch path's
  // token tiles (16, 32, 64), and prefill batches.
  for (std::int64_t n : {1, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 1000, 4096}) {
    const auto x = make_hidden(n, c.hidden, 100 + n);
    const auto tokens = make_tokens(n, c.vocab, 200 + n);
    DeviceBuffer<bf16> d_x(x);
    DeviceBuffer<std::int32_t> d_tok(tokens);
    for (int layer = 0; layer < r.num_layers(); ++layer) {
      SCOPED_TRACE("n=" + std::to_string(n) + " layer=" + std::to_string(layer));
      DeviceBuffer<float> d_w(n * c.k);
      DeviceBuffer<std::int64_t> d_ids(n * c.k);
      d_w.fill_bytes(0xff);
      d_ids.fill_bytes(0xff);
      r.route(layer, d_x.get(), d_tok.get(), DType::kI32, n, d_w.get(), d_ids.get(), DType::kI64);
      MOER_CUDA_OK(cudaDeviceSynchronize());
      const auto w = d_w.download();
      const auto ids = d_ids.download();
      const GateTensors& g = r.layer(layer);
      const oracle::RouteResult ref =
          g.hash ? oracle::hash_route(hash_gate_params(c, g.w.data(), g.tid2eid.data(), x.data(),
                                                       0, tokens.data(), DType::kI32, n, nullptr,
                                                       nullptr, DType::kI32))
                 : oracle::route(dense_gate_params(c, g.w.data(), g.bias.data(), x.data(), 0, n,
                                                   nullptr, nullptr, DType::kI32));
      const auto cmp = oracle::compare_route(ref, ids.data(), DType::kI64, c.k, w.data(), c.k);
      EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
    }
  }
}

// RouterOptions::pdl: every path (hash from x, hash through the GEMM, the one-pass and the
// tiled decode kernels, prefill) behind a kernel that lets it start at once and writes x only
// later must give the bits of a Router without PDL.
TEST_F(RouterGpu, PdlLaunchesGiveTheSameBitsBehindAKernelThatWritesX) {
  const std::string dir = write_small_checkpoint("moer_router_gpu_pdl");
  RouterOptions ro;
  ro.device = RouterDevice::kCuda;
  ro.max_batch = 1000;
  const Router plain = Router::from_pretrained(dir, ro);
  ro.pdl = true;
  const Router pdl = Router::from_pretrained(dir, ro);
  const ModelShape& c = plain.config();
  cudaStream_t stream;
  MOER_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (std::int64_t n : {1, 4, 16, 300, 1000}) {
    const auto x = make_hidden(n, c.hidden, 300 + n);
    const auto tokens = make_tokens(n, c.vocab, 400 + n);
    DeviceBuffer<bf16> x_src(x), x_dst(x.size());
    DeviceBuffer<std::int32_t> d_tok(tokens);
    for (int layer = 0; layer < plain.num_layers(); ++layer) {
      SCOPED_TRACE("n=" + std::to_string(n) + " layer=" + std::to_string(layer));
      DeviceBuffer<float> w0(n * c.k), w1(n * c.k);
      DeviceBuffer<std::int64_t> i0(n * c.k), i1(n * c.k);
      plain.route(layer, x_src.get(), d_tok.get(), DType::kI32, n, w0.get(), i0.get(),
                  DType::kI64);
      x_dst.fill_bytes(0);
      w1.fill_bytes(0xff);
      i1.fill_bytes(0xff);
      MOER_CUDA_OK(cudaDeviceSynchronize());
      testing::late_writer_kernel<<<8, 256, 0, stream>>>(
          reinterpret_cast<const std::uint32_t*>(x_src.get()),
          reinterpret_cast<std::uint32_t*>(x_dst.get()), x.size() / 2, 200000);
      pdl.route(layer, x_dst.get(), d_tok.get(), DType::kI32, n, w1.get(), i1.get(),
                DType::kI64, 0, stream);
      MOER_CUDA_OK(cudaDeviceSynchronize());
      ASSERT_EQ(i1.download(), i0.download());
      const auto a = w0.download(), b = w1.download();
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
    }
  }
  MOER_CUDA_OK(cudaStreamDestroy(stream));
}

TEST_F(RouterGpu, CheckedModeThrowsOnBadTokenIds) {
  const ModelShape s = [] {
    ModelShape m = dsv4_flash();
    m.hidden = 256;
    m.experts = 64;
    m.vocab = 100;
    m.num_layers = 2;
    m.num_hash_layers = 1;
    return m;
  }();
  std::vector<GateTensors> layers;
  for (int i = 0; i < 2; ++i) {
    const SyntheticLayer l = make_synthetic_layer(s, 5 + i, i == 0);
    layers.push_back({i == 0, l.w, i == 0 ? std::vector<float>{} : l.bias, l.tid2eid});
  }
  RouterOptions ro;
  ro.device = RouterDevice::kCuda;
  ro.max_batch = 8;
  ro.checked = true;
  const Router r(s, layers, ro);
  const auto x = make_hidden(4, s.hidden, 1);
  DeviceBuffer<bf16> d_x(x);
  DeviceBuffer<std::int32_t> d_tok(std::vector<std::int32_t>{1, 2, 100, 3});
  DeviceBuffer<float> d_w(4 * s.k);
  DeviceBuffer<std::int32_t> d_ids(4 * s.k);
  EXPECT_THROW(r.route(0, d_x.get(), d_tok.get(), DType::kI32, 4, d_w.get(), d_ids.get()),
               RouterError);
  const auto ids = d_ids.download();
  EXPECT_EQ(ids[2 * s.k], -1);
  EXPECT_GE(ids[3 * s.k], 0);
  // The flag was cleared: good tokens route without an error afterwards.
  DeviceBuffer<std::int32_t> d_good(std::vector<std::int32_t>{1, 2, 3, 4});
  r.route(0, d_x.get(), d_good.get(), DType::kI32, 4, d_w.get(), d_ids.get());
}

}  // namespace
}  // namespace moerouter
