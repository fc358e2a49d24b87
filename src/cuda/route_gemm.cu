// Host launcher of the one-launch decode router (include/moerouter/kernels/route_gemm.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "common.cuh"
#include "route_args.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/route_gemm.cuh"
#include "moerouter/kernels/route_gemv.cuh"
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

// Expert chunks per lane of the route warp: ceil(E / 128) rounded to {2, 3, 4, 8}.
#define MOER_ROUTE_GEMM_DISPATCH_CHUNKS(chunks, kChunks, ...)                  \
  [&]() -> Status {                                                             \
    switch (chunks) {                                                           \
      case 2: { constexpr int kChunks = 2; return (__VA_ARGS__)(); }            \
      case 3: { constexpr int kChunks = 3; return (__VA_ARGS__)(); }            \
      case 4: { constexpr int kChunks = 4; return (__VA_ARGS__)(); }            \
      case 8: { constexpr int kChunks = 8; return (__VA_ARGS__)(); }            \
      default:                                                                  \
        return unsupported("expert chunks per lane must be 2, 3, 4 or 8 (E <= 1024), got " + \
                           std::to_string(chunks));                             \
    }                                                                           \
  }()

// The arguments both kernels share, from validated params.
void set_common_args(kernels::RouteDecodeArgs& a, const RouteParams& p, std::int64_t x_stride) {
  a.x = static_cast<const std::uint16_t*>(p.x);
  a.w = static_cast<const std::uint16_t*>(p.w);
  a.bias = p.bias;
  a.weights = p.weights;
  a.ids = p.ids;
  a.x_stride = x_stride;
  a.weights_stride = ::moerouter::detail::stride_or(p.weights_stride, p.k);
  a.ids_stride = ::moerouter::detail::stride_or(p.ids_stride, p.k);
  a.n = int(p.n);
  a.hidden = int(p.hidden);
  a.experts = int(p.experts);
  a.k = p.k;
  a.scale = p.scale;
  a.ids64 = p.ids_dtype == DType::kI64 ? 1 : 0;
}

// The one-pass kernel for `epb` experts per block and n tokens (rounded up to 1, 2 or 4):
// calls body(kernel) with the instantiation.
template <int kEpb, typename Body>
Status dispatch_gemv_tokens(int n, Body&& body) {
  if (n <= 1) return body(kernels::route_gemv_kernel<kEpb, 1>);
  if (n <= 2) return body(kernels::route_gemv_kernel<kEpb, 2>);
  return body(kernels::route_gemv_kernel<kEpb, 4>);
}
template <typename Body>
Status dispatch_gemv(int epb, int n, Body&& body) {
  switch (epb) {
    case 1: return dispatch_gemv_tokens<1>(n, body);
    case 2: return dispatch_gemv_tokens<2>(n, body);
    case 3: return dispatch_gemv_tokens<3>(n, body);
    case 4: return dispatch_gemv_tokens<4>(n, body);
    case 8: return dispatch_gemv_tokens<8>(n, body);
    default:
      return unsupported("experts per block must be 1, 2, 3, 4 or 8, got " + std::to_string(epb));
  }
}

// The fused route's arguments for the second launch of a two-launch path (its logits source
// is set by the caller).
kernels::RouteTopkArgs route_args(const RouteParams& p, std::int64_t weights_stride,
                                  std::int64_t ids_stride) {
  return detail::route_output_args(p.bias, p.weights, weights_stride, p.ids, p.ids_dtype,
                                   ids_stride, p.n, p.experts, p.k, p.scale);
}

// The second launch of a two-launch path: the fused route's block of E threads per row over
// `src` (E = 256 or 384), with programmatic dependent launch (its blocks start during the
// first kernel's tail and wait in griddepcontrol.wait for that grid to finish). Each block
// asks for more than half an SM's shared memory, so that no two share an SM: launched early,
// the blocks had piled onto the few SMs the first grid left free (up to five a SM) and ran
// there together once released.
template <typename Src>
Status launch_rowwide_route(std::int64_t experts, const kernels::RouteTopkArgs& ra,
                            const Src& src, cudaStream_t stream) {
  const auto launch = [&](auto kernel, int threads) {
#if defined(MOER_NO_SPREAD)  // (the blocks as they come, for A/B timing)
    const std::size_t smem = 0;
#else
    // One wave only: with more rows than SMs the blocks share SMs anyway.
    const std::size_t smem =
        ra.n <= detail::sm_count()
            ? detail::one_block_per_sm_smem(reinterpret_cast<const void*>(kernel))
            : 0;
#endif
    return detail::launch_kernel_ex(kernel, dim3(unsigned(ra.n)), dim3(unsigned(threads)), smem,
                                    stream, /*pdl=*/true, kOp, 0, ra, src);
  };
  return experts == 256 ? launch(kernels::route_topk_rowwide_kernel<Src, 8>, 256)
                        : launch(kernels::route_topk_rowwide_kernel<Src, 12>, 384);
}

}  // namespace

RouteGemmTiling route_gemm_tiling(std::int64_t n, std::int64_t experts, std::int64_t hidden,
                                  int sms, int force_groups, int force_routers) {
  const int groups_total = int(ceil_div(experts, 8));
  const int chunks = int(ceil_div(hidden, 32));
  // Measured (H200, DSV4 Flash and Pro, n = 1..64): the fewest groups per tile whose grid
  // still covers ~90% of the SMs wins or ties at every n. Fewer groups mean fewer H splits
  // (less partial-sum traffic and a shorter final reduction); the x re-reads they cost
  // (x bytes per block grow with the block's H range) matter less.
  RouteGemmTiling best{};
  int best_blocks = 0;
  for (int tg = 1; tg <= kernels::kRouteGemmMaxWarps; ++tg) {
    if (force_groups > 0 && tg != force_groups) continue;
    const int tiles = int(ceil_div(groups_total, tg));
    if (tiles > kernels::kRouteGemmMaxTiles) continue;
    const int splits = std::max(1, std::min({sms / std::max(tiles, 1), chunks,
                                             kernels::kRouteGemmMaxSplits}));
    const int blocks = tiles * splits;
    if (best.tiles != 0 && blocks <= best_blocks) continue;
    const int block_chunks = int(ceil_div(chunks, splits));
    const int wk = std::max(1, std::min(kernels::kRouteGemmBlockWarps / tg, block_chunks));
    best.groups = tg;
    best.tiles = tiles;
    best.splits = splits;
    best.wk = wk;
    best.warp_chunks = int(ceil_div(block_chunks, wk));
    best_blocks = blocks;
    if (10 * blocks >= 9 * sms) break;
  }
  if (best.tiles == 0) return best;
  // Routers: the last blocks to arrive reduce and route kRouteGemmRouterRows rows at a time
  // each. More of them spread the reduction's L2 reads; each must be able to wait beside the
  // blocks still to arrive, so at most half the SMs (and kRouteGemmMaxRouters) route.
  const int cap = std::max(1, std::min({kernels::kRouteGemmMaxRouters, best.tiles * best.splits,
                                        std::max(1, sms / 2)}));
  const int want = force_routers > 0
                       ? force_routers
                       : int(ceil_div(n, kernels::kRouteGemmRouterRows));
  best.routers = std::max(1, std::min({want, cap, int(std::max<std::int64_t>(n, 1))}));
  return best;
}


namespace {

std::size_t round256(std::size_t b) { return (b + 255) / 256 * 256; }

// Workspace layout: header (counters), the one-pass kernel's words [4][E] (at a fixed offset:
// the mma kernel's partials depend on n and must never overlap them, since the words must stay
// 0 between launches), partials.
std::size_t partials_bytes(std::int64_t max_n, std::int64_t experts) {
  // At most kMaxSplits splits of every tile, whose experts (8 * groups each) overshoot E by
  // less than one tile of at most 16 groups.
  const std::size_t tile_experts = std::size_t(ceil_div(experts, 8) * 8 + 8 * 15);
  return round256(std::size_t(kernels::kRouteGemmMaxSplits) * std::size_t(max_n) *
                  tile_experts * sizeof(float));
}
std::size_t slots_bytes(std::int64_t experts) {
  return round256(std::size_t(kernels::kRouteGemvMaxTokens) * std::size_t(experts) *
                  sizeof(unsigned long long));
}

}  // namespace

std::size_t route_gemm_workspace_size(std::int64_t max_n, std::int64_t experts) {
  if (max_n < 1 || max_n > kRouteGemmMaxTokens || experts < 1 || experts > kRouteGemmMaxExperts) {
    return 0;
  }
  return kernels::kRouteGemmHeaderBytes + partials_bytes(max_n, experts) + slots_bytes(experts);
}

std::size_t route_gemm_workspace_zeroed_bytes(std::int64_t experts) {
  if (experts < 1 || experts > kRouteGemmMaxExperts) return 0;
  return kernels::kRouteGemmHeaderBytes + slots_bytes(experts);
}

int route_gemv_experts_per_block(std::int64_t n, std::int64_t experts, int k, int sms) {
  if (n < 1 || n > kernels::kRouteGemvMaxTokens || k < 1 || k > kernels::kRouteGemvMaxK ||
      experts < 1 || experts > kRouteGemmMaxExperts || sms < 1 ||
      n * ((experts + 31) / 32 * 32) > kernels::kRouteGemvMaxSlots) {
    return 0;
  }
  const std::int64_t epb = ceil_div(experts, sms);
  return epb <= 4 ? int(epb) : epb <= kernels::kRouteGemvMaxExpertsPerBlock ? 8 : 0;
}

Status launch_route_gemm(const RouteParams& p, void* workspace, std::size_t workspace_bytes,
                         cudaStream_t stream, bool pdl) {
  return launch_route_gemm_tiled(p, workspace, workspace_bytes, stream, pdl, 0);
}

Status launch_route_gemm_fresh(const RouteParams& p, void* workspace,
                               std::size_t workspace_bytes, cudaStream_t stream, bool pdl) {
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  if (!route_gemm_two_launch_shape(p.experts, p.k)) {
    return unsupported("a workspace that is not zeroed takes E = 256 or 384 and k = 6, got E = " +
                       std::to_string(p.experts) + ", k = " + std::to_string(p.k));
  }
  if (p.n != 1) return launch_route_gemm(p, workspace, workspace_bytes, stream, pdl);
  const bool gemv = route_gemv_experts_per_block(1, p.experts, p.k, detail::sm_count()) > 0;
  return launch_route_gemm_tiled(p, workspace, workspace_bytes, stream, pdl, 0, 0,
                                 gemv ? kRouteGemmForceGemvSplit : kRouteGemmForceMmaSplit);
}

Status launch_route_gemm_tiled(const RouteParams& p, void* workspace,
                               std::size_t workspace_bytes, cudaStream_t stream, bool pdl,
                               int force_groups, int force_routers, int force_kernel) {
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
  char* ws = static_cast<char*>(workspace);
  char* const after_slots = ws + kernels::kRouteGemmHeaderBytes + slots_bytes(p.experts);

  const int epb = route_gemv_experts_per_block(p.n, p.experts, p.k, detail::sm_count());
  const bool gemv_forced = force_kernel == kRouteGemmForceGemv ||
                           force_kernel == kRouteGemmForceGemvSplit;
  if (gemv_forced && epb == 0) {
    return unsupported("the one-pass kernel takes n <= 4 and n * ceil32(E) <= 2048 "
                       "with at most 8 experts per SM");
  }
  if (force_kernel == kRouteGemmForceGemvSplit && !route_gemm_two_launch_shape(p.experts, p.k)) {
    return unsupported("the two-launch one-pass path takes E = 256 or 384 and k = 6");
  }
  const bool auto_kernel = force_kernel == kRouteGemmAuto && force_groups == 0 &&
                           force_routers == 0;
  if (gemv_forced || (auto_kernel && epb > 0)) {
    const bool split = force_kernel == kRouteGemmForceGemvSplit ||
                       (auto_kernel && route_gemm_two_launches(p.n, p.experts, p.k));
    kernels::RouteGemvArgs g{};
    set_common_args(g, p, x_stride);
    g.slots = reinterpret_cast<unsigned long long*>(ws + kernels::kRouteGemmHeaderBytes);
    g.logits = split ? reinterpret_cast<float*>(after_slots) : nullptr;
    const dim3 grid(unsigned(ceil_div(p.experts, epb)));  // the last block also polls
    const dim3 block(kernels::kRouteGemvThreads);
    MOER_RETURN_IF_ERROR_CUDA(dispatch_gemv(epb, int(p.n), [&](auto kernel) {
      return detail::launch_kernel(kernel, grid, block,
                                   kernels::route_gemv_smem_bytes(g.n, g.experts, g.k), stream,
                                   pdl, g, kOp);
    }));
    if (!split) return Status::success();
    kernels::RouteTopkArgs ra = route_args(p, g.weights_stride, g.ids_stride);
    ra.logits = g.logits;
    ra.logits_stride = p.experts;
    return launch_rowwide_route(p.experts, ra, kernels::RowLogits<float>{}, stream);
  }

  // The mma GEMM then the block-per-row route (two launches; route_gemm_two_launches), or the
  // one-launch mma kernel (its routers).
  if (force_kernel == kRouteGemmForceMmaSplit && !route_gemm_two_launch_shape(p.experts, p.k)) {
    return unsupported("the two-launch mma path takes E = 256 or 384 and k = 6");
  }
  const bool split = force_kernel == kRouteGemmForceMmaSplit ||
                     (force_kernel == kRouteGemmAuto && force_routers == 0 &&
                      route_gemm_two_launches(p.n, p.experts, p.k));
  const int groups =
      force_groups > 0 ? force_groups
      : split          ? route_gemm_two_launch_groups(p.n, p.experts)
                       : 0;
  const RouteGemmTiling tl =
      route_gemm_tiling(p.n, p.experts, p.hidden, detail::sm_count(), groups, force_routers);
  if (tl.tiles == 0) return unsupported("no tiling for these shapes");
  const int mtiles = p.n <= 16 ? 1 : p.n <= 32 ? 2 : 4;
  const int chunks_raw = int(ceil_div(p.experts, 128));
  const int route_chunks = chunks_raw <= 2 ? 2 : chunks_raw <= 4 ? chunks_raw : 8;

  RouteGemmArgs a{};
  set_common_args(a, p, x_stride);
  a.counters = reinterpret_cast<unsigned*>(ws);
  a.partials = reinterpret_cast<float*>(after_slots);
  a.logits_stride = int((p.experts + 3) / 4 * 4);
  a.tiles = tl.tiles;
  a.splits = tl.splits;
  a.groups = tl.groups;
  a.wk = tl.wk;
  a.chunks = int(ceil_div(p.hidden, 32));
  a.warp_chunks = tl.warp_chunks;
  a.routers = split ? 0 : tl.routers;

  MOER_RETURN_IF_ERROR_CUDA(MOER_ROUTE_GEMM_DISPATCH_MTILES(mtiles, kMTiles, [&] {
    return MOER_ROUTE_GEMM_DISPATCH_CHUNKS(route_chunks, kChunks, [&] {
      return detail::launch_kernel(
          kernels::route_gemm_kernel<kMTiles, kChunks>, dim3(unsigned(tl.tiles * tl.splits)),
          dim3(unsigned(32 * tl.groups * tl.wk)),
          kernels::route_gemm_smem_bytes(kMTiles, tl.groups, tl.wk, a.experts),
          stream, pdl, a, kOp);
    });
  }));
  if (!split) return Status::success();
  // The route from the partials: the smallest batch of split loads that takes every split
  // after the first in one round trip (kernels::SplitPartials).
  const kernels::RouteTopkArgs ra = route_args(p, a.weights_stride, a.ids_stride);
  const auto route = [&](auto src) {
    src.partials = a.partials;
    src.items = std::int64_t(p.n) * 8 * tl.groups;
    src.splits = tl.splits;
    src.tile_e = 8 * tl.groups;
    return launch_rowwide_route(p.experts, ra, src, stream);
  };
  if (tl.splits <= 5) return route(kernels::SplitPartials<4>{});
  if (tl.splits <= 9) return route(kernels::SplitPartials<8>{});
  return route(kernels::SplitPartials<16>{});
}

}  // namespace cuda
}  // namespace moerouter
