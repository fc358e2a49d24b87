// moerouter: DSV4 model shapes and seeded synthetic gate data (for the demo, tests and
// benchmarks). Same seed, same bytes, on every machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moerouter/types.h"

namespace moerouter {

/// The router-relevant numbers of a DeepSeek-V4 model (SPEC.md, "Models").
struct ModelShape {
  std::string name;             ///< "flash" or "pro"
  std::int64_t hidden = 0;      ///< H
  std::int64_t experts = 0;     ///< E (n_routed_experts)
  std::int32_t k = 0;           ///< num_experts_per_tok
  float scale = 1.0f;           ///< routed_scaling_factor
  std::int64_t vocab = 0;
  std::int32_t num_hash_layers = 0;
  std::int32_t num_layers = 0;  ///< num_hidden_layers (the MTP layer comes on top)
  std::int32_t index_topk = 0;  ///< the sparse-attention indexer's k
};

ModelShape dsv4_flash();  ///< H=4096 E=256 k=6 scale 1.5
ModelShape dsv4_pro();    ///< H=7168 E=384 k=6 scale 2.5
/// "flash" or "pro"; throws std::invalid_argument naming the accepted values otherwise.
ModelShape model_shape_by_name(const std::string& name);

/// A gate layer with realistic statistics: W ~ N(0, (1.5 / sqrt(H))^2) in bf16 (logits of
/// unit-RMS hidden states then have a standard deviation near 1.5), bias ~ 8.08 + N(0, 0.02^2)
/// (DSV4-Flash's is about 8.08 on every expert), and a tid2eid table [vocab, k] of k distinct
/// experts per token.
struct SyntheticLayer {
  std::vector<bf16> w;                ///< [E, H]
  std::vector<float> bias;            ///< [E]
  std::vector<std::int32_t> tid2eid;  ///< [vocab, k] (only when made with a table)
};
SyntheticLayer make_synthetic_layer(const ModelShape& shape, std::uint64_t seed,
                                    bool with_table);

/// Hidden states x [n, hidden] in bf16, each row ~ N(0, 1) (RMS-normalized, as the gate sees).
std::vector<bf16> make_hidden(std::int64_t n, std::int64_t hidden, std::uint64_t seed);

/// n token ids uniform in [0, vocab).
std::vector<std::int32_t> make_tokens(std::int64_t n, std::int64_t vocab, std::uint64_t seed);

/// A small deterministic generator (splitmix64 + Box-Muller): the same stream everywhere.
class SeededRng {
 public:
  explicit SeededRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next_u64();
  double uniform();  ///< [0, 1)
  double normal();   ///< N(0, 1)
  /// Integer in [0, bound).
  std::uint64_t below(std::uint64_t bound) { return next_u64() % bound; }

 private:
  std::uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace moerouter

namespace moerouter {

/// What write_synthetic_checkpoint writes.
struct SyntheticCheckpointOptions {
  ModelShape shape = dsv4_flash();  ///< hidden/experts/k/scale/vocab/num_hash_layers used
  int layers = 4;                   ///< num_hidden_layers (hash layers first, then dense)
  bool mtp = true;                  ///< also the MTP layer's (dense) gate
  bool hf_naming = false;           ///< Hugging Face tensor and config names, else DeepSeek's
  int shards = 2;                   ///< >= 1 shard files listed in model.safetensors.index.json
  bool single_file = false;         ///< one model.safetensors and no index instead
  bool tid2eid_int64 = true;        ///< tid2eid stored as I64 (as DeepSeek ships it), else I32
  std::uint64_t seed = 1;
};

/// Writes a small synthetic DSV4-shaped checkpoint in the real format: config.json, gate
/// tensors (layer i from make_synthetic_layer(shape, seed + i, i < num_hash_layers)), one
/// non-gate filler tensor per layer, sharded with an index (or a single file). Throws
/// std::runtime_error on I/O errors.
void write_synthetic_checkpoint(const std::string& dir, const SyntheticCheckpointOptions& o);

}  // namespace moerouter
