// `moerouter topk`: the top-k primitive (the sparse-attention indexer's large k) on synthetic
// rows, checked and timed on the best backend present.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.h"
#include "moerouter/cpu.h"
#include "moerouter/detail/math.h"
#include "moerouter/device.h"
#include "moerouter/oracle.h"
#include "moerouter/synthetic.h"
#include "moerouter/topk.h"

#if defined(MOER_WITH_CUDA)
#include <cuda_runtime.h>

#include "moerouter/cuda.h"
#endif

namespace moerouter {
namespace cli {
namespace {

struct TopkOptions {
  std::int64_t rows = 64;
  std::int64_t length = 65536;
  int k = 512;
  bool bf16 = false;
  bool sorted = true;
  std::string backend = "auto";
  int reps = 20;
  std::uint64_t seed = 2026;
};

TopkOptions parse_topk_args(const std::vector<std::string>& args) {
  TopkOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> const std::string& { return option_value(args, i); };
    if (args[i] == "--rows") {
      o.rows = std::stoll(value());
    } else if (args[i] == "--length") {
      o.length = std::stoll(value());
    } else if (args[i] == "--k") {
      o.k = std::stoi(value());
    } else if (args[i] == "--dtype") {
      const std::string d = value();
      if (d != "f32" && d != "bf16") throw std::invalid_argument("--dtype must be f32 or bf16");
      o.bf16 = d == "bf16";
    } else if (args[i] == "--unsorted") {
      o.sorted = false;
    } else if (args[i] == "--backend") {
      o.backend = backend_option(value());
    } else if (args[i] == "--reps") {
      o.reps = std::stoi(value());
    } else if (args[i] == "--seed") {
      o.seed = std::stoull(value());
    } else {
      throw std::invalid_argument("unknown topk option '" + args[i] + "'");
    }
  }
  if (o.rows < 1) throw std::invalid_argument("--rows must be >= 1");
  if (o.length < 1) throw std::invalid_argument("--length must be >= 1");
  if (o.k < 1) throw std::invalid_argument("--k must be >= 1");
  if (o.reps < 1) throw std::invalid_argument("--reps must be >= 1");
  return o;
}

// The first `rows` rows of the CPU backend's result against the float64 oracle: the same
// indices (rank order; unsorted output: the same set in ascending index order).
bool matches_oracle(const TopkParams& p, const std::vector<std::int32_t>& idx,
                    std::int64_t rows) {
  TopkParams q = p;
  q.n = rows;
  q.sorted = true;
  const oracle::TopkResult ref = oracle::topk(q);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<std::int64_t> want(ref.indices.begin() + r * p.k,
                                   ref.indices.begin() + (r + 1) * p.k);
    if (!p.sorted) {
      const auto pad = std::stable_partition(want.begin(), want.end(),
                                             [](std::int64_t i) { return i >= 0; });
      std::sort(want.begin(), pad);
    }
    for (int j = 0; j < p.k; ++j) {
      if (idx[r * p.k + j] != want[j]) return false;
    }
  }
  return true;
}

void report(const char* backend, const std::string& device, const TopkOptions& o, double us,
            const char* check) {
  const double bytes = double(o.rows) * double(o.length) * (o.bf16 ? 2.0 : 4.0);
  std::printf("%-4s %s: %lld x %lld %s, k = %d, %s: %.1f us per call, %.1f GB/s read; %s\n",
              backend, device.c_str(), static_cast<long long>(o.rows),
              static_cast<long long>(o.length), o.bf16 ? "bf16" : "f32", o.k,
              o.sorted ? "sorted" : "unsorted", us, bytes / (us * 1e-6) / 1e9, check);
}

#if defined(MOER_WITH_CUDA)
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// cuda::topk on the same rows: result (bit for bit against the CPU backend) and time per call
// (CUDA events over `reps` calls after one warm-up; the rows stay in L2 where they fit, so this
// is not the cold-L2 figure of bench/radix_topk_bench).
bool run_gpu(const TopkParams& host, const TopkOptions& o, const std::vector<std::int32_t>& cpu_idx,
             const std::vector<float>& cpu_val, double* us) {
  const std::size_t in_bytes = std::size_t(host.n * host.length) * (o.bf16 ? 2 : 4);
  const std::size_t out = std::size_t(host.n) * std::size_t(host.k);
  void* d_in = nullptr;
  void* d_ws = nullptr;  // topk's workspace where the shape uses one (few, long rows)
  std::int32_t* d_idx = nullptr;
  float* d_val = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  auto release = [&] {
    cudaFree(d_in);
    cudaFree(d_ws);
    cudaFree(d_idx);
    cudaFree(d_val);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (stream) cudaStreamDestroy(stream);
  };
  try {
    check_cuda(cudaMalloc(&d_in, in_bytes), "cudaMalloc");
    check_cuda(cudaMalloc(&d_idx, out * 4), "cudaMalloc");
    check_cuda(cudaMalloc(&d_val, out * 4), "cudaMalloc");
    check_cuda(cudaMemcpy(d_in, host.values, in_bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
    check_cuda(cudaEventCreate(&e0), "cudaEventCreate");
    check_cuda(cudaEventCreate(&e1), "cudaEventCreate");
    TopkParams p = host;
    p.values = d_in;
    p.indices = d_idx;
    p.out_values = d_val;
    const std::size_t ws_bytes = cuda::topk_workspace_size(p);
    if (ws_bytes > 0) {
      check_cuda(cudaMalloc(&d_ws, ws_bytes), "cudaMalloc");
      check_cuda(cudaMemset(d_ws, 0, ws_bytes), "cudaMemset");
    }
    const Status st = cuda::topk(p, d_ws, ws_bytes, stream);
    if (!st.ok()) throw std::runtime_error("cuda::topk: " + st.to_string());
    std::vector<std::int32_t> idx(out);
    std::vector<float> val(out);
    check_cuda(cudaMemcpyAsync(idx.data(), d_idx, out * 4, cudaMemcpyDeviceToHost, stream), "copy");
    check_cuda(cudaMemcpyAsync(val.data(), d_val, out * 4, cudaMemcpyDeviceToHost, stream), "copy");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    const bool same = idx == cpu_idx && std::equal(val.begin(), val.end(), cpu_val.begin(),
                                                   [](float a, float b) {
                                                     return detail::float_as_bits(a) ==
                                                            detail::float_as_bits(b);
                                                   });
    check_cuda(cudaEventRecord(e0, stream), "cudaEventRecord");
    for (int r = 0; r < o.reps; ++r) (void)cuda::topk(p, d_ws, ws_bytes, stream);
    check_cuda(cudaEventRecord(e1, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    *us = double(ms) * 1e3 / o.reps;
    release();
    return same;
  } catch (...) {
    release();
    throw;
  }
}
#endif

}  // namespace

int run_topk(const std::vector<std::string>& args) {
  const TopkOptions o = parse_topk_args(args);
  const bool want_gpu = o.backend == "gpu" || (o.backend == "auto" && cuda_available());
  if (want_gpu && !cuda_available()) {
    throw std::runtime_error("--backend gpu: no CUDA device (" + cuda_device_description() + ")");
  }
  if (want_gpu && o.k > 2048) throw std::invalid_argument("--k must be <= 2048 on the GPU");

  // Normal rows (bf16: rounded to nearest even).
  SeededRng rng(o.seed);
  const std::size_t count = std::size_t(o.rows * o.length);
  std::vector<float> f32;
  std::vector<bf16> b16;
  if (o.bf16) {
    b16.resize(count);
    for (auto& x : b16) x = detail::float_to_bf16(float(rng.normal()));
  } else {
    f32.resize(count);
    for (auto& x : f32) x = float(rng.normal());
  }
  TopkParams p;
  p.values = o.bf16 ? static_cast<const void*>(b16.data()) : f32.data();
  p.values_dtype = o.bf16 ? DType::kBF16 : DType::kF32;
  p.n = o.rows;
  p.length = o.length;
  p.k = o.k;
  p.sorted = o.sorted;
  const std::size_t out = std::size_t(o.rows) * std::size_t(o.k);
  std::vector<std::int32_t> cpu_idx(out);
  std::vector<float> cpu_val(out);
  p.indices = cpu_idx.data();
  p.out_values = cpu_val.data();

  const auto t0 = std::chrono::steady_clock::now();
  const Status st = cpu::topk(p);
  const double cpu_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  if (!st.ok()) throw std::runtime_error("cpu::topk: " + st.to_string());
  const bool cpu_ok = matches_oracle(p, cpu_idx, std::min<std::int64_t>(o.rows, 4));
  report("cpu", "backend", o, cpu_us,
         cpu_ok ? "first rows match the float64 oracle" : "MISMATCH against the float64 oracle");
  bool ok = cpu_ok;
#if defined(MOER_WITH_CUDA)
  if (want_gpu) {
    double us = 0;
    const bool same = run_gpu(p, o, cpu_idx, cpu_val, &us);
    report("gpu", cuda_device_description(), o, us,
           same ? "indices and values equal the CPU backend's bit for bit"
                : "MISMATCH against the CPU backend");
    ok = ok && same;
  }
#endif
  return ok ? 0 : 1;
}

}  // namespace cli
}  // namespace moerouter
