// Router: config parsing, checkpoint loading in both naming schemes, sharded and single-file,
// routes equal to the oracle, and every broken checkpoint a clear error.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moerouter/oracle.h"
#include "moerouter/router.h"
#include "moerouter/safetensors.h"
#include "moerouter/synthetic.h"

namespace moerouter {
namespace {

ModelShape tiny_shape() {
  ModelShape s = dsv4_flash();
  s.hidden = 128;
  s.experts = 32;
  s.k = 6;
  s.vocab = 500;
  return s;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/moer_" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  return dir;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Routes every layer of `r` on the CPU and checks it against the oracle.
void expect_routes_match_oracle(const Router& r, std::uint64_t seed) {
  const ModelShape& c = r.config();
  const std::int64_t n = 23;
  const auto x = make_hidden(n, c.hidden, seed);
  const auto tokens = make_tokens(n, c.vocab, seed + 1);
  for (int layer = 0; layer < r.num_layers(); ++layer) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    std::vector<float> w(n * c.k);
    std::vector<std::int64_t> ids(n * c.k);
    r.route(layer, x.data(), tokens.data(), DType::kI32, n, w.data(), ids.data(), DType::kI64);
    const GateTensors& g = r.layer(layer);
    const oracle::RouteResult ref =
        g.hash ? oracle::hash_route(hash_gate_params(c, g.w.data(), g.tid2eid.data(), x.data(), 0,
                                                     tokens.data(), DType::kI32, n, nullptr,
                                                     nullptr, DType::kI32))
               : oracle::route(dense_gate_params(c, g.w.data(), g.bias.data(), x.data(), 0, n,
                                                 nullptr, nullptr, DType::kI32));
    const auto cmp = oracle::compare_route(ref, ids.data(), DType::kI64, c.k, w.data(), c.k);
    EXPECT_TRUE(cmp.ok()) << cmp.first_failure;
  }
}

TEST(RouterConfig, BothSpellings) {
  const ModelShape hf = parse_model_config(
      R"({"hidden_size":7168,"n_routed_experts":384,"num_experts_per_tok":6,
          "routed_scaling_factor":2.5,"num_hash_layers":3,"vocab_size":129280,
          "num_hidden_layers":61,"scoring_func":"sqrtsoftplus","topk_method":"noaux_tc",
          "index_topk":1024})",
      "hf");
  EXPECT_EQ(hf.hidden, 7168);
  EXPECT_EQ(hf.experts, 384);
  EXPECT_EQ(hf.num_hash_layers, 3);
  EXPECT_EQ(hf.scale, 2.5f);
  EXPECT_EQ(hf.index_topk, 1024);
  const ModelShape ds = parse_model_config(
      R"({"dim":4096,"n_routed_experts":256,"n_activated_experts":6,"route_scale":1.5,
          "n_hash_layers":3,"vocab_size":129280,"n_layers":43,"score_func":"sqrtsoftplus"})",
      "ds");
  EXPECT_EQ(ds.hidden, 4096);
  EXPECT_EQ(ds.k, 6);
  EXPECT_EQ(ds.scale, 1.5f);
  // DeepSeek-V4.1-Flash has no num_hash_layers: 0.
  const ModelShape v41 = parse_model_config(
      R"({"hidden_size":5120,"n_routed_experts":384,"num_experts_per_tok":6,
          "routed_scaling_factor":1.5,"vocab_size":129280,"num_hidden_layers":40})",
      "v41");
  EXPECT_EQ(v41.num_hash_layers, 0);
}

TEST(RouterConfig, ClearErrors) {
  auto err = [](const std::string& text) {
    try {
      parse_model_config(text, "cfg.json");
    } catch (const RouterError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"n_routed_experts":8})").find("missing 'hidden_size' or 'dim'"),
            std::string::npos);
  EXPECT_NE(err(R"({"hidden_size":8,"n_routed_experts":8,"num_experts_per_tok":9,"vocab_size":5,"num_hidden_layers":2})")
                .find("num_experts_per_tok must be in [1, n_routed_experts=8], got 9"),
            std::string::npos);
  EXPECT_NE(err(R"({"hidden_size":8,"n_routed_experts":8,"num_experts_per_tok":2,"vocab_size":5,"num_hidden_layers":2,"scoring_func":"sigmoid"})")
                .find("sqrtsoftplus"),
            std::string::npos);
  EXPECT_NE(err(R"({"hidden_size":8.5,"n_routed_experts":8,"num_experts_per_tok":2,"vocab_size":5,"num_hidden_layers":2})")
                .find("must be an integer in [0, 1e9]"),
            std::string::npos);
  EXPECT_NE(err(R"({"hidden_size":1e300,"n_routed_experts":8,"num_experts_per_tok":2,"vocab_size":5,"num_hidden_layers":2})")
                .find("must be an integer in [0, 1e9]"),
            std::string::npos);
  EXPECT_NE(err(R"({"hidden_size":8,"n_routed_experts":8,"num_experts_per_tok":2,"vocab_size":5,"num_hidden_layers":2,"num_hash_layers":3})")
                .find("exceeds num_hidden_layers"),
            std::string::npos);
}

struct LoadCase {
  const char* name;
  bool hf, single, int64_table;
  int shards;
};

TEST(RouterLoad, NamingSchemesShardingAndTableDtypes) {
  const LoadCase cases[] = {{"ds_sharded", false, false, true, 3},
                            {"hf_sharded", true, false, false, 2},
                            {"ds_single", false, true, false, 1},
                            {"hf_single", true, true, true, 1}};
  for (const LoadCase& lc : cases) {
    SCOPED_TRACE(lc.name);
    SyntheticCheckpointOptions o;
    o.shape = tiny_shape();
    o.layers = 5;
    o.hf_naming = lc.hf;
    o.single_file = lc.single;
    o.shards = lc.shards;
    o.tid2eid_int64 = lc.int64_table;
    o.seed = 77;
    const std::string dir = fresh_dir(lc.name);
    write_synthetic_checkpoint(dir, o);
    int progress_calls = 0;
    RouterOptions ro;
    ro.device = RouterDevice::kCpu;
    ro.progress = [&](int done, int total) {
      ++progress_calls;
      EXPECT_LE(done, total);
    };
    const Router r = Router::from_pretrained(dir, ro);
    EXPECT_EQ(r.num_layers(), 6);  // 5 + MTP
    EXPECT_EQ(progress_calls, 6);
    EXPECT_EQ(r.naming(), lc.hf ? GateNaming::kHuggingFace : GateNaming::kDeepSeek);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(r.is_hash_layer(i), i < 3) << i;
    // The tensors are the generator's, bit for bit.
    const SyntheticLayer l1 = make_synthetic_layer(o.shape, 78, true);
    EXPECT_EQ(0, std::memcmp(r.layer(1).w.data(), l1.w.data(), l1.w.size() * 2));
    EXPECT_EQ(r.layer(1).tid2eid, l1.tid2eid);
    const SyntheticLayer l4 = make_synthetic_layer(o.shape, 81, false);
    EXPECT_EQ(r.layer(4).bias, l4.bias);
    expect_routes_match_oracle(r, 5);
  }
}

TEST(RouterLoad, FromTensorsInMemory) {
  const ModelShape s = tiny_shape();
  std::vector<GateTensors> layers;
  for (int i = 0; i < 4; ++i) {
    const SyntheticLayer l = make_synthetic_layer(s, 10 + i, i < 3);
    layers.push_back({i < 3, l.w, i < 3 ? std::vector<float>{} : l.bias, l.tid2eid});
  }
  RouterOptions ro;
  ro.device = RouterDevice::kCpu;
  ModelShape cfg = s;
  cfg.num_layers = 4;
  const Router r(cfg, layers, ro);
  EXPECT_FALSE(r.on_gpu());
  expect_routes_match_oracle(r, 9);
  // A dense layer where num_hash_layers says hash, a short weight, a bad table entry.
  auto bad = layers;
  bad[0].hash = false;
  EXPECT_THROW(Router(cfg, bad, ro), RouterError);
  bad = layers;
  bad[3].w.pop_back();
  EXPECT_THROW(Router(cfg, bad, ro), RouterError);
  bad = layers;
  bad[1].tid2eid[7] = 32;
  try {
    Router(cfg, bad, ro);
    ADD_FAILURE() << "a table entry of 32 with E=32 must be refused";
  } catch (const RouterError& e) {
    EXPECT_NE(std::string(e.what()).find("outside [0, 32)"), std::string::npos) << e.what();
  }
}

TEST(RouterRoute, BadArgumentsAndBadTokenIds) {
  SyntheticCheckpointOptions o;
  o.shape = tiny_shape();
  o.layers = 4;
  const std::string dir = fresh_dir("route_args");
  write_synthetic_checkpoint(dir, o);
  RouterOptions ro;
  ro.device = RouterDevice::kCpu;
  ro.max_batch = 8;
  const Router r = Router::from_pretrained(dir, ro);
  const auto x = make_hidden(8, o.shape.hidden, 1);
  std::vector<std::int32_t> tokens = {1, 2, 3, 600, 4, 5, 6, 7};  // 600 >= vocab 500
  std::vector<float> w(8 * 6);
  std::vector<std::int32_t> ids(8 * 6);
  try {
    r.route(0, x.data(), tokens.data(), DType::kI32, 8, w.data(), ids.data());
    ADD_FAILURE() << "a bad token id must throw on the CPU";
  } catch (const RouterError& e) {
    EXPECT_NE(std::string(e.what()).find("kInvalidTokenId"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ids[3 * 6], -1);
  EXPECT_EQ(w[3 * 6], 0.0f);
  EXPECT_GE(ids[4 * 6], 0);  // other rows routed
  EXPECT_THROW(r.route(9, x.data(), tokens.data(), DType::kI32, 1, w.data(), ids.data()), RouterError);
  EXPECT_THROW(r.route(3, x.data(), nullptr, DType::kI32, 9, w.data(), ids.data()), RouterError);
  // Dense layers need no token ids.
  r.route(3, x.data(), nullptr, DType::kI32, 8, w.data(), ids.data());
  EXPECT_THROW(r.route(0, x.data(), nullptr, DType::kI32, 8, w.data(), ids.data()), RouterError);
}

// --- broken checkpoints -------------------------------------------------------------------

std::string load_error(const std::string& dir) {
  RouterOptions ro;
  ro.device = RouterDevice::kCpu;
  try {
    Router::from_pretrained(dir, ro);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string broken_checkpoint(const std::string& name, bool single = false) {
  SyntheticCheckpointOptions o;
  o.shape = tiny_shape();
  o.layers = 4;
  o.shards = 2;
  o.single_file = single;
  const std::string dir = fresh_dir(name);
  write_synthetic_checkpoint(dir, o);
  return dir;
}

// Rewrites one shard with a tensor changed by `edit` (which may drop it).
void rewrite_shard(const std::string& path,
                   const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  std::vector<TensorToWrite> tensors;
  {
    const SafetensorsFile f(path);
    for (const auto& [name, info] : f.view().tensors()) {
      const auto* p = f.view().bytes(name);
      tensors.push_back({name, info.dtype, info.shape,
                         std::vector<std::uint8_t>(p, p + (info.end - info.begin))});
    }
  }
  edit(tensors);
  write_safetensors(path, tensors);
}

TEST(RouterLoad, BrokenCheckpointsAreClearErrors) {
  const std::string shard1 = "/model-00001-of-00002.safetensors";
  {
    const std::string dir = broken_checkpoint("no_config");
    std::remove((dir + "/config.json").c_str());
    EXPECT_NE(load_error(dir).find("no config.json"), std::string::npos);
  }
  {
    const std::string dir = broken_checkpoint("truncated");
    const std::string bytes = slurp(dir + shard1);
    spit(dir + shard1, bytes.substr(0, bytes.size() - 100));
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
    EXPECT_NE(e.find("model-00001-of-00002"), std::string::npos) << e;
  }
  {
    const std::string dir = broken_checkpoint("bad_header");
    std::string bytes = slurp(dir + shard1);
    bytes[8] = '#';  // the header's opening brace
    spit(dir + shard1, bytes);
    EXPECT_NE(load_error(dir).find("not valid JSON"), std::string::npos);
  }
  {
    const std::string dir = broken_checkpoint("missing_bias");
    rewrite_shard(dir + "/model-00002-of-00002.safetensors", [](auto& t) {
      t.erase(std::remove_if(t.begin(), t.end(),
                             [](const TensorToWrite& x) { return x.name == "layers.3.ffn.gate.bias"; }),
              t.end());
    });
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("'layers.3.ffn.gate.bias'"), std::string::npos) << e;
  }
  {
    const std::string dir = broken_checkpoint("wrong_dtype");
    rewrite_shard(dir + shard1, [](auto& t) {
      for (auto& x : t) {
        if (x.name == "layers.0.ffn.gate.weight") x.dtype = "F16";
      }
    });
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("has dtype F16, expected BF16"), std::string::npos) << e;
  }
  {
    const std::string dir = broken_checkpoint("wrong_shape");
    rewrite_shard(dir + shard1, [](auto& t) {
      for (auto& x : t) {
        if (x.name == "layers.0.ffn.gate.weight") x.shape = {128, 32};
      }
    });
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("has shape [128, 32], expected [32, 128]"), std::string::npos) << e;
  }
  {
    // The config says 64 experts, the tensors hold 32.
    const std::string dir = broken_checkpoint("config_disagrees");
    auto cfg = nlohmann::json::parse(slurp(dir + "/config.json"));
    cfg["n_routed_experts"] = 64;
    spit(dir + "/config.json", cfg.dump());
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("expected [64, 128]"), std::string::npos) << e;
  }
  {
    const std::string dir = broken_checkpoint("bad_table");
    rewrite_shard(dir + shard1, [](auto& t) {
      for (auto& x : t) {
        if (x.name == "layers.0.ffn.gate.tid2eid") {
          const std::int64_t bad = 999;
          std::memcpy(x.bytes.data() + 8 * 5, &bad, 8);
        }
      }
    });
    const std::string e = load_error(dir);
    EXPECT_NE(e.find("holds expert 999"), std::string::npos) << e;
  }
  {
    const std::string dir = broken_checkpoint("bad_index");
    spit(dir + "/model.safetensors.index.json", R"({"weight_map":{"layers.0.ffn.gate.weight":"../etc"}})");
    EXPECT_NE(load_error(dir).find("must be a file name"), std::string::npos);
    spit(dir + "/model.safetensors.index.json", R"({"nope":1})");
    EXPECT_NE(load_error(dir).find("weight_map"), std::string::npos);
  }
  {
    const std::string dir = broken_checkpoint("not_dsv4", true);
    rewrite_shard(dir + "/model.safetensors", [](auto& t) {
      for (auto& x : t) {
        if (x.name == "layers.0.ffn.gate.weight") x.name = "something.else";
      }
    });
    EXPECT_NE(load_error(dir).find("not a DeepSeek-V4 checkpoint"), std::string::npos);
  }
  EXPECT_NE(load_error("/nonexistent_dir").find("no config.json"), std::string::npos);
}

}  // namespace
}  // namespace moerouter
