// A synthetic DeepSeek-V4 checkpoint in the real on-disk format (for tests and the CLI).
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "moerouter/router.h"
#include "moerouter/safetensors.h"
#include "moerouter/synthetic.h"

namespace moerouter {
namespace {

template <typename T>
std::vector<std::uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<std::uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

void write_synthetic_checkpoint(const std::string& dir, const SyntheticCheckpointOptions& o) {
  if (o.layers < 1 || o.shards < 1) throw std::invalid_argument("layers and shards must be >= 1");
  ::mkdir(dir.c_str(), 0755);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error("cannot create directory " + dir);
  }
  const ModelShape& s = o.shape;
  const GateNaming naming = o.hf_naming ? GateNaming::kHuggingFace : GateNaming::kDeepSeek;
  const int total = o.layers + (o.mtp ? 1 : 0);
  const int hash_layers = std::min<int>(s.num_hash_layers, o.layers);

  // Layers go to shards round-robin; tensors of one layer stay together.
  const int shards = o.single_file ? 1 : o.shards;
  std::vector<std::vector<TensorToWrite>> per_shard(static_cast<std::size_t>(shards));
  for (int i = 0; i < total; ++i) {
    const bool hash = i < hash_layers;
    const SyntheticLayer layer = make_synthetic_layer(s, o.seed + static_cast<std::uint64_t>(i), hash);
    auto& out = per_shard[static_cast<std::size_t>(i % shards)];
    out.push_back({gate_tensor_name(naming, i, o.layers, "weight"), "BF16", {s.experts, s.hidden},
                   as_bytes(layer.w)});
    if (hash) {
      if (o.tid2eid_int64) {
        std::vector<std::int64_t> t(layer.tid2eid.begin(), layer.tid2eid.end());
        out.push_back({gate_tensor_name(naming, i, o.layers, "tid2eid"), "I64", {s.vocab, s.k},
                       as_bytes(t)});
      } else {
        out.push_back({gate_tensor_name(naming, i, o.layers, "tid2eid"), "I32", {s.vocab, s.k},
                       as_bytes(layer.tid2eid)});
      }
    } else {
      out.push_back({gate_tensor_name(naming, i, o.layers, "bias"), "F32", {s.experts},
                     as_bytes(layer.bias)});
    }
    // A tensor the router never reads, as a real shard holds many.
    const std::string filler = o.hf_naming
                                   ? "model.layers." + std::to_string(i) + ".input_layernorm.weight"
                                   : (i == o.layers ? std::string("mtp.0") : "layers." + std::to_string(i)) +
                                         ".attn_norm.weight";
    out.push_back({filler, "BF16", {s.hidden}, std::vector<std::uint8_t>(s.hidden * 2, 0x3f)});
  }

  nlohmann::json weight_map = nlohmann::json::object();
  for (int sh = 0; sh < shards; ++sh) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", sh + 1, shards);
    const std::string file = o.single_file ? "model.safetensors" : name;
    write_safetensors(dir + "/" + file, per_shard[static_cast<std::size_t>(sh)], {{"format", "pt"}});
    for (const auto& t : per_shard[static_cast<std::size_t>(sh)]) weight_map[t.name] = file;
  }
  if (!o.single_file) {
    std::ofstream(dir + "/model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2);
  }

  nlohmann::json cfg;
  if (o.hf_naming) {
    cfg = {{"architectures", {"DeepseekV4ForCausalLM"}},
           {"hidden_size", s.hidden},
           {"n_routed_experts", s.experts},
           {"num_experts_per_tok", s.k},
           {"routed_scaling_factor", s.scale},
           {"num_hash_layers", hash_layers},
           {"vocab_size", s.vocab},
           {"num_hidden_layers", o.layers},
           {"num_nextn_predict_layers", o.mtp ? 1 : 0},
           {"scoring_func", "sqrtsoftplus"},
           {"topk_method", "noaux_tc"},
           {"index_topk", s.index_topk}};
  } else {
    cfg = {{"dim", s.hidden},
           {"n_routed_experts", s.experts},
           {"n_activated_experts", s.k},
           {"route_scale", s.scale},
           {"n_hash_layers", hash_layers},
           {"vocab_size", s.vocab},
           {"n_layers", o.layers},
           {"score_func", "sqrtsoftplus"},
           {"index_topk", s.index_topk}};
  }
  std::ofstream(dir + "/config.json") << cfg.dump(2);
}

}  // namespace moerouter
