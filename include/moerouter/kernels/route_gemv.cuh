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
//            data too, so no fence or counter is needed) and clears each for the next launch
//            once read, computes the exact scores and biased keys in parallel (one word per
//            thread), and selects. One token (E <= 512): every warp's 32 experts give their
//            largest key, T = the largest of those that k of them reach, the (usually k plus a
//            few) keys >= T are gathered and ranked by one warp. Otherwise (or more than 32
//            keys >= T), one warp per row: each lane offers its best remaining expert (from a
//            sorted list of all of its experts where E <= 256, else from its best two and a
//            rescan), k rounds of a warp maximum take the row's k best in rank order. Ties go
//            to the lower expert; the winners are renormalized in rank order and scaled.
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
/// Largest k of route_gemv_kernel (a lane per winner), kRouteGemmMaxK.
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
  /// Null: the last block gathers the words and routes. Else every block writes its logits
  /// here ([n][experts] fp32) and exits; a second launch routes them.
  float* logits;
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

/// Row of the poller's slot i < n * ep (n <= kTok): compares, not a division by ep.
template <int kTok>
__device__ __forceinline__ int slot_row(int i, int ep) {
  int row = 0;
#pragma unroll
  for (int r = 1; r < kTok; ++r) row += i >= r * ep;
  return row;
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
    s_gemv_trace[slot] = detail::global_timer();
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
  // One token: the ranks' candidates and winners (64 packed keys), group maxima and count.
  const std::size_t ranks = n == 1 ? 64 * sizeof(std::uint64_t) + 48 * sizeof(std::uint32_t) : 0;
  return ep * sizeof(float) + std::size_t(n) * ep * (sizeof(std::uint32_t) + sizeof(float)) +
         ranks;
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
  // The poller's buffers, sized by the shape (route_gemv_smem_bytes): small, so that blocks
  // fit beside a preceding kernel's under programmatic dependent launch.
  extern __shared__ float4 gemv_smem[];
  const int ep = (a.experts + 31) & ~31;  // row stride: 32-expert pieces
  float* bias_s = reinterpret_cast<float*>(gemv_smem);                    // [ep], 0 past E
  std::uint32_t* key_s = reinterpret_cast<std::uint32_t*>(bias_s + ep);  // [n][ep]
  float* score_s = reinterpret_cast<float*>(key_s + a.n * ep);           // [n][ep]
  std::uint64_t* sel_s = reinterpret_cast<std::uint64_t*>(score_s + a.n * ep);  // n == 1

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
      if (poller && a.logits == nullptr) {
        route_gemm_detail::copy_bias(bias_s, a.bias, a.experts, ep);
      }
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
    if (e < a.experts && q < a.n) {
      if (a.logits != nullptr) {
        a.logits[std::int64_t(q) * a.experts + e] = sum;
      } else {
        publish(a.slots + std::int64_t(q) * a.experts + e, sum);
      }
    }
  }
  trace(2);
  if (!poller || a.logits != nullptr) {
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
    const int i = t + j * kRouteGemvThreads, row = slot_row<kTok>(i, ep), e = i - row * ep;
    word[j] = 0;
    if (i < slots && e < a.experts) {
      word[j] = load_word(a.slots + std::int64_t(row) * a.experts + e);
    }
  }
  // One token and E <= 512 (a slot a thread): the selection by ranks below; otherwise, or
  // when more than 32 keys reach its threshold, the rounds.
  const bool ranks = kTok == 1 && ep <= kRouteGemvThreads;
  std::uint32_t* gmax_s = reinterpret_cast<std::uint32_t*>(sel_s + 64);  // [32] group maxima
  int* count_s = reinterpret_cast<int*>(gmax_s + 32);                    // candidates
  if (ranks) {
    if (t == 0) *count_s = 0;
    if (t < 32) sel_s[t] = 0;                               // the candidates, 0 = none
    if (t >= ep / 32 && t < 32) gmax_s[t] = 0;              // groups past ep
  }
  std::uint32_t keys[kPoll];  // this thread's slots' keys (0: none)
#pragma unroll
  for (int j = 0; j < kPoll; ++j) {
    const int i = t + j * kRouteGemvThreads, row = slot_row<kTok>(i, ep), e = i - row * ep;
    keys[j] = 0;
    if (i >= slots) continue;
    std::uint32_t key = 0;  // past E: 0, below every expert's key
    float s = 0.0f;
    if (e < a.experts) {
      unsigned long long* p = a.slots + std::int64_t(row) * a.experts + e;
      // (Two loads in flight, issued ~300 cycles apart and each reissued as it returns, were
      // slower on an H200: Pro n = 1 4.80-4.82 -> 4.85-4.88 us, Flash 3.64-3.74 -> 3.76-3.81.)
      while ((word[j] >> 32) == 0) word[j] = load_word(p);
      clear_word(p);  // read: ready for the next launch (which starts after this grid ends)
      s = detail::sqrt_softplus_nobranch(__uint_as_float(unsigned(word[j])));
      key = detail::order_key(s + bias_s[e]) + 1u;  // NaN: 1
    }
    key_s[i] = key;
    score_s[i] = s;
    keys[j] = key;
  }
  // ranks: a warp's slots are experts 32 w .. 32 w + 31 (a group); their largest key.
  const bool has_group = ranks && warp * 32 < slots;  // warp-uniform
  if (has_group) {
    const std::uint32_t m = __reduce_max_sync(detail::kFullMask, keys[0]);
    if (lane == 0) gmax_s[warp] = m;
  }
  __syncthreads();  // key_s, score_s, gmax_s complete
  trace(3);
  if (ranks) {
    // T = the largest group maximum that at least k group maxima reach (0 when fewer than k
    // groups have one: every key is a candidate). At least k keys are >= T, so the row's k
    // best are: the keys >= T are its candidates. Every warp with a group computes T (no
    // barrier): lane g's maximum against all 32 (broadcast 16-byte loads, 0 past ep).
    // (Warp 0 alone gathering the keys >= T in expert order, a ballot a group, with no atomic
    // and no second barrier, was slower on an H200: route_gemm_bench, two runs each, one call,
    // Pro n = 1 4.93-4.94 -> 5.30-5.32 us, Flash 3.67-3.73 -> 4.00-4.02.)
    if (has_group) {
      const std::uint32_t mine = gmax_s[lane];
      int reach[4] = {0, 0, 0, 0};
#pragma unroll
      for (int g = 0; g < 32; g += 4) {
        const uint4 q = *reinterpret_cast<const uint4*>(gmax_s + g);
        reach[(g / 4) % 4] += int(q.x >= mine) + int(q.y >= mine) + int(q.z >= mine) +
                              int(q.w >= mine);
      }
      const bool qualifies = mine != 0u && (reach[0] + reach[1]) + (reach[2] + reach[3]) >= a.k;
      const std::uint32_t thr = __reduce_max_sync(detail::kFullMask, qualifies ? mine : 0u);
      const bool c = keys[0] != 0u && keys[0] >= thr;
      const unsigned bal = __ballot_sync(detail::kFullMask, c);
      int off = 0;
      if (lane == 0 && bal != 0u) off = atomicAdd(count_s, __popc(bal));
      off = __shfl_sync(detail::kFullMask, off, 0) + __popc(bal & ((1u << lane) - 1u));
      if (c && off < 32) {
        sel_s[off] = detail::pack_key_index(keys[0], std::uint32_t(warp * 32 + lane));
      }
    }
    __syncthreads();  // the candidates and their count complete
    trace(4);
  }
  RouteTopkArgs ra{};
  ra.weights = a.weights;
  ra.ids = a.ids;
  ra.weights_stride = a.weights_stride;
  ra.ids_stride = a.ids_stride;
  ra.ids_i64 = a.ids64 != 0;
  // One token: the ranks of the keys >= T (above; gathered in sel_s). Measured on an H100
  // (route_gemm_bench, CUDA graph, cold W, two runs each, against the rounds below in the
  // same call): Pro n = 1 5.25-5.29 us against 5.54-5.55, Flash 3.84-3.86 against 4.14-4.17;
  // behind a kernel with PDL Pro 2.66-2.73 against 3.01-3.05. The same per row for n = 2..4
  // (T of each row by every warp, candidates of four rows) was slower: Pro n = 4 8.26 against
  // 7.14 us, Flash 5.79 against 4.78. So one row takes it; more rows take the rounds:
  // One warp per row, k rounds of a warp maximum of packed keys (key << 32 | ~expert: the
  // lower expert first among equal keys; two REDUX, and every lane sees the winner's key, so
  // no ballot or shuffle sits between two rounds). Each lane offers its best remaining expert:
  //   - up to 8 experts a lane (E <= 256, Flash): all of the lane's keys sorted in registers
  //     first (sort4 and bitonic merges), the winner shifting its list: no rescan ever;
  //   - otherwise (Pro's 12 experts a lane, any k): the lane's best two by one scan, the
  //     winner promoting its second and rescanning (taken experts zeroed in key_s) when it
  //     wins a third time: rare for random rows, one vote a round to find out.
  // Measured on an H100 (route_gemm_bench, CUDA graph, cold W, two runs each), us, n = 1..4:
  // the previous rounds (a 32-bit REDUX, then a ballot, the winner's lane and a shuffle)
  // Flash 4.36-4.39 / 4.63 / 5.33 / 5.48, Pro 5.62-5.67 / 6.21 / 7.06-7.09 / 7.33-7.37;
  // sorted lists Flash 4.34 / 4.28-4.30 / 4.78 / 4.93-4.95, Pro 5.67-5.68 / 6.30 / 6.86-6.90
  // / 7.15-7.18; best two Flash 4.28-4.30 / 4.53-4.55 / 5.26 / 5.40, Pro 5.58 / 6.20-6.24 /
  // 6.80-6.82 / 7.23-7.25; the sorted lists merged by a butterfly of shuffles instead of
  // rounds (every lane ends with the row's 8 best) Flash 4.43-4.46 / 4.60 / 5.06-5.08 / 5.18,
  // Pro 5.92 / 6.51 / 7.28 / 7.59-7.61 (k = 6; in those runs the lists held a lane's best 8,
  // for every E). This choice, in a later call against the previous binary (two runs): Flash
  // 4.19-4.28 / 4.33-4.34 / 4.80 / 4.94-4.96 against 4.38 / 4.62-4.65 / 5.34 / 5.50-5.51, Pro
  // 5.65-5.68 / 6.19-6.22 / 6.96-7.03 / 7.28-7.29 against 5.61 / 6.18-6.21 / 7.02-7.03 /
  // 7.34-7.35 (Pro: no change beyond the run-to-run spread).
  const bool sorted_lists = ep <= detail::kTop8 * 32;
  for (int row = warp; row < a.n; row += kWarps) {
    std::uint32_t* kr = key_s + row * ep;
    const float* sr = score_s + row * ep;
    std::uint64_t mine = 0;  // lane r < k: the key of rank r
    const int count = ranks ? *count_s : 33;
    if (count <= 32) {
      // The candidates ranked among themselves (unique packed keys, 0 past the count), the
      // winners by rank.
      const std::uint64_t c = sel_s[lane];
      int rank = route_detail::rank_among<16>(c, sel_s);
      if (count > 16) rank += route_detail::rank_among<16>(c, sel_s + 16);
      std::uint64_t* won = sel_s + 32;
      if (c != 0 && rank < a.k) won[rank] = c;
      __syncwarp();
      mine = lane < a.k ? won[lane] : 0;
    } else if (sorted_lists) {
      std::uint64_t l[detail::kTop8];
      for (int g = 0; g < ep / 32; g += 4) {
        std::uint64_t q[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int e = lane + 32 * (g + u);
          // Past E the key is 0 (below every expert's, above the padding's 0).
          q[u] = e < ep ? detail::pack_key_index(kr[e], std::uint32_t(e)) : 0;
        }
        detail::sort4(q);
        const std::uint64_t p[detail::kTop8] = {q[0], q[1], q[2], q[3], 0, 0, 0, 0};
        if (g == 0) {
#pragma unroll
          for (int i = 0; i < detail::kTop8; ++i) l[i] = p[i];
        } else {
          detail::merge_top8(l, p);
        }
      }
      trace(4);
      for (int r = 0; r < a.k; ++r) {  // the row has >= k experts (keys >= 1): every round wins
        const std::uint64_t top = detail::warp_max_u64(l[0]);
        if (lane == r) mine = top;
        const bool win = l[0] == top;  // packed keys are unique: one lane
#pragma unroll
        for (int i = 0; i < detail::kTop8 - 1; ++i) l[i] = win ? l[i + 1] : l[i];
        l[detail::kTop8 - 1] = win ? 0 : l[detail::kTop8 - 1];
      }
    } else {
      std::uint64_t b1 = 0, b2 = 0;
      auto scan = [&] {
        b1 = b2 = 0;
        // Four keys loaded before their updates, which are selects (a loop of one load and a
        // branch per key measured ~700 cycles for Pro). Key 0 (taken, or past E): no entry.
        for (int e0 = lane; e0 < ep; e0 += 4 * 32) {
          std::uint32_t kq[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) kq[u] = e0 + 32 * u < ep ? kr[e0 + 32 * u] : 0u;
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            const std::uint64_t pk =
                kq[u] != 0 ? detail::pack_key_index(kq[u], std::uint32_t(e0 + 32 * u)) : 0;
            const bool gt1 = pk > b1, gt2 = pk > b2;
            b2 = gt1 ? b1 : gt2 ? pk : b2;
            b1 = gt1 ? pk : b1;
          }
        }
      };
      scan();
      trace(4);
      bool have2 = true;
      for (int r = 0; r < a.k; ++r) {  // the row has >= k experts (keys >= 1): every round wins
        const std::uint64_t top = detail::warp_max_u64(b1);
        if (lane == r) mine = top;
        const bool win = b1 == top;  // packed keys are unique: one lane
        const bool rescan = win && !have2;
        if (win) kr[detail::packed_index(top)] = 0u;  // taken
        b1 = win ? b2 : b1;
        b2 = win ? 0 : b2;
        have2 = have2 && !win;
        if (__any_sync(detail::kFullMask, rescan)) {
          if (rescan) {
            scan();
            have2 = true;
          }
        }
      }
    }
    trace(5);
    // Lane r < k holds rank r; the k unbiased scores summed in rank order (renormalize's),
    // eight shuffles at a time (lanes past k add +0, which changes no bit).
    const int id = int(detail::packed_index(mine));
    const float sv = lane < a.k ? sr[id] : 0.0f;
    float sum = 0.0f;
    for (int r0 = 0; r0 < a.k; r0 += 8) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = __shfl_sync(detail::kFullMask, sv, r0 + i);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[i];
    }
    if (lane < a.k) {
      detail::store_route_slot(ra, row, lane, id, sv / detail::renorm_denominator(sum) * a.scale);
    }
  }
  trace(6);
  trace(7);
  trace_flush();
}

}  // namespace kernels
}  // namespace moerouter
