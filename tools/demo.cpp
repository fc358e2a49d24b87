// `moerouter demo`: a synthetic DSV4 layer routed on the best backend, checked against the
// float64 oracle.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.h"
#include "demo_backend.h"
#include "moerouter/device.h"
#include "moerouter/oracle.h"
#include "moerouter/router.h"
#include "progress.h"
#include "moerouter/synthetic.h"

namespace moerouter {
namespace cli {
namespace {

struct DemoOptions {
  std::string model = "flash";
  std::string backend = "auto";
  std::uint64_t seed = 2026;
  std::int64_t prefill = 0;  // 0: the backend's default (1024 on the CPU, 16384 on the GPU)
};

DemoOptions parse_demo_args(const std::vector<std::string>& args) {
  DemoOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> const std::string& { return option_value(args, i); };
    if (args[i] == "--model") {
      o.model = value();
    } else if (args[i] == "--backend") {
      o.backend = backend_option(value());
    } else if (args[i] == "--prefill") {
      o.prefill = std::stoll(value());
      if (o.prefill < 1) throw std::invalid_argument("--prefill must be >= 1");
    } else if (args[i] == "--seed") {
      o.seed = std::stoull(value());
    } else {
      throw std::invalid_argument("unknown demo option '" + args[i] + "'");
    }
  }
  return o;
}

// Tokens routed to each expert: min and max over experts.
std::pair<std::int64_t, std::int64_t> expert_load(const std::vector<std::int32_t>& ids,
                                                  std::int64_t experts) {
  std::vector<std::int64_t> load(static_cast<std::size_t>(experts), 0);
  for (std::int32_t id : ids) {
    if (id >= 0 && id < experts) ++load[id];
  }
  const auto [mn, mx] = std::minmax_element(load.begin(), load.end());
  return {*mn, *mx};
}

std::string format_time(double us) {
  char buf[32];
  if (us >= 1000.0) {
    std::snprintf(buf, sizeof(buf), "%.2f ms", us / 1000.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f us", us);
  }
  return buf;
}

}  // namespace

int run_demo(const std::vector<std::string>& args) {
  const DemoOptions opt = parse_demo_args(args);
  // --model flash|pro: synthetic layers; anything else: a checkpoint directory, whose first hash
  // layer and first dense layer are routed.
  const bool checkpoint = opt.model != "flash" && opt.model != "pro";
  ModelShape shape;
  SyntheticLayer dense, hash;
  if (checkpoint) {
    RouterOptions ro;
    ro.device = RouterDevice::kCpu;  // the demo backend below does its own uploads
    ro.progress = [](int done, int total) { progress_bar("loading gates", done, total); };
    const Router router = Router::from_pretrained(opt.model, ro);
    shape = router.config();
    shape.name = opt.model;
    for (int i = 0; i < router.num_layers(); ++i) {
      const GateTensors& g = router.layer(i);
      SyntheticLayer& dst = g.hash ? hash : dense;
      if (!dst.w.empty()) continue;
      dst.w = g.w;
      dst.bias = g.bias;
      dst.tid2eid = g.tid2eid;
    }
  } else {
    shape = model_shape_by_name(opt.model);
    dense = make_synthetic_layer(shape, opt.seed, false);
    hash = make_synthetic_layer(shape, opt.seed + 1, true);
  }

  std::unique_ptr<DemoBackend> backend;
  const bool want_gpu = opt.backend == "gpu" || (opt.backend == "auto" && cuda_available());
  if (want_gpu) {
    if (!cuda_available()) {
      throw std::runtime_error("--backend gpu: no usable CUDA device (" +
                               cuda_device_description() + ")");
    }
    backend = make_gpu_demo_backend();
  } else {
    backend = make_cpu_demo_backend();
  }

  const std::string title = checkpoint ? "checkpoint " + opt.model
                                       : std::string("synthetic DeepSeek-V4-") +
                                             (shape.name == "pro" ? "Pro" : "Flash");
  std::printf("moerouter demo: %s gate (H=%lld E=%lld k=%d scale %.1f)\n", title.c_str(),
              static_cast<long long>(shape.hidden),
              static_cast<long long>(shape.experts), shape.k, double(shape.scale));
  std::printf("backend: %s\n", backend->description().c_str());
  std::printf("dense layer: bf16 W, fp32 bias; hash layer: tid2eid [%lld, %d], weights "
              "from x and W\n\n",
              static_cast<long long>(shape.vocab), shape.k);
  backend->load(shape, dense, hash);

  std::vector<std::int64_t> sizes = {1, 16, 64, opt.prefill ? opt.prefill : backend->prefill_size()};
  std::printf("%-6s %6s  %-5s %11s  %-22s %13s  %s\n", "layer", "N", "back", "time",
              "ids = oracle", "max |w err|", "tokens/expert min..max");
  bool all_ok = true;
  for (const char* kind : {"dense", "hash"}) {
    const bool is_hash = std::string(kind) == "hash";
    if ((is_hash ? hash : dense).w.empty()) continue;  // a checkpoint without this kind
    for (std::int64_t n : sizes) {
      const std::uint64_t data_seed = opt.seed * 1000003ull + static_cast<std::uint64_t>(n);
      const std::vector<bf16> x = make_hidden(n, shape.hidden, data_seed);
      const std::vector<std::int32_t> tokens = make_tokens(n, shape.vocab, data_seed + 7);
      std::vector<float> weights(static_cast<std::size_t>(n * shape.k));
      std::vector<std::int32_t> ids(static_cast<std::size_t>(n * shape.k));
      const double us = is_hash ? backend->route_hash(x, tokens, n, weights, ids)
                                : backend->route_dense(x, n, weights, ids);

      const oracle::RouteResult ref =
          is_hash ? oracle::hash_route(hash_gate_params(shape, hash.w.data(), hash.tid2eid.data(),
                                                        x.data(), 0, tokens.data(), DType::kI32,
                                                        n, nullptr, nullptr, DType::kI32))
                  : oracle::route(dense_gate_params(shape, dense.w.data(), dense.bias.data(),
                                                    x.data(), 0, n, nullptr, nullptr, DType::kI32));
      const oracle::RouteComparison cmp =
          oracle::compare_route(ref, ids.data(), DType::kI32, shape.k, weights.data(), shape.k);
      const auto [mn, mx] = expert_load(ids, shape.experts);
      char agree[64];
      std::snprintf(agree, sizeof(agree), "%lld/%lld (%.1f%%)%s",
                    static_cast<long long>(cmp.ids_equal), static_cast<long long>(cmp.ids_total),
                    100.0 * double(cmp.ids_equal) / double(std::max<std::int64_t>(cmp.ids_total, 1)),
                    cmp.rows_near_tie ? " +tie" : "");
      std::printf("%-6s %6lld  %-5s %11s  %-22s %13.2e  %lld..%lld%s\n", kind,
                  static_cast<long long>(n), backend->name().c_str(), format_time(us).c_str(),
                  agree, cmp.max_weight_error, static_cast<long long>(mn),
                  static_cast<long long>(mx), cmp.ok() ? "" : "   FAIL");
      if (!cmp.ok()) {
        std::printf("       first failure: %s\n", cmp.first_failure.c_str());
        all_ok = false;
      }
    }
  }
  std::printf("\n%s\n", all_ok ? "all results agree with the float64 oracle (SPEC.md tolerances)"
                               : "SOME RESULTS DISAGREE WITH THE ORACLE");
  return all_ok ? 0 : 1;
}

}  // namespace cli
}  // namespace moerouter
