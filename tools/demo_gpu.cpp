// The demo on the GPU: a Router built from the demo's layers (decode kernel for small
// batches, cuBLASLt + fused route for prefill, the k-dot-product hash route), timed with CUDA
// events.
#include <stdexcept>

#include "demo_backend.h"

#if defined(MOER_WITH_CUDA)
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "moerouter/device.h"
#include "moerouter/router.h"
#endif

namespace moerouter {
namespace cli {

#if defined(MOER_WITH_CUDA)
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device buffer freed on scope exit.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(std::size_t count) {
    check(cudaMalloc(&ptr, std::max<std::size_t>(count, 1) * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

class GpuDemoBackend final : public DemoBackend {
 public:
  GpuDemoBackend() {
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    check(cudaEventCreate(&start_), "cudaEventCreate");
    check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~GpuDemoBackend() override {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return "gpu"; }
  std::string description() const override { return "GPU " + cuda_device_description(); }
  std::int64_t prefill_size() const override { return 16384; }

  void load(const ModelShape& shape, const SyntheticLayer& dense,
            const SyntheticLayer& hash) override {
    ModelShape cfg = shape;
    std::vector<GateTensors> layers;
    if (!hash.w.empty()) layers.push_back({true, hash.w, {}, hash.tid2eid});
    hash_layer_ = hash.w.empty() ? -1 : 0;
    dense_layer_ = dense.w.empty() ? -1 : static_cast<int>(layers.size());
    if (!dense.w.empty()) layers.push_back({false, dense.w, dense.bias, {}});
    cfg.num_hash_layers = hash.w.empty() ? 0 : 1;
    cfg.num_layers = static_cast<std::int32_t>(layers.size());
    RouterOptions opts;
    opts.device = RouterDevice::kCuda;
    opts.max_batch = 16384;
    router_ = std::make_unique<Router>(cfg, std::move(layers), opts);
  }

  double route_dense(const std::vector<bf16>& x, std::int64_t n, std::vector<float>& weights,
                     std::vector<std::int32_t>& ids) override {
    return run(dense_layer_, x, nullptr, n, weights, ids);
  }

  double route_hash(const std::vector<bf16>& x, const std::vector<std::int32_t>& tokens,
                    std::int64_t n, std::vector<float>& weights,
                    std::vector<std::int32_t>& ids) override {
    return run(hash_layer_, x, &tokens, n, weights, ids);
  }

 private:
  double run(int layer, const std::vector<bf16>& x, const std::vector<std::int32_t>* tokens,
             std::int64_t n, std::vector<float>& weights, std::vector<std::int32_t>& ids) {
    DeviceBuffer<bf16> d_x(x.size());
    DeviceBuffer<std::int32_t> d_tok(tokens ? tokens->size() : 1);
    DeviceBuffer<float> d_w(weights.size());
    DeviceBuffer<std::int32_t> d_ids(ids.size());
    check(cudaMemcpy(d_x.ptr, x.data(), x.size() * sizeof(bf16), cudaMemcpyHostToDevice), "copy x");
    if (tokens) {
      check(cudaMemcpy(d_tok.ptr, tokens->data(), tokens->size() * 4, cudaMemcpyHostToDevice),
            "copy tokens");
    }
    auto call = [&] {
      router_->route(layer, d_x.ptr, tokens ? d_tok.ptr : nullptr, DType::kI32, n, d_w.ptr,
                     d_ids.ptr, DType::kI32, 0, stream_);
    };
    for (int i = 0; i < 3; ++i) call();  // warm-up (cuBLASLt picks its algorithm once)
    std::vector<float> times;
    for (int r = 0; r < 20; ++r) {
      check(cudaEventRecord(start_, stream_), "cudaEventRecord");
      call();
      check(cudaEventRecord(stop_, stream_), "cudaEventRecord");
      check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
      times.push_back(ms * 1000.0f);
    }
    check(cudaMemcpy(weights.data(), d_w.ptr, weights.size() * 4, cudaMemcpyDeviceToHost), "copy w");
    check(cudaMemcpy(ids.data(), d_ids.ptr, ids.size() * 4, cudaMemcpyDeviceToHost), "copy ids");
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  }

  std::unique_ptr<Router> router_;
  int dense_layer_ = 0, hash_layer_ = -1;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace

std::unique_ptr<DemoBackend> make_gpu_demo_backend() { return std::make_unique<GpuDemoBackend>(); }

#else

std::unique_ptr<DemoBackend> make_gpu_demo_backend() {
  throw std::runtime_error("moerouter was built without CUDA: no GPU demo backend");
}

#endif

}  // namespace cli
}  // namespace moerouter
