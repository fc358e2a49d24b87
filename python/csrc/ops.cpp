// moerouter's PyTorch custom ops: TORCH_LIBRARY(moerouter) schemas, CPU implementations over
// the C++ core, and the Router registry (routers reached through an integer handle, so every
// op stays a function of tensors and ints). CUDA implementations live in ops_cuda.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <vector>

#include "moerouter/cpu.h"
#include "moerouter/router.h"
#include "ops_common.h"

namespace moerouter {
namespace torch_ops {

// --- shared argument checks ------------------------------------------------------------------

void check_status(const Status& s, const char* op) {
  TORCH_CHECK(s.ok(), "moerouter.", op, ": ", s.to_string());
}

void check_2d(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2, "moerouter.", op, ": ", name, " must be 2-D, got shape ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.stride(1) == 1, "moerouter.", op, ": ", name,
                    " must have unit stride in its last dimension, got strides ", t.strides());
}

void check_dtype(const at::Tensor& t, std::initializer_list<at::ScalarType> ok, const char* op,
                 const char* name) {
  for (auto d : ok) {
    if (t.scalar_type() == d) return;
  }
  std::string list;
  for (auto d : ok) list += (list.empty() ? "" : " or ") + std::string(c10::toString(d));
  TORCH_CHECK_TYPE(false, "moerouter.", op, ": ", name, " must be ", list, ", got ",
                   t.scalar_type());
}

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* op,
                       const char* name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), "moerouter.", op, ": ", name, " is on ", b.device(),
                    " but the inputs are on ", a.device());
}

void check_k(int64_t k, int64_t experts, const char* op) {
  TORCH_CHECK_VALUE(k >= 1 && k <= experts, "moerouter.", op, ": k must be in [1, E=", experts,
                    "], got ", k);
}

DType ids_dtype_of(const at::Tensor& ids, const char* op) {
  check_dtype(ids, {at::kInt, at::kLong}, op, "ids");
  return ids.scalar_type() == at::kLong ? DType::kI64 : DType::kI32;
}

void check_outputs(const at::Tensor& ref, int64_t n, int64_t k, const at::Tensor& weights,
                   const at::Tensor& ids, const char* op) {
  check_dtype(weights, {at::kFloat}, op, "weights");
  ids_dtype_of(ids, op);
  for (const at::Tensor* t : {&weights, &ids}) {
    check_same_device(ref, *t, op, t == &weights ? "weights" : "ids");
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == n && t->size(1) == k && t->stride(1) == 1,
                      "moerouter.", op, ": ", t == &weights ? "weights" : "ids",
                      " must be [", n, ", ", k, "] with unit last stride, got shape ", t->sizes());
  }
}

// bias: optional fp32 contiguous [experts] on ref's device.
void check_bias(const std::optional<at::Tensor>& bias, const at::Tensor& ref, int64_t experts,
                const char* op) {
  if (!bias) return;
  check_dtype(*bias, {at::kFloat}, op, "bias");
  check_same_device(ref, *bias, op, "bias");
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == experts && bias->is_contiguous(),
                    "moerouter.", op, ": bias must be contiguous [E=", experts, "], got shape ",
                    bias->sizes());
}

// The output fields every route params struct shares (checked by check_outputs).
template <typename Params>
void set_outputs(Params& p, const at::Tensor& weights, const at::Tensor& ids, const char* op) {
  p.weights = weights.data_ptr<float>();
  p.weights_stride = weights.stride(0);
  p.ids = ids.data_ptr();
  p.ids_dtype = ids_dtype_of(ids, op);
  p.ids_stride = ids.stride(0);
}

RouteLogitsParams logits_params(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                                int64_t k, double scale, const at::Tensor& weights,
                                const at::Tensor& ids) {
  const char* op = "route_logits";
  check_2d(logits, op, "logits");
  check_dtype(logits, {at::kFloat, at::kBFloat16}, op, "logits");
  check_k(k, logits.size(1), op);
  check_bias(bias, logits, logits.size(1), op);
  check_outputs(logits, logits.size(0), k, weights, ids, op);
  RouteLogitsParams p;
  p.logits = logits.data_ptr();
  p.logits_dtype = logits.scalar_type() == at::kFloat ? DType::kF32 : DType::kBF16;
  p.logits_stride = logits.stride(0);
  p.bias = bias ? bias->data_ptr<float>() : nullptr;
  set_outputs(p, weights, ids, op);
  p.n = logits.size(0);
  p.experts = logits.size(1);
  p.k = static_cast<std::int32_t>(k);
  p.scale = static_cast<float>(scale);
  return p;
}

RouteParams route_params(const at::Tensor& x, const at::Tensor& w,
                         const std::optional<at::Tensor>& bias, int64_t k, double scale,
                         const at::Tensor& weights, const at::Tensor& ids) {
  const char* op = "route";
  check_2d(x, op, "x");
  check_dtype(x, {at::kBFloat16}, op, "x");
  check_dtype(w, {at::kBFloat16}, op, "w");
  check_same_device(x, w, op, "w");
  TORCH_CHECK_VALUE(w.dim() == 2 && w.size(1) == x.size(1) && w.is_contiguous(),
                    "moerouter.route: w must be contiguous [E, H=", x.size(1), "], got shape ",
                    w.sizes());
  check_k(k, w.size(0), op);
  check_bias(bias, x, w.size(0), op);
  check_outputs(x, x.size(0), k, weights, ids, op);
  RouteParams p;
  p.x = x.data_ptr();
  p.x_stride = x.stride(0);
  p.w = w.data_ptr();
  p.bias = bias ? bias->data_ptr<float>() : nullptr;
  set_outputs(p, weights, ids, op);
  p.n = x.size(0);
  p.hidden = x.size(1);
  p.experts = w.size(0);
  p.k = static_cast<std::int32_t>(k);
  p.scale = static_cast<float>(scale);
  return p;
}

HashRouteParams hash_params(const at::Tensor& token_ids, const at::Tensor& table, int64_t experts,
                            double scale, const std::optional<at::Tensor>& x,
                            const std::optional<at::Tensor>& w,
                            const std::optional<at::Tensor>& logits, const at::Tensor& weights,
                            const at::Tensor& ids) {
  const char* op = "hash_route";
  check_dtype(token_ids, {at::kInt, at::kLong}, op, "token_ids");
  TORCH_CHECK_VALUE(token_ids.dim() == 1 && token_ids.is_contiguous(),
                    "moerouter.hash_route: token_ids must be contiguous 1-D, got shape ",
                    token_ids.sizes());
  check_dtype(table, {at::kInt, at::kLong}, op, "tid2eid");
  check_same_device(token_ids, table, op, "tid2eid");
  TORCH_CHECK_VALUE(table.dim() == 2 && table.is_contiguous(),
                    "moerouter.hash_route: tid2eid must be contiguous [vocab, k], got shape ",
                    table.sizes());
  const int64_t k = table.size(1);
  check_k(k, experts, op);
  TORCH_CHECK_VALUE(!(logits && (x || w)), "moerouter.hash_route: give x and w, or logits, not both");
  TORCH_CHECK_VALUE(x.has_value() == w.has_value(), "moerouter.hash_route: x and w go together");
  check_outputs(token_ids, token_ids.size(0), k, weights, ids, op);
  HashRouteParams p;
  p.token_ids = token_ids.data_ptr();
  p.token_dtype = token_ids.scalar_type() == at::kLong ? DType::kI64 : DType::kI32;
  p.table = table.data_ptr();
  p.table_dtype = table.scalar_type() == at::kLong ? DType::kI64 : DType::kI32;
  p.vocab = table.size(0);
  set_outputs(p, weights, ids, op);
  p.n = token_ids.size(0);
  p.experts = experts;
  p.k = static_cast<std::int32_t>(k);
  p.scale = static_cast<float>(scale);
  if (x) {
    check_2d(*x, op, "x");
    check_dtype(*x, {at::kBFloat16}, op, "x");
    check_dtype(*w, {at::kBFloat16}, op, "w");
    check_same_device(token_ids, *x, op, "x");
    check_same_device(token_ids, *w, op, "w");
    TORCH_CHECK_VALUE(x->size(0) == p.n, "moerouter.hash_route: x has ", x->size(0),
                      " rows, token_ids has ", p.n);
    TORCH_CHECK_VALUE(w->dim() == 2 && w->size(0) == experts && w->size(1) == x->size(1) &&
                          w->is_contiguous(),
                      "moerouter.hash_route: w must be contiguous [E=", experts, ", H=",
                      x->size(1), "], got shape ", w->sizes());
    p.source = HashWeights::kFromX;
    p.x = x->data_ptr();
    p.x_stride = x->stride(0);
    p.w = w->data_ptr();
    p.hidden = x->size(1);
  } else if (logits) {
    check_2d(*logits, op, "logits");
    check_dtype(*logits, {at::kFloat, at::kBFloat16}, op, "logits");
    check_same_device(token_ids, *logits, op, "logits");
    TORCH_CHECK_VALUE(logits->size(0) == p.n && logits->size(1) == experts,
                      "moerouter.hash_route: logits must be [", p.n, ", ", experts, "], got ",
                      logits->sizes());
    p.source = HashWeights::kFromLogits;
    p.logits = logits->data_ptr();
    p.logits_dtype = logits->scalar_type() == at::kFloat ? DType::kF32 : DType::kBF16;
    p.logits_stride = logits->stride(0);
  } else {
    p.source = HashWeights::kUniform;
  }
  return p;
}

TopkParams topk_params(const at::Tensor& values, int64_t k, const std::optional<at::Tensor>& lengths,
                       bool sorted, const at::Tensor& out_values, const at::Tensor& indices) {
  const char* op = "topk";
  check_2d(values, op, "values");
  check_dtype(values, {at::kFloat, at::kBFloat16}, op, "values");
  TORCH_CHECK_VALUE(k >= 1, "moerouter.topk: k must be >= 1, got ", k);
  if (lengths) {
    check_dtype(*lengths, {at::kInt}, op, "lengths");
    check_same_device(values, *lengths, op, "lengths");
    TORCH_CHECK_VALUE(lengths->dim() == 1 && lengths->size(0) == values.size(0) &&
                          lengths->is_contiguous(),
                      "moerouter.topk: lengths must be contiguous [", values.size(0), "], got ",
                      lengths->sizes());
  }
  check_dtype(out_values, {at::kFloat}, op, "out_values");
  check_dtype(indices, {at::kInt}, op, "indices");
  TopkParams p;
  p.values = values.data_ptr();
  p.values_dtype = values.scalar_type() == at::kFloat ? DType::kF32 : DType::kBF16;
  p.values_stride = values.stride(0);
  p.lengths = lengths ? lengths->data_ptr<std::int32_t>() : nullptr;
  p.indices = indices.data_ptr<std::int32_t>();
  p.indices_stride = indices.stride(0);
  p.out_values = out_values.data_ptr<float>();
  p.out_values_stride = out_values.stride(0);
  p.n = values.size(0);
  p.length = values.size(1);
  p.k = static_cast<std::int32_t>(k);
  p.sorted = sorted;
  return p;
}

std::tuple<at::Tensor, at::Tensor> new_outputs(const at::Tensor& like, int64_t n, int64_t k) {
  return {at::empty({n, k}, like.options().dtype(at::kFloat)),
          at::empty({n, k}, like.options().dtype(at::kInt))};
}

// --- Router registry -------------------------------------------------------------------------

namespace {
std::mutex g_routers_mutex;
std::vector<std::unique_ptr<Router>> g_routers;
}  // namespace

Router& router_by_handle(int64_t handle) {
  std::lock_guard<std::mutex> lock(g_routers_mutex);
  TORCH_CHECK_VALUE(handle >= 0 && handle < static_cast<int64_t>(g_routers.size()) &&
                        g_routers[static_cast<std::size_t>(handle)],
                    "moerouter: no Router with handle ", handle);
  return *g_routers[static_cast<std::size_t>(handle)];
}

namespace {

int64_t router_load(const std::string& path, const std::string& device, int64_t max_batch,
                    bool checked, bool pdl) {
  RouterOptions o;
  TORCH_CHECK_VALUE(device == "cpu" || device == "cuda",
                    "moerouter.Router: device must be 'cpu' or 'cuda', got '", device, "'");
  o.device = device == "cuda" ? RouterDevice::kCuda : RouterDevice::kCpu;
  o.max_batch = max_batch;
  o.checked = checked;
  o.pdl = pdl;
  std::unique_ptr<Router> r;
  try {
    r = std::make_unique<Router>(Router::from_pretrained(path, o));
  } catch (const std::exception& e) {
    TORCH_CHECK_VALUE(false, "moerouter.Router.from_pretrained: ", e.what());
  }
  std::lock_guard<std::mutex> lock(g_routers_mutex);
  g_routers.push_back(std::move(r));
  return static_cast<int64_t>(g_routers.size()) - 1;
}

void router_free(int64_t handle) {
  std::lock_guard<std::mutex> lock(g_routers_mutex);
  if (handle >= 0 && handle < static_cast<int64_t>(g_routers.size())) {
    g_routers[static_cast<std::size_t>(handle)].reset();
  }
}

std::vector<int64_t> router_info(int64_t handle) {
  const Router& r = router_by_handle(handle);
  const ModelShape& c = r.config();
  return {c.hidden, c.experts, c.k, c.vocab, c.num_hash_layers, r.num_layers(), r.on_gpu()};
}

double router_scale(int64_t handle) { return router_by_handle(handle).config().scale; }

// --- CPU implementations ---------------------------------------------------------------------

void route_logits_out_cpu(const at::Tensor& logits, const std::optional<at::Tensor>& bias, int64_t k,
                          double scale, at::Tensor& weights, at::Tensor& ids) {
  check_status(cpu::route_logits(logits_params(logits, bias, k, scale, weights, ids)),
               "route_logits");
}

std::tuple<at::Tensor, at::Tensor> route_logits_cpu(const at::Tensor& logits,
                                                    const std::optional<at::Tensor>& bias,
                                                    int64_t k, double scale) {
  auto [weights, ids] = new_outputs(logits, logits.dim() == 2 ? logits.size(0) : 0, k);
  route_logits_out_cpu(logits, bias, k, scale, weights, ids);
  return {weights, ids};
}

void route_out_cpu(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                   int64_t k, double scale, at::Tensor& weights, at::Tensor& ids) {
  check_status(cpu::route(route_params(x, w, bias, k, scale, weights, ids)), "route");
}

std::tuple<at::Tensor, at::Tensor> route_cpu(const at::Tensor& x, const at::Tensor& w,
                                             const std::optional<at::Tensor>& bias, int64_t k,
                                             double scale) {
  auto [weights, ids] = new_outputs(x, x.dim() == 2 ? x.size(0) : 0, k);
  route_out_cpu(x, w, bias, k, scale, weights, ids);
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor> hash_route_cpu(const at::Tensor& token_ids, const at::Tensor& table,
                                                  int64_t experts, double scale,
                                                  const std::optional<at::Tensor>& x,
                                                  const std::optional<at::Tensor>& w,
                                                  const std::optional<at::Tensor>& logits) {
  auto [weights, ids] =
      new_outputs(token_ids, token_ids.dim() == 1 ? token_ids.size(0) : 0,
                  table.dim() == 2 ? table.size(1) : 0);
  check_status(cpu::hash_route(hash_params(token_ids, table, experts, scale, x, w, logits, weights, ids)),
               "hash_route");
  return {weights, ids};
}

std::tuple<at::Tensor, at::Tensor> topk_cpu(const at::Tensor& values, int64_t k,
                                            const std::optional<at::Tensor>& lengths, bool sorted) {
  const int64_t n = values.dim() == 2 ? values.size(0) : 0;
  at::Tensor out_values = at::empty({n, k}, values.options().dtype(at::kFloat));
  at::Tensor indices = at::empty({n, k}, values.options().dtype(at::kInt));
  check_status(cpu::topk(topk_params(values, k, lengths, sorted, out_values, indices)), "topk");
  return {out_values, indices};
}

std::tuple<at::Tensor, at::Tensor> router_route_cpu(int64_t handle, int64_t layer,
                                                    const at::Tensor& x,
                                                    const std::optional<at::Tensor>& token_ids) {
  return router_route_impl(router_by_handle(handle), layer, x, token_ids, nullptr);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> router_route_impl(const Router& r, int64_t layer,
                                                     const at::Tensor& x,
                                                     const std::optional<at::Tensor>& token_ids,
                                                     void* stream) {
  const char* op = "Router";
  check_2d(x, op, "hidden");
  check_dtype(x, {at::kBFloat16}, op, "hidden");
  const ModelShape& c = r.config();
  TORCH_CHECK_VALUE(x.size(1) == c.hidden, "moerouter.Router: hidden must be [n, ", c.hidden,
                    "], got shape ", x.sizes());
  TORCH_CHECK_VALUE(layer >= 0 && layer < r.num_layers(), "moerouter.Router: layer must be in [0, ",
                    r.num_layers(), "), got ", layer);
  const bool hash = r.is_hash_layer(static_cast<int>(layer));
  TORCH_CHECK_VALUE(!hash || token_ids.has_value(), "moerouter.Router: layer ", layer,
                    " is a hash layer: input_ids are required");
  const void* tok = nullptr;
  DType tok_dtype = DType::kI64;
  if (token_ids) {
    check_dtype(*token_ids, {at::kInt, at::kLong}, op, "input_ids");
    check_same_device(x, *token_ids, op, "input_ids");
    TORCH_CHECK_VALUE(token_ids->numel() == x.size(0) && token_ids->is_contiguous(),
                      "moerouter.Router: input_ids must hold one contiguous id per token (",
                      x.size(0), "), got shape ", token_ids->sizes());
    tok = token_ids->data_ptr();
    tok_dtype = token_ids->scalar_type() == at::kLong ? DType::kI64 : DType::kI32;
  }
  auto [weights, ids] = new_outputs(x, x.size(0), c.k);
  try {
    r.route(static_cast<int>(layer), static_cast<const bf16*>(x.data_ptr()), tok, tok_dtype,
            x.size(0), weights.data_ptr<float>(), ids.data_ptr(), DType::kI32, x.stride(0),
            stream);
  } catch (const RouterError& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
  return {weights, ids};
}

}  // namespace torch_ops
}  // namespace moerouter

TORCH_LIBRARY(moerouter, m) {
  m.def("route(Tensor x, Tensor w, Tensor? bias, int k, float scale) -> (Tensor, Tensor)");
  m.def("route_out(Tensor x, Tensor w, Tensor? bias, int k, float scale, Tensor(a!) weights, "
        "Tensor(b!) ids) -> ()");
  m.def("route_logits(Tensor logits, Tensor? bias, int k, float scale) -> (Tensor, Tensor)");
  m.def("route_logits_out(Tensor logits, Tensor? bias, int k, float scale, Tensor(a!) weights, "
        "Tensor(b!) ids) -> ()");
  m.def("hash_route(Tensor token_ids, Tensor tid2eid, int num_experts, float scale, Tensor? x, "
        "Tensor? w, Tensor? logits) -> (Tensor, Tensor)");
  m.def("topk(Tensor values, int k, Tensor? lengths=None, bool sorted=True) -> (Tensor, Tensor)");
  m.def("router_route(int handle, int layer, Tensor x, Tensor? token_ids) -> (Tensor, Tensor)");
  // Registry management: plain functions, not traced.
  m.def("router_load(str path, str device, int max_batch, bool checked, bool pdl=False) -> int",
        &moerouter::torch_ops::router_load);
  m.def("router_free(int handle) -> ()", &moerouter::torch_ops::router_free);
  m.def("router_info(int handle) -> int[]", &moerouter::torch_ops::router_info);
  m.def("router_scale(int handle) -> float", &moerouter::torch_ops::router_scale);
}

TORCH_LIBRARY_IMPL(moerouter, CPU, m) {
  using namespace moerouter::torch_ops;
  m.impl("route", &route_cpu);
  m.impl("route_out", &route_out_cpu);
  m.impl("route_logits", &route_logits_cpu);
  m.impl("route_logits_out", &route_logits_out_cpu);
  m.impl("hash_route", &hash_route_cpu);
  m.impl("topk", &topk_cpu);
  m.impl("router_route", &router_route_cpu);
}
