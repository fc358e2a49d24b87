// moerouter: small helpers on the params structs, shared by the validators and every backend.
#pragma once

#include <cstdint>

#include "moerouter/types.h"

namespace moerouter {
namespace detail {

/// A stride of 0 means "contiguous": the row length.
inline constexpr std::int64_t stride_or(std::int64_t stride, std::int64_t row) {
  return stride != 0 ? stride : row;
}

}  // namespace detail
}  // namespace moerouter
