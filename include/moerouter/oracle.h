// moerouter: the float64 oracle, written straight from SPEC.md, and the comparison that every
// test (and the CLI demo) uses to check a backend against it with SPEC.md's tolerances.
//
// The oracle reads the same params structs as the backends (host pointers) and returns its
// results in float64 instead of writing the outputs. It is slow and single-threaded on purpose:
// it is the definition, not an implementation to tune.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/topk.h"

namespace moerouter {
namespace oracle {

/// The oracle's route of n tokens. Everything a comparison needs is kept per (row, expert).
struct RouteResult {
  std::int64_t n = 0, experts = 0;
  std::int32_t k = 0;
  float scale = 1.0f;
  bool hash = false;                  ///< ids come from a table (exact, no ranking)
  bool uniform = false;               ///< hash with uniform weights
  std::vector<std::int64_t> ids;      ///< [n, k]; -1 in a bad hash row
  std::vector<double> weights;        ///< [n, k]; 0 in a bad hash row
  std::vector<double> logits;         ///< [n, experts] exact logits (hash from x: only the
                                      ///< gathered ones are computed, the rest are NaN)
  std::vector<double> logit_bound;    ///< [n, experts] SPEC.md's fp32 GEMM error bound
                                      ///< H * 2^-24 * sum_h |x W|; empty when logits were inputs
  std::vector<double> bias;           ///< [experts] (zeros when none)
  std::vector<std::uint8_t> bad_row;  ///< [n] 1 where a token id / table entry was bad
};

RouteResult route(const RouteParams& p);
RouteResult route_logits(const RouteLogitsParams& p);
RouteResult hash_route(const HashRouteParams& p);

struct TopkResult {
  std::int64_t n = 0;
  std::int32_t k = 0;
  std::vector<std::int64_t> indices;  ///< [n, k], -1 padded
  std::vector<double> values;         ///< [n, k], -inf padded
};
TopkResult topk(const TopkParams& p);

/// How a backend's route compares with the oracle's.
struct RouteComparison {
  std::int64_t rows = 0;
  std::int64_t ids_total = 0;        ///< n * k
  std::int64_t ids_equal = 0;        ///< ids equal to the oracle's, position by position
  std::int64_t rows_mismatched = 0;  ///< rows with a difference not excused by a near tie
  std::int64_t rows_near_tie = 0;    ///< rows that differ only where a near tie excuses it
  std::int64_t weights_out_of_tolerance = 0;
  double max_weight_error = 0.0;     ///< max |w - w_oracle| over rows with equal ids
  std::string first_failure;         ///< a description of the first failing row, or ""
  bool ok() const { return rows_mismatched == 0 && weights_out_of_tolerance == 0; }
};

/// Compares a backend's [n, k] ids (i32 or i64) and fp32 weights with the oracle, under
/// SPEC.md's rules. Dense rows: the ids must be k distinct experts, and the backend may differ
/// from the oracle only between experts whose biased scores are within their error bounds of
/// each other (a near tie): 1e-6 relative from logits; from x and W, the GEMM bound of each
/// logit propagated through sqrt(softplus) (exactly, by evaluating it at logit +- bound), plus
/// 1e-6 relative. NaN and +-inf scores carry no tolerance: NaN ranks below every number and
/// NaNs by index, exactly. Hash rows: ids exactly
/// the table's (-1 in a bad row, whose weights must be 0). Weights are checked against the
/// oracle's formula applied to the backend's own ids: within 1e-6 relative plus what the GEMM
/// bound propagates, and 1e-6 * scale absolute where a chosen logit is below -87 (subnormal
/// softplus).
RouteComparison compare_route(const RouteResult& ref, const void* ids, DType ids_dtype,
                              std::int64_t ids_stride, const float* weights,
                              std::int64_t weights_stride);

}  // namespace oracle
}  // namespace moerouter
