// How fast the SMs take in a top-k's rows, by the ways a kernel can read them (issue 7's
// 64x65536 shape: two blocks a row, a 32768-element fp32 chunk a block, as the staged top-k
// kernel splits it). Each way reads the same bytes, cold (each launch follows a read of a 3x-L2
// buffer; that read alone is subtracted), in a CUDA graph:
//   ldg_coalesced    16-byte loads into registers, a warp's load 512 contiguous bytes, all of a
//                    thread's 16 loads in flight at once;
//   ldg_consecutive  the same loads, but each thread's 16 consecutive elements a tile (the
//                    staged kernel's element-to-thread layout: a warp's load spans 2 KB);
//   tma_bulk         four 32 KB bulk copies into shared memory, an mbarrier each (the staged
//                    kernel's copies);
//   cp_async         16-byte cp.async copies into shared memory, coalesced.
//
//   stream_read_bench [--rows R] [--len L]   (L a multiple of 32768; default 64 x 65536)
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda/ptx>

#include "bench_util.h"

namespace {

constexpr int kThreads = 512;
constexpr int kTileWords = 8192;  // a tile: 16 fp32 a thread
constexpr int kTiles = 4;         // a block's chunk: 32768 elements, 128 KB
constexpr int kChunkWords = kTiles * kTileWords;
constexpr int kPer = kChunkWords / 4 / kThreads;  // 16-byte units a thread: 16

__device__ __forceinline__ unsigned fold(const uint4& v) { return v.x ^ v.y ^ v.z ^ v.w; }

// Every kernel folds what it read into out[block] (never all zero for the bench's data).
__device__ __forceinline__ void finish(unsigned acc, unsigned* out) {
  acc = __reduce_xor_sync(0xffffffffu, acc);
  if ((threadIdx.x & 31) == 0) atomicXor(out + blockIdx.x, acc);
}

template <bool kCoalesced>
__global__ void __launch_bounds__(kThreads, 1) ldg_kernel(const uint4* src, unsigned* out) {
  const uint4* chunk = src + std::size_t(blockIdx.x) * (kChunkWords / 4);
  uint4 v[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    // Coalesced: unit u of thread t is chunk unit t + 512 u. Consecutive: tile u / 4, the
    // thread's 64 bytes at 64 t, their piece u % 4.
    const int i = kCoalesced ? int(threadIdx.x) + kThreads * u
                             : (u / 4) * (kTileWords / 4) + 4 * int(threadIdx.x) + u % 4;
    v[u] = __ldcs(chunk + i);
  }
  unsigned acc = 0;
#pragma unroll
  for (int u = 0; u < kPer; ++u) acc ^= fold(v[u]);
  finish(acc, out);
}

__global__ void __launch_bounds__(kThreads, 1) tma_kernel(const std::uint32_t* src, unsigned* out) {
  extern __shared__ __align__(128) std::uint32_t stage[];
  __shared__ __align__(8) std::uint64_t bar[kTiles];
  const std::uint32_t* chunk = src + std::size_t(blockIdx.x) * kChunkWords;
  if (threadIdx.x == 0) {
    for (int t = 0; t < kTiles; ++t) ::cuda::ptx::mbarrier_init(&bar[t], 1);
    ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);
    for (int t = 0; t < kTiles; ++t) {
      (void)::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                                   ::cuda::ptx::space_shared, &bar[t],
                                                   unsigned(kTileWords) * 4u);
      ::cuda::ptx::cp_async_bulk(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                 stage + t * kTileWords, chunk + t * kTileWords,
                                 unsigned(kTileWords) * 4u, &bar[t]);
    }
  }
  __syncthreads();  // the barriers initialized before anyone waits
  unsigned acc = 0;
  for (int t = 0; t < kTiles; ++t) {
    while (!::cuda::ptx::mbarrier_try_wait_parity(&bar[t], 0u)) {
    }
    const uint4* tile = reinterpret_cast<const uint4*>(stage + t * kTileWords);
#pragma unroll
    for (int j = 0; j < kTileWords / 4 / kThreads; ++j)
      acc ^= fold(tile[threadIdx.x + kThreads * j]);
  }
  finish(acc, out);
}

__global__ void __launch_bounds__(kThreads, 1) cp_async_kernel(const uint4* src, unsigned* out) {
  extern __shared__ __align__(128) uint4 stage4[];
  const uint4* chunk = src + std::size_t(blockIdx.x) * (kChunkWords / 4);
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int i = int(threadIdx.x) + kThreads * u;
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(stage4 + i));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(chunk + i) : "memory");
  }
  asm volatile("cp.async.wait_all;" ::: "memory");
  unsigned acc = 0;  // each thread reads back only its own copies: no barrier needed
#pragma unroll
  for (int u = 0; u < kPer; ++u) acc ^= fold(stage4[threadIdx.x + kThreads * u]);
  finish(acc, out);
}

}  // namespace

int main(int argc, char** argv) {
  long rows = 64, len = 65536;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rows") && i + 1 < argc)
      rows = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--len") && i + 1 < argc)
      len = std::atol(argv[++i]);
    else {
      std::fprintf(stderr, "usage: stream_read_bench [--rows R] [--len L]\n");
      return 2;
    }
  }
  if (rows < 1 || len < kChunkWords || len % kChunkWords != 0) {
    std::fprintf(stderr, "stream_read_bench: need rows >= 1 and len a multiple of %d\n",
                 kChunkWords);
    return 2;
  }
  const std::size_t words = std::size_t(rows) * std::size_t(len);
  const unsigned blocks = unsigned(words / kChunkWords);
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::uint32_t* src = nullptr;
  unsigned* out = nullptr;
  int* sink = nullptr;
  int4* flush = nullptr;
  const std::size_t flush_count = 3 * std::size_t(prop.l2CacheSize) / sizeof(int4);
  CK(cudaMalloc(&src, words * 4));
  CK(cudaMemset(src, 0x5a, words * 4));
  CK(cudaMalloc(&out, blocks * sizeof(unsigned)));
  CK(cudaMalloc(&sink, sizeof(int)));
  CK(cudaMalloc(&flush, flush_count * sizeof(int4)));
  CK(cudaMemset(flush, 1, flush_count * sizeof(int4)));
  const int smem = kChunkWords * 4;
  CK(cudaFuncSetAttribute(tma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CK(cudaFuncSetAttribute(cp_async_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  constexpr int kLaunches = 10;
  const auto flush_l2 = [&](cudaStream_t st) {
    moerouter_bench::flush_kernel<<<2 * prop.multiProcessorCount, 512, 0, st>>>(flush, flush_count,
                                                                                sink);
  };
  const double flush_us = moerouter_bench::graph_us(s, [&](cudaStream_t st) {
    for (int i = 0; i < kLaunches; ++i) flush_l2(st);
  });
  const auto time_one = [&](const char* name, auto launch) {
    const double us = (moerouter_bench::graph_us(s,
                                                 [&](cudaStream_t st) {
                                                   for (int i = 0; i < kLaunches; ++i) {
                                                     flush_l2(st);
                                                     launch(st);
                                                   }
                                                 }) -
                       flush_us) /
                      kLaunches;
    std::printf("%-16s %8.2f us %8.0f GB/s\n", name, us, double(words) * 4 / (us * 1e3));
  };
  std::printf("device: %s, %d SMs; %ld x %ld fp32, %u blocks of %d threads, 128 KB each\n",
              prop.name, prop.multiProcessorCount, rows, len, blocks, kThreads);
  const uint4* src4 = reinterpret_cast<const uint4*>(src);
  time_one("ldg_coalesced",
           [&](cudaStream_t st) { ldg_kernel<true><<<blocks, kThreads, 0, st>>>(src4, out); });
  time_one("ldg_consecutive",
           [&](cudaStream_t st) { ldg_kernel<false><<<blocks, kThreads, 0, st>>>(src4, out); });
  time_one("tma_bulk",
           [&](cudaStream_t st) { tma_kernel<<<blocks, kThreads, smem, st>>>(src, out); });
  time_one("cp_async",
           [&](cudaStream_t st) { cp_async_kernel<<<blocks, kThreads, smem, st>>>(src4, out); });
  CK(cudaGetLastError());
  CK(cudaFree(src));
  CK(cudaFree(out));
  CK(cudaFree(sink));
  CK(cudaFree(flush));
  return 0;
}
