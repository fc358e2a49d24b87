// moerouter_bench: our CUDA kernels on DSV4-Flash / -Pro shapes, timed as CUDA graphs with a
// cold L2, next to the HBM floor (bytes that must move / device-to-device copy bandwidth,
// measured in the same run). bench/torch_bench.py times the PyTorch eager equivalents with the
// same method; bench/report.py puts both in one table.
//
// Cold L2, two ways, both reported:
//   inputs cold   (the main column, "rotate distinct inputs"): each launch reads its own input
//                 set (logits / x / token ids). When enough distinct sets fit (R sets of at
//                 least 3x the L2 size, R <= 256), the graph cycles through them; otherwise
//                 (small N) every launch is preceded by a kernel that reads a 3x-L2 buffer and
//                 then re-reads the layer's parameters (W, bias, tid2eid), and the time of a
//                 graph of those alone is subtracted. Parameters are L2-warm, as within one
//                 layer of a batch.
//   all cold      every launch is preceded by the 3x-L2 read alone (subtracted likewise), so
//                 parameters come from HBM too, as in a decode step that streams the whole
//                 model between two calls of one layer's router.
//
// Usage: moerouter_bench [--json FILE] [--quick] [--n N1,N2,...] [--ops OP1,OP2,...]
//   --quick  N = 1 and 16384 only; --n: these batch sizes instead (e.g. the dispatch
//   crossovers of route.cu: --n 1536,2048,4096,8448); --ops: only these rows (route_logits_f32,
//   hash_route_logits, hash_route_x, router_gemm, router_gemm_then_empty, route_x_gemm_fused,
//   and the diagnostic latency floors route_chain_floor and hash_chain_floor, timed only when
//   named).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "moerouter/cuda.h"
#include "moerouter/detail/math.h"
#include "moerouter/device.h"
#include "moerouter/synthetic.h"
#include "bench_util.h"
#include "copy_bandwidth.h"

namespace {

using namespace moerouter;

using moerouter_bench::check_status;
using moerouter_bench::flush_kernel;

// Does nothing: after the router GEMM it gives the GEMM's time when a kernel follows it (the
// GEMM-alone graph lets consecutive GEMMs overlap their prologue and epilogue).
__global__ void empty_kernel() {}

// Latency floors of the small-batch rows (diagnostic; one block a row or token): the dependent
// loads a route cannot avoid, then a store, with no step between threads.
// Route from logits: E / 4 threads a row (E % 4 == 0; the block-per-row route kernel has E), each
// one 16-byte vector of the row (cold) and of the bias (a parameter), then k outputs.
__global__ void route_chain_floor_kernel(const float* logits, const float* bias, int e, int k,
                                         float* out) {
  const int t = int(threadIdx.x);
  const float4 l = reinterpret_cast<const float4*>(logits + std::size_t(blockIdx.x) * e)[t];
  const float4 b = reinterpret_cast<const float4*>(bias)[t];
  const float m = fmaxf(fmaxf(l.x + b.x, l.y + b.y), fmaxf(l.z + b.z, l.w + b.w));
  if (t < k) out[std::size_t(blockIdx.x) * k + t] = m;
}

// Hash route from x (32 threads a token): the token id (cold), its table entries, one element
// of each entry's W row (three dependent loads), then k outputs; the real route also reads the
// whole k rows of W and x and reduces them over several SMs.
__global__ void hash_chain_floor_kernel(const std::int32_t* tokens, const std::int32_t* table,
                                        const bf16* w, int k, std::int64_t h, float* out) {
  const int lane = int(threadIdx.x);
  const std::int32_t t = tokens[blockIdx.x];
  if (lane < k) {
    const std::int32_t id = table[std::int64_t(t) * k + lane];
    out[std::size_t(blockIdx.x) * k + lane] = detail::bf16_to_float(w[std::int64_t(id) * h]);
  }
}

struct Device {
  std::string name;
  int sms = 0;
  std::size_t l2 = 0;
  double copy_gbps = 0.0;  // device-to-device copy, bytes read + written per second / 1e9
};

struct Bench {
  Device dev;
  cudaStream_t stream = nullptr;
  int4* flush_buf = nullptr;
  std::size_t flush_count = 0;
  int* sink = nullptr;
  FILE* json = nullptr;

  void init() {
    int d = 0;
    CK(cudaGetDevice(&d));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, d));
    dev.name = prop.name;
    dev.sms = prop.multiProcessorCount;
    dev.l2 = std::size_t(prop.l2CacheSize);
    CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const std::size_t flush_bytes = 3 * dev.l2;
    flush_count = flush_bytes / sizeof(int4);
    CK(cudaMalloc(&flush_buf, flush_bytes));
    CK(cudaMemset(flush_buf, 1, flush_bytes));
    CK(cudaMalloc(&sink, sizeof(int)));
    measure_copy();
  }

  void measure_copy() { dev.copy_gbps = moerouter_bench::copy_bandwidth_gbps(stream); }

  void flush(cudaStream_t s) {
    flush_kernel<<<dev.sms * 4, 512, 0, s>>>(flush_buf, flush_count, sink);
  }

  // Median time of one replay of a graph built by `body`, in microseconds.
  double graph_us(const std::function<void(cudaStream_t)>& body, int replays = 15) {
    return moerouter_bench::graph_us(stream, body, replays);
  }

  // Sets needed for a cold L2 by rotation alone, or 0 when that takes more than 256 sets.
  int rotation_sets(std::size_t set_bytes) const {
    const std::size_t need = (3 * dev.l2 + set_bytes - 1) / std::max<std::size_t>(set_bytes, 1);
    return need <= 256 ? int(std::max<std::size_t>(need, 1)) : 0;
  }

  // Parameters to re-read into L2 after a flush in "inputs cold" mode.
  std::vector<std::pair<const void*, std::size_t>> params;

  void warm_params(cudaStream_t s) {
    for (const auto& p : params) {
      flush_kernel<<<dev.sms * 2, 512, 0, s>>>(static_cast<const int4*>(p.first),
                                               p.second / sizeof(int4), sink);
    }
  }

  enum class Mode { kRotate, kFlushWarm, kFlushCold };

  // Time of one launch (see the file comment). `launch(set, stream)`.
  double time_cold(const std::function<void(int, cudaStream_t)>& launch, int sets, Mode mode,
                   std::string* method) {
    const int launches = std::max(sets, 32);
    if (mode == Mode::kRotate) {
      *method = "rotate " + std::to_string(sets);
      return graph_us([&](cudaStream_t s) {
               for (int i = 0; i < launches; ++i) launch(i % sets, s);
             }) /
             launches;
    }
    const bool warm = mode == Mode::kFlushWarm;
    *method = warm ? "flush+warm params" : "flush";
    const double both = graph_us([&](cudaStream_t s) {
      for (int i = 0; i < launches; ++i) {
        flush(s);
        if (warm) warm_params(s);
        launch(i % sets, s);
      }
    });
    const double alone = graph_us([&](cudaStream_t s) {
      for (int i = 0; i < launches; ++i) {
        flush(s);
        if (warm) warm_params(s);
      }
    });
    return (both - alone) / launches;
  }

  void report(const char* op, const ModelShape& m, std::int64_t n, double us, double cold_us,
              double bytes, const std::string& method) {
    const double floor_us = bytes / (dev.copy_gbps * 1e9) * 1e6;
    std::printf("%-22s %-5s N=%-6lld %9.2f us (all cold %9.2f) %9.1f GB/s  floor %8.2f us "
                "(%5.1f%%)  [%s]\n",
                op, m.name.c_str(), static_cast<long long>(n), us, cold_us,
                bytes / (us * 1e-6) / 1e9, floor_us, 100.0 * floor_us / us, method.c_str());
    if (json != nullptr) {
      std::fprintf(json,
                   "{\"impl\": \"moerouter\", \"op\": \"%s\", \"model\": \"%s\", \"n\": %lld, "
                   "\"us\": %.4f, \"cold_us\": %.4f, \"bytes\": %.0f, \"floor_us\": %.4f, "
                   "\"method\": \"%s\", \"device\": \"%s\", \"copy_gbps\": %.1f}\n",
                   op, m.name.c_str(), static_cast<long long>(n), us, cold_us, bytes, floor_us,
                   method.c_str(), dev.name.c_str(), dev.copy_gbps);
      std::fflush(json);
    }
  }
};

template <typename T>
T* device_copy(const std::vector<T>& host) {
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<std::size_t>(host.size(), 1) * sizeof(T)));
  CK(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Logits as the GEMM of a synthetic layer would produce them: N(0, 1.5^2).
std::vector<float> make_logits(std::size_t count, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<float> v(count);
  for (auto& x : v) x = float(1.5 * rng.normal());
  return v;
}

// The rows run_model times, in order (--ops picks some).
const char* const kOpNames[] = {"route_logits_f32",       "hash_route_logits",
                                "hash_route_x",           "router_gemm",
                                "router_gemm_then_empty", "route_x_gemm_fused",
                                "route_chain_floor",      "hash_chain_floor"};

// "A,B,..." -> its names; empty on an empty name.
std::vector<std::string> parse_names(const char* list) {
  std::vector<std::string> names;
  std::string cur;
  for (const char* p = list;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (cur.empty()) return {};
      names.push_back(cur);
      cur.clear();
      if (*p == '\0') break;
    } else {
      cur += *p;
    }
  }
  return names;
}

// ops: the rows to time (empty: all).
void run_model(Bench& b, const ModelShape& m, const std::vector<std::int64_t>& ns,
               const std::vector<std::string>& ops) {
  const SyntheticLayer layer = make_synthetic_layer(m, 1, true);
  float* d_bias = device_copy(layer.bias);
  bf16* d_w = device_copy(layer.w);
  std::int32_t* d_table = device_copy(layer.tid2eid);
  cuda::RouterGemm gemm;
  check_status(gemm.init(), "RouterGemm::init");
  const std::int64_t e = m.experts, h = m.hidden;
  const int k = m.k;
  b.params = {{d_bias, layer.bias.size() * sizeof(float)},
              {d_w, layer.w.size() * sizeof(bf16)},
              {d_table, layer.tid2eid.size() * sizeof(std::int32_t)}};

  for (std::int64_t n : ns) {
    // Per-set inputs: logits, x, tokens; per-set outputs.
    const std::size_t logits_bytes = std::size_t(n * e) * 4, x_bytes = std::size_t(n * h) * 2;
    const std::size_t out_bytes = std::size_t(n * k) * 8;
    const int r_logits = b.rotation_sets(logits_bytes + out_bytes);
    const int r_x = b.rotation_sets(x_bytes + out_bytes);
    const int r_hash = b.rotation_sets(std::size_t(n) * 4 + std::size_t(n * e) * 4 + out_bytes);
    const int sets = std::max({r_logits, r_x, r_hash, 1});
    // Memory for the sets (flush mode uses a few sets only).
    const int alloc_sets = std::min(sets, 256);
    std::vector<float> h_logits = make_logits(std::size_t(n * e), 7 + n);
    float* d_logits = nullptr;
    bf16* d_x = nullptr;
    std::int32_t* d_tok = nullptr;
    float* d_wout = nullptr;
    std::int32_t* d_ids = nullptr;
    std::int32_t* d_flag = nullptr;
    CK(cudaMalloc(&d_logits, logits_bytes * alloc_sets));
    CK(cudaMalloc(&d_x, x_bytes * alloc_sets));
    CK(cudaMalloc(&d_tok, std::size_t(n) * 4 * alloc_sets));
    CK(cudaMalloc(&d_wout, std::size_t(n * k) * 4 * alloc_sets));
    CK(cudaMalloc(&d_ids, std::size_t(n * k) * 4 * alloc_sets));
    CK(cudaMalloc(&d_flag, 4));
    CK(cudaMemset(d_flag, 0, 4));
    const std::vector<bf16> hx = make_hidden(n, h, 11 + n);
    const std::vector<std::int32_t> htok = make_tokens(n, m.vocab, 13 + n);
    for (int s = 0; s < alloc_sets; ++s) {
      CK(cudaMemcpy(d_logits + std::size_t(s) * n * e, h_logits.data(), logits_bytes,
                    cudaMemcpyHostToDevice));
      CK(cudaMemcpy(d_x + std::size_t(s) * n * h, hx.data(), x_bytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(d_tok + std::size_t(s) * n, htok.data(), std::size_t(n) * 4,
                    cudaMemcpyHostToDevice));
    }
    const std::size_t ws_bytes = cuda::route_workspace_size(n, e);
    void* d_ws = nullptr;
    CK(cudaMalloc(&d_ws, ws_bytes));

    auto route_logits = [&](int s, cudaStream_t st) {
      RouteLogitsParams p;
      p.logits = d_logits + std::size_t(s) * n * e;
      p.bias = d_bias;
      p.weights = d_wout + std::size_t(s) * n * k;
      p.ids = d_ids + std::size_t(s) * n * k;
      p.n = n;
      p.experts = e;
      p.k = k;
      p.scale = m.scale;
      check_status(cuda::route_logits(p, st), "route_logits");
    };
    auto hash = [&](HashWeights src, int s, cudaStream_t st) {
      HashRouteParams p;
      p.token_ids = d_tok + std::size_t(s) * n;
      p.table = d_table;
      p.weights = d_wout + std::size_t(s) * n * k;
      p.ids = d_ids + std::size_t(s) * n * k;
      p.error_flag = d_flag;
      p.source = src;
      p.x = d_x + std::size_t(s) * n * h;
      p.w = d_w;
      p.hidden = h;
      p.logits = d_logits + std::size_t(s) * n * e;
      p.n = n;
      p.vocab = m.vocab;
      p.experts = e;
      p.k = k;
      p.scale = m.scale;
      check_status(cuda::hash_route(p, st), "hash_route");
    };
    auto route_x = [&](int s, cudaStream_t st) {
      RouteParams p;
      p.x = d_x + std::size_t(s) * n * h;
      p.w = d_w;
      p.bias = d_bias;
      p.weights = d_wout + std::size_t(s) * n * k;
      p.ids = d_ids + std::size_t(s) * n * k;
      p.n = n;
      p.hidden = h;
      p.experts = e;
      p.k = k;
      p.scale = m.scale;
      check_status(cuda::route(p, gemm, d_ws, ws_bytes, st), "route");
    };
    auto gemm_only = [&](int s, cudaStream_t st) {
      check_status(gemm.logits(d_x + std::size_t(s) * n * h, 0, d_w, n, h, e,
                               static_cast<float*>(d_ws), 0, st),
                   "gemm");
    };

    std::string method, unused;
    const auto run = [&](const char* op, int r, const std::function<void(int, cudaStream_t)>& f,
                         double bytes) {
      if (!ops.empty() && std::find(ops.begin(), ops.end(), op) == ops.end()) return;
      const int flush_sets = std::min(alloc_sets, 4);
      const double us = r > 0 ? b.time_cold(f, r, Bench::Mode::kRotate, &method)
                              : b.time_cold(f, flush_sets, Bench::Mode::kFlushWarm, &method);
      const double cold = b.time_cold(f, flush_sets, Bench::Mode::kFlushCold, &unused);
      b.report(op, m, n, us, cold, bytes, method);
    };
    const double outb = double(n * k) * 8;
    const double hash_common = double(n) * 4 + double(n * k) * 4 + outb;
    const double w_rows = double(std::min<std::int64_t>(n * k, e)) * double(h) * 2;
    run("route_logits_f32", r_logits, route_logits, double(n * e) * 4 + double(e) * 4 + outb);
    run("hash_route_logits", r_hash,
        [&](int s, cudaStream_t st) { hash(HashWeights::kFromLogits, s, st); },
        hash_common + double(n * k) * 4);
    run("hash_route_x", r_x, [&](int s, cudaStream_t st) { hash(HashWeights::kFromX, s, st); },
        hash_common + double(n * h) * 2 + w_rows);
    run("router_gemm", r_x, gemm_only, double(n * h) * 2 + double(e * h) * 2 + double(n * e) * 4);
    run("router_gemm_then_empty", r_x,
        [&](int s, cudaStream_t st) {
          gemm_only(s, st);
          empty_kernel<<<1, 32, 0, st>>>();
        },
        double(n * h) * 2 + double(e * h) * 2 + double(n * e) * 4);
    run("route_x_gemm_fused", r_x, route_x,
        double(n * h) * 2 + double(e * h) * 2 + double(e) * 4 + outb);
    // Diagnostic latency floors (not routes; only with --ops, see the kernels' comments).
    const bool asked_floors = !ops.empty();
    if (asked_floors) {
      run("route_chain_floor", r_logits,
          [&](int s, cudaStream_t st) {
            route_chain_floor_kernel<<<unsigned(n), unsigned(e / 4), 0, st>>>(
                d_logits + std::size_t(s) * n * e, d_bias, int(e), k,
                d_wout + std::size_t(s) * n * k);
          },
          double(n * e) * 4 + double(e) * 4 + double(n * k) * 4);
      run("hash_chain_floor", r_hash,
          [&](int s, cudaStream_t st) {
            hash_chain_floor_kernel<<<unsigned(n), 32, 0, st>>>(
                d_tok + std::size_t(s) * n, d_table, d_w, k, h, d_wout + std::size_t(s) * n * k);
          },
          double(n) * 4 + double(n * k) * 4 + double(n * k) * 2 + double(n * k) * 4);
    }

    CK(cudaFree(d_logits));
    CK(cudaFree(d_x));
    CK(cudaFree(d_tok));
    CK(cudaFree(d_wout));
    CK(cudaFree(d_ids));
    CK(cudaFree(d_flag));
    CK(cudaFree(d_ws));
  }
  CK(cudaFree(d_bias));
  CK(cudaFree(d_w));
  CK(cudaFree(d_table));
}

// "N1,N2,..." -> the batch sizes (each >= 1); empty on a malformed list.
std::vector<std::int64_t> parse_sizes(const char* list) {
  std::vector<std::int64_t> ns;
  const char* p = list;
  while (*p != '\0') {
    char* end = nullptr;
    const long long v = std::strtoll(p, &end, 10);
    if (end == p || v < 1 || (*end != ',' && *end != '\0')) return {};
    ns.push_back(v);
    p = *end == ',' ? end + 1 : end;
  }
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  bool quick_mode = false;
  std::vector<std::int64_t> sizes;
  std::vector<std::string> ops;
  const char* usage =
      "usage: moerouter_bench [--json FILE] [--quick] [--n N1,N2,...] [--ops OP1,OP2,...]\n";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick_mode = true;
    } else if (std::strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
      sizes = parse_sizes(argv[++i]);
      if (sizes.empty()) {
        std::fprintf(stderr, "moerouter_bench: --n takes positive integers separated by commas, "
                             "got '%s'\n%s", argv[i], usage);
        return 2;
      }
    } else if (std::strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
      ops = parse_names(argv[++i]);
      const bool known = std::all_of(ops.begin(), ops.end(), [](const std::string& op) {
        return std::find(std::begin(kOpNames), std::end(kOpNames), op) != std::end(kOpNames);
      });
      if (!known || ops.empty()) {
        std::fprintf(stderr, "moerouter_bench: --ops takes row names separated by commas, of: ");
        for (const char* name : kOpNames) std::fprintf(stderr, "%s ", name);
        std::fprintf(stderr, "\n%s", usage);
        return 2;
      }
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  if (!moerouter::cuda_available()) {
    std::fprintf(stderr, "moerouter_bench: no CUDA device (%s)\n",
                 moerouter::cuda_device_description().c_str());
    return 1;
  }
  Bench b;
  b.init();
  if (json_path != nullptr) b.json = std::fopen(json_path, "w");
  std::printf("device: %s (%d SMs, L2 %.0f MB), copy bandwidth %.0f GB/s (read + write)\n",
              b.dev.name.c_str(), b.dev.sms, double(b.dev.l2) / 1e6, b.dev.copy_gbps);
  const std::vector<std::int64_t> ns =
      !sizes.empty() ? sizes
      : quick_mode   ? std::vector<std::int64_t>{1, 16384}
                     : std::vector<std::int64_t>{1, 16, 64, 1024, 16384};
  for (const ModelShape& m : {dsv4_flash(), dsv4_pro()}) run_model(b, m, ns, ops);
  if (b.json != nullptr) std::fclose(b.json);
  return 0;
}
