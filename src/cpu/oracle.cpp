// The float64 oracle: SPEC.md's formulas, one row at a time, as plainly as possible.
#include "moerouter/oracle.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "access.h"
#include "moerouter/detail/math.h"
#include "moerouter/detail/params.h"

namespace moerouter {
namespace oracle {
namespace {

using detail::stride_or;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The k experts with the largest s + bias, sorted by that value (ranking order of SPEC.md).
std::vector<std::int64_t> top_experts(const double* biased, std::int64_t experts, int k) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(experts));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return detail::ranks_before(biased[a], a, biased[b], b);
  });
  order.resize(static_cast<std::size_t>(k));
  return order;
}

// w[j] = s[ids[j]] / max(sum_j s[ids[j]], 1e-20) * scale.
void weights_of(const double* s_row, const std::int64_t* ids, int k, double scale, double* w) {
  std::vector<double> s(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) s[j] = s_row[ids[j]];
  detail::renormalize(s.data(), k, scale, w);
}

RouteResult make_result(std::int64_t n, std::int64_t experts, int k, float scale,
                        const float* bias) {
  RouteResult r;
  r.n = n;
  r.experts = experts;
  r.k = k;
  r.scale = scale;
  r.ids.assign(static_cast<std::size_t>(n * k), -1);
  r.weights.assign(static_cast<std::size_t>(n * k), 0.0);
  r.logits.assign(static_cast<std::size_t>(n * experts), kNaN);
  r.bias.assign(static_cast<std::size_t>(experts), 0.0);
  if (bias) std::copy(bias, bias + experts, r.bias.begin());
  r.bad_row.assign(static_cast<std::size_t>(n), 0);
  return r;
}

// Dense route of every row from r.logits.
void route_from_logits(RouteResult& r) {
  std::vector<double> s(static_cast<std::size_t>(r.experts)), biased(s.size());
  for (std::int64_t n = 0; n < r.n; ++n) {
    for (std::int64_t e = 0; e < r.experts; ++e) {
      s[e] = detail::sqrt_softplus(r.logits[n * r.experts + e]);
      biased[e] = s[e] + r.bias[e];
    }
    const std::vector<std::int64_t> ids = top_experts(biased.data(), r.experts, r.k);
    std::copy(ids.begin(), ids.end(), r.ids.begin() + n * r.k);
    weights_of(s.data(), ids.data(), r.k, r.scale, r.weights.data() + n * r.k);
  }
}

// The exact logit x_n . W_e (bf16 products are exact in double, and so is the sum to far
// below fp32's precision) and SPEC.md's bound on an fp32 accumulation of it.
void exact_logit(const bf16* x, const bf16* w, std::int64_t hidden, double* logit,
                 double* bound) {
  double sum = 0.0, abs_sum = 0.0;
  for (std::int64_t h = 0; h < hidden; ++h) {
    const double prod =
        double(detail::bf16_to_float(x[h])) * double(detail::bf16_to_float(w[h]));
    sum += prod;
    abs_sum += std::fabs(prod);
  }
  *logit = sum;
  *bound = double(hidden) * std::ldexp(1.0, -24) * abs_sum;
}

}  // namespace

RouteResult route(const RouteParams& p) {
  RouteResult r = make_result(p.n, p.experts, p.k, p.scale, p.bias);
  r.logit_bound.assign(r.logits.size(), 0.0);
  const auto* x = static_cast<const bf16*>(p.x);
  const auto* w = static_cast<const bf16*>(p.w);
  const std::int64_t x_stride = stride_or(p.x_stride, p.hidden);
  for (std::int64_t n = 0; n < p.n; ++n) {
    for (std::int64_t e = 0; e < p.experts; ++e) {
      exact_logit(x + n * x_stride, w + e * p.hidden, p.hidden, &r.logits[n * p.experts + e],
                  &r.logit_bound[n * p.experts + e]);
    }
  }
  route_from_logits(r);
  return r;
}

RouteResult route_logits(const RouteLogitsParams& p) {
  RouteResult r = make_result(p.n, p.experts, p.k, p.scale, p.bias);
  const std::int64_t stride = stride_or(p.logits_stride, p.experts);
  for (std::int64_t n = 0; n < p.n; ++n) {
    for (std::int64_t e = 0; e < p.experts; ++e) {
      r.logits[n * p.experts + e] = cpu::load_real(p.logits, p.logits_dtype, n * stride + e);
    }
  }
  route_from_logits(r);
  return r;
}

RouteResult hash_route(const HashRouteParams& p) {
  RouteResult r = make_result(p.n, p.experts, p.k, p.scale, nullptr);
  r.hash = true;
  r.uniform = p.source == HashWeights::kUniform;
  if (p.source == HashWeights::kFromX) r.logit_bound.assign(r.logits.size(), 0.0);
  std::vector<double> s(static_cast<std::size_t>(p.experts), kNaN);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(p.k));
  for (std::int64_t n = 0; n < p.n; ++n) {
    const std::int64_t token = cpu::load_index(p.token_ids, p.token_dtype, n);
    bool bad = token < 0 || token >= p.vocab;
    for (int j = 0; j < p.k && !bad; ++j) {
      ids[j] = cpu::load_index(p.table, p.table_dtype, token * p.k + j);
      bad = ids[j] < 0 || ids[j] >= p.experts;
    }
    if (bad) {
      r.bad_row[n] = 1;  // ids stay -1, weights 0
      continue;
    }
    std::copy(ids.begin(), ids.end(), r.ids.begin() + n * p.k);
    double* w_out = r.weights.data() + n * p.k;
    if (p.source == HashWeights::kUniform) {
      for (int j = 0; j < p.k; ++j) w_out[j] = double(p.scale) / p.k;
      continue;
    }
    for (int j = 0; j < p.k; ++j) {
      const std::int64_t e = ids[j];
      double* logit = &r.logits[n * p.experts + e];
      if (p.source == HashWeights::kFromX) {
        exact_logit(static_cast<const bf16*>(p.x) + n * stride_or(p.x_stride, p.hidden),
                    static_cast<const bf16*>(p.w) + e * p.hidden, p.hidden, logit,
                    &r.logit_bound[n * p.experts + e]);
      } else {
        *logit = cpu::load_real(p.logits, p.logits_dtype,
                                n * stride_or(p.logits_stride, p.experts) + e);
      }
      s[e] = detail::sqrt_softplus(*logit);
    }
    weights_of(s.data(), ids.data(), p.k, p.scale, w_out);
  }
  return r;
}

TopkResult topk(const TopkParams& p) {
  TopkResult r;
  r.n = p.n;
  r.k = p.k;
  r.indices.assign(static_cast<std::size_t>(p.n * p.k), -1);
  r.values.assign(static_cast<std::size_t>(p.n * p.k), -std::numeric_limits<double>::infinity());
  const std::int64_t stride = stride_or(p.values_stride, p.length);
  for (std::int64_t n = 0; n < p.n; ++n) {
    const std::int64_t len =
        std::clamp<std::int64_t>(p.lengths ? p.lengths[n] : p.length, 0, p.length);
    std::vector<double> row(static_cast<std::size_t>(len));
    for (std::int64_t i = 0; i < len; ++i) {
      row[i] = cpu::load_real(p.values, p.values_dtype, n * stride + i);
    }
    const std::vector<std::int64_t> top = top_experts(row.data(), len, std::min<std::int64_t>(p.k, len));
    for (std::size_t j = 0; j < top.size(); ++j) {
      r.indices[n * p.k + j] = top[j];
      r.values[n * p.k + j] = row[top[j]];
    }
  }
  return r;
}

}  // namespace oracle
}  // namespace moerouter
