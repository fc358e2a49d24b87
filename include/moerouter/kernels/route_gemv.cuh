// moerouter: the one-pass decode router for a few tokens (n <= 4): logits = x W^T, then the
// dense DSV4 route, in one launch, with no split of H and no arrival counter.
//
// For one to four tokens the decode router is a GEMV: W is read once and each of its bytes
// meets at most four x values, so tensor cores buy nothing and every split of H costs a
// round of partial sums through memory. Here each block owns whole experts:
//
//   grid     = ceil(E / kEpb) blocks (kEpb = ceil(E / SMs): Pro 3 experts x 128 blocks,
//              Flash 2 x 128), 512 threads each; the last block is also the poller
//   all      every thread loads its 16-byte units of the block's kEpb W rows into registers
//            (unit c = thread + 512 j of each row), then griddepcontrol.wait (W never depends
//            on the previous kernel, only x does), then x's units and fp32 FMAs in a fixed
//            order; warp sums (a fixed butterfly), then the block's warps in order: the logit
//            of each (token, expert) of the block, which its thread publishes as one 64-bit word
//            (1 << 32 | logit bits) in the workspace, a single-copy-atomic relaxed store
//   poller   copies the bias to shared memory (cp.async, during W's stream); after its own
//            experts it reads the n x E words until each carries its flag (they carry their
//            data too, so no fence or counter is needed), computes the exact scores and biased
//            keys in parallel (one word per thread), and selects with one warp per row: each
//            lane keeps the best two of its experts, k rounds of a warp maximum take the row's
//            k best in rank order (ties to the lower expert); the winners are renormalized in
//            rank order and scaled. Last, it clears the words for the next launch.
//            Measured on an H100 (CUDA graph, cold W), Pro: this selection against block-wide
//            ranks (each warp's k best by all-pairs ranks of 32 keys, then every candidate
//            ranked against the others): n = 1 5.76 against 6.01 us, n = 4 7.59 against 9.84
//            (two runs); and the last block as poller against an extra poller block: 5.76
//            against 6.35 us at n = 1 (same run).
// Only the last block waits, and only for the others, which wait for nothing: any residency
// works.
// Every sum has a fixed order: the result is bit-reproducible. The logits differ from the mma
// kernel's only by summation order.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "moerouter/detail/exact_math.cuh"
#include "moerouter/detail/math.h"
#include "moerouter/detail/warp_select.cuh"
#include "moerouter/kernels/route_gemm.cuh"

namespace moerouter {
namespace kernels {

/// Largest tokens of route_gemv_kernel.
constexpr int kRouteGemvMaxTokens = 4;
/// Largest k of route_gemv_kernel (its per-row buffers of the k winners), kRouteGemmMaxK.
constexpr int kRouteGemvMaxK = 32;
/// Largest experts per block.
constexpr int kRouteGemvMaxExpertsPerBlock = 8;
/// Threads per block.
constexpr int kRouteGemvThreads = 512;
/// Largest n * ceil32(E): the poller keeps every (token, expert) key in shared memory.
constexpr int kRouteGemvMaxSlots = 2048;

/// Parameters of route_gemv_kernel (device pointers; built by cuda::launch_route_gemm).
struct RouteGemvArgs : RouteDecodeArgs {
  unsigned long long* slots;  ///< workspace [n][experts] words, 0 between launches
};

namespace route_gemv_detail {

/// One (token, expert) logit with its flag, as one single-copy-atomic 64-bit store.
__device__ __forceinline__ void publish(unsigned long long* p, float logit) {
  const unsigned long long word = (1ull << 32) | __float_as_uint(logit);
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(word) : "memory");
}
__device__ __forceinline__ unsigned long long load_word(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void clear_word(unsigned long long* p) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(0ull) : "memory");
}

/// The 8 bf16 of a 16-byte unit as fp32 (exact: a bf16 is the high half of its fp32).
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}

#if defined(MOER_ROUTE_GEMV_TRACE)
// Diagnosis builds only: %globaltimer and clock64 at each stage, thread 0 of every block, kept
// in shared memory and written out at the block's end (a global store between stages would
// add its own latency to the next barrier).
__device__ unsigned long long g_gemv_trace[1024][8];
__device__ long long g_gemv_clock[1024][8];
__shared__ unsigned long long s_gemv_trace[8];
__shared__ long long s_gemv_clock[8];
__device__ __forceinline__ void trace(int slot) {
  if (threadIdx.x == 0) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    s_gemv_trace[slot] = t;
    s_gemv_clock[slot] = clock64();
  }
}
__device__ __forceinline__ void trace_flush() {
  if (threadIdx.x == 0) {
    for (int i = 0; i < 8; ++i) {
      g_gemv_trace[blockIdx.x][i] = s_gemv_trace[i];
      g_gemv_clock[blockIdx.x][i] = s_gemv_clock[i];
    }
  }
}
#else
__device__ __forceinline__ void trace(int) {}
__device__ __forceinline__ void trace_flush() {}
#endif

}  // namespace route_gemv_detail

/// Dynamic shared memory of route_gemv_kernel for n tokens, E experts, k.
inline std::size_t route_gemv_smem_bytes(int n, int experts, int /*k*/) {
  const std::size_t ep = std::size_t(experts + 31) / 32 * 32;
  return ep * sizeof(float) + std::size_t(n) * ep * (sizeof(std::uint32_t) + sizeof(float));
}

/// The few-token decode router. kEpb: experts per block; kTok: tokens rounded up to {1, 2, 4}.
/// Dynamic shared memory: route_gemv_smem_bytes(n, E, k).
template <int kEpb, int kTok>
__global__ void __launch_bounds__(kRouteGemvThreads, 1) route_gemv_kernel(const RouteGemvArgs a) {
  using namespace route_gemv_detail;
  constexpr int kWarps = kRouteGemvThreads / 32;
  constexpr int kUnits = kEpb <= 4 ? 2 : 1;  // units per W row a thread holds at once
  constexpr int kPoll = kRouteGemvMaxSlots / kRouteGemvThreads;
  __shared__ float red_s[kWarps][kEpb * kTok];
  __shared__ float top_s[kRouteGemvMaxTokens][kRouteGemvMaxK];
  // The poller's buffers, sized by the shape (route_gemv_smem_bytes): small, so that blocks
  // fit beside a preceding kernel's under programmatic dependent launch.
  extern __shared__ float4 gemv_smem[];
  const int ep = (a.experts + 31) & ~31;  // row stride: 32-expert pieces
  float* bias_s = reinterpret_cast<float*>(gemv_smem);                    // [ep], 0 past E
  std::uint32_t* key_s = reinterpret_cast<std::uint32_t*>(bias_s + ep);  // [n][ep]
  float* score_s = reinterpret_cast<float*>(key_s + a.n * ep);           // [n][ep]

  const int t = int(threadIdx.x), lane = t & 31, warp = t >> 5;
  trace(0);
  const bool poller = blockIdx.x == gridDim.x - 1;

  // ---- stage 1: W into registers, then x, then FMA ------------------------------------------
  const int e0 = int(blockIdx.x) * kEpb;
  const int units = a.hidden / 8;  // 16-byte units per row
  float acc[kEpb][kTok];
#pragma unroll
  for (int e = 0; e < kEpb; ++e) {
#pragma unroll
    for (int q = 0; q < kTok; ++q) acc[e][q] = 0.0f;
  }
  for (int base = 0; base < units; base += kUnits * kRouteGemvThreads) {
    uint4 wv[kEpb][kUnits];
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int c = base + u * kRouteGemvThreads + t;
#pragma unroll
      for (int e = 0; e < kEpb; ++e) {
        wv[e][u] = make_uint4(0, 0, 0, 0);
        if (c < units && e0 + e < a.experts) {
          wv[e][u] =
              route_gemm_detail::load_stream(a.w + std::int64_t(e0 + e) * a.hidden + 8 * c);
        }
      }
    }
    if (base == 0) {
      // The bias is a weight (never written by the previous kernel): copied while W flies.
      if (poller) route_gemm_detail::copy_bias(bias_s, a.bias, a.experts, ep);
      // Only x comes from the previous kernel: W's loads above are already in flight.
      route_gemm_detail::grid_dependency_wait();
    }
    // Every x unit of the batch in flight at once (one L2 round trip), then the FMAs.
    uint4 xv[kUnits][kTok];
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int c = base + u * kRouteGemvThreads + t;
#pragma unroll
      for (int q = 0; q < kTok; ++q) {
        xv[u][q] = make_uint4(0, 0, 0, 0);
        if (c < units && q < a.n) {
          xv[u][q] = route_gemm_detail::load_x(a.x + std::int64_t(q) * a.x_stride + 8 * c);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int c = base + u * kRouteGemvThreads + t;
      if (c < units) {
        float wf[kEpb][8];
#pragma unroll
        for (int e = 0; e < kEpb; ++e) unpack8(wv[e][u], wf[e]);
#pragma unroll
        for (int q = 0; q < kTok; ++q) {
          if (q < a.n) {
            float xf[8];
            unpack8(xv[u][q], xf);
#pragma unroll
            for (int e = 0; e < kEpb; ++e) {
#pragma unroll
              for (int j = 0; j < 8; ++j) acc[e][q] = fmaf(xf[j], wf[e][j], acc[e][q]);
            }
          }
        }
      }
    }
  }
  route_gemm_detail::trigger_dependents();  // past the loads of x
  trace(1);

  // ---- stage 2: the block's logits, published ----------------------------------------------
#pragma unroll
  for (int e = 0; e < kEpb; ++e) {
#pragma unroll
    for (int q = 0; q < kTok; ++q) {
      float v = acc[e][q];
#pragma unroll
      for (int d = 16; d > 0; d /= 2) v += __shfl_xor_sync(detail::kFullMask, v, d);
      if (lane == 0) red_s[warp][e * kTok + q] = v;
    }
  }
  __syncthreads();
  if (t < kEpb * kTok) {
    const int e = e0 + t / kTok, q = t % kTok;
    float sum = red_s[0][t];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) sum += red_s[w][t];
    if (e < a.experts && q < a.n) publish(a.slots + std::int64_t(q) * a.experts + e, sum);
  }
  trace(2);
  if (!poller) {
    trace_flush();
    return;
  }

  // ---- the poller (the last block, after its own experts): gather, score, select, write ----
  route_gemm_detail::wait_bias_copies();
  __syncthreads();  // bias_s complete (each thread waited for its own copies)
  const int slots = a.n * ep;
  unsigned long long word[kPoll];
#pragma unroll
  for (int j = 0; j < kPoll; ++j) {  // every load in flight at once, then the waits
    const int i = t + j * kRouteGemvThreads, row = i / ep, e = i % ep;
    word[j] = 0;
    if (i < slots && e < a.experts) {
      word[j] = load_word(a.slots + std::int64_t(row) * a.experts + e);
    }
  }
#pragma unroll
  for (int j = 0; j < kPoll; ++j) {
    const int i = t + j * kRouteGemvThreads, row = i / ep, e = i % ep;
    if (i >= slots) continue;
    std::uint32_t key = 0;  // past E: 0, below every expert's key
    float s = 0.0f;
    if (e < a.experts) {
      const unsigned long long* p = a.slots + std::int64_t(row) * a.experts + e;
      while ((word[j] >> 32) == 0) word[j] = load_word(p);
      s = detail::sqrt_softplus_nobranch(__uint_as_float(unsigned(word[j])));
      key = detail::order_key(s + bias_s[e]) + 1u;  // NaN: 1
    }
    key_s[i] = key;
    score_s[i] = s;
  }
  __syncthreads();  // key_s, score_s complete
  trace(3);
  // One warp per row: each lane keeps the best two (key, expert) of its experts lane + 32 m
  // (the lower expert first among equal keys); k rounds of a warp maximum (a REDUX; several
  // lanes tie only on equal keys, where the lowest expert wins) take the row's k best in
  // rank order, the winner promoting its second best (rescanning when it has none left).
  for (int row = warp; row < a.n; row += kWarps) {
    std::uint32_t* kr = key_s + row * ep;
    std::uint32_t b1 = 0, b2 = 0;
    int e1 = 0, e2 = 0;
    bool have2 = true;
    auto scan = [&] {
      b1 = b2 = 0;
      // Increasing e (strict > keeps the lowest); four keys loaded before their updates, which
      // are selects: a loop of one load and a branch per key measured ~700 cycles for Pro.
      for (int e0 = lane; e0 < ep; e0 += 4 * 32) {
        std::uint32_t kq[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) kq[u] = e0 + 32 * u < ep ? kr[e0 + 32 * u] : 0u;
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int e = e0 + 32 * u;
          const bool gt1 = kq[u] > b1, gt2 = kq[u] > b2;
          b2 = gt1 ? b1 : gt2 ? kq[u] : b2;
          e2 = gt1 ? e1 : gt2 ? e : e2;
          b1 = gt1 ? kq[u] : b1;
          e1 = gt1 ? e : e1;
        }
      }
      have2 = true;
    };
    scan();
    int my_id = 0;
    for (int r = 0; r < a.k; ++r) {  // the row has >= k experts (keys >= 1): every round wins
      const int w = detail::warp_argmax_lane(b1, unsigned(e1));  // equal keys: lowest expert
      const int id = __shfl_sync(detail::kFullMask, e1, w);
      if (lane == r) my_id = id;
      if (lane == w) {
        kr[e1] = 0;  // taken
        if (have2) {
          b1 = b2;
          e1 = e2;
          have2 = false;
        } else {
          scan();
        }
      }
    }
    float s = 0.0f;
    if (lane < a.k) {
      s = score_s[row * ep + my_id];
      top_s[row][lane] = s;
    }
    __syncwarp();
    if (lane < a.k) {
      const float sum = detail::rank_order_sum(top_s[row], a.k);  // renormalize's order
      RouteTopkArgs ra{};
      ra.weights = a.weights;
      ra.ids = a.ids;
      ra.weights_stride = a.weights_stride;
      ra.ids_stride = a.ids_stride;
      ra.ids_i64 = a.ids64 != 0;
      detail::store_route_slot(ra, row, lane, my_id,
                               s / detail::renorm_denominator(sum) * a.scale);
    }
  }
  trace(6);
  // The words are ready for the next launch (which starts after this grid ends).
#pragma unroll
  for (int j = 0; j < kPoll; ++j) {
    const int i = t + j * kRouteGemvThreads, row = i / ep, e = i % ep;
    if (i < slots && e < a.experts) clear_word(a.slots + std::int64_t(row) * a.experts + e);
  }
  trace_flush();
}

}  // namespace kernels
}  // namespace moerouter
