// CUDA implementations of the moerouter ops: the same checks as the CPU ones, then the CUDA
// backend on torch's current stream. Outputs and workspaces come from torch's caching
// allocator, so the ops can be captured in a CUDA graph (after a first eager call has created
// the per-device cuBLASLt handle).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <memory>
#include <mutex>

#include "moerouter/cuda.h"
#include "moerouter/route_gemm.h"
#include "ops_common.h"

namespace moerouter {
namespace torch_ops {
namespace {

cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// One cuBLASLt handle + workspace per device, created on first use.
cuda::RouterGemm& gemm_for(const at::Tensor& t) {
  static std::mutex mu;
  static std::array<std::unique_ptr<cuda::RouterGemm>, 64> gemms;
  const int dev = t.device().index();
  std::lock_guard<std::mutex> lock(mu);
  auto& g = gemms.at(static_cast<std::size_t>(dev));
  if (!g) {
    g = std::make_unique<cuda::RouterGemm>();
    check_status(g->init(), "route (cuBLASLt init)");
  }
  return *g;
}

void route_logits_out_cuda(const at::Tensor& logits, const std::optional<at::Tensor>& bias, int64_t k,
                           double scale, at::Tensor& weights, at::Tensor& ids) {
  const c10::cuda::CUDAGuard guard(logits.device());
  check_status(cuda::route_logits(logits_params(logits, bias, k, scale, weights, ids),
                                  current_stream(logits)),
               "route_logits");
}

std::tuple<at::Tensor, at::Tensor> route_logits_cuda(const at::Tensor& logits,
                                                     const std::optional<at::Tensor>& bias,
                                                     int64_t k, double scale) {
  auto [weights, ids] = new_outputs(logits, logits.dim() == 2 ? logits.size(0) : 0, k);
  route_logits_out_cuda(logits, bias, k, scale, weights, ids);
  return {weights, ids};
}

void route_out_cuda(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                    int64_t k, double scale, at::Tensor& weights, at::Tensor& ids) {
  const c10::cuda::CUDAGuard guard(x.device());
  const RouteParams p = route_params(x, w, bias, k, scale, weights, ids);
  const cudaStream_t stream = current_stream(x);
  // Decode batches (up to cuda::route_gemm_crossover_tokens) take the decode router on a
  // fresh workspace: at DSV4's shapes its two-launch forms, which need no zeroed bytes
  // (launch_route_gemm_fresh); elsewhere the leading counters and flag words zeroed first (a
  // fill kernel: on an H100, bench/python_bench.py, CUDA graph, Pro N=1 6.8 us with it and
  // launch_route_gemm, 5.6 without it). A shape or layout the decode router does not take
  // (kUnsupported) goes through the prefill path (cuBLASLt + fused route).
  if (p.n >= 1 && p.n <= cuda::route_gemm_crossover_tokens(p.experts, p.hidden, p.k)) {
    const std::size_t dbytes = cuda::route_gemm_workspace_size(p.n, p.experts);
    if (dbytes > 0) {
      at::Tensor dws = at::empty({static_cast<int64_t>(dbytes)}, x.options().dtype(at::kByte));
      const bool fresh = cuda::route_gemm_two_launch_shape(p.experts, p.k);
      if (!fresh) {
        dws.narrow(0, 0,
                   static_cast<int64_t>(cuda::route_gemm_workspace_zeroed_bytes(p.experts)))
            .zero_();
      }
      const Status s = fresh ? cuda::launch_route_gemm_fresh(p, dws.data_ptr(), dbytes, stream)
                             : cuda::launch_route_gemm(p, dws.data_ptr(), dbytes, stream);
      if (s.code() != StatusCode::kUnsupported) {
        check_status(s, "route");
        return;
      }
    }
  }
  const std::size_t bytes = cuda::route_workspace_size(p.n, p.experts);
  at::Tensor ws = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
  check_status(cuda::route(p, gemm_for(x), ws.data_ptr(), bytes, stream), "route");
}

std::tuple<at::Tensor, at::Tensor> route_cuda(const at::Tensor& x, const at::Tensor& w,
                                              const std::optional<at::Tensor>& bias, int64_t k,
                                              double scale) {
  auto [weights, ids] = new_outputs(x, x.dim() == 2 ? x.size(0) : 0, k);
  route_out_cuda(x, w, bias, k, scale, weights, ids);
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor> hash_route_cuda(const at::Tensor& token_ids, const at::Tensor& table,
                                                   int64_t experts, double scale,
                                                   const std::optional<at::Tensor>& x,
                                                   const std::optional<at::Tensor>& w,
                                                   const std::optional<at::Tensor>& logits) {
  const c10::cuda::CUDAGuard guard(token_ids.device());
  auto [weights, ids] =
      new_outputs(token_ids, token_ids.dim() == 1 ? token_ids.size(0) : 0,
                  table.dim() == 2 ? table.size(1) : 0);
  check_status(cuda::hash_route(hash_params(token_ids, table, experts, scale, x, w, logits, weights, ids),
                                current_stream(token_ids)),
               "hash_route");
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor> topk_cuda(const at::Tensor& values, int64_t k,
                                             const std::optional<at::Tensor>& lengths, bool sorted) {
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t n = values.dim() == 2 ? values.size(0) : 0;
  at::Tensor out_values = at::empty({n, k}, values.options().dtype(at::kFloat));
  at::Tensor indices = at::empty({n, k}, values.options().dtype(at::kInt));
  const TopkParams p = topk_params(values, k, lengths, sorted, out_values, indices);
  // Few, long rows: a workspace lets every SM take part (grid mode). Only its per-row arrival
  // counters (the first 4 n bytes) are read before they are written: zero those alone. That
  // fill is a kernel of its own in every call, so rows shorter than 2^19 take the cluster path
  // (no workspace) instead.
  const std::size_t ws_bytes = p.length >= (1 << 19) ? cuda::topk_workspace_size(p) : 0;
  at::Tensor ws;
  if (ws_bytes > 0) {
    ws = at::empty({int64_t(ws_bytes)}, values.options().dtype(at::kByte));
    ws.narrow(0, 0, 4 * n).zero_();
  }
  check_status(cuda::topk(p, ws_bytes > 0 ? ws.data_ptr() : nullptr, ws_bytes,
                          current_stream(values)),
               "topk");
  return {out_values, indices};
}

std::tuple<at::Tensor, at::Tensor> router_route_cuda(int64_t handle, int64_t layer,
                                                     const at::Tensor& x,
                                                     const std::optional<at::Tensor>& token_ids) {
  const c10::cuda::CUDAGuard guard(x.device());
  const Router& r = router_by_handle(handle);
  TORCH_CHECK_VALUE(r.on_gpu(), "moerouter.Router: this Router holds its weights on the CPU; "
                                "pass CPU tensors or load it with device='cuda'");
  return router_route_impl(r, layer, x, token_ids, current_stream(x));
}

}  // namespace
}  // namespace torch_ops
}  // namespace moerouter

TORCH_LIBRARY_IMPL(moerouter, CUDA, m) {
  using namespace moerouter::torch_ops;
  m.impl("route", &route_cuda);
  m.impl("route_out", &route_out_cuda);
  m.impl("route_logits", &route_logits_cuda);
  m.impl("route_logits_out", &route_logits_out_cuda);
  m.impl("hash_route", &hash_route_cuda);
  m.impl("topk", &topk_cuda);
  m.impl("router_route", &router_route_cuda);
}
