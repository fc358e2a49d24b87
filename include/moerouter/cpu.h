// moerouter: the CPU backend. fp32 math in the same order as the CUDA kernels (the shared
// detail/math.h), host pointers, threads over rows. Every function validates first and writes
// nothing when validation fails; N = 0 is a successful no-op.
#pragma once

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/status.h"
#include "moerouter/topk.h"

namespace moerouter {
namespace cpu {

/// Dense route from x and W. The GEMM accumulates each logit in fp32 in a fixed order, so
/// results are deterministic run to run and independent of the thread count.
Status route(const RouteParams& p);

/// Dense route from fp32 or bf16 logits.
Status route_logits(const RouteLogitsParams& p);

/// Hash route; returns kInvalidTokenId (after routing every good row) if a token id or table
/// entry was out of range.
Status hash_route(const HashRouteParams& p);

/// Top-k over rows, any k >= 1.
Status topk(const TopkParams& p);

/// Threads the CPU backend uses (default: std::thread::hardware_concurrency()). 0 restores
/// the default. Results do not depend on it.
void set_num_threads(int threads);
int num_threads();

}  // namespace cpu
}  // namespace moerouter
