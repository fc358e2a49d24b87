// moerouter: the CUDA backend (built when nvcc is found; MOER_WITH_CUDA is then 1).
//
// Every entry point takes the same params structs as the CPU backend (include/moerouter/
// {route,hash_route,topk}.h) with DEVICE pointers, validates them with validate() plus the
// GPU's own limits before any launch, and then only enqueues work on `stream`: no allocation,
// no host synchronization, so a call can be captured in a CUDA graph. N = 0 is a successful
// no-op. Results are deterministic (the same inputs give the same bits, run after run).
//
// From the same fp32 or bf16 logits, route_logits and hash_route(kFromLogits) return ids and
// weights bit-identical to cpu::route_logits / cpu::hash_route: both evaluate detail/math.h's
// fp32 formulas in the same order. From x and W (route, hash_route(kFromX)) the logits are
// accumulated in a different fp32 order than the CPU's, so results agree with the oracle
// within SPEC.md's GEMM bound rather than bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/status.h"
#include "moerouter/topk.h"

namespace moerouter {
namespace cuda {

/// Largest E of the fused route on the GPU.
constexpr std::int64_t kMaxRouteExperts = 1024;
/// Largest k of the GPU kernels (route, hash route, top-k).
constexpr std::int32_t kMaxK = 32;

/// Fused dense route from logits: sqrt-softplus, + bias, top-k (sorted, ties to the lower id,
/// NaN below every number), renormalize in rank order, scale. logits f32 or bf16 [n, E] with
/// row stride; ids i32 or i64. Returns kUnsupported for E > 1024 or k > 32, the validate()
/// error for bad params; nothing is launched then. pdl: launch with programmatic dependent
/// launch, so the kernel's launch and start overlap the end of the previous kernel on the
/// stream (e.g. the caller's router GEMM); it waits for that kernel before any memory access.
/// Measured on an H100 (Pro; docs/benchmarks.md): behind a kernel that triggers its dependents
/// only at its end, PDL is neutral to slightly faster at every N (N = 1 / 16 / 64 exposed
/// 2.08 / 2.13 / 2.27 us against 2.16 / 2.20 / 2.34); behind one that triggers them at its
/// start (griddepcontrol.launch_dependents early), N = 1 gains (1.82 against 2.15) but N = 16
/// and 64 lose (3.4-3.8 and 5.3 against 2.2 and 2.3): the kernel has nothing to do before the
/// wait, and its blocks, started early, then cost more than a plain launch.
Status route_logits(const RouteLogitsParams& p, cudaStream_t stream = nullptr, bool pdl = false);

/// Hash route with all three weight sources (HashWeights). A bad token id or table entry
/// reads nothing out of bounds: its row gets ids -1 and weights 0 and *p.error_flag (device
/// memory, optional) is set to 1; the call itself still returns success, because the ids are
/// only known on the device. Check the flag with check_error_flag() when you choose to.
/// kFromX computes only the k dot products per token (no full GEMM). k <= 32; kFromX: hidden <
/// 2^27 (kUnsupported otherwise).
/// pdl: launch with programmatic dependent launch, so the kernel starts while the previous
/// kernel on the stream still runs and reads the token ids, the table and (kFromX) the k rows
/// of W it needs before it waits for that kernel; only x (kFromX) or the logits (kFromLogits)
/// may be written by it.
Status hash_route(const HashRouteParams& p, cudaStream_t stream = nullptr, bool pdl = false);

/// Waits for `stream`, reads the device flag a hash_route call set and returns
/// kInvalidTokenId if it is non-zero (success otherwise). This one synchronizes: call it
/// outside the hot path. It does not clear the flag.
Status check_error_flag(const std::int32_t* d_error_flag, cudaStream_t stream = nullptr);

/// Top-k over rows (f32 or bf16 values, row stride, optional per-row lengths), ties to the
/// lower index, NaN last; rows shorter than k pad with -1 / -inf. Sorted with k <= 32: a warp
/// (short rows) or a block (long rows) per row, in registers. k > 32 (up to 2048) or unsorted
/// output: radix select by kernels/radix_topk_stream.cuh (each row streamed once by a cluster
/// of 1..16 blocks, only the candidates above a sampled bound kept on chip, an exact select
/// among them; any row length), or, over rows of at most 8192 (sorted: k <= 1024), by
/// kernels/radix_topk_rows.cuh (the whole row in one block's shared memory); unsorted gives the
/// chosen elements in ascending index order.
/// Returns kUnsupported for k > 2048 (the chosen pairs are sorted in one block's shared memory).
Status topk(const TopkParams& p, cudaStream_t stream = nullptr);

/// Bytes of workspace topk() can use for p's shape; 0 if it uses none. Rows too few and long
/// for one cluster (16 blocks) each to fill the GPU (k > 32 or unsorted output, n <= 4,
/// length >= 262144: decode queries over a long context) are then spread over 32 to 128 blocks
/// each (8192 elements a block at least), which cooperate through the workspace: about
/// n * blocks * max(3 k + 2048, 3072) * 8 bytes (one 262144-long row, k = 512: 0.9 MB).
std::size_t topk_workspace_size(const TopkParams& p);

/// topk() with a workspace of at least topk_workspace_size(p) bytes, 16-byte aligned, zero
/// before its first use (every call leaves it so; only its first 4 n bytes, the rows' arrival
/// counters, are read before they are written, so zeroing those is enough); one call at a time
/// per workspace. Same results as without one. A null workspace, or a shape that needs none:
/// topk(p, stream).
Status topk(const TopkParams& p, void* workspace, std::size_t workspace_bytes,
            cudaStream_t stream = nullptr);

/// topk() through the radix path with a forced configuration, for tests and benchmarks:
/// `cluster` blocks per row (1..16; 16 where the device runs non-portable cluster sizes) of
/// `threads` threads (0: as topk() would choose; else 256 or 512). Needs k > 32 or unsorted
/// output; kUnsupported otherwise.
Status topk_radix_config(const TopkParams& p, int cluster, int threads = 0,
                         cudaStream_t stream = nullptr);

/// topk() through the short-row kernel (kernels/radix_topk_rows.cuh: one block a row, the whole
/// row in its shared memory), for tests and benchmarks: length <= kernels::kRowsMaxLen (8192)
/// and, for sorted output, k <= kernels::kRowsMaxSortedK (1024); kUnsupported otherwise. topk()
/// takes it for every such call.
Status topk_rows(const TopkParams& p, cudaStream_t stream = nullptr);

/// topk() through the radix path in grid mode with `blocks` blocks per row (2..256, 512
/// threads each), for tests and benchmarks; workspace as for topk() with a workspace, of
/// topk_radix_grid_workspace_size(p, blocks) bytes. Needs k > 32 or unsorted output.
std::size_t topk_radix_grid_workspace_size(const TopkParams& p, int blocks);
Status topk_radix_grid(const TopkParams& p, int blocks, void* workspace,
                       std::size_t workspace_bytes, cudaStream_t stream = nullptr);

/// The router GEMM through cuBLASLt: logits fp32 [n, E] = x bf16 [n, H] * W bf16 [E, H]^T,
/// fp32 accumulation. Create one per device and thread (or guard it): the cuBLASLt handle and
/// its workspace are made once by init(); each call only enqueues work (the matmul algorithm
/// of a new shape is chosen once, on the host, and cached).
class RouterGemm {
 public:
  /// Default cuBLASLt workspace (the size NVIDIA recommends for Hopper).
  static constexpr std::size_t kDefaultWorkspaceBytes = std::size_t(32) << 20;

  RouterGemm();
  ~RouterGemm();
  RouterGemm(const RouterGemm&) = delete;
  RouterGemm& operator=(const RouterGemm&) = delete;

  /// Creates the cuBLASLt handle and allocates the workspace on the current device.
  /// Calling it again is a no-op. Not capturable (it allocates).
  Status init(std::size_t workspace_bytes = kDefaultWorkspaceBytes);
  bool initialized() const;

  /// logits[n, E] (row stride logits_stride, 0 = E) = x[n, H] (row stride x_stride, 0 = H)
  /// * W[E, H]^T. kCudaError if cuBLASLt fails or has no algorithm for the shape;
  /// kInvalidArgument for bad sizes; kNullPointer for null pointers or an uninitialized handle.
  Status logits(const void* x, std::int64_t x_stride, const void* w, std::int64_t n,
                std::int64_t hidden, std::int64_t experts, float* logits,
                std::int64_t logits_stride, cudaStream_t stream = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Bytes of device workspace route() needs for up to max_n tokens and E experts (the fp32
/// logits, 256-byte aligned).
std::size_t route_workspace_size(std::int64_t max_n, std::int64_t experts);

/// Dense route from x and W: the router GEMM (cuBLASLt, fp32 logits into `workspace`) then the
/// fused route. workspace: device memory of at least route_workspace_size(p.n, p.experts)
/// bytes (kInvalidArgument otherwise). E <= 1024, k <= 32.
Status route(const RouteParams& p, RouterGemm& gemm, void* workspace,
             std::size_t workspace_bytes, cudaStream_t stream = nullptr);

}  // namespace cuda
}  // namespace moerouter
