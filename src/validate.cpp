// Argument checks shared by every backend: each failure names the argument, what was expected
// and what was received. Checked in a fixed order: pointers, sizes, dtypes, strides.
#include <cmath>
#include <string>

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/topk.h"

namespace moerouter {
namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

Status null_error(const char* op, const char* arg) {
  return Status(StatusCode::kNullPointer, std::string(op) + ": " + arg + " must not be null");
}

#define MOER_CHECK_NOT_NULL(op, ptr) \
  if ((ptr) == nullptr) return null_error(op, #ptr)

Status check_n(const char* op, std::int64_t n) {
  if (n < 0) return Status(StatusCode::kInvalidArgument, std::string(op) + ": n must be >= 0, got " + str(n));
  return Status::success();
}

Status check_positive(const char* op, const char* name, std::int64_t v) {
  if (v < 1) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(op) + ": " + name + " must be >= 1, got " + str(v));
  }
  return Status::success();
}

Status check_k(const char* op, std::int32_t k, std::int64_t experts) {
  if (k < 1 || k > experts) {
    return Status(StatusCode::kInvalidArgument, std::string(op) + ": k must be in [1, experts=" +
                                                    str(experts) + "], got " + str(k));
  }
  return Status::success();
}

Status check_scale(const char* op, float scale) {
  if (!std::isfinite(scale)) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(op) + ": scale must be finite, got " + std::to_string(scale));
  }
  return Status::success();
}

Status check_dtype(const char* op, const char* name, DType got, DType a, DType b) {
  if (got != a && got != b) {
    return Status(StatusCode::kUnsupportedDType, std::string(op) + ": " + name + " must be " +
                                                     dtype_name(a) + " or " + dtype_name(b) +
                                                     ", got " + dtype_name(got));
  }
  return Status::success();
}

// A stride of 0 means the row length; anything else must hold a whole row.
Status check_stride(const char* op, const char* name, std::int64_t stride, std::int64_t row,
                    const char* row_name) {
  if (stride != 0 && stride < row) {
    return Status(StatusCode::kShapeMismatch, std::string(op) + ": " + name + " must be 0 or >= " +
                                                  row_name + "=" + str(row) + ", got " +
                                                  str(stride));
  }
  return Status::success();
}

#define MOER_RETURN_IF_ERROR(expr)   \
  do {                               \
    Status moer_s_ = (expr);         \
    if (!moer_s_.ok()) return moer_s_; \
  } while (0)

Status check_outputs(const char* op, const float* weights, const void* ids, std::int32_t k,
                     DType ids_dtype, std::int64_t weights_stride, std::int64_t ids_stride) {
  MOER_CHECK_NOT_NULL(op, weights);
  MOER_CHECK_NOT_NULL(op, ids);
  MOER_RETURN_IF_ERROR(check_dtype(op, "ids_dtype", ids_dtype, DType::kI32, DType::kI64));
  MOER_RETURN_IF_ERROR(check_stride(op, "weights_stride", weights_stride, k, "k"));
  MOER_RETURN_IF_ERROR(check_stride(op, "ids_stride", ids_stride, k, "k"));
  return Status::success();
}

}  // namespace

Status validate(const RouteParams& p) {
  const char* op = "route";
  MOER_RETURN_IF_ERROR(check_n(op, p.n));
  MOER_RETURN_IF_ERROR(check_positive(op, "hidden", p.hidden));
  MOER_RETURN_IF_ERROR(check_positive(op, "experts", p.experts));
  MOER_RETURN_IF_ERROR(check_k(op, p.k, p.experts));
  MOER_RETURN_IF_ERROR(check_scale(op, p.scale));
  MOER_CHECK_NOT_NULL(op, p.w);
  if (p.n > 0) MOER_CHECK_NOT_NULL(op, p.x);
  if (p.n > 0) {
    MOER_RETURN_IF_ERROR(
        check_outputs(op, p.weights, p.ids, p.k, p.ids_dtype, p.weights_stride, p.ids_stride));
  }
  MOER_RETURN_IF_ERROR(check_dtype(op, "ids_dtype", p.ids_dtype, DType::kI32, DType::kI64));
  MOER_RETURN_IF_ERROR(check_stride(op, "x_stride", p.x_stride, p.hidden, "hidden"));
  return Status::success();
}

Status validate(const RouteLogitsParams& p) {
  const char* op = "route_logits";
  MOER_RETURN_IF_ERROR(check_n(op, p.n));
  MOER_RETURN_IF_ERROR(check_positive(op, "experts", p.experts));
  MOER_RETURN_IF_ERROR(check_k(op, p.k, p.experts));
  MOER_RETURN_IF_ERROR(check_scale(op, p.scale));
  if (p.n > 0) {
    MOER_CHECK_NOT_NULL(op, p.logits);
    MOER_RETURN_IF_ERROR(
        check_outputs(op, p.weights, p.ids, p.k, p.ids_dtype, p.weights_stride, p.ids_stride));
  }
  MOER_RETURN_IF_ERROR(check_dtype(op, "ids_dtype", p.ids_dtype, DType::kI32, DType::kI64));
  MOER_RETURN_IF_ERROR(
      check_dtype(op, "logits_dtype", p.logits_dtype, DType::kF32, DType::kBF16));
  MOER_RETURN_IF_ERROR(check_stride(op, "logits_stride", p.logits_stride, p.experts, "experts"));
  return Status::success();
}

Status validate(const HashRouteParams& p) {
  const char* op = "hash_route";
  MOER_RETURN_IF_ERROR(check_n(op, p.n));
  MOER_RETURN_IF_ERROR(check_positive(op, "vocab", p.vocab));
  MOER_RETURN_IF_ERROR(check_positive(op, "experts", p.experts));
  MOER_RETURN_IF_ERROR(check_k(op, p.k, p.experts));
  MOER_RETURN_IF_ERROR(check_scale(op, p.scale));
  if (p.source != HashWeights::kFromX && p.source != HashWeights::kFromLogits &&
      p.source != HashWeights::kUniform) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(op) + ": source must be kFromX, kFromLogits or kUniform, got " +
                      str(static_cast<int>(p.source)));
  }
  MOER_CHECK_NOT_NULL(op, p.table);
  if (p.n > 0) {
    MOER_CHECK_NOT_NULL(op, p.token_ids);
    MOER_RETURN_IF_ERROR(
        check_outputs(op, p.weights, p.ids, p.k, p.ids_dtype, p.weights_stride, p.ids_stride));
  }
  MOER_RETURN_IF_ERROR(check_dtype(op, "token_dtype", p.token_dtype, DType::kI32, DType::kI64));
  MOER_RETURN_IF_ERROR(check_dtype(op, "table_dtype", p.table_dtype, DType::kI32, DType::kI64));
  MOER_RETURN_IF_ERROR(check_dtype(op, "ids_dtype", p.ids_dtype, DType::kI32, DType::kI64));
  if (p.source == HashWeights::kFromX) {
    MOER_RETURN_IF_ERROR(check_positive(op, "hidden", p.hidden));
    MOER_CHECK_NOT_NULL(op, p.w);
    if (p.n > 0) MOER_CHECK_NOT_NULL(op, p.x);
    MOER_RETURN_IF_ERROR(check_stride(op, "x_stride", p.x_stride, p.hidden, "hidden"));
  } else if (p.source == HashWeights::kFromLogits) {
    if (p.n > 0) MOER_CHECK_NOT_NULL(op, p.logits);
    MOER_RETURN_IF_ERROR(
        check_dtype(op, "logits_dtype", p.logits_dtype, DType::kF32, DType::kBF16));
    MOER_RETURN_IF_ERROR(
        check_stride(op, "logits_stride", p.logits_stride, p.experts, "experts"));
  }
  return Status::success();
}

Status validate(const TopkParams& p) {
  const char* op = "topk";
  MOER_RETURN_IF_ERROR(check_n(op, p.n));
  if (p.length < 0) {
    return Status(StatusCode::kInvalidArgument, "topk: length must be >= 0, got " + str(p.length));
  }
  if (p.k < 1) return Status(StatusCode::kInvalidArgument, "topk: k must be >= 1, got " + str(p.k));
  if (p.n > 0) {
    if (p.length > 0) MOER_CHECK_NOT_NULL(op, p.values);
    MOER_CHECK_NOT_NULL(op, p.indices);
  }
  MOER_RETURN_IF_ERROR(
      check_dtype(op, "values_dtype", p.values_dtype, DType::kF32, DType::kBF16));
  MOER_RETURN_IF_ERROR(check_stride(op, "values_stride", p.values_stride, p.length, "length"));
  MOER_RETURN_IF_ERROR(check_stride(op, "indices_stride", p.indices_stride, p.k, "k"));
  MOER_RETURN_IF_ERROR(
      check_stride(op, "out_values_stride", p.out_values_stride, p.k, "k"));
  return Status::success();
}

}  // namespace moerouter
