#include "moerouter/status.h"

#include "moerouter/hash_route.h"
#include "moerouter/types.h"

namespace moerouter {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kSuccess: return "kSuccess";
    case StatusCode::kNullPointer: return "kNullPointer";
    case StatusCode::kInvalidArgument: return "kInvalidArgument";
    case StatusCode::kShapeMismatch: return "kShapeMismatch";
    case StatusCode::kUnsupportedDType: return "kUnsupportedDType";
    case StatusCode::kUnsupported: return "kUnsupported";
    case StatusCode::kInvalidTokenId: return "kInvalidTokenId";
    case StatusCode::kCudaError: return "kCudaError";
    case StatusCode::kIoError: return "kIoError";
    case StatusCode::kParseError: return "kParseError";
  }
  return "kUnknownStatus";
}

std::string Status::to_string() const {
  std::string s = status_code_name(code_);
  if (!message_.empty()) s += ": " + message_;
  return s;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bf16";
    case DType::kF32: return "f32";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
  }
  return "unknown";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return 2;
    case DType::kF32: return 4;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

const char* hash_weights_name(HashWeights source) {
  switch (source) {
    case HashWeights::kFromX: return "from_x";
    case HashWeights::kFromLogits: return "from_logits";
    case HashWeights::kUniform: return "uniform";
  }
  return "unknown";
}

}  // namespace moerouter
