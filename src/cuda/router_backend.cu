// The Router's GPU half: weights uploaded once, workspaces allocated once, then each route()
// only enqueues kernels (decode: the one-launch GEMM+route kernel; prefill: cuBLASLt + the
// fused route; hash layers: the k-dot-product hash route).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "moerouter/cuda.h"
#include "moerouter/route_gemm.h"
#include "router_backend.h"

namespace moerouter {
namespace detail {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw RouterError(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
  }
}

void check_status(const Status& s, const std::string& what) {
  if (!s.ok()) throw RouterError(what + ": " + s.to_string());
}

template <typename T>
T* upload_vector(const std::vector<T>& v) {
  if (v.empty()) return nullptr;
  T* d = nullptr;
  check_cuda(cudaMalloc(&d, v.size() * sizeof(T)), "cudaMalloc (Router upload)");
  check_cuda(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
             "cudaMemcpy (Router upload)");
  return d;
}

class CudaRouterBackend final : public RouterBackend {
 public:
  ~CudaRouterBackend() override {
    for (const Layer& l : layers_) {
      cudaFree(l.w);
      cudaFree(l.bias);
      cudaFree(l.table);
    }
    cudaFree(prefill_ws_);
    cudaFree(decode_ws_);
    cudaFree(flag_);
  }

  void upload(const ModelShape& config, const std::vector<GateTensors>& layers,
              std::int64_t max_batch) override {
    config_ = config;
    for (const GateTensors& g : layers) {
      layers_.push_back({upload_vector(g.w), upload_vector(g.bias), upload_vector(g.tid2eid)});
    }
    prefill_bytes_ = cuda::route_workspace_size(max_batch, config.experts);
    check_cuda(cudaMalloc(&prefill_ws_, prefill_bytes_), "cudaMalloc (Router workspace)");
    decode_bytes_ = cuda::route_gemm_workspace_size(cuda::kRouteGemmMaxTokens, config.experts);
    check_cuda(cudaMalloc(&decode_ws_, decode_bytes_), "cudaMalloc (Router decode workspace)");
    // The decode kernel's workspace must start zeroed (its completion counters reset
    // themselves after each launch).
    check_cuda(cudaMemset(decode_ws_, 0, decode_bytes_), "cudaMemset (Router decode workspace)");
    check_cuda(cudaMalloc(&flag_, sizeof(std::int32_t)), "cudaMalloc (Router error flag)");
    check_cuda(cudaMemset(flag_, 0, sizeof(std::int32_t)), "cudaMemset (Router error flag)");
    check_status(gemm_.init(), "cuBLASLt init");
    check_cuda(cudaDeviceSynchronize(), "Router upload");
  }

  void route(int layer, bool hash, const bf16* x, std::int64_t x_stride, const void* token_ids,
             DType token_dtype, std::int64_t n, float* weights, void* ids, DType ids_dtype,
             void* stream_ptr, bool checked, bool pdl) override {
    const Layer& l = layers_.at(static_cast<std::size_t>(layer));
    const auto stream = static_cast<cudaStream_t>(stream_ptr);
    const std::string where = "route(layer " + std::to_string(layer) + ")";
    if (hash) {
      // Small batches gather k rows of W per token; large ones are cheaper as the full GEMM
      // into the workspace and a hash route from those logits (measured on an H100, Pro: the
      // k-row path wins at N <= 64, the GEMM path at N >= 1024; docs/benchmarks.md).
      HashRouteParams p = hash_gate_params(config_, l.w, l.table, x, x_stride, token_ids,
                                           token_dtype, n, weights, ids, ids_dtype);
      p.error_flag = flag_;
      if (n > kHashFromXMaxTokens) {
        check_status(gemm_.logits(x, x_stride, l.w, n, config_.hidden, config_.experts,
                                  static_cast<float*>(prefill_ws_), config_.experts, stream),
                     where);
        p.source = HashWeights::kFromLogits;
        p.logits = prefill_ws_;
        p.logits_dtype = DType::kF32;
      }
      // With options.pdl the kernel starts with PDL: it reads the ids, the table and (from x)
      // its rows of W before it waits for the previous kernel (the caller's, or the GEMM).
      check_status(cuda::hash_route(p, stream, pdl), where);
      if (checked) {
        const Status s = cuda::check_error_flag(flag_, stream);
        if (!s.ok()) {
          check_cuda(cudaMemsetAsync(flag_, 0, sizeof(std::int32_t), stream), "flag reset");
          throw RouterError(where + ": " + s.to_string());
        }
      }
      return;
    }
    const RouteParams p =
        dense_gate_params(config_, l.w, l.bias, x, x_stride, n, weights, ids, ids_dtype);
    if (n > 0 &&
        n <= cuda::route_gemm_crossover_tokens(config_.experts, config_.hidden, config_.k, pdl) &&
        config_.hidden % 8 == 0 &&
        decode_bytes_ > 0) {
      // The decode kernel checks everything before it launches: a shape or layout it does
      // not take (kUnsupported: a misaligned x or stride, E > 1024, k > 32) goes through the
      // prefill path instead.
      const Status s = cuda::launch_route_gemm(p, decode_ws_, decode_bytes_, stream, pdl);
      if (s.code() != StatusCode::kUnsupported) {
        check_status(s, where);
        return;
      }
    }
    check_status(cuda::route(p, gemm_, prefill_ws_, prefill_bytes_, stream), where);
  }

  std::int32_t* error_flag() override { return flag_; }

  /// Hash layers route up to this many tokens from x and W directly, more through the GEMM
  /// (between the measured points 64 and 1024).
  static constexpr std::int64_t kHashFromXMaxTokens = 256;

 private:
  struct Layer {
    bf16* w = nullptr;
    float* bias = nullptr;
    std::int32_t* table = nullptr;
  };
  ModelShape config_;
  std::vector<Layer> layers_;
  cuda::RouterGemm gemm_;
  void* prefill_ws_ = nullptr;
  std::size_t prefill_bytes_ = 0;
  void* decode_ws_ = nullptr;
  std::size_t decode_bytes_ = 0;
  std::int32_t* flag_ = nullptr;
};

}  // namespace

std::unique_ptr<RouterBackend> make_cuda_router_backend() {
  return std::make_unique<CudaRouterBackend>();
}

}  // namespace detail
}  // namespace moerouter
