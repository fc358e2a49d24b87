// `moerouter make-test-model` and `moerouter route`.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.h"
#include "moerouter/detail/math.h"
#include "moerouter/router.h"
#include "moerouter/synthetic.h"
#include "npy.h"
#include "progress.h"

namespace moerouter {
namespace cli {
namespace {

// Option parsing shared by the subcommands: --name value pairs and positionals.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> flags;

  Args(const std::vector<std::string>& args, const std::vector<std::string>& flag_names) {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a.rfind("--", 0) != 0) {
        positional.push_back(a);
      } else if (std::find(flag_names.begin(), flag_names.end(), a) != flag_names.end()) {
        flags.push_back(a);
      } else {
        if (i + 1 >= args.size()) throw std::invalid_argument(a + " needs a value");
        options.emplace_back(a, args[++i]);
      }
    }
  }
  const std::string* get(const std::string& name) const {
    for (const auto& [k, v] : options) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  bool flag(const std::string& name) const {
    return std::find(flags.begin(), flags.end(), name) != flags.end();
  }
  void only(const std::vector<std::string>& known) const {
    for (const auto& [k, v] : options) {
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        throw std::invalid_argument("unknown option '" + k + "'");
      }
    }
  }
};

std::int64_t to_int(const std::string& s, const std::string& what) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size()) throw std::invalid_argument(what + " must be an integer, got '" + s + "'");
  return v;
}

// Token ids from a .npy (int32/int64, any shape, flattened) or a text file of integers.
std::vector<std::int64_t> read_tokens(const std::string& path) {
  std::vector<std::int64_t> t;
  if (path.size() > 4 && path.substr(path.size() - 4) == ".npy") {
    const NpyArray a = read_npy(path);
    if (a.descr == "<i4") {
      for (std::int64_t i = 0; i < a.numel(); ++i) {
        std::int32_t v;
        std::memcpy(&v, a.data.data() + 4 * i, 4);
        t.push_back(v);
      }
    } else if (a.descr == "<i8") {
      t.resize(static_cast<std::size_t>(a.numel()));
      std::memcpy(t.data(), a.data.data(), a.data.size());
    } else {
      throw std::invalid_argument(path + ": token ids must be int32 or int64, got " + a.descr);
    }
    return t;
  }
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read tokens file " + path);
  std::string word;
  while (in >> word) t.push_back(to_int(word, path + ": token id"));
  return t;
}

// Hidden states [n, H] from a .npy: float32 (rounded to bf16) or uint16 (bf16 bits).
std::vector<bf16> read_hidden(const std::string& path, std::int64_t n, std::int64_t hidden) {
  const NpyArray a = read_npy(path);
  if (a.numel() != n * hidden) {
    throw std::invalid_argument(path + ": hidden states have " + std::to_string(a.numel()) +
                                " elements, expected n*hidden = " + std::to_string(n) + "*" +
                                std::to_string(hidden));
  }
  std::vector<bf16> x(static_cast<std::size_t>(n * hidden));
  if (a.descr == "<f4") {
    for (std::size_t i = 0; i < x.size(); ++i) {
      float f;
      std::memcpy(&f, a.data.data() + 4 * i, 4);
      x[i] = detail::float_to_bf16(f);
    }
  } else if (a.descr == "<u2") {
    std::memcpy(x.data(), a.data.data(), a.data.size());
  } else {
    throw std::invalid_argument(path + ": hidden states must be float32 or uint16 (bf16 bits), got " +
                                a.descr);
  }
  return x;
}

}  // namespace

int run_make_test_model(const std::vector<std::string>& argv) {
  const Args args(argv, {"--hf", "--single-file", "--no-mtp", "--tid2eid-int32"});
  args.only({"--model", "--layers", "--shards", "--hidden", "--experts", "--vocab", "--k",
             "--seed"});
  if (args.positional.size() != 1) throw std::invalid_argument("make-test-model needs one DIR");
  SyntheticCheckpointOptions o;
  if (const auto* m = args.get("--model")) o.shape = model_shape_by_name(*m);
  if (const auto* v = args.get("--layers")) o.layers = static_cast<int>(to_int(*v, "--layers"));
  if (const auto* v = args.get("--shards")) o.shards = static_cast<int>(to_int(*v, "--shards"));
  if (const auto* v = args.get("--hidden")) o.shape.hidden = to_int(*v, "--hidden");
  if (const auto* v = args.get("--experts")) o.shape.experts = to_int(*v, "--experts");
  if (const auto* v = args.get("--vocab")) o.shape.vocab = to_int(*v, "--vocab");
  if (const auto* v = args.get("--k")) o.shape.k = static_cast<std::int32_t>(to_int(*v, "--k"));
  if (const auto* v = args.get("--seed")) o.seed = static_cast<std::uint64_t>(to_int(*v, "--seed"));
  o.hf_naming = args.flag("--hf");
  o.single_file = args.flag("--single-file");
  o.mtp = !args.flag("--no-mtp");
  o.tid2eid_int64 = !args.flag("--tid2eid-int32");
  if (o.shape.hidden < 1 || o.shape.experts < 1 || o.shape.vocab < 1 || o.shape.k < 1 ||
      o.shape.k > o.shape.experts) {
    throw std::invalid_argument("need hidden, experts, vocab >= 1 and 1 <= k <= experts");
  }
  write_synthetic_checkpoint(args.positional[0], o);
  std::printf("wrote %s: %d layers (%d hash)%s, H=%lld E=%lld k=%d vocab=%lld, %s naming, %s\n",
              args.positional[0].c_str(), o.layers, std::min<int>(o.shape.num_hash_layers, o.layers),
              o.mtp ? " + MTP" : "", static_cast<long long>(o.shape.hidden),
              static_cast<long long>(o.shape.experts), o.shape.k,
              static_cast<long long>(o.shape.vocab), o.hf_naming ? "Hugging Face" : "DeepSeek",
              o.single_file ? "single file" : (std::to_string(o.shards) + " shards").c_str());
  return 0;
}

int run_route(const std::vector<std::string>& argv) {
  const Args args(argv, {});
  args.only({"--model", "--layer", "--tokens", "--hidden", "--out", "--backend", "--seed"});
  const std::string* model = args.get("--model");
  const std::string* layer_s = args.get("--layer");
  const std::string* tokens_path = args.get("--tokens");
  if (!model || !layer_s || !tokens_path) {
    throw std::invalid_argument("route needs --model DIR --layer L --tokens FILE");
  }
  RouterOptions opts;
  opts.device = RouterDevice::kCpu;
  if (const auto* b = args.get("--backend")) {
    if (*b == "gpu") {
      opts.device = RouterDevice::kCuda;
    } else if (*b == "auto") {
      opts.device = RouterDevice::kAuto;
    } else if (*b != "cpu") {
      throw std::invalid_argument("--backend must be cpu, gpu or auto, got '" + *b + "'");
    }
  }
  opts.progress = [](int done, int total) { progress_bar("loading gates", done, total); };
  const std::vector<std::int64_t> tokens = read_tokens(*tokens_path);
  const auto n = static_cast<std::int64_t>(tokens.size());
  opts.max_batch = std::max<std::int64_t>(n, 1);
  if (opts.device != RouterDevice::kCpu) {
    throw std::invalid_argument("route: only --backend cpu is available from the CLI for now");
  }
  const Router router = Router::from_pretrained(*model, opts);
  const ModelShape& c = router.config();
  const int layer = static_cast<int>(to_int(*layer_s, "--layer"));
  if (layer < 0 || layer >= router.num_layers()) {
    throw std::invalid_argument("--layer must be in [0, " + std::to_string(router.num_layers()) +
                                "), got " + std::to_string(layer));
  }
  std::vector<bf16> x;
  if (const auto* h = args.get("--hidden")) {
    x = read_hidden(*h, n, c.hidden);
  } else {
    const std::uint64_t seed = args.get("--seed") ? to_int(*args.get("--seed"), "--seed") : 1;
    x = make_hidden(n, c.hidden, seed);
    std::fprintf(stderr, "no --hidden given: using synthetic N(0,1) hidden states (seed %llu)\n",
                 static_cast<unsigned long long>(seed));
  }
  std::vector<float> weights(static_cast<std::size_t>(n * c.k));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n * c.k));
  router.route(layer, x.data(), tokens.data(), DType::kI64, n, weights.data(), ids.data());

  const std::string prefix = args.get("--out") ? *args.get("--out") : "route";
  write_npy(prefix + ".ids.npy", "<i4", {n, c.k}, ids.data(), ids.size() * 4);
  write_npy(prefix + ".weights.npy", "<f4", {n, c.k}, weights.data(), weights.size() * 4);
  std::ofstream csv(prefix + ".csv");
  csv << "token_index,token_id,slot,expert,weight\n";
  for (std::int64_t t = 0; t < n; ++t) {
    for (int j = 0; j < c.k; ++j) {
      char w[32];
      std::snprintf(w, sizeof(w), "%.9g", double(weights[t * c.k + j]));
      csv << t << ',' << tokens[t] << ',' << j << ',' << ids[t * c.k + j] << ',' << w << '\n';
    }
  }
  if (!csv) throw std::runtime_error("cannot write " + prefix + ".csv");
  std::printf("routed %lld tokens through layer %d (%s, k=%d): %s.ids.npy %s.weights.npy %s.csv\n",
              static_cast<long long>(n), layer, router.is_hash_layer(layer) ? "hash" : "dense", c.k,
              prefix.c_str(), prefix.c_str(), prefix.c_str());
  return 0;
}

}  // namespace cli
}  // namespace moerouter
