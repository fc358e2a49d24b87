// Router: config parsing, checkpoint loading and per-layer dispatch.
#include "moerouter/router.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moerouter/cpu.h"
#include "moerouter/device.h"
#include "moerouter/safetensors.h"
#include "router_backend.h"

namespace moerouter {
namespace {

[[noreturn]] void fail(const std::string& what) { throw RouterError(what); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The first of `names` present in `cfg`, as a number; `fallback` (or an error) when none is.
double config_number(const nlohmann::json& cfg, std::initializer_list<const char*> names,
                     const std::string& source, const double* fallback = nullptr) {
  for (const char* n : names) {
    if (cfg.contains(n) && !cfg[n].is_null()) {
      if (!cfg[n].is_number()) fail(source + ": '" + n + "' must be a number");
      return cfg[n].get<double>();
    }
  }
  if (fallback) return *fallback;
  std::string list;
  for (const char* n : names) list += (list.empty() ? "'" : " or '") + std::string(n) + "'";
  fail(source + ": missing " + list);
}

std::int64_t config_int(const nlohmann::json& cfg, std::initializer_list<const char*> names,
                        const std::string& source, const double* fallback = nullptr) {
  const double v = config_number(cfg, names, source, fallback);
  // Range first: casting an out-of-range double to an integer is undefined behaviour. 1e9 keeps
  // every field inside int32 and every product of two inside int64.
  if (!(v >= 0 && v <= 1e9) || v != std::floor(v)) {
    fail(source + ": '" + *names.begin() + "' must be an integer in [0, 1e9], got " +
         std::to_string(v));
  }
  return static_cast<std::int64_t>(v);
}

void check_shape(const TensorInfo& info, const std::string& tensor,
                 std::vector<std::int64_t> want, const std::string& what) {
  if (info.shape != want) {
    auto str = [](const std::vector<std::int64_t>& s) {
      std::string o = "[";
      for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
      return o + "]";
    };
    fail("tensor '" + tensor + "' has shape " + str(info.shape) + ", expected " + str(want) +
         " (" + what + ")");
  }
}

}  // namespace

ModelShape parse_model_config(const std::string& json_text, const std::string& source) {
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail(source + ": not valid JSON: " + e.what());
  }
  if (!cfg.is_object()) fail(source + ": must be a JSON object");
  for (const char* key : {"scoring_func", "score_func"}) {
    if (cfg.contains(key)) {
      if (!cfg[key].is_string() || cfg[key].get<std::string>() != "sqrtsoftplus") {
        fail(source + ": '" + key + "' is " + cfg[key].dump() +
             ", moerouter implements DeepSeek-V4's \"sqrtsoftplus\"");
      }
    }
  }
  if (cfg.contains("topk_method") &&
      (!cfg["topk_method"].is_string() || cfg["topk_method"].get<std::string>() != "noaux_tc")) {
    fail(source + ": 'topk_method' is " + cfg["topk_method"].dump() +
         ", moerouter implements \"noaux_tc\" (one flat top-k)");
  }
  const double zero = 0, one = 1;
  ModelShape s;
  s.name = "checkpoint";
  s.hidden = config_int(cfg, {"hidden_size", "dim"}, source);
  s.experts = config_int(cfg, {"n_routed_experts", "num_experts"}, source);
  s.k = static_cast<std::int32_t>(
      config_int(cfg, {"num_experts_per_tok", "n_activated_experts"}, source));
  s.scale = static_cast<float>(config_number(cfg, {"routed_scaling_factor", "route_scale"}, source, &one));
  s.vocab = config_int(cfg, {"vocab_size"}, source);
  s.num_hash_layers =
      static_cast<std::int32_t>(config_int(cfg, {"num_hash_layers", "n_hash_layers"}, source, &zero));
  s.num_layers = static_cast<std::int32_t>(config_int(cfg, {"num_hidden_layers", "n_layers"}, source));
  s.index_topk = static_cast<std::int32_t>(config_int(cfg, {"index_topk"}, source, &zero));
  if (s.hidden < 1) fail(source + ": hidden size must be >= 1");
  if (s.experts < 1) fail(source + ": n_routed_experts must be >= 1");
  if (s.k < 1 || s.k > s.experts) {
    fail(source + ": num_experts_per_tok must be in [1, n_routed_experts=" +
         std::to_string(s.experts) + "], got " + std::to_string(s.k));
  }
  if (s.vocab < 1) fail(source + ": vocab_size must be >= 1");
  if (s.num_layers < 1) fail(source + ": num_hidden_layers must be >= 1");
  if (s.num_hash_layers > s.num_layers) {
    fail(source + ": num_hash_layers=" + std::to_string(s.num_hash_layers) +
         " exceeds num_hidden_layers=" + std::to_string(s.num_layers));
  }
  if (!std::isfinite(s.scale)) fail(source + ": routed_scaling_factor must be finite");
  return s;
}

RouteParams dense_gate_params(const ModelShape& c, const void* w, const float* bias,
                              const void* x, std::int64_t x_stride, std::int64_t n,
                              float* weights, void* ids, DType ids_dtype) {
  RouteParams p;
  p.x = x;
  p.x_stride = x_stride;
  p.w = w;
  p.bias = bias;
  p.weights = weights;
  p.ids = ids;
  p.ids_dtype = ids_dtype;
  p.n = n;
  p.hidden = c.hidden;
  p.experts = c.experts;
  p.k = c.k;
  p.scale = c.scale;
  return p;
}

HashRouteParams hash_gate_params(const ModelShape& c, const void* w,
                                 const std::int32_t* tid2eid, const void* x, std::int64_t x_stride,
                                 const void* token_ids, DType token_dtype, std::int64_t n,
                                 float* weights, void* ids, DType ids_dtype) {
  HashRouteParams p;
  p.token_ids = token_ids;
  p.token_dtype = token_dtype;
  p.table = tid2eid;
  p.table_dtype = DType::kI32;
  p.weights = weights;
  p.ids = ids;
  p.ids_dtype = ids_dtype;
  p.source = HashWeights::kFromX;
  p.x = x;
  p.x_stride = x_stride;
  p.w = w;
  p.hidden = c.hidden;
  p.n = n;
  p.vocab = c.vocab;
  p.experts = c.experts;
  p.k = c.k;
  p.scale = c.scale;
  return p;
}

std::string gate_tensor_name(GateNaming naming, int layer, int num_layers,
                             const std::string& part) {
  if (naming == GateNaming::kDeepSeek) {
    const std::string prefix =
        layer == num_layers ? "mtp.0.ffn.gate." : "layers." + std::to_string(layer) + ".ffn.gate.";
    return prefix + part;
  }
  const std::string hf_part = part == "bias" ? "e_score_correction_bias" : part;
  return "model.layers." + std::to_string(layer) + ".mlp.gate." + hf_part;
}

struct Router::Impl {
  ModelShape config;
  std::vector<GateTensors> layers;
  GateNaming naming = GateNaming::kDeepSeek;
  RouterOptions options;
  std::unique_ptr<detail::RouterBackend> gpu;  // null: CPU
};

namespace {

// Checks one layer's tensors against the config (shared by both constructors).
void check_layer(const ModelShape& c, const GateTensors& g, int i) {
  const std::string where = "layer " + std::to_string(i) + (g.hash ? " (hash)" : " (dense)");
  if (static_cast<std::int64_t>(g.w.size()) != c.experts * c.hidden) {
    fail(where + ": weight has " + std::to_string(g.w.size()) + " elements, expected E*H = " +
         std::to_string(c.experts * c.hidden));
  }
  if (!g.bias.empty() && static_cast<std::int64_t>(g.bias.size()) != c.experts) {
    fail(where + ": bias has " + std::to_string(g.bias.size()) + " elements, expected E = " +
         std::to_string(c.experts));
  }
  if (g.hash && static_cast<std::int64_t>(g.tid2eid.size()) != c.vocab * c.k) {
    fail(where + ": tid2eid has " + std::to_string(g.tid2eid.size()) +
         " elements, expected vocab*k = " + std::to_string(c.vocab * c.k));
  }
  for (std::int32_t e : g.tid2eid) {
    if (e < 0 || e >= c.experts) {
      fail(where + ": tid2eid holds expert " + std::to_string(e) + ", outside [0, " +
           std::to_string(c.experts) + ")");
    }
  }
}

}  // namespace

Router::Router(const ModelShape& config, std::vector<GateTensors> layers,
               const RouterOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = config;
  impl_->options = options;
  if (layers.empty()) fail("a Router needs at least one layer");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const bool want_hash = static_cast<int>(i) < config.num_hash_layers;
    if (layers[i].hash != want_hash) {
      fail("layer " + std::to_string(i) + " is " + (layers[i].hash ? "hash" : "dense") +
           " but num_hash_layers=" + std::to_string(config.num_hash_layers) + " makes it " +
           (want_hash ? "hash" : "dense"));
    }
    check_layer(config, layers[i], static_cast<int>(i));
  }
  impl_->layers = std::move(layers);
  const bool want_gpu = options.device == RouterDevice::kCuda ||
                        (options.device == RouterDevice::kAuto && cuda_available());
  if (want_gpu) {
    if (!cuda_available()) fail("RouterDevice::kCuda requested: " + cuda_device_description());
    impl_->gpu = detail::make_cuda_router_backend();
    impl_->gpu->upload(impl_->config, impl_->layers, options.max_batch);
  }
}

Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

const ModelShape& Router::config() const { return impl_->config; }
int Router::num_layers() const { return static_cast<int>(impl_->layers.size()); }
bool Router::on_gpu() const { return impl_->gpu != nullptr; }
GateNaming Router::naming() const { return impl_->naming; }
std::int32_t* Router::hash_error_flag() const {
  return impl_->gpu ? impl_->gpu->error_flag() : nullptr;
}

bool Router::is_hash_layer(int layer) const { return this->layer(layer).hash; }

const GateTensors& Router::layer(int i) const {
  if (i < 0 || i >= num_layers()) {
    fail("layer must be in [0, " + std::to_string(num_layers()) + "), got " + std::to_string(i));
  }
  return impl_->layers[static_cast<std::size_t>(i)];
}

void Router::route(int layer_index, const bf16* x, const void* token_ids, DType token_dtype,
                   std::int64_t n, float* weights, void* ids, DType ids_dtype,
                   std::int64_t x_stride, void* stream) const {
  const GateTensors& g = layer(layer_index);
  const ModelShape& c = impl_->config;
  if (n > impl_->options.max_batch) {
    fail("route: n=" + std::to_string(n) + " exceeds the Router's max_batch=" +
         std::to_string(impl_->options.max_batch));
  }
  if (impl_->gpu) {
    impl_->gpu->route(layer_index, g.hash, x, x_stride, token_ids, token_dtype, n, weights, ids,
                      ids_dtype, stream, impl_->options.checked, impl_->options.pdl);
    return;
  }
  const Status st =
      g.hash ? cpu::hash_route(hash_gate_params(c, g.w.data(), g.tid2eid.data(), x, x_stride,
                                                token_ids, token_dtype, n, weights, ids, ids_dtype))
             : cpu::route(dense_gate_params(c, g.w.data(), g.bias.empty() ? nullptr : g.bias.data(),
                                            x, x_stride, n, weights, ids, ids_dtype));
  if (!st.ok()) fail("route(layer " + std::to_string(layer_index) + "): " + st.to_string());
}

// --- loading ----------------------------------------------------------------------------------

Router Router::from_pretrained(const std::string& dir, const RouterOptions& options) {
  const std::string config_path = dir + "/config.json";
  if (!file_exists(config_path)) fail(dir + ": no config.json");
  const ModelShape config = parse_model_config(read_text(config_path), config_path);

  // tensor name -> shard file name.
  std::map<std::string, std::string> weight_map;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (file_exists(index_path)) {
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(read_text(index_path));
    } catch (const nlohmann::json::exception& e) {
      fail(index_path + ": not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      fail(index_path + ": needs an object 'weight_map'");
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string()) fail(index_path + ": weight_map['" + it.key() + "'] must be a string");
      const std::string shard = it->get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." || shard.empty()) {
        fail(index_path + ": shard name '" + shard + "' must be a file name in the directory");
      }
      weight_map[it.key()] = shard;
    }
  } else if (file_exists(dir + "/model.safetensors")) {
    SafetensorsFile single(dir + "/model.safetensors");
    for (const auto& [name, info] : single.view().tensors()) weight_map[name] = "model.safetensors";
  } else {
    fail(dir + ": neither model.safetensors.index.json nor model.safetensors found");
  }

  // The naming scheme: whichever names layer 0's gate weight.
  GateNaming naming;
  if (weight_map.count(gate_tensor_name(GateNaming::kDeepSeek, 0, config.num_layers, "weight"))) {
    naming = GateNaming::kDeepSeek;
  } else if (weight_map.count(
                 gate_tensor_name(GateNaming::kHuggingFace, 0, config.num_layers, "weight"))) {
    naming = GateNaming::kHuggingFace;
  } else {
    fail(dir + ": missing tensor '" +
         gate_tensor_name(GateNaming::kDeepSeek, 0, config.num_layers, "weight") + "' (or '" +
         gate_tensor_name(GateNaming::kHuggingFace, 0, config.num_layers, "weight") +
         "'): not a DeepSeek-V4 checkpoint?");
  }
  const bool has_mtp =
      weight_map.count(gate_tensor_name(naming, config.num_layers, config.num_layers, "weight"));
  const int total = config.num_layers + (has_mtp ? 1 : 0);

  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  auto tensor = [&](const std::string& name) -> std::pair<const SafetensorsView*, const TensorInfo*> {
    const auto it = weight_map.find(name);
    if (it == weight_map.end()) fail(dir + ": missing tensor '" + name + "'");
    auto& shard = shards[it->second];
    if (!shard) shard = std::make_unique<SafetensorsFile>(dir + "/" + it->second);
    const SafetensorsView& v = shard->view();
    if (!v.contains(name)) {
      fail(v.name() + ": the index lists tensor '" + name + "' in this file, but it is absent");
    }
    return {&v, &v.info(name)};
  };

  std::vector<GateTensors> layers(static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) {
    GateTensors& g = layers[static_cast<std::size_t>(i)];
    g.hash = i < config.num_hash_layers;
    {
      const std::string name = gate_tensor_name(naming, i, config.num_layers, "weight");
      auto [v, info] = tensor(name);
      if (info->dtype != "BF16") fail("tensor '" + name + "' has dtype " + info->dtype + ", expected BF16");
      check_shape(*info, name, {config.experts, config.hidden}, "[n_routed_experts, hidden_size]");
      g.w.resize(static_cast<std::size_t>(info->numel()));
      std::memcpy(g.w.data(), v->bytes(name), g.w.size() * sizeof(bf16));
    }
    if (!g.hash) {
      const std::string name = gate_tensor_name(naming, i, config.num_layers, "bias");
      auto [v, info] = tensor(name);
      if (info->dtype != "F32") fail("tensor '" + name + "' has dtype " + info->dtype + ", expected F32");
      check_shape(*info, name, {config.experts}, "[n_routed_experts]");
      g.bias.resize(static_cast<std::size_t>(info->numel()));
      std::memcpy(g.bias.data(), v->bytes(name), g.bias.size() * sizeof(float));
    } else {
      const std::string name = gate_tensor_name(naming, i, config.num_layers, "tid2eid");
      auto [v, info] = tensor(name);
      check_shape(*info, name, {config.vocab, config.k}, "[vocab_size, num_experts_per_tok]");
      g.tid2eid.resize(static_cast<std::size_t>(info->numel()));
      const std::uint8_t* src = v->bytes(name);
      if (info->dtype == "I32") {
        std::memcpy(g.tid2eid.data(), src, g.tid2eid.size() * 4);
      } else if (info->dtype == "I64") {
        for (std::size_t j = 0; j < g.tid2eid.size(); ++j) {
          std::int64_t e;
          std::memcpy(&e, src + 8 * j, 8);
          if (e < 0 || e >= config.experts) {
            fail("tensor '" + name + "' holds expert " + std::to_string(e) + " at entry " +
                 std::to_string(j) + ", outside [0, " + std::to_string(config.experts) + ")");
          }
          g.tid2eid[j] = static_cast<std::int32_t>(e);
        }
      } else {
        fail("tensor '" + name + "' has dtype " + info->dtype + ", expected I64 or I32");
      }
    }
    if (options.progress) options.progress(i + 1, total);
  }
  Router r(config, std::move(layers), options);
  r.impl_->naming = naming;
  return r;
}

}  // namespace moerouter
