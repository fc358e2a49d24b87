// Launcher of the top-k primitive: k <= 32 sorted by the warp/block kernel (kernels/topk.cuh),
// larger k (up to 2048) and unsorted output by the streaming radix select
// (kernels/radix_topk_stream.cuh: one block or a cluster of blocks per row, or with a caller's
// workspace 32..128 blocks per row for few long rows, configured by shape from measurements).
#include <algorithm>
#include <string>

#include "common.cuh"
#include "moerouter/cuda.h"
#include "moerouter/detail/dispatch.cuh"
#include "moerouter/detail/params.h"
#include "moerouter/kernels/radix_topk.cuh"
#include "moerouter/kernels/radix_topk_rows.cuh"
#include "moerouter/kernels/radix_topk_stream.cuh"
#include "moerouter/kernels/topk.cuh"

namespace moerouter {
namespace cuda {
namespace {

// Rows longer than this get a 16-warp block each; shorter ones a warp each.
constexpr std::int64_t kLongRow = 2048;

// Largest cluster (blocks per row) `kernel` runs on the current device with `threads` threads
// and `smem` bytes of dynamic shared memory: 16 where non-portable cluster sizes fit, else 8.
// Also allows the non-portable sizes on the kernel.
template <typename Kernel>
int probe_max_cluster(Kernel kernel, int threads, std::size_t smem) {
  int best = 8;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
      cudaSuccess) {
    cudaLaunchConfig_t cfg{};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 16;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3(16);
    cfg.blockDim = dim3(unsigned(threads));
    cfg.dynamicSmemBytes = smem;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters > 0) {
      best = 16;
    }
  }
  (void)cudaGetLastError();
  return best;
}

// The streaming kernel: its shared memory limit (for the largest k, sorted) set once per device,
// and its largest cluster there (grid mode, kGrid: no clusters, 1).
template <typename T, int kThreads, bool kGrid = false, bool kAlone = false, bool kSearch = false,
          bool kStage = false>
int stream_setup() {
  return detail::per_device(0, 8, [](int) {
    const auto kernel =
        kernels::radix_topk_stream_kernel<T, kThreads, kGrid, kAlone, kSearch, kStage>;
    const std::size_t smem =
        kernels::stream_launch_smem_bytes(kernels::kRadixMaxK, true, 1 << 30, kStage, sizeof(T));
    (void)cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    return kGrid ? 1 : probe_max_cluster(kernel, kThreads, smem);
  });
}

// Blocks per row of the streaming kernel, a power of two: at most one block an SM over all rows,
// at least 8192 elements a block for a single row and 16384 for several, at most the device's
// largest cluster. Measured on an H100 (us, unsorted fp32, final kernel): 64x65536 2 blocks
// 18.5, 4 blocks 24.1; 8x131072 8 blocks 16.1, 16 blocks 19.8; 1x65536 4 / 8 / 16 blocks 13.3 /
// 12.2 / 13.6; 1x262144 8 / 16 blocks 17.2 / 15.7. Every extra block adds to the cluster's
// barriers and to the lists merged into block 0.
int stream_cluster(std::int64_t n, std::int64_t length, int max_c) {
  const std::int64_t by_rows =
      std::max<std::int64_t>(1, detail::sm_count() / std::max<std::int64_t>(n, 1));
  const std::int64_t by_len = std::max<std::int64_t>(1, length / (n == 1 ? 8192 : 16384));
  const std::int64_t c = std::min<std::int64_t>({by_rows, by_len, std::int64_t(max_c)});
  int p = 1;
  while (2 * p <= c) p *= 2;
  return p;
}

// Grid mode (a row's blocks cooperate through a workspace, no cluster) where one cluster per
// row leaves most SMs idle: blocks per row a power of two, at most kGridMaxTotal over all rows
// and at least one tile (8192 elements: a block's chunk is whole tiles) a block; only used
// above the largest cluster. Chosen from the shape alone, so that the workspace size needs no
// device.
constexpr int kGridMaxTotal = 128;
constexpr std::int64_t kGridMinChunk = 512 * kernels::kStreamPer;
constexpr int kGridMaxBlocks = 256;  // topk_radix_grid's limit (s_off in the kernel: <= 512)

int grid_blocks(const TopkParams& p) {
  if ((p.k <= kMaxK && p.sorted) || p.n <= 0 || p.n > kGridMaxTotal) return 0;
  const std::int64_t c = std::min<std::int64_t>(kGridMaxTotal / p.n, p.length / kGridMinChunk);
  int b = 1;
  while (2 * b <= c) b *= 2;
  return b > kernels::kClusterMaxBlocks ? b : 0;
}

// Threads of a streaming block: 256 where rows are many and each has one block (four blocks an
// SM overlap more rows' latency chains), else 512. Measured on an H100 (unsorted fp32, us, 512 /
// 256 / 128 threads): 1024x8192 42.1 / 30.5 / 38.2; 4096x16384 193 / 144 / 158.
int stream_threads(std::int64_t n, int cluster) {
  return cluster == 1 && n >= 2 * detail::sm_count() ? 256 : 512;
}

// The kernel's tuning by launch: kAlone (one block an SM) for bf16 where the grid has at most
// one block an SM (f32 does not spill at two blocks an SM), and the L2 prefetch of the chunks
// where blocks are that few and the rows fit in half the L2. Measured on an H100 (unsorted us,
// radix_topk_bench --quick, same device call): prefetch f32 64x65536 17.0 -> 16.3, 4x1048576
// 25.4 -> 24.0, 8x131072 14.2 -> 13.8; bf16 64x65536 16.2 -> 14.9 and 4x1048576 23.8 -> 22.3
// with both; forced on where the rows exceed the L2, 4096x16384 f32 136.9 -> 149.4 (the
// prefetched rows evict each other). kAlone's f32 variant with the next tile's loads in flight:
// 64x65536 16.3 -> 16.7 (the second tile's loads delay the sample's), not used.
// kSearch (the bound by a bit-by-bit search, kernels/radix_topk_stream.cuh step 1) where blocks
// are that few, a row has four or more and a block's chunk is at most two tiles: there the
// bound's latency is the kernel's. Measured on an H100 against the histograms (radix_topk_bench
// --quick, unsorted us, two runs each, one call): fp32 1x262144 10.1-10.2 -> 9.5-9.7, 1x65536
// 9.3-9.4 -> 9.0-9.1, 8x131072 12.1-12.3 -> 11.5-11.7, 1x1048576 15.9-16.0 -> 14.0-14.1,
// 2x524288 17.8 -> 16.1-16.2; bf16 1x262144 9.5 -> 8.6-8.9, 1x1048576 14.0 -> 12.1-12.2;
// ascending rows (f32 1x262144, whose histogram bound took the exact fallback) 121.8 -> 13.6.
// Not used: chunks of four tiles (4x1048576 20.8 -> 21.8-22.3), two-block clusters (64x65536
// unchanged), four blocks an SM (1024x8192 26.6 -> 27.1, 4096x16384 126.4 -> 128.2; their issue
// slots are the limit).
// kStage (where the L2 prefetch would be asked for, clusters of two or more blocks without
// kSearch, rows sampled in registers: at most 4 x 512 sampled elements, and chunks of 1, 2 or
// 4 whole tiles): each block's chunk copied into shared memory from the kernel's start (f32
// and, with kAlone, bf16). Measured on an H100 (radix_topk_bench --quick, us, two runs each,
// one call): f32 64x65536 unsorted 15.1 -> 14.2-14.3, sorted 17.6-17.7 -> 16.7-16.8; every
// other row unchanged; with the warps' totals summed by four warp reductions instead of a loop
// over the warps (three runs each, one call): 14.1 -> 13.8-13.9, sorted 16.6-16.7 -> 16.4-16.5.
// bf16 64x65536 (three runs each, one call): 12.3 -> 10.6-10.7, sorted 14.8 -> 13.1. Stamps
// of a probe build (64x65536, cold rows, us from the first block's start): the prefetched
// stream's last tile was collected at 9.3 (the sample arrived at 2.5, the prefetch after it);
// the staged chunks landed at 7.1 (their copies issued at 1.3) and were collected by 8.4. A
// plain kernel reads the same 16 MB in 6.0-6.4 us from its start. Collecting the four staged
// tiles only once all had landed (one 64-bit mask a thread) took until 9.4: tile by tile as
// they land it is. Where no row has its own length and every row's chunks are staged
// (stream_uniform_stage_tiles), the launch passes that geometry (a.stage_tiles, a.stage_step)
// so that the sample's loads and the copies are the kernel's first work, and the select's first
// histogram is counted with the list: (three runs each, one call) f32 64x65536 13.8-14.0 ->
// 13.0, sorted 16.4-16.5 -> 16.5-16.8; bf16 10.5 -> 10.0, sorted 12.9-13.0 -> 12.5.
struct StreamTuning {
  bool alone;
  bool l2_prefetch;
  bool search;  // kSearch: rows few and of several blocks, the bound's latency is the kernel's
  bool stage;   // kStage
};

template <typename T>
StreamTuning stream_tuning(const kernels::RadixTopkArgs& r, int per_row, int threads) {
  const bool few = r.n * per_row <= detail::sm_count();
  const double bytes = double(r.n) * double(r.length) * double(sizeof(T));
  const std::int64_t chunk = (r.length + per_row - 1) / per_row;
  const bool l2_prefetch = few && bytes <= 0.5 * double(detail::l2_bytes());
  const bool search = few && per_row >= 4 && chunk <= 2 * 512 * kernels::kStreamPer;
  const std::int64_t tiles = kernels::stream_chunk_tiles(r.length, per_row);
  const bool stage = threads == 512 && l2_prefetch && !search && per_row > 1 &&
                     kernels::stream_sample_in_registers(int(r.length)) &&
                     (tiles == 1 || tiles == 2 || tiles == 4);
  return {few && sizeof(T) == 2, l2_prefetch, search, stage};
}

// One variant of the streaming kernel, per_row blocks a row (a cluster of that many, or grid
// mode's blocks): its shared-memory limit set once per device, the cluster size checked.
template <typename T, int kThreads, bool kGrid, bool kAlone, bool kSearch = false,
          bool kStage = false>
Status launch_stream_variant(const kernels::RadixTopkArgs& r, int per_row, bool l2_prefetch,
                             cudaStream_t stream) {
  const int max_cluster = stream_setup<T, kThreads, kGrid, kAlone, kSearch, kStage>();
  if (!kGrid && per_row > max_cluster) {
    return Status(StatusCode::kUnsupported,
                  "topk: this device does not run clusters of " + std::to_string(per_row));
  }
  if (r.n * per_row > 0x7fffffffLL) {
    return Status(StatusCode::kUnsupported, "topk: n too large, got " + std::to_string(r.n));
  }
  kernels::RadixTopkArgs args = r;
  args.l2_prefetch = l2_prefetch;
  if constexpr (kStage) {
    args.stage_offset = unsigned(kernels::stream_stage_offset(r.k, r.sorted, r.length));
    const bool aligned = reinterpret_cast<std::uintptr_t>(r.values) % 16 == 0 &&
                         (r.values_stride * std::int64_t(sizeof(T))) % 16 == 0;
    args.stage_tiles =
        !r.lengths && aligned ? kernels::stream_uniform_stage_tiles(r.length, per_row) : 0;
    if (args.stage_tiles > 0) {
      const int len = int(r.length);
      args.stage_step =
          kernels::stream_sample_step(kernels::stream_stage_sample_runs(len, sizeof(T)), len);
    }
  }
  const std::size_t smem =
      kernels::stream_launch_smem_bytes(r.k, r.sorted, r.length, kStage, sizeof(T));
  return detail::launch_kernel(
      kernels::radix_topk_stream_kernel<T, kThreads, kGrid, kAlone, kSearch, kStage>,
      dim3(unsigned(r.n * per_row)), dim3(kThreads), smem, stream, false, args,
      kGrid ? "topk: radix_topk_stream_kernel (grid) launch"
            : "topk: radix_topk_stream_kernel launch",
      kGrid ? 0 : per_row);
}

// The streaming kernel with stream_tuning's choices for this launch.
template <typename T, int kThreads, bool kGrid>
Status launch_stream_tuned(const kernels::RadixTopkArgs& r, int per_row, cudaStream_t stream) {
  const StreamTuning t = stream_tuning<T>(r, per_row, kThreads);
  if constexpr (kThreads == 512 && !kGrid) {
    // kAlone for both types: the stage's shared memory (>= 160 KB) allows one block an SM
    // anyway, and the f32 kernel's registers, held to 64 at two blocks an SM, spilled (30 / 76
    // bytes stored / loaded; 109 registers and no spills at one). Measured on an H100 with
    // block 1's list pushed in its collect (radix_topk_bench --quick 64x65536, three runs each,
    // one call): f32 sorted 15.6-15.7 -> 15.1-15.2 us, unsorted 12.8-12.9 -> 12.6-12.7.
    if (t.stage) {
      return launch_stream_variant<T, 512, false, true, false, true>(r, per_row, t.l2_prefetch,
                                                                     stream);
    }
  }
  if constexpr (sizeof(T) == 2 && kThreads == 512) {
    if (t.alone) {  // bf16 at one block an SM, with or without the searched bound
      return t.search
                 ? launch_stream_variant<T, 512, kGrid, true, true>(r, per_row, t.l2_prefetch,
                                                                    stream)
                 : launch_stream_variant<T, 512, kGrid, true>(r, per_row, t.l2_prefetch, stream);
    }
  }
  if constexpr (kThreads == 512) {
    if (t.search) {
      return launch_stream_variant<T, 512, kGrid, false, true>(r, per_row, t.l2_prefetch, stream);
    }
  }
  return launch_stream_variant<T, kThreads, kGrid, false>(r, per_row, t.l2_prefetch, stream);
}

template <typename T>
Status launch_stream(const kernels::RadixTopkArgs& r, int cluster, int threads,
                     cudaStream_t stream) {
  return threads == 256 ? launch_stream_tuned<T, 256, false>(r, cluster, stream)
                        : launch_stream_tuned<T, 512, false>(r, cluster, stream);
}

// Grid mode: 512 threads a block.
template <typename T>
Status launch_grid(const kernels::RadixTopkArgs& r, cudaStream_t stream) {
  return launch_stream_tuned<T, 512, true>(r, r.grid_blocks, stream);
}

// The short-row kernel (kernels/radix_topk_rows.cuh, one block a row, the row in shared
// memory) for rows of at most kRowsMaxLen, unsorted or sorted with k <= kRowsMaxSortedK (1024;
// CUB's sort for larger k stays with the streaming kernel): there the streaming kernel runs
// one block a row too (no cluster pays below 8192 elements a block). Measured on an H100
// against the streaming kernel's 256-thread blocks (radix_topk_bench --quick, unsorted us, two
// runs each, one call), k = 512: f32 1024x8192 26.3-26.5 -> 22.9-23.0, 4096x4096 67.7 -> 52.1,
// 8192x2048 118.6 -> 85.6-86.7; bf16 1024x8192 23.0 -> 17.5-17.6, 4096x4096 62.5 -> 44.9,
// 8192x2048 113.5 -> 76.2 (the kernel's first form). Against its 512-thread blocks (fewer
// rows; final form, one run): f32 1x8192 6.7 -> 5.6, 8x8192 7.3 -> 6.3, 64x8192 7.9 -> 6.8,
// 132x8192 8.6 -> 7.2, 200x8192 11.4 -> 8.7, 64x2048 7.3 -> 6.0, 64x4096 (k = 1024) 8.1 ->
// 7.5; and 2048x1000 (k = 64) 29.1 -> 18.7, 4096x8192 (k = 2048) 214.8 -> 211.6. Sorted
// output (k <= 1024, the bitonic network after the compaction; one run beside the streaming
// kernel's 256-thread blocks): f32 1024x8192 40.8 -> 35.4, 4096x4096 122.0 -> 110.0, 8192x2048
// 230.8 -> 202.3; bf16 1024x8192 36.8 -> 31.7, 4096x4096 115.2 -> 104.6, 8192x2048 219.2 ->
// 193.9.
bool rows_kernel_fits(const TopkParams& p) {
  return (!p.sorted || p.k <= kernels::kRowsMaxSortedK) && p.length <= kernels::kRowsMaxLen;
}

// One instantiation of the short-row kernel (kBlocks: its blocks an SM; 0: the kernel's own).
template <typename T, bool kSorted, int kBlocks = 0>
Status launch_rows(const kernels::RadixTopkArgs& r, cudaStream_t stream) {
  const auto kernel = kernels::radix_topk_rows_kernel<T, kSorted, kBlocks>;
  (void)detail::per_device(0, 0, [&](int) {
    (void)cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        int(kernels::rows_smem_bytes(kSorted ? kernels::kRowsMaxSortedK : kernels::kRadixMaxK,
                                     kernels::kRowsMaxLen, sizeof(T), kSorted)));
    return 0;
  });
  // (radix_topk, its only caller, has checked that n blocks fit a grid.)
  const std::size_t smem = kernels::rows_smem_bytes(r.k, r.length, sizeof(T), kSorted);
  kernels::RadixTopkArgs args = r;
  // The sample's plan for rows of r.length, once here rather than in every block (a float
  // division, a square root, an integer division). Measured on an H100 (radix_topk_bench
  // --quick, unsorted us, two runs each, one call): f32 4096x4096 50.7-50.9 -> 49.9-50.1,
  // 8192x2048 84.6-84.7 -> 83.2-83.4, 1024x8192 22.3 -> 22.2. Dropped in the same call: step
  // 4's first histogram in a pass of its own after the list (no change), and a bucket of at
  // most 32 keys ranked by one warp instead of two 8-bit passes (1024x8192 22.6-23.1).
  if (r.length > kernels::kRowsSample) {
    args.rows_want = kernels::rows_sample_want(r.k, int(r.length));
    args.rows_step = kernels::stream_sample_step(2, int(r.length));
  }
  // Blocks resident at once for this shared memory size (cached per size and device): the
  // distance of the next wave's rows asked of L2, where the rows make at least two waves. With
  // fewer, the prefetches compete with the first wave's rows. Measured on an H100 against
  // prefetching at every n (radix_topk_bench --quick, unsorted us, two runs each, one call): f32
  // 1024x8192 (1.3 waves) 20.6-20.8 -> 20.1; without prefetches at every n, 8192x2048 (10 waves)
  // took 79.3-79.5 against 77.7, bf16 8192x2048 71.5 against 70.7-70.9, and 4096x4096 (5 waves)
  // 46.7-46.8 against 46.8-47.0. Two waves is the limit chosen between 1.3 and 5 (not measured).
  const int resident =
      detail::resident_blocks(reinterpret_cast<const void*>(kernel), kernels::kRowsThreads, smem);
  args.rows_ahead = r.n >= 2 * std::int64_t(resident) ? resident : 0;
  return detail::launch_kernel(kernel, dim3(unsigned(r.n)), dim3(kernels::kRowsThreads), smem,
                               stream, false, args, "topk: radix_topk_rows_kernel launch");
}

// f32 rows of at most this many elements take the short-row kernel at eight blocks an SM (32
// registers; sorted: a few bytes spilled). Measured on an H100 (radix_topk_bench --quick, us,
// two runs each, one call), unsorted against six blocks: 8192x2048 77.8-78.0 -> 72.0-72.5,
// 4096x4096 46.8-46.9 -> 44.9-46.1; sorted against five (48 registers): 8192x2048 189.6-189.7
// -> 180.8, 4096x4096 102.8-103.0 -> 99.6-99.7 (six, 40 registers: 184.4-184.5 and
// 100.2-100.6). Longer rows keep their instantiations: their 32 KB copies leave room for six
// blocks (five sorted) anyway, and at 32 registers unsorted 1024x8192 took 19.9 against
// 19.7-19.9. bf16 rows (a copy of 16 KB at most) take eight sorted as well as unsorted (the
// kernel's own bound): sorted against five (48 registers; 32 at eight, no spills): 1024x8192
// 29.8-29.9 -> 28.7, 4096x4096 98.6 -> 93.5, 8192x2048 182.6-182.9 -> 173.0-173.3 (six, 40
// registers: 29.2, 95.6, 176.5-176.9).
constexpr std::int64_t kRowsEightMaxLen = 4096;

template <typename T>
Status launch_rows(const kernels::RadixTopkArgs& r, cudaStream_t stream) {
  // Eight blocks an SM for f32 rows of at most kRowsEightMaxLen; else the kernel's own bound
  // (bf16 eight, f32 six unsorted and five sorted).
  if constexpr (sizeof(T) == 4) {
    if (r.length <= kRowsEightMaxLen) {
      return r.sorted ? launch_rows<T, true, 8>(r, stream) : launch_rows<T, false, 8>(r, stream);
    }
  }
  return r.sorted ? launch_rows<T, true>(r, stream) : launch_rows<T, false>(r, stream);
}

kernels::RadixTopkArgs radix_args(const TopkParams& p) {
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
  return r;
}

// The radix path: the streaming kernel with `cluster` blocks per row (< 0: chosen by shape) of
// `threads` threads (0: chosen by shape; else 256 or 512); with neither forced, the short-row
// kernel where it fits (rows_kernel_fits). Checks n for every launcher.
Status radix_topk(const TopkParams& p, int cluster, int threads, cudaStream_t stream) {
  if (p.n > 0x7fffffffLL) {
    return Status(StatusCode::kUnsupported, "topk: n too large, got " + std::to_string(p.n));
  }
  const kernels::RadixTopkArgs r = radix_args(p);
  return MOER_DISPATCH_REAL_DTYPE(p.values_dtype, T, "topk: values_dtype", [&] {
    if (cluster < 1 && threads == 0 && rows_kernel_fits(p)) return launch_rows<T>(r, stream);
    const int c = cluster >= 1 ? cluster : stream_cluster(p.n, p.length, stream_setup<T, 512>());
    return launch_stream<T>(r, c, threads == 0 ? stream_threads(p.n, c) : threads, stream);
  });
}

// The radix path in grid mode, `blocks` blocks per row, after check_common.
Status radix_topk_grid(const TopkParams& p, int blocks, void* workspace,
                       std::size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "topk";
  if (workspace == nullptr) {
    return Status(StatusCode::kNullPointer, std::string(op) + ": workspace must not be null");
  }
  const std::size_t need = kernels::radix_stream_grid_bytes(p.n, p.length, blocks, p.k);
  if (workspace_bytes < need) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(op) + ": workspace_bytes must be >= " + std::to_string(need) +
                      " for this shape, got " + std::to_string(workspace_bytes));
  }
  if (!detail::aligned(workspace, 16)) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(op) + ": workspace must be 16-byte aligned");
  }
  MOER_RETURN_IF_ERROR_CUDA(detail::check_device_pointer(op, "workspace", workspace));
  kernels::RadixTopkArgs r = radix_args(p);
  r.grid_ws = static_cast<std::uint32_t*>(workspace);
  r.grid_blocks = blocks;
  r.grid_slot = kernels::radix_stream_grid_slot(p.length, blocks, p.k);
  return MOER_DISPATCH_REAL_DTYPE(p.values_dtype, T, "topk: values_dtype",
                                  [&] { return launch_grid<T>(r, stream); });
}

Status check_common(const TopkParams& p, const char* op) {
  MOER_RETURN_IF_ERROR_CUDA(validate(p));
  if (p.k > kernels::kRadixMaxK) {
    return Status(StatusCode::kUnsupported,
                  std::string(op) + ": k must be <= " + std::to_string(kernels::kRadixMaxK) +
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
  return Status::success();
}

}  // namespace

Status topk_radix_config(const TopkParams& p, int cluster, int threads, cudaStream_t stream) {
  MOER_RETURN_IF_ERROR_CUDA(check_common(p, "topk"));
  if (p.n == 0) return Status::success();
  if (p.k <= kMaxK && p.sorted) {
    return Status(StatusCode::kUnsupported, "topk_radix_config: needs k > 32 or unsorted");
  }
  if (cluster < 1 || cluster > kernels::kClusterMaxBlocks) {
    return Status(StatusCode::kUnsupported,
                  "topk_radix_config: cluster must be in [1, 16], got " + std::to_string(cluster));
  }
  if (threads != 0 && threads != 256 && threads != 512) {
    return Status(
        StatusCode::kUnsupported,
        "topk_radix_config: threads must be 0, 256 or 512, got " + std::to_string(threads));
  }
  return radix_topk(p, cluster, threads, stream);
}

Status topk_rows(const TopkParams& p, cudaStream_t stream) {
  MOER_RETURN_IF_ERROR_CUDA(check_common(p, "topk"));
  if (p.n == 0) return Status::success();
  if (p.sorted && p.k > kernels::kRowsMaxSortedK) {
    return Status(StatusCode::kUnsupported, "topk_rows: sorted output needs k <= " +
                                                std::to_string(kernels::kRowsMaxSortedK) +
                                                ", got " + std::to_string(p.k));
  }
  if (p.length > kernels::kRowsMaxLen) {
    return Status(StatusCode::kUnsupported,
                  "topk_rows: length must be <= " + std::to_string(kernels::kRowsMaxLen) +
                      ", got " + std::to_string(p.length));
  }
  return radix_topk(p, -1, 0, stream);  // rows_kernel_fits(p) holds
}

std::size_t topk_radix_grid_workspace_size(const TopkParams& p, int blocks) {
  if (p.n <= 0 || blocks < 2 || blocks > kGridMaxBlocks) return 0;
  return kernels::radix_stream_grid_bytes(p.n, p.length, blocks, p.k);
}

Status topk_radix_grid(const TopkParams& p, int blocks, void* workspace,
                       std::size_t workspace_bytes, cudaStream_t stream) {
  MOER_RETURN_IF_ERROR_CUDA(check_common(p, "topk"));
  if (p.n == 0) return Status::success();
  if (p.k <= kMaxK && p.sorted) {
    return Status(StatusCode::kUnsupported, "topk_radix_grid: needs k > 32 or unsorted");
  }
  if (blocks < 2 || blocks > kGridMaxBlocks) {
    return Status(StatusCode::kUnsupported, "topk_radix_grid: blocks must be in [2, " +
                                                std::to_string(kGridMaxBlocks) + "], got " +
                                                std::to_string(blocks));
  }
  return radix_topk_grid(p, blocks, workspace, workspace_bytes, stream);
}

std::size_t topk_workspace_size(const TopkParams& p) {
  // From the shape alone (no pointers needed).
  if (p.n <= 0 || p.length <= 0 || p.k < 1 || p.k > kernels::kRadixMaxK) return 0;
  const int blocks = grid_blocks(p);
  return blocks == 0 ? 0 : kernels::radix_stream_grid_bytes(p.n, p.length, blocks, p.k);
}

Status topk(const TopkParams& p, void* workspace, std::size_t workspace_bytes,
            cudaStream_t stream) {
  const int blocks = grid_blocks(p);
  if (workspace == nullptr || blocks == 0) return topk(p, stream);
  MOER_RETURN_IF_ERROR_CUDA(check_common(p, "topk"));
  if (p.n == 0) return Status::success();
  return radix_topk_grid(p, blocks, workspace, workspace_bytes, stream);
}

Status topk(const TopkParams& p, cudaStream_t stream) {
  MOER_RETURN_IF_ERROR_CUDA(check_common(p, "topk"));
  if (p.n == 0) return Status::success();
  if (p.k > kMaxK || !p.sorted) return radix_topk(p, -1, 0, stream);

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
      constexpr int kThreads = kWarps == 1 ? kernels::kTopkThreadsShort : kernels::kTopkThreadsLong;
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
