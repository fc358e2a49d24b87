// Launchers of the hash route (from logits, uniform, from x and W) and the error-flag check.
#include <algorithm>
#include <string>

#include "common.cuh"
#include "moerouter/cuda.h"
#include "moerouter/detail/dispatch.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/hash_route.cuh"

namespace moerouter {
namespace cuda {
namespace {

using moerouter::detail::stride_or;

constexpr int kGatherThreads = 256;

// Blocks per token of hash_route_x_kernel: spread a few tokens over the SMs (each block of a
// cluster reads an H-slice of the k rows of W), one block per token once the tokens fill the
// GPU by themselves.
int hash_cluster_size(std::int64_t n) {
  const std::int64_t sms = detail::sm_count();
  int c = 1;
  while (c < kernels::kHashXMaxCluster && n * c * 2 <= sms) c *= 2;
  return c;
}

Status launch_hash_x(const kernels::HashRouteArgs& a, cudaStream_t stream, bool pdl) {
  const int group = a.k <= 8 ? 8 : 32;
  return MOER_DISPATCH_K_BOUND(group, kGroup, [&] {
    const auto kernel = kernels::hash_route_x_kernel<kGroup>;
    const int csize = hash_cluster_size(a.n);
    const std::int64_t blocks = a.n * csize;
    if (blocks > 0x7fffffffLL) {
      return Status(StatusCode::kUnsupported,
                    "hash_route: n must be < 2^31 / cluster size, got " + std::to_string(a.n));
    }
    // One block a token: no cluster at all (a launch with clusters of one pays for cluster
    // barriers that a plain launch skips).
    return detail::launch_kernel(kernel, dim3(unsigned(blocks)), dim3(kernels::kHashXThreads), 0,
                                 stream, pdl, a, "hash_route: hash_route_x_kernel launch",
                                 csize > 1 ? csize : 0);
  });
}

Status launch_hash_gather(const kernels::HashRouteArgs& a, cudaStream_t stream, bool pdl) {
  const int group = a.k <= 8 ? 8 : 32;
  return MOER_DISPATCH_K_BOUND(group, kGroup, [&] {
    const std::int64_t threads = a.n * kGroup;
    const std::int64_t blocks = (threads + kGatherThreads - 1) / kGatherThreads;
    if (blocks > 0x7fffffffLL) {
      return Status(StatusCode::kUnsupported, "hash_route: n too large, got " + std::to_string(a.n));
    }
    return detail::launch_kernel(kernels::hash_route_gather_kernel<kGroup>, dim3(unsigned(blocks)),
                                 dim3(kGatherThreads), 0, stream, pdl, a,
                                 "hash_route: hash_route_gather_kernel launch");
  });
}

}  // namespace

Status hash_route(const HashRouteParams& p, cudaStream_t stream, bool pdl) {
  const char* op = "hash_route";
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  if (p.k > kMaxK) {
    return Status(StatusCode::kUnsupported, std::string(op) + ": k must be <= " +
                                                std::to_string(kMaxK) + " on the GPU, got " +
                                                std::to_string(p.k));
  }
  if (p.source == HashWeights::kFromX && p.hidden >= kernels::kHashXMaxHidden) {
    // (the x kernel's slice bounds are 32-bit products)
    return Status(StatusCode::kUnsupported,
                  std::string(op) + ": hidden must be < " +
                      std::to_string(kernels::kHashXMaxHidden) +
                      " for weights from x on the GPU, got " + std::to_string(p.hidden));
  }
  if (p.n == 0) return Status::success();
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "token_ids", p.token_ids));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "table", p.table));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "weights", p.weights));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "ids", p.ids));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "error_flag", p.error_flag));

  kernels::HashRouteArgs a{};
  a.token_ids = p.token_ids;
  a.table = p.table;
  a.weights = p.weights;
  a.ids = p.ids;
  a.error_flag = p.error_flag;
  a.n = p.n;
  a.vocab = p.vocab;
  a.experts = p.experts;
  a.k = p.k;
  a.scale = p.scale;
  a.weights_stride = stride_or(p.weights_stride, p.k);
  a.ids_stride = stride_or(p.ids_stride, p.k);
  a.token_i64 = p.token_dtype == DType::kI64;
  a.table_i64 = p.table_dtype == DType::kI64;
  a.ids_i64 = p.ids_dtype == DType::kI64;
  a.pdl = pdl;

  switch (p.source) {
    case HashWeights::kFromX: {
      MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "x", p.x));
      MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "w", p.w));
      a.x = static_cast<const bf16*>(p.x);
      a.w = static_cast<const bf16*>(p.w);
      a.hidden = p.hidden;
      a.x_stride = stride_or(p.x_stride, p.hidden);
      a.vector_x = p.hidden % 8 == 0 && a.x_stride % 8 == 0 && detail::aligned(p.x, 16) &&
                   detail::aligned(p.w, 16);
      return launch_hash_x(a, stream, pdl);
    }
    case HashWeights::kFromLogits:
      MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "logits", p.logits));
      a.logits = p.logits;
      a.logits_bf16 = p.logits_dtype == DType::kBF16;
      a.logits_stride = stride_or(p.logits_stride, p.experts);
      return launch_hash_gather(a, stream, pdl);
    case HashWeights::kUniform:
      a.logits = nullptr;
      return launch_hash_gather(a, stream, pdl);
  }
  return Status(StatusCode::kInvalidArgument,
                "hash_route: source must be kFromX, kFromLogits or kUniform, got " +
                    std::to_string(int(p.source)));
}

Status check_error_flag(const std::int32_t* d_error_flag, cudaStream_t stream) {
  if (d_error_flag == nullptr) {
    return Status(StatusCode::kNullPointer, "check_error_flag: d_error_flag must not be null");
  }
  std::int32_t flag = 0;
  MOER_RETURN_IF_ERROR_CUDA(detail::cuda_status(
      cudaMemcpyAsync(&flag, d_error_flag, sizeof(flag), cudaMemcpyDeviceToHost, stream),
      "check_error_flag: cudaMemcpyAsync"));
  MOER_RETURN_IF_ERROR_CUDA(
      detail::cuda_status(cudaStreamSynchronize(stream), "check_error_flag: cudaStreamSynchronize"));
  if (flag != 0) {
    return Status(StatusCode::kInvalidTokenId,
                  "hash_route: a token id outside [0, vocab) or a tid2eid entry outside "
                  "[0, experts) was seen; those rows were written as ids -1, weights 0");
  }
  return Status::success();
}

}  // namespace cuda
}  // namespace moerouter
