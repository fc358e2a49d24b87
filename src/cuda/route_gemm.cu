// Host launcher of the one-launch decode router (include/moerouter/kernels/route_gemm.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "common.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/route_gemm.cuh"
#include "moerouter/route_gemm.h"

namespace moerouter {
namespace cuda {
namespace {

using kernels::RouteGemmArgs;
constexpr const char* kOp = "route_gemm";

Status unsupported(const std::string& what) {
  return Status(StatusCode::kUnsupported, std::string(kOp) + ": " + what);
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Tokens per mma M-tile set: ceil(n / 16) rounded to {1, 2, 4}.
#define MOER_ROUTE_GEMM_DISPATCH_MTILES(mtiles, kMTiles, ...)                  \
  [&]() -> Status {                                                             \
    switch (mtiles) {                                                           \
      case 1: { constexpr int kMTiles = 1; return (__VA_ARGS__)(); }            \
      case 2: { constexpr int kMTiles = 2; return (__VA_ARGS__)(); }            \
      case 4: { constexpr int kMTiles = 4; return (__VA_ARGS__)(); }            \
      default:                                                                  \
        return unsupported("token tiles must be 1, 2 or 4 (n <= 64), got " +    \
                           std::to_string(mtiles));                             \
    }                                                                           \
  }()

// Experts per lane of the top-k warp: ceil(E / 32) rounded to {8, 12, 16, 32}.
#define MOER_ROUTE_GEMM_DISPATCH_PER_LANE(per_lane, kPerLane, ...)             \
  [&]() -> Status {                                                             \
    switch (per_lane) {                                                         \
      case 8: { constexpr int kPerLane = 8; return (__VA_ARGS__)(); }           \
      case 12: { constexpr int kPerLane = 12; return (__VA_ARGS__)(); }         \
      case 16: { constexpr int kPerLane = 16; return (__VA_ARGS__)(); }         \
      case 32: { constexpr int kPerLane = 32; return (__VA_ARGS__)(); }         \
      default:                                                                  \
        return unsupported("experts per lane must be 8, 12, 16 or 32 (E <= 1024), got " + \
                           std::to_string(per_lane));                           \
    }                                                                           \
  }()

// Clusters of the decode kernel that can be resident at once on the current device (cached
// per device; 16 if the query fails). A grid of more clusters would run in two waves.
int max_resident_clusters() {
  static std::mutex mu;
  static std::map<int, int> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 16;
  std::lock_guard<std::mutex> lock(mu);
  const auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  // The heaviest instantiation at the largest block: what every launch fits within.
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(16 * kernels::kRouteGemmClusterK);
  cfg.blockDim = dim3(32 * kernels::kRouteGemmMaxWarps);
  cfg.dynamicSmemBytes = std::size_t(kernels::kRouteGemmMaxWarps) * 64 * 8 * sizeof(float);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kernels::kRouteGemmClusterK;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernels::route_gemm_kernel<4, 32>, &cfg) !=
          cudaSuccess ||
      clusters < 1) {
    (void)cudaGetLastError();
    clusters = 16;
  }
  clusters = std::min(clusters, 16);
  cache.emplace(dev, clusters);
  return clusters;
}

}  // namespace

int route_gemm_resident_clusters() { return max_resident_clusters(); }

std::size_t route_gemm_workspace_size(std::int64_t max_n, std::int64_t experts) {
  if (max_n < 1 || max_n > kRouteGemmMaxTokens || experts < 1 || experts > kRouteGemmMaxExperts) {
    return 0;
  }
  const std::size_t scores = std::size_t(max_n) * std::size_t(experts) * sizeof(float);
  return kernels::kRouteGemmHeaderBytes + (scores + 255) / 256 * 256;
}

Status launch_route_gemm(const RouteParams& p, void* workspace, std::size_t workspace_bytes,
                         cudaStream_t stream, bool pdl) {
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  if (p.n > kRouteGemmMaxTokens) {
    return unsupported("n must be <= 64 (the decode path), got " + std::to_string(p.n));
  }
  if (p.experts > kRouteGemmMaxExperts) {
    return unsupported("experts must be <= 1024, got " + std::to_string(p.experts));
  }
  if (p.k > kRouteGemmMaxK) return unsupported("k must be <= 32, got " + std::to_string(p.k));
  if (p.hidden % 8 != 0 || p.hidden >= (std::int64_t(1) << 31)) {
    return unsupported("hidden must be a multiple of 8 below 2^31, got " +
                       std::to_string(p.hidden));
  }
  if (p.n == 0) return Status::success();
  const std::int64_t x_stride = ::moerouter::detail::stride_or(p.x_stride, p.hidden);
  if (x_stride % 8 != 0) {
    return unsupported("x_stride must be a multiple of 8 elements (16-byte rows), got " +
                       std::to_string(x_stride));
  }
  if (!detail::aligned(p.x, 16) || !detail::aligned(p.w, 16)) {
    return unsupported("x and w must be 16-byte aligned");
  }
  const std::size_t need = route_gemm_workspace_size(p.n, p.experts);
  if (workspace == nullptr || !detail::aligned(workspace, 256) || workspace_bytes < need) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(kOp) + ": workspace must be a 256-byte aligned device buffer of " +
                      "at least route_gemm_workspace_size(n, experts) = " + std::to_string(need) +
                      " bytes, got " + std::to_string(workspace_bytes) + " bytes at " +
                      (workspace ? "a misaligned address" : "null") +
                      (workspace && detail::aligned(workspace, 256) ? " (too small)" : ""));
  }
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "x", p.x));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "w", p.w));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "bias", p.bias));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "weights", p.weights));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "ids", p.ids));
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(kOp, "workspace", workspace));

  // Tiling: as many expert tiles (clusters) of 8-expert groups as are resident at once (15 or
  // 16 on an H100: up to 128 blocks stream W in one wave); each block's H range is split over
  // wk warps per group (groups * wk <= 16).
  const int groups_total = int(ceil_div(p.experts, 8));
  const int groups = std::min<int>(kernels::kRouteGemmMaxWarps,
                                   int(ceil_div(groups_total, max_resident_clusters())));
  const int tiles = int(ceil_div(groups_total, groups));
  const int block_k = int(ceil_div(ceil_div(p.hidden, kernels::kRouteGemmClusterK), 32) * 32);
  const int block_chunks = block_k / 32;
  int wk = 1;
  for (int cand = 1; cand * groups <= kernels::kRouteGemmMaxWarps; ++cand) {
    if (ceil_div(block_chunks, cand) < ceil_div(block_chunks, wk)) wk = cand;
  }
  const int warp_chunks = int(ceil_div(block_chunks, wk));
  const int mtiles = p.n <= 16 ? 1 : p.n <= 32 ? 2 : 4;
  const int per_lane_raw = int(ceil_div(p.experts, 32));
  const int per_lane = per_lane_raw <= 8 ? 8 : per_lane_raw <= 12 ? 12 : per_lane_raw <= 16 ? 16 : 32;

  RouteGemmArgs a{};
  a.x = static_cast<const std::uint16_t*>(p.x);
  a.w = static_cast<const std::uint16_t*>(p.w);
  a.bias = p.bias;
  a.weights = p.weights;
  a.ids = p.ids;
  a.counter = static_cast<unsigned*>(workspace);
  a.scores = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                      kernels::kRouteGemmHeaderBytes);
  a.x_stride = x_stride;
  a.weights_stride = ::moerouter::detail::stride_or(p.weights_stride, p.k);
  a.ids_stride = ::moerouter::detail::stride_or(p.ids_stride, p.k);
  a.n = int(p.n);
  a.hidden = int(p.hidden);
  a.experts = int(p.experts);
  a.k = p.k;
  a.scale = p.scale;
  a.ids64 = p.ids_dtype == DType::kI64 ? 1 : 0;
  a.tiles = tiles;
  a.groups = groups;
  a.wk = wk;
  a.block_k = block_k;
  a.warp_chunks = warp_chunks;

  return MOER_ROUTE_GEMM_DISPATCH_MTILES(mtiles, kMTiles, [&] {
    return MOER_ROUTE_GEMM_DISPATCH_PER_LANE(per_lane, kPerLane, [&] {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(unsigned(tiles * kernels::kRouteGemmClusterK));
      cfg.blockDim = dim3(unsigned(32 * groups * wk));
      cfg.dynamicSmemBytes = std::size_t(wk) * 16 * kMTiles * 8 * groups * sizeof(float);
      cfg.stream = stream;
      cudaLaunchAttribute attrs[3];
      attrs[0].id = cudaLaunchAttributeClusterDimension;
      attrs[0].val.clusterDim.x = kernels::kRouteGemmClusterK;
      attrs[0].val.clusterDim.y = 1;
      attrs[0].val.clusterDim.z = 1;
      // One block per multiprocessor where possible: more SMs pulling W.
      attrs[1].id = cudaLaunchAttributeClusterSchedulingPolicyPreference;
      attrs[1].val.clusterSchedulingPolicyPreference = cudaClusterSchedulingPolicySpread;
      attrs[2].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attrs[2].val.programmaticStreamSerializationAllowed = 1;
      cfg.attrs = attrs;
      cfg.numAttrs = pdl ? 3 : 2;
      const cudaError_t err =
          cudaLaunchKernelEx(&cfg, kernels::route_gemm_kernel<kMTiles, kPerLane>, a);
      if (err != cudaSuccess) return detail::cuda_status(err, kOp);
      return detail::launch_status(kOp);
    });
  });
}

}  // namespace cuda
}  // namespace moerouter
