// Launcher of the top-k primitive: k <= 32 sorted by the warp/block kernel (kernels/topk.cuh),
// larger k (up to 2048) and unsorted output by radix select (kernels/radix_topk.cuh).
#include <string>

#include "common.cuh"
#include "moerouter/cuda.h"
#include "moerouter/detail/dispatch.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/radix_topk.cuh"
#include "moerouter/kernels/topk.cuh"

namespace moerouter {
namespace cuda {
namespace {

// Rows longer than this get a 16-warp block each; shorter ones a warp each.
constexpr std::int64_t kLongRow = 2048;

}  // namespace

Status topk(const TopkParams& p, cudaStream_t stream) {
  const char* op = "topk";
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  if (p.k > kernels::kRadixMaxK) {
    return Status(StatusCode::kUnsupported, std::string(op) + ": k must be <= " +
                                                std::to_string(kernels::kRadixMaxK) +
                                                " on the GPU, got " + std::to_string(p.k));
  }
  if (p.length >= (std::int64_t(1) << 31)) {
    return Status(StatusCode::kUnsupported,
                  std::string(op) + ": length must be < 2^31, got " + std::to_string(p.length));
  }
  if (p.n == 0) return Status::success();
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "values", p.values));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "lengths", p.lengths));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "indices", p.indices));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "out_values", p.out_values));

  if (p.k > kMaxK || !p.sorted) {
    if (p.n > 0x7fffffffLL) {
      return Status(StatusCode::kUnsupported, "topk: n too large, got " + std::to_string(p.n));
    }
    kernels::RadixTopkArgs r{};
    r.values = p.values;
    r.lengths = p.lengths;
    r.indices = p.indices;
    r.out_values = p.out_values;
    r.n = p.n;
    r.length = p.length;
    r.values_stride = moerouter::detail::stride_or(p.values_stride, p.length);
    r.indices_stride = moerouter::detail::stride_or(p.indices_stride, p.k);
    r.out_values_stride = moerouter::detail::stride_or(p.out_values_stride, p.k);
    r.k = p.k;
    r.sorted = p.sorted;
    return MOER_DISPATCH_REAL_DTYPE(p.values_dtype, T, "topk: values_dtype", [&] {
      kernels::radix_topk_kernel<T><<<unsigned(p.n), kernels::kRadixThreads, 0, stream>>>(r);
      return detail::launch_status("topk: radix_topk_kernel launch");
    });
  }

  kernels::TopkArgs a{};
  a.values = p.values;
  a.lengths = p.lengths;
  a.indices = p.indices;
  a.out_values = p.out_values;
  a.n = p.n;
  a.length = p.length;
  a.k = p.k;
  a.values_stride = moerouter::detail::stride_or(p.values_stride, p.length);
  a.indices_stride = moerouter::detail::stride_or(p.indices_stride, p.k);
  a.out_values_stride = moerouter::detail::stride_or(p.out_values_stride, p.k);
  const int warps = p.length > kLongRow ? 16 : 1;
  return MOER_DISPATCH_REAL_DTYPE(p.values_dtype, T, "topk: values_dtype", [&] {
    return MOER_DISPATCH_TOPK_WARPS(warps, kWarps, [&] {
      constexpr int kThreads =
          kWarps == 1 ? kernels::kTopkThreadsShort : kernels::kTopkThreadsLong;
      constexpr int kRowsPerBlock = kWarps == 1 ? kThreads / 32 : 1;
      const std::int64_t blocks = (p.n + kRowsPerBlock - 1) / kRowsPerBlock;
      if (blocks > 0x7fffffffLL) {
        return Status(StatusCode::kUnsupported, "topk: n too large, got " + std::to_string(p.n));
      }
      kernels::topk_kernel<T, kWarps><<<unsigned(blocks), kThreads, 0, stream>>>(a);
      return detail::launch_status("topk: topk_kernel launch");
    });
  });
}

}  // namespace cuda
}  // namespace moerouter
