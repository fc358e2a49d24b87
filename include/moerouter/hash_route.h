// moerouter: the DSV4 hash route (SPEC.md, "Hash route"), used by layers < num_hash_layers.
//
//   ids[n,:] = tid2eid[token[n], :]           in the table's column order (no sorting)
//   w[n,j]   = s[n,ids[n,j]] / max(sum_j s[n,ids[n,j]], 1e-20) * scale,  s = sqrt(softplus(logit))
//
// Only the k gathered logits are needed: from x and W a hash route reads k rows of W per token.
// A token id outside [0, vocab) or a table entry outside [0, experts) never reads out of
// bounds: that row gets ids -1 and weights 0, the error flag (if given) is set to 1, and the
// CPU backend returns kInvalidTokenId; every other row is routed normally.
#pragma once

#include <cstdint>

#include "moerouter/status.h"
#include "moerouter/types.h"

namespace moerouter {

/// Where the hash route's weights come from.
enum class HashWeights : int {
  kFromX = 0,       ///< k dot products x[n] . W[id] per token (the fast path; DSV4's math)
  kFromLogits = 1,  ///< gathered from precomputed logits [n, experts]
  kUniform = 2,     ///< scale / k for every chosen expert (not DSV4: an option for other models)
};

/// "from_x", "from_logits", "uniform".
const char* hash_weights_name(HashWeights source);

struct HashRouteParams {
  const void* token_ids = nullptr;  ///< [n] token_dtype (i32 or i64)
  const void* table = nullptr;      ///< tid2eid [vocab, k] table_dtype (i32 or i64), contiguous
  float* weights = nullptr;         ///< out [n, k] fp32
  void* ids = nullptr;              ///< out [n, k] ids_dtype
  std::int32_t* error_flag = nullptr;  ///< optional; set to 1 when a row had a bad id, never
                                       ///< cleared (the caller zeroes it)
  HashWeights source = HashWeights::kFromX;
  // kFromX
  const void* x = nullptr;          ///< [n, hidden] bf16, row stride x_stride
  const void* w = nullptr;          ///< [experts, hidden] bf16, contiguous
  std::int64_t hidden = 0;
  std::int64_t x_stride = 0;        ///< 0 = hidden
  // kFromLogits
  const void* logits = nullptr;     ///< [n, experts] logits_dtype (f32 or bf16)
  DType logits_dtype = DType::kF32;
  std::int64_t logits_stride = 0;   ///< 0 = experts
  // all sources
  std::int64_t n = 0;
  std::int64_t vocab = 0;           ///< rows of the table, >= 1
  std::int64_t experts = 0;         ///< E: ids must lie in [0, E)
  std::int32_t k = 0;               ///< columns of the table, 1..E
  float scale = 1.0f;
  DType token_dtype = DType::kI32;
  DType table_dtype = DType::kI32;
  DType ids_dtype = DType::kI32;
  std::int64_t weights_stride = 0;
  std::int64_t ids_stride = 0;
};

/// Checks pointers (only those the chosen source reads), sizes, strides and dtypes. Token ids
/// and table entries are data, checked while routing (see the file comment).
Status validate(const HashRouteParams& p);

}  // namespace moerouter
