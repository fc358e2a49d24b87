// moerouter: the Router an inference engine holds for a whole DeepSeek-V4 model.
//
// Built from a Hugging Face model directory (config.json + model.safetensors.index.json with
// its shards, or a single model.safetensors) or from tensors in memory. Layer i is a hash layer
// when i < num_hash_layers, else dense; the MTP layer's gate (always dense) is the last layer,
// index num_layers. Weights are copied out of the checkpoint once (only the gate tensors are
// read; shards are memory-mapped) and, on the GPU, uploaded once; route() then allocates
// nothing.
//
// Errors at this boundary are exceptions (RouterError, SafetensorsError) whose messages name
// the file, tensor, argument, the expected and the received value.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/synthetic.h"
#include "moerouter/types.h"

namespace moerouter {

/// A bad model directory, config, tensor or route() argument.
class RouterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Reads the router's numbers from a config.json text, accepting Hugging Face names
/// (hidden_size, n_routed_experts, num_experts_per_tok, routed_scaling_factor,
/// num_hash_layers, vocab_size, num_hidden_layers, scoring_func, topk_method, index_topk) and
/// DeepSeek's own (dim, n_routed_experts, n_activated_experts, route_scale, n_hash_layers,
/// vocab_size, n_layers, score_func, index_topk). A missing num_hash_layers means 0. A
/// scoring function other than sqrtsoftplus, or inconsistent numbers, is a RouterError.
ModelShape parse_model_config(const std::string& json_text, const std::string& source);

/// The params of a dense gate layer's route under `config` (H, E, k, scale): pointers as given
/// (host or device), x row stride x_stride (0 = H), outputs contiguous [n, k]. The Router, the
/// demo and the tests build every dense route through this.
RouteParams dense_gate_params(const ModelShape& config, const void* w, const float* bias,
                              const void* x, std::int64_t x_stride, std::int64_t n,
                              float* weights, void* ids, DType ids_dtype);

/// The params of a hash gate layer's route (weights from x and W, DSV4's math) under `config`
/// (H, E, k, scale, vocab): table tid2eid int32 [vocab, k].
HashRouteParams hash_gate_params(const ModelShape& config, const void* w,
                                 const std::int32_t* tid2eid, const void* x, std::int64_t x_stride,
                                 const void* token_ids, DType token_dtype, std::int64_t n,
                                 float* weights, void* ids, DType ids_dtype);

/// One layer's gate tensors.
struct GateTensors {
  bool hash = false;
  std::vector<bf16> w;                ///< [E, H]
  std::vector<float> bias;            ///< [E] (dense layers; empty = zeros)
  std::vector<std::int32_t> tid2eid;  ///< [vocab, k] (hash layers)
};

enum class RouterDevice { kAuto, kCpu, kCuda };

struct RouterOptions {
  RouterDevice device = RouterDevice::kAuto;  ///< kAuto: CUDA when available, else CPU
  std::int64_t max_batch = 16384;  ///< most tokens per route() call (sizes the GPU workspace)
  bool checked = false;  ///< GPU: after each hash route, sync and throw on bad token ids
  /// GPU: launch the routing kernels with programmatic dependent launch, so that each may
  /// start while the previous kernel on the stream still runs and read the layer's W, bias
  /// and table and the token ids before it waits for that kernel. Then only x may be
  /// written by the kernel launched just before route() (as in an engine, where it is the
  /// previous layer's). The prefill path's cuBLASLt GEMM launches as always, so with pdl
  /// DSV4-Pro-sized dense layers take the decode router up to 64 tokens rather than 16
  /// (cuda::route_gemm_crossover_tokens).
  bool pdl = false;
  /// Called while loading with (layers done, layers total); e.g. a progress bar.
  std::function<void(int, int)> progress;
};

/// Which tensor-name scheme a checkpoint uses.
enum class GateNaming {
  kDeepSeek,     ///< layers.{i}.ffn.gate.{weight,bias,tid2eid}; MTP mtp.0.ffn.gate.*
  kHuggingFace,  ///< model.layers.{i}.mlp.gate.{weight,e_score_correction_bias,tid2eid};
                 ///< MTP model.layers.{num_layers}.mlp.gate.*
};

/// The checkpoint name of a gate tensor: part is "weight", "bias" or "tid2eid"; layer ==
/// num_layers names the MTP layer.
std::string gate_tensor_name(GateNaming naming, int layer, int num_layers,
                             const std::string& part);

class Router {
 public:
  /// Loads `dir` (see the file comment). Throws RouterError / SafetensorsError.
  static Router from_pretrained(const std::string& dir, const RouterOptions& options = {});

  /// From tensors in memory: `layers[i]` is layer i (the last may be the MTP layer). Checks
  /// every shape against `config`.
  Router(const ModelShape& config, std::vector<GateTensors> layers,
         const RouterOptions& options = {});
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  const ModelShape& config() const;
  /// Gate layers held: num_layers (+1 when the checkpoint has the MTP gate).
  int num_layers() const;
  bool is_hash_layer(int layer) const;
  bool on_gpu() const;
  GateNaming naming() const;  ///< of the loaded checkpoint (kDeepSeek when built in memory)
  const GateTensors& layer(int i) const;  ///< host copy of a layer's tensors

  /// Routes n tokens through `layer`: x bf16 [n, hidden] (row stride x_stride elements, 0 =
  /// hidden), token_ids [n] int32/int64 (read by hash layers, may be null for dense ones),
  /// outputs weights fp32 [n, k] and ids [n, k] (ids_dtype i32 or i64), all contiguous. Host
  /// pointers on a CPU router; device pointers and a cudaStream_t (as void*) on a GPU router.
  /// Bad token ids give ids -1 / weights 0 in their rows; the CPU router then throws, the GPU
  /// router throws only in checked mode (otherwise see hash_error_flag()).
  /// A GPU router owns one workspace (the GEMM's logits, the decode kernel's counters and
  /// partial sums): calls on one stream may follow each other freely, but calls that can run
  /// at the same time (different streams, or graphs replayed concurrently) need one Router each.
  void route(int layer, const bf16* x, const void* token_ids, DType token_dtype, std::int64_t n,
             float* weights, void* ids, DType ids_dtype = DType::kI32,
             std::int64_t x_stride = 0, void* stream = nullptr) const;

  /// GPU router: device pointer to the int32 flag hash routes set on a bad token id (the caller
  /// may read and clear it). Null on a CPU router.
  std::int32_t* hash_error_flag() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moerouter
