// Launchers of the fused dense route: route_logits (from logits) and route (GEMM + route).
#include <algorithm>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "route_args.cuh"
#include "moerouter/cuda.h"
#include "moerouter/detail/dispatch.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/route_topk.cuh"

namespace moerouter {
namespace cuda {
namespace {

using moerouter::detail::stride_or;

Status check_route_limits(const char* op, std::int64_t experts, std::int32_t k) {
  if (experts > kMaxRouteExperts) {
    return Status(StatusCode::kUnsupported, std::string(op) + ": experts must be <= " +
                                                std::to_string(kMaxRouteExperts) +
                                                " on the GPU, got " + std::to_string(experts));
  }
  if (k > kMaxK) {
    return Status(StatusCode::kUnsupported, std::string(op) + ": k must be <= " +
                                                std::to_string(kMaxK) + " on the GPU, got " +
                                                std::to_string(k));
  }
  return Status::success();
}

// ceil(E / 128) rounded up to the dispatched set {1, 2, 3, 4, 6, 8}.
int route_chunks(std::int64_t experts) {
  const int c = int((experts + 127) / 128);
  return c == 5 ? 6 : c == 7 ? 8 : c;
}

// Batches below kSmallMaxRows (the DSV4 fast path: above row_block_max_rows, below) take
// route_topk_kernel's kSmall variant (a chain of latencies per row: it loads a warp's next row
// while it routes the current one), larger ones the plain kernel (more rows in flight).
// Measured on an H100 (CUDA graph, rotating logits), kSmall against plain, us: Pro 4.20 vs 4.50
// at N = 2048, 4.60 vs 4.80 at 2560, 5.24 vs 5.28 at 3072, 6.02 vs 5.92 at 4096; Flash 3.65 vs
// 3.80, 4.05 vs 4.23, 4.41 vs 4.49, 5.07 vs 5.06.
constexpr std::int64_t kSmallMaxRows = kernels::kRouteSmallMaxRows;

// Up to row_block_max_rows(E / 128) rows the DSV4 fast path takes route_topk_rowwide_kernel
// (a block per row, a thread per expert, every exact key at once: the shortest chain per row),
// larger batches route_topk_kernel (a warp per row and the filters: the fewest instructions
// per row). Measured on an H100 (moerouter_bench, CUDA graph, logits cold, two runs each in
// one call), the block-per-row kernel against the kSmall variant, us: Pro 2.84-2.85 vs
// 2.85-2.87 at N = 384, 3.54-3.57 vs 2.93-2.94 at 512; Flash 2.68-2.78 vs 2.67-2.68 at 512,
// 3.24 vs 2.90-2.92 at 768.
constexpr std::int64_t row_block_max_rows(int chunks) { return chunks == 3 ? 256 : 512; }

// pdl: allow programmatic dependent launch (the kernels wait for the previous kernel before
// any global access), so the launch overlaps the tail of the kernel before it.
template <typename Kernel>
Status launch_one_warp_per_row(Kernel kernel, const kernels::RouteTopkArgs& a,
                               cudaStream_t stream, bool pdl, const char* what) {
  constexpr int kThreads = kernels::kRouteWarps * 32;
  const std::int64_t want = (a.n + kernels::kRouteWarps - 1) / kernels::kRouteWarps;
  const int resident = detail::resident_blocks(reinterpret_cast<const void*>(kernel), kThreads);
  const int blocks = int(std::min<std::int64_t>(want, resident));
  return detail::launch_kernel(kernel, dim3(unsigned(blocks)), dim3(kThreads), 0, stream, pdl, a,
                               what);
}

template <typename T, int kWarps>
Status launch_rowwide(const kernels::RouteTopkArgs& a, cudaStream_t stream, bool pdl) {
  const auto kernel = kernels::route_topk_rowwide_kernel<kernels::RowLogits<T>, kWarps>;
  constexpr int kThreads = kWarps * 32;
  const int resident = detail::resident_blocks(reinterpret_cast<const void*>(kernel), kThreads);
  const int blocks = int(std::min<std::int64_t>(a.n, resident));
  return detail::launch_kernel_ex(kernel, dim3(unsigned(blocks)), dim3(kThreads), 0, stream, pdl,
                                  "route: route_topk_rowwide_kernel launch", 0, a,
                                  kernels::RowLogits<T>{});
}

Status launch_route_topk(const kernels::RouteTopkArgs& a, DType logits_dtype,
                         cudaStream_t stream, bool pdl) {
  const int chunks = route_chunks(a.experts);
  return MOER_DISPATCH_REAL_DTYPE(logits_dtype, T, "route: logits_dtype", [&] {
    return MOER_DISPATCH_ROUTE_CHUNKS(chunks, kChunks, [&] {
      // The DSV4 fast path (E = 256 or 384 in whole aligned vectors, k = 6): no bounds checks,
      // k known at compile time.
      constexpr bool kDsv4Shape = kChunks == 2 || kChunks == 3;
      const bool dsv4 = kDsv4Shape && a.vector_logits && a.experts == 128 * kChunks &&
                        a.k == kernels::kDsv4K;
      const auto launch = [&](auto dsv4_tag) {
        constexpr bool kDsv4 = decltype(dsv4_tag)::value;
        if constexpr (kDsv4) {
          // (kDsv4 only with kDsv4Shape: a warp per 128 experts.)
          if (a.n <= row_block_max_rows(kChunks)) {
            return launch_rowwide<T, kChunks * 4>(a, stream, pdl);
          }
        }
        if (a.n < kSmallMaxRows) {
          return launch_one_warp_per_row(kernels::route_topk_kernel<T, kChunks, kDsv4, true>, a,
                                         stream, pdl, "route: route_topk_kernel (small) launch");
        }
        return launch_one_warp_per_row(kernels::route_topk_kernel<T, kChunks, kDsv4, false>, a,
                                       stream, pdl, "route: route_topk_kernel launch");
      };
      // (A bool_constant, not `if constexpr`: this lambda is no template, so a discarded
      // branch would still instantiate the DSV4 kernels for every chunk count.)
      if (dsv4) return launch(std::bool_constant<kDsv4Shape>{});
      return launch(std::false_type{});
    });
  });
}

kernels::RouteTopkArgs make_args(const void* logits, DType logits_dtype,
                                 std::int64_t logits_stride, const float* bias, float* weights,
                                 std::int64_t weights_stride, void* ids, DType ids_dtype,
                                 std::int64_t ids_stride, std::int64_t n, std::int64_t experts,
                                 std::int32_t k, float scale) {
  kernels::RouteTopkArgs a =
      detail::route_output_args(bias, weights, stride_or(weights_stride, k), ids, ids_dtype,
                                stride_or(ids_stride, k), n, experts, k, scale);
  a.logits = logits;
  a.logits_stride = stride_or(logits_stride, experts);
  const std::uintptr_t chunk_bytes = logits_dtype == DType::kF32 ? 16 : 8;
  a.vector_logits =
      experts % 4 == 0 && a.logits_stride % 4 == 0 && detail::aligned(logits, chunk_bytes);
  a.vector_bias = bias != nullptr && experts % 4 == 0 && detail::aligned(bias, 16);
  return a;
}

}  // namespace

Status route_logits(const RouteLogitsParams& p, cudaStream_t stream, bool pdl) {
  const char* op = "route_logits";
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  MOER_RETURN_IF_ERROR_CUDA(check_route_limits(op, p.experts, p.k));
  if (p.n == 0) return Status::success();
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "logits", p.logits));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "bias", p.bias));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "weights", p.weights));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "ids", p.ids));
  const kernels::RouteTopkArgs a =
      make_args(p.logits, p.logits_dtype, p.logits_stride, p.bias, p.weights, p.weights_stride,
                p.ids, p.ids_dtype, p.ids_stride, p.n, p.experts, p.k, p.scale);
  return launch_route_topk(a, p.logits_dtype, stream, pdl);
}

std::size_t route_workspace_size(std::int64_t max_n, std::int64_t experts) {
  if (max_n <= 0 || experts <= 0) return 0;
  const std::size_t bytes = std::size_t(max_n) * std::size_t(experts) * sizeof(float);
  return (bytes + 255) / 256 * 256;
}

Status route(const RouteParams& p, RouterGemm& gemm, void* workspace,
             std::size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "route";
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  MOER_RETURN_IF_ERROR_CUDA(check_route_limits(op, p.experts, p.k));
  if (p.n == 0) return Status::success();
  if (!gemm.initialized()) {
    return Status(StatusCode::kNullPointer, "route: gemm must be initialized (RouterGemm::init)");
  }
  if (workspace == nullptr) {
    return Status(StatusCode::kNullPointer, "route: workspace must not be null");
  }
  const std::size_t need = route_workspace_size(p.n, p.experts);
  if (workspace_bytes < need) {
    return Status(StatusCode::kInvalidArgument,
                  "route: workspace_bytes must be >= route_workspace_size(n=" +
                      std::to_string(p.n) + ", experts=" + std::to_string(p.experts) +
                      ")=" + std::to_string(need) + ", got " + std::to_string(workspace_bytes));
  }
  if (!detail::aligned(workspace, 16)) {
    return Status(StatusCode::kInvalidArgument, "route: workspace must be 16-byte aligned");
  }
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "x", p.x));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "w", p.w));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "bias", p.bias));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "weights", p.weights));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "ids", p.ids));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "workspace", workspace));
  auto* logits = static_cast<float*>(workspace);
  MOER_RETURN_IF_ERROR_CUDA(gemm.logits(p.x, p.x_stride, p.w, p.n, p.hidden, p.experts, logits,
                                        p.experts, stream));
  const kernels::RouteTopkArgs a =
      make_args(logits, DType::kF32, p.experts, p.bias, p.weights, p.weights_stride, p.ids,
                p.ids_dtype, p.ids_stride, p.n, p.experts, p.k, p.scale);
  // Programmatic dependent launch (the route's launch overlaps the GEMM's tail; it reads the
  // logits only after griddepcontrol.wait) where the route is a short chain, a plain launch for
  // the large-batch kernel (N >= kSmallMaxRows). Measured on an H100 (moerouter_bench, us): with
  // PDL at every N against none, Flash N=16384 73.61-73.81 against 73.21-73.37 (three rounds
  // each in one call), but Pro N=1 7.77 against 8.17 (one run each, two calls); this rule
  // against PDL at every N, two rounds each in one call: Flash N=16384 73.01-73.11 against
  // 73.22-73.38, N=4096 23.74-23.75 against 23.78-23.89, Pro N=4096 40.10-40.16 against
  // 40.62-41.01, N=16384 152.2-153.5 against 157.0-157.6; N = 1, 64 and 1024 (PDL in both)
  // within 0.2.
  return launch_route_topk(a, DType::kF32, stream, /*pdl=*/p.n < kSmallMaxRows);
}

}  // namespace cuda
}  // namespace moerouter
