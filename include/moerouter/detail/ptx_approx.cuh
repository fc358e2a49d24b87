// moerouter: the PTX approximations (MUFU) the kernels use, one instruction each. Never for
// results: the fused route's filters bound their error (route_topk.cuh), and exact_math.cuh
// corrects rcp / rsqrt to the correctly rounded value.
#pragma once

#include <cuda_runtime.h>

namespace moerouter {
namespace detail {

#define MOER_PTX_UNARY_F32(name, op)                    \
  __device__ __forceinline__ float name(float x) {      \
    float y;                                            \
    asm(op " %0, %1;" : "=f"(y) : "f"(x));              \
    return y;                                           \
  }

MOER_PTX_UNARY_F32(ex2_approx, "ex2.approx.ftz.f32")      // 2^x
MOER_PTX_UNARY_F32(lg2_approx, "lg2.approx.ftz.f32")      // log2(x)
MOER_PTX_UNARY_F32(sqrt_approx, "sqrt.approx.ftz.f32")    // sqrt(x)
MOER_PTX_UNARY_F32(rcp_approx, "rcp.approx.ftz.f32")      // 1 / x
MOER_PTX_UNARY_F32(rsqrt_approx, "rsqrt.approx.ftz.f32")  // 1 / sqrt(x)

#undef MOER_PTX_UNARY_F32

}  // namespace detail
}  // namespace moerouter
