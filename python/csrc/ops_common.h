// Shared by the CPU (ops.cpp) and CUDA (ops_cuda.cpp) op implementations.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "moerouter/hash_route.h"
#include "moerouter/route.h"
#include "moerouter/router.h"
#include "moerouter/status.h"
#include "moerouter/topk.h"

namespace moerouter {
namespace torch_ops {

/// TORCH_CHECK on a Status (RuntimeError naming the op and the status).
void check_status(const Status& s, const char* op);

/// Params from tensors, every argument checked (ValueError / TypeError naming it).
RouteLogitsParams logits_params(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                                int64_t k, double scale, const at::Tensor& weights,
                                const at::Tensor& ids);
RouteParams route_params(const at::Tensor& x, const at::Tensor& w,
                         const std::optional<at::Tensor>& bias, int64_t k, double scale,
                         const at::Tensor& weights, const at::Tensor& ids);
HashRouteParams hash_params(const at::Tensor& token_ids, const at::Tensor& table, int64_t experts,
                            double scale, const std::optional<at::Tensor>& x,
                            const std::optional<at::Tensor>& w,
                            const std::optional<at::Tensor>& logits, const at::Tensor& weights,
                            const at::Tensor& ids);
TopkParams topk_params(const at::Tensor& values, int64_t k, const std::optional<at::Tensor>& lengths,
                       bool sorted, const at::Tensor& out_values, const at::Tensor& indices);

/// Empty [n, k] fp32 weights and int32 ids on like's device.
std::tuple<at::Tensor, at::Tensor> new_outputs(const at::Tensor& like, int64_t n, int64_t k);

Router& router_by_handle(int64_t handle);
std::tuple<at::Tensor, at::Tensor> router_route_impl(const Router& r, int64_t layer,
                                                     const at::Tensor& x,
                                                     const std::optional<at::Tensor>& token_ids,
                                                     void* stream);

}  // namespace torch_ops
}  // namespace moerouter
