// moerouter: the dense DSV4 route (SPEC.md, "Dense route"), from x and W or from logits.
//
//   logit[n,e] = sum_h x[n,h] * W[e,h]                 (fp32 accumulate)
//   s[n,e]     = sqrt(softplus(logit[n,e]))
//   ids[n,:]   = the k experts with the largest s + bias, sorted descending (ties: lower id)
//   w[n,j]     = s[n,ids[n,j]] / max(sum_j s[n,ids[n,j]], 1e-20) * scale
//
// The same params structs serve the CPU backend (host pointers) and the CUDA kernels (device
// pointers). A stride of 0 means "contiguous" (the row length). N = 0 is a successful no-op.
#pragma once

#include <cstdint>

#include "moerouter/status.h"
#include "moerouter/types.h"

namespace moerouter {

/// Dense route from the hidden state x and the gate weight W.
struct RouteParams {
  const void* x = nullptr;         ///< [n, hidden] bf16, row stride x_stride elements
  const void* w = nullptr;         ///< [experts, hidden] bf16, contiguous (the gate weight)
  const float* bias = nullptr;     ///< [experts] fp32 (e_score_correction_bias); null = zeros
  float* weights = nullptr;        ///< out [n, k] fp32, row stride weights_stride
  void* ids = nullptr;             ///< out [n, k] ids_dtype (i32 or i64), row stride ids_stride
  std::int64_t n = 0;              ///< tokens (rows of x), >= 0
  std::int64_t hidden = 0;         ///< H, >= 1
  std::int64_t experts = 0;        ///< E, >= 1
  std::int32_t k = 0;              ///< experts per token, 1..E
  float scale = 1.0f;              ///< routed_scaling_factor, finite
  DType ids_dtype = DType::kI32;   ///< kI32 or kI64
  std::int64_t x_stride = 0;       ///< elements between rows of x; 0 = hidden; else >= hidden
  std::int64_t weights_stride = 0; ///< 0 = k; else >= k
  std::int64_t ids_stride = 0;     ///< 0 = k; else >= k
};

/// Dense route from precomputed logits (the output of the router GEMM).
struct RouteLogitsParams {
  const void* logits = nullptr;     ///< [n, experts] logits_dtype, row stride logits_stride
  const float* bias = nullptr;      ///< [experts] fp32; null = zeros
  float* weights = nullptr;         ///< out [n, k] fp32
  void* ids = nullptr;              ///< out [n, k] ids_dtype
  std::int64_t n = 0;
  std::int64_t experts = 0;
  std::int32_t k = 0;
  float scale = 1.0f;
  DType logits_dtype = DType::kF32; ///< kF32 or kBF16
  DType ids_dtype = DType::kI32;
  std::int64_t logits_stride = 0;   ///< 0 = experts; else >= experts
  std::int64_t weights_stride = 0;
  std::int64_t ids_stride = 0;
};

/// Checks every pointer, size, stride and dtype; the message names the argument, what was
/// expected and what was received. Backends call it before touching any output.
Status validate(const RouteParams& p);
Status validate(const RouteLogitsParams& p);

}  // namespace moerouter
