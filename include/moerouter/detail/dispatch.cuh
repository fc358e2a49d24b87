// moerouter: compile-time dispatch for the CUDA launchers, one macro per axis. Each lists the
// supported set; the default returns a Status that names the bad value.
//
//   return MOER_DISPATCH_REAL_DTYPE(p.logits_dtype, T, "logits_dtype", [&] { ... T ... });
//
// The body is a lambda returning Status; the macro returns its Status.
#pragma once

#include <string>

#include "moerouter/status.h"
#include "moerouter/types.h"

/// f32 or bf16 element type -> T (float or moerouter::bf16).
#define MOER_DISPATCH_REAL_DTYPE(dtype, T, name, ...)                                        \
  [&]() -> ::moerouter::Status {                                                             \
    switch (dtype) {                                                                         \
      case ::moerouter::DType::kF32: {                                                       \
        using T = float;                                                                     \
        return (__VA_ARGS__)();                                                              \
      }                                                                                      \
      case ::moerouter::DType::kBF16: {                                                      \
        using T = ::moerouter::bf16;                                                         \
        return (__VA_ARGS__)();                                                              \
      }                                                                                      \
      default:                                                                               \
        return ::moerouter::Status(::moerouter::StatusCode::kUnsupportedDType,               \
                                   std::string(name) + ": expected f32 or bf16, got " +      \
                                       ::moerouter::dtype_name(dtype));                      \
    }                                                                                        \
  }()

/// Chunks of 4 experts per lane of the fused route's warp (E <= 128 * kChunks), from
/// ceil(E / 128) rounded up to the supported set {1, 2, 3, 4, 6, 8}.
#define MOER_DISPATCH_ROUTE_CHUNKS(chunks, kChunks, ...)                                    \
  [&]() -> ::moerouter::Status {                                                             \
    switch (chunks) {                                                                        \
      case 1: { constexpr int kChunks = 1; return (__VA_ARGS__)(); }                         \
      case 2: { constexpr int kChunks = 2; return (__VA_ARGS__)(); }                         \
      case 3: { constexpr int kChunks = 3; return (__VA_ARGS__)(); }                         \
      case 4: { constexpr int kChunks = 4; return (__VA_ARGS__)(); }                         \
      case 6: { constexpr int kChunks = 6; return (__VA_ARGS__)(); }                         \
      case 8: { constexpr int kChunks = 8; return (__VA_ARGS__)(); }                         \
      default:                                                                               \
        return ::moerouter::Status(::moerouter::StatusCode::kUnsupported,                    \
                                   "route: expert chunks per lane must be one of "           \
                                   "{1,2,3,4,6,8} (experts <= 1024), got " +                 \
                                       std::to_string(chunks));                              \
    }                                                                                        \
  }()

/// The bound of k a kernel is compiled for (k <= kBound): {8, 32}. The hash route uses it
/// as lanes per token and as its accumulator count.
#define MOER_DISPATCH_K_BOUND(bound, kBound, ...)                                           \
  [&]() -> ::moerouter::Status {                                                             \
    switch (bound) {                                                                         \
      case 8: { constexpr int kBound = 8; return (__VA_ARGS__)(); }                          \
      case 32: { constexpr int kBound = 32; return (__VA_ARGS__)(); }                        \
      default:                                                                               \
        return ::moerouter::Status(::moerouter::StatusCode::kUnsupported,                    \
                                   "k bound must be 8 or 32 (k <= 32), got " +               \
                                       std::to_string(bound));                               \
    }                                                                                        \
  }()

/// Warps per row of the top-k primitive: {1, 16}.
#define MOER_DISPATCH_TOPK_WARPS(warps, kWarps, ...)                                        \
  [&]() -> ::moerouter::Status {                                                             \
    switch (warps) {                                                                         \
      case 1: { constexpr int kWarps = 1; return (__VA_ARGS__)(); }                          \
      case 16: { constexpr int kWarps = 16; return (__VA_ARGS__)(); }                        \
      default:                                                                               \
        return ::moerouter::Status(::moerouter::StatusCode::kUnsupported,                    \
                                   "topk: warps per row must be 1 or 16, got " +             \
                                       std::to_string(warps));                               \
    }                                                                                        \
  }()
