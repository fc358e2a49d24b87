// moerouter: status codes returned by every host entry point.
#pragma once

#include <string>
#include <utility>

namespace moerouter {

/// What went wrong. `kSuccess` is zero so a Status converts to a boolean test cheaply.
enum class StatusCode : int {
  kSuccess = 0,
  kNullPointer,      ///< a required pointer is null
  kInvalidArgument,  ///< a scalar argument is out of range (k = 0, k > E, scale not finite, ...)
  kShapeMismatch,    ///< strides or sizes disagree with each other
  kUnsupportedDType, ///< a dtype this operation does not take
  kUnsupported,      ///< a valid request this build or device cannot serve (e.g. E > 1024 on GPU)
  kInvalidTokenId,   ///< a token id outside [0, vocab) or a table entry outside [0, E): rows were
                     ///< written as ids -1, weights 0; every other row is valid
  kCudaError,        ///< a CUDA runtime call failed; the message holds cudaGetErrorString
  kIoError,          ///< a file could not be read or written
  kParseError,       ///< a file is malformed
};

/// The name of a code, e.g. "kInvalidArgument". Never null.
const char* status_code_name(StatusCode code);

/// A code plus a message that names the argument, the expected and the received value.
/// Success carries no message and never allocates; only errors build a string.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status success() { return Status(); }

  bool ok() const { return code_ == StatusCode::kSuccess; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  /// The message ("" on success).
  const std::string& message() const { return message_; }
  /// "kInvalidArgument: k must be in [1, E=256], got 0" (or "kSuccess").
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kSuccess;
  std::string message_;
};

}  // namespace moerouter
