// The fused route's arguments (kernels::RouteTopkArgs) that every launcher of it sets the same
// way: where the k results of each row go, the bias, the shape and the scale. The logits
// source (a logits matrix, or the decode router's buffers) is the caller's to set.
#pragma once

#include <cstdint>

#include "moerouter/kernels/route_topk.cuh"
#include "moerouter/types.h"

namespace moerouter {
namespace cuda {
namespace detail {

/// weights_stride and ids_stride: elements between rows, already resolved (not 0).
inline kernels::RouteTopkArgs route_output_args(const float* bias, float* weights,
                                                std::int64_t weights_stride, void* ids,
                                                DType ids_dtype, std::int64_t ids_stride,
                                                std::int64_t n, std::int64_t experts,
                                                std::int32_t k, float scale) {
  kernels::RouteTopkArgs a{};
  a.bias = bias;
  a.weights = weights;
  a.ids = ids;
  a.n = n;
  a.weights_stride = weights_stride;
  a.ids_stride = ids_stride;
  a.experts = int(experts);
  a.k = k;
  a.scale = scale;
  a.ids_i64 = ids_dtype == DType::kI64;
  return a;
}

}  // namespace detail
}  // namespace cuda
}  // namespace moerouter
