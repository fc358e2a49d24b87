// The Router's GPU half, behind an interface so the Router itself needs no CUDA headers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "moerouter/router.h"

namespace moerouter {
namespace detail {

class RouterBackend {
 public:
  virtual ~RouterBackend() = default;
  /// Uploads every layer once and allocates the workspace for max_batch tokens.
  virtual void upload(const ModelShape& config, const std::vector<GateTensors>& layers,
                      std::int64_t max_batch) = 0;
  virtual void route(int layer, bool hash, const bf16* x, std::int64_t x_stride,
                     const void* token_ids, DType token_dtype, std::int64_t n, float* weights,
                     void* ids, DType ids_dtype, void* stream, bool checked, bool pdl) = 0;
  virtual std::int32_t* error_flag() = 0;
};

/// Defined by the CUDA backend; throws RouterError in a build without it.
std::unique_ptr<RouterBackend> make_cuda_router_backend();

}  // namespace detail
}  // namespace moerouter
