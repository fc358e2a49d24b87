// Typed element access on the params structs' `void*` tensors (host side).
#pragma once

#include <cstdint>

#include "moerouter/detail/math.h"
#include "moerouter/types.h"

namespace moerouter {
namespace cpu {

/// Element i of an f32 or bf16 tensor, widened to float (exact).
inline float load_real(const void* base, DType dtype, std::int64_t i) {
  if (dtype == DType::kBF16) return detail::bf16_to_float(static_cast<const bf16*>(base)[i]);
  return static_cast<const float*>(base)[i];
}

/// Element i of an i32 or i64 tensor.
inline std::int64_t load_index(const void* base, DType dtype, std::int64_t i) {
  if (dtype == DType::kI64) return static_cast<const std::int64_t*>(base)[i];
  return static_cast<const std::int32_t*>(base)[i];
}

inline void store_index(void* base, DType dtype, std::int64_t i, std::int64_t v) {
  if (dtype == DType::kI64) {
    static_cast<std::int64_t*>(base)[i] = v;
  } else {
    static_cast<std::int32_t*>(base)[i] = static_cast<std::int32_t>(v);
  }
}

}  // namespace cpu
}  // namespace moerouter
