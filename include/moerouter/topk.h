// moerouter: top-k over rows (the general primitive, also the sparse-attention indexer's).
//
// For each row, the k largest of its first len[row] values: ties rank the lower index first,
// NaN ranks below every number (-inf included). Sorted (the default): in rank order. Unsorted:
// the same k elements in ascending index order (what a sparse-attention kernel needs; cheaper
// on the GPU). A row with fewer than k valid entries pads indices with -1 and values with -inf.
#pragma once

#include <cstdint>

#include "moerouter/status.h"
#include "moerouter/types.h"

namespace moerouter {

struct TopkParams {
  const void* values = nullptr;        ///< [n, length] values_dtype (f32 or bf16), row stride
  const std::int32_t* lengths = nullptr;  ///< optional [n]: valid entries of each row, clamped
                                          ///< to [0, length]; null = length for every row
  std::int32_t* indices = nullptr;     ///< out [n, k] int32 column indices, -1 padded
  float* out_values = nullptr;         ///< optional out [n, k] fp32 (bf16 widened exactly),
                                       ///< -inf padded
  std::int64_t n = 0;
  std::int64_t length = 0;             ///< L, >= 0
  std::int32_t k = 0;                  ///< >= 1 (may exceed L: the rest is padding). GPU: <= 2048
  bool sorted = true;                  ///< rank order; false: ascending index order
  DType values_dtype = DType::kF32;
  std::int64_t values_stride = 0;      ///< 0 = length; else >= length
  std::int64_t indices_stride = 0;     ///< 0 = k
  std::int64_t out_values_stride = 0;  ///< 0 = k
};

Status validate(const TopkParams& p);

}  // namespace moerouter
