// moerouter: element types and the bf16 storage type.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moerouter {

/// Element type of a tensor argument. Each params struct says which dtypes each pointer takes.
enum class DType : int {
  kBF16 = 0,  ///< bfloat16 (1 sign, 8 exponent, 7 mantissa bits), stored as `bf16`
  kF32 = 1,   ///< IEEE float32
  kI32 = 2,   ///< int32_t
  kI64 = 3,   ///< int64_t
};

/// "bf16", "f32", "i32", "i64" (or "unknown").
const char* dtype_name(DType dtype);

/// Bytes per element (0 for an unknown value).
std::size_t dtype_size(DType dtype);

/// bfloat16 storage: the upper 16 bits of an IEEE float32. Layout-compatible with CUDA's
/// `__nv_bfloat16` and torch.bfloat16. Convert with `detail::bf16_to_float` /
/// `detail::float_to_bf16` (round to nearest even), declared in detail/math.h.
struct bf16 {
  std::uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 must be 2 bytes");

}  // namespace moerouter
