// moerouter: the decode router (GEMM + route in one launch, or two), for up to 64 tokens.
//
// From x and W, computes SPEC.md's dense route in a single kernel launch: logits = x W^T (bf16
// in, fp32 accumulate on tensor cores), s = sqrt(softplus(logit)), top-k of s + bias, weights
// renormalized in rank order and scaled.
// Nothing goes back through the host, so a call is CUDA-graph capturable, and the result is
// bit-reproducible run after run (every sum has a fixed order). The logits differ from the
// CPU backend's only by fp32 summation order (SPEC.md's GEMM bound).
//
// Two kernels (kernels/route_gemv.cuh, kernels/route_gemm.cuh), chosen by shape:
//   - one-pass (n <= 4): each block owns whole experts (no split of H) and computes
//     their logits with fp32 FMAs; the grid's last block gathers every logit from flag-carrying
//     words in the workspace (which it clears again) and routes each row with one warp;
//   - tiled mma (otherwise): (expert tile x H split) blocks on tensor cores; split partial sums
//     meet in the workspace, and the last blocks to arrive on a counter (the routers, up to 16,
//     which wait for the others) each finish the sums of a few rows and route them; the kernel
//     resets its counters itself. The wait needs the routers co-resident with the blocks still
//     running, which holds on any device or MIG partition where 16 of its blocks fit at once
//     (routers are capped at half the SMs the device reports). Under MPS with an active-thread
//     percentage that leaves the process C < 16 SMs, a launch of more than 4 C tokens can wait
//     forever: cap the routers at C there (launch_route_gemm_tiled's force_routers).
// Where route_gemm_two_launches holds (DSV4's shapes, 2 to 64 tokens) either kernel only
// writes the logits (one-pass) or the partial sums (mma), and a second launch (the fused
// route's block per row, kernels/route_topk.cuh, with programmatic dependent launch) adds the
// sums in the same order and routes: the same bits, without the poller, counter or routers.
//
// Programmatic dependent launch (pdl = true): the kernel streams W before it waits for the
// previous kernel on the stream, so W and bias must not be written by that kernel (only x may).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "moerouter/route.h"
#include "moerouter/status.h"

namespace moerouter {
namespace cuda {

/// Largest n of launch_route_gemm (decode batches; larger n go through the prefill path).
constexpr std::int64_t kRouteGemmMaxTokens = 64;
/// Largest E of launch_route_gemm.
constexpr std::int64_t kRouteGemmMaxExperts = 1024;
/// Largest k of launch_route_gemm.
constexpr std::int32_t kRouteGemmMaxK = 32;
/// Whether launch_route_gemm's two-launch paths (kRouteGemmForceMmaSplit,
/// kRouteGemmForceGemvSplit) take a shape: DSV4's (E = 256 or 384, k = 6), whose fused route
/// has a block-per-row kernel with a thread per expert.
constexpr bool route_gemm_two_launch_shape(std::int64_t experts, std::int32_t k) {
  return (experts == 256 || experts == 384) && k == 6;
}

/// Whether launch_route_gemm runs n tokens as two launches (the one-pass kernel's logits or
/// the mma kernel's partial sums, then the fused route's block per row over them) rather
/// than one (the one-pass kernel's poller, or the mma kernel's routers): DSV4's shapes from 2
/// to 64 tokens. Measured on an H100 80GB HBM3 (bench/route_gemm_bench, cold W, CUDA graph),
/// two launches / one, us: Flash n = 1 / 2 / 3 / 4 3.85 / 3.89 / 4.27 / 4.45 against 3.84 /
/// 4.20 / 4.57 / 4.98, n = 8 / 16 / 32 5.29-5.34 / 5.69-5.73 / 6.38-6.42 against 6.78-6.82 /
/// 6.93-6.99 / 7.38-7.45, n = 48 / 64 6.83-6.88 / 7.17-7.22 against 7.95-8.00 / 8.35-8.37; Pro
/// n = 1 / 2 / 3 / 4 5.44 / 5.65 / 6.12 / 6.24 against 5.30 / 5.97 / 6.76 / 7.15, n = 8 / 16 /
/// 32 7.45-7.49 / 7.55 / 8.91-8.94 against 8.69-8.71 / 8.69-8.70 / 10.16-10.21, n = 48 / 64
/// 10.15-10.19 / 10.58-10.62 against 11.62-11.68 / 11.97-11.99.
constexpr bool route_gemm_two_launches(std::int64_t n, std::int64_t experts, std::int32_t k) {
  return route_gemm_two_launch_shape(experts, k) && n >= 2 && n <= kRouteGemmMaxTokens;
}

/// Largest batch for which the Router (and the torch op `route`) dispatches a dense layer of
/// `experts` x `hidden` with top-k `k` to launch_route_gemm rather than the prefill path
/// (cuBLASLt GEMM + fused route); pdl: the launches overlap the previous kernel (programmatic
/// dependent launch; the prefill path's GEMM cannot), so what counts is the time exposed
/// behind it. Measured on an H100 80GB HBM3 (bench/route_gemm_bench, cold W, CUDA graph;
/// docs/benchmarks.md): DSV4-Flash's W (256 x 4096, and anything as small) at every decode
/// batch where the tiled path takes two launches (5.3-6.4 us alone at n = 8..32 against the
/// prefill path's 7.4-7.7, 6.8-6.9 / 7.2 at n = 48 / 64 against 7.7-7.8 / 7.6), else up to 32
/// (the one-launch kernel's 8.4 against 7.6 at 64); DSV4-Pro's (384 x 7168, and anything
/// larger) where the tiled path takes two launches up to 16 alone (7.45-7.49 / 7.55 us at n =
/// 8 / 16 against 8.34-8.41 / 8.41-8.47; 8.56-8.94 against 8.28-8.57 at 24 and 32) and up to
/// 64 with PDL (exposed behind a kernel 4.0-7.6 us at n = 8..64 against the prefill path's
/// 8.2-8.9), else up to 4, the one-pass kernel's range (5.3-7.2 us against 8.1-8.3).
constexpr std::int64_t route_gemm_crossover_tokens(std::int64_t experts, std::int64_t hidden,
                                                   std::int32_t k, bool pdl = false) {
  const bool small = experts * hidden <= std::int64_t(256) * 4096;
  if (route_gemm_two_launch_shape(experts, k)) return small || pdl ? kRouteGemmMaxTokens : 16;
  return small ? 32 : 4;
}

/// Bytes of device workspace that launch_route_gemm needs for up to `max_n` tokens (1..64) of
/// `experts` experts (1..1024): a 1 KiB header (arrival counters), the one-pass kernel's flag
/// words (4 * E * 8 bytes) and room for the H splits' partial sums
/// (about 128 * max_n * (E + 128) bytes). Returns 0 for arguments outside those ranges.
///
/// The workspace must be zero-filled once after allocation (cudaMemset); every launch leaves
/// its counters and flag words at zero again, so it can be reused by later launches and graph
/// replays on the same stream. Two launches that may run at the same time need separate
/// workspaces. A launch that did not complete (a CUDA error in the stream) may leave them
/// set: zero the workspace again before reusing it.
std::size_t route_gemm_workspace_size(std::int64_t max_n, std::int64_t experts);

/// The leading bytes of that workspace that must be zero before a launch (the arrival counters
/// and the one-pass kernel's flag words; the rest is written before it is read): a caller that
/// allocates a fresh workspace per call zeroes only these. 0 for E outside 1..1024.
std::size_t route_gemm_workspace_zeroed_bytes(std::int64_t experts);

/// Groups per expert tile (8 experts each) of the two-launch mma path
/// (route_gemm_two_launches, n >= 5) for n tokens of E experts; 0 (route_gemm_tiling's rule)
/// elsewhere. Measured on an H100 80GB HBM3 at DSV4's shapes (bench/route_gemm_bench
/// --sweep-split, cold W, CUDA graph, blocks of at most 12 warps; groups 1, 2, 3, 4, 6, 8, 12
/// and 16 timed alone and exposed behind a preceding kernel with PDL, us): 3 (Pro 16 tiles x
/// 8 splits, Flash 11 x 12) is best or within 0.1 us of the best alone at every n, and within
/// 0.15 of the best exposed: Pro n = 8 / 16 / 32 / 64 7.49 / 7.55 / 8.84 / 10.53 alone (the
/// best: 7.47 / 7.51 / 8.84 / 10.53), 4.07 / 4.51 / 6.19 / 7.52 exposed; Flash 5.33 / 5.69 /
/// 6.39 / 7.17 (5.33 / 5.58 / 6.33 / 7.17), 3.64 / 3.92 / 4.76 / 5.52 exposed. More groups a
/// tile read x fewer times (each tile reads all of it) and leave more H splits to add.
constexpr int route_gemm_two_launch_groups(std::int64_t n, std::int64_t experts) {
  return n >= 5 && n <= kRouteGemmMaxTokens && (experts == 256 || experts == 384) ? 3 : 0;
}

/// The decode kernel's grid for a shape: `tiles` expert tiles of 8 * `groups` experts, each
/// split over `splits` blocks along H, `wk` warps per 8-expert group (block = groups * wk
/// warps), at most `warp_chunks` 32-wide H chunks per warp; `routers`: the last blocks to
/// finish, which sum the splits of 4 rows at a time each and route them. tiles == 0: no tiling
/// fits.
struct RouteGemmTiling {
  int groups = 0, tiles = 0, splits = 0, wk = 0, warp_chunks = 0, routers = 0;
};

/// The tiling launch_route_gemm uses on a device of `sms` multiprocessors. For benchmarks and
/// tests: force_groups > 0 forces that many groups per tile, force_routers > 0 that many
/// routers (at most n, the grid, 16 and half the SMs); 0: the measured rule.
RouteGemmTiling route_gemm_tiling(std::int64_t n, std::int64_t experts, std::int64_t hidden,
                                  int sms, int force_groups = 0, int force_routers = 0);

/// The fused decode route of p.n <= 64 tokens in one launch on `stream` (device pointers).
/// x bf16 [n, H] with row stride p.x_stride, W bf16 [E, H] contiguous, bias fp32 [E] or null,
/// outputs weights fp32 [n, k] and ids i32/i64 [n, k] with their row strides, ids sorted by
/// s + bias descending (ties to the lower id, NaN below every number).
///
/// Checks, in order, before any launch: validate(p) (its error as is); then kUnsupported for
/// n > 64, E > 1024, k > 32, H not a multiple of 8, H >= 2^31, x or W not 16-byte aligned, or
/// x_stride not a multiple of 8; kInvalidArgument for a null or misaligned workspace, one
/// smaller than route_gemm_workspace_size(n, E), or a pointer that is not memory of the
/// current device. n = 0 is a successful no-op. kCudaError when the launch fails.
///
/// No allocation and no host synchronization. With `pdl`, the launch carries
/// cudaLaunchAttributeProgrammaticStreamSerialization (see the file comment).
Status launch_route_gemm(const RouteParams& p, void* workspace, std::size_t workspace_bytes,
                         cudaStream_t stream, bool pdl = false);

/// launch_route_gemm on a workspace none of whose bytes need be zero (a fresh allocation,
/// e.g. from a caching allocator, without the memset of route_gemm_workspace_zeroed_bytes):
/// only the two-launch forms, which read no workspace byte that the same call did not write
/// first. DSV4's shapes (route_gemm_two_launch_shape: E = 256 or 384, k = 6) at every n = 1..64:
/// n >= 2 as launch_route_gemm runs them; n = 1 as the one-pass kernel's logits then the route
/// (the mma kernel's partial sums then the route where the one-pass kernel does not apply)
/// instead of its poller, whose flag words must start at zero. The same results, bit for bit,
/// as launch_route_gemm. Measured on an H100 (bench/route_gemm_bench, CUDA graph, cold W): Pro
/// n = 1 5.44-5.50 us against the poller's 5.25-5.30; through the torch op `route`, which
/// allocates its workspace per call, this instead of a memset (a fill kernel) and
/// launch_route_gemm: Pro N=1 5.6 us against 6.8, Flash N=1 4.0 against 5.3, Flash N=64 7.5
/// against 8.7 (bench/python_bench.py, CUDA graph, both builds in one call).
/// kUnsupported for other shapes (zero the leading bytes and call launch_route_gemm); every
/// other check and error as launch_route_gemm.
Status launch_route_gemm_fresh(const RouteParams& p, void* workspace,
                               std::size_t workspace_bytes, cudaStream_t stream,
                               bool pdl = false);

/// Experts per block of the one-pass kernel (no H split: each block owns whole experts and the
/// grid's last block gathers the logits and routes) for n tokens on a device of `sms`
/// multiprocessors: ceil(E / sms) rounded to 1, 2, 3, 4 or 8; 0 where that kernel does not
/// apply (n > 4, n * ceil32(E) > 2048 or more than 8 experts per SM).
int route_gemv_experts_per_block(std::int64_t n, std::int64_t experts, int k, int sms);

/// Kernel choice of launch_route_gemm_tiled.
constexpr int kRouteGemmAuto = 0;  ///< the one-pass kernel where it applies, else the mma one
constexpr int kRouteGemmForceMma = 1;   ///< the tiled mma kernel
constexpr int kRouteGemmForceGemv = 2;  ///< the one-pass kernel (kUnsupported where it cannot)
/// The tiled mma kernel's GEMM alone (its H-split partial sums into the workspace), then the
/// fused route's block-per-row kernel over those sums, launched with programmatic dependent
/// launch: two launches, the same bits as the one-launch mma kernel. DSV4 shapes only (E = 256
/// or 384, k = 6); kUnsupported elsewhere.
constexpr int kRouteGemmForceMmaSplit = 3;
/// The one-pass kernel's logits alone (every block writes its experts' logits to the
/// workspace), then the fused route's block-per-row kernel over them with programmatic
/// dependent launch. Where both the one-pass kernel and DSV4's shapes apply; kUnsupported
/// elsewhere.
constexpr int kRouteGemmForceGemvSplit = 4;

/// launch_route_gemm with route_gemm_tiling's force_groups / force_routers (benchmarks and
/// tests sweep them; 0, 0 is launch_route_gemm; either > 0 implies the mma kernel, and
/// force_routers > 0 its one-launch form) and a
/// kernel choice (force_kernel: kRouteGemmAuto, kRouteGemmForceMma, kRouteGemmForceGemv,
/// kRouteGemmForceMmaSplit or kRouteGemmForceGemvSplit).
Status launch_route_gemm_tiled(const RouteParams& p, void* workspace,
                               std::size_t workspace_bytes, cudaStream_t stream, bool pdl,
                               int force_groups, int force_routers = 0,
                               int force_kernel = kRouteGemmAuto);

}  // namespace cuda
}  // namespace moerouter
