// The CPU backend: the router math of detail/math.h in fp32, threads over rows.
#include <algorithm>
#include <atomic>
#include <numeric>
#include <string>
#include <vector>

#include "access.h"
#include "moerouter/cpu.h"
#include "moerouter/detail/math.h"
#include "moerouter/detail/params.h"
#include "parallel.h"

namespace moerouter {
namespace cpu {
namespace {

using detail::stride_or;

// Tokens per GEMM tile: each W row read from memory serves this many tokens.
constexpr int kTokenTile = 4;
// Accumulator lanes of the dot products (vectorizable, summed in a fixed order).
constexpr int kLanes = 8;

// logits[t][e] = x_t . W_e for up to kTokenTile widened token rows. bf16 x bf16 products are
// exact in fp32, so only the accumulation order matters: lane l sums h = l (mod kLanes) in
// order, lanes are then added 0..kLanes-1, then the tail.
void dot_tile(const float* const* xs, int tokens, const bf16* w_row, std::int64_t hidden,
              float* out) {
  float acc[kTokenTile][kLanes] = {};
  const std::int64_t body = hidden - hidden % kLanes;
  for (std::int64_t h = 0; h < body; h += kLanes) {
    float wf[kLanes];
    for (int l = 0; l < kLanes; ++l) wf[l] = detail::bf16_to_float(w_row[h + l]);
    for (int t = 0; t < kTokenTile; ++t) {
      if (t >= tokens) break;
      for (int l = 0; l < kLanes; ++l) acc[t][l] += xs[t][h + l] * wf[l];
    }
  }
  for (int t = 0; t < tokens; ++t) {
    float sum = 0.0f;
    for (int l = 0; l < kLanes; ++l) sum += acc[t][l];
    for (std::int64_t h = body; h < hidden; ++h) {
      sum += xs[t][h] * detail::bf16_to_float(w_row[h]);
    }
    out[t] = sum;
  }
}

void widen_row(const bf16* src, std::int64_t hidden, float* dst) {
  for (std::int64_t h = 0; h < hidden; ++h) dst[h] = detail::bf16_to_float(src[h]);
}

// The dense route of one row from its fp32 logits. `best_b`/`best_id` are k-sized scratch.
void route_row(const float* logits, const float* bias, std::int64_t experts, int k, float scale,
               float* best_b, std::int64_t* best_id, float* s_sel, float* w_out) {
  int count = 0;
  for (std::int64_t e = 0; e < experts; ++e) {
    const float s = detail::sqrt_softplus(logits[e]);
    const float b = bias ? s + bias[e] : s;
    detail::topk_insert(best_b, best_id, k, count, b, e);
  }
  for (int j = 0; j < k; ++j) s_sel[j] = detail::sqrt_softplus(logits[best_id[j]]);
  detail::renormalize(s_sel, k, scale, w_out);
}

// Routes rows [b, e) whose logits are produced by `row_logits(n, buffer)`.
template <typename RowLogits>
void route_rows(std::int64_t b, std::int64_t e, std::int64_t experts, int k, float scale,
                const float* bias, float* weights, std::int64_t w_stride, void* ids,
                DType ids_dtype, std::int64_t ids_stride, RowLogits&& row_logits) {
  std::vector<float> buf(static_cast<std::size_t>(experts));
  std::vector<float> best_b(k), s_sel(k);
  std::vector<std::int64_t> best_id(k);
  for (std::int64_t n = b; n < e; ++n) {
    const float* logits = row_logits(n, buf.data());
    route_row(logits, bias, experts, k, scale, best_b.data(), best_id.data(), s_sel.data(),
              weights + n * w_stride);
    for (int j = 0; j < k; ++j) store_index(ids, ids_dtype, n * ids_stride + j, best_id[j]);
  }
}

}  // namespace

Status route(const RouteParams& p) {
  Status st = validate(p);
  if (!st.ok() || p.n == 0) return st;
  const std::int64_t x_stride = stride_or(p.x_stride, p.hidden);
  const auto* x = static_cast<const bf16*>(p.x);
  const auto* w = static_cast<const bf16*>(p.w);
  const std::int64_t tiles = (p.n + kTokenTile - 1) / kTokenTile;

  // Pass 1: logits [n, E] in fp32, parallel over (token tile, expert chunk) work items so a
  // single token still uses every thread.
  std::vector<float> logits(static_cast<std::size_t>(p.n * p.experts));
  const std::int64_t expert_chunk = 32;
  const std::int64_t chunks = (p.experts + expert_chunk - 1) / expert_chunk;
  parallel_for(tiles * chunks, 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> xs_buf(static_cast<std::size_t>(kTokenTile * p.hidden));
    std::int64_t widened_tile = -1;
    for (std::int64_t item = b; item < e; ++item) {
      const std::int64_t tile = item / chunks, chunk = item % chunks;
      const std::int64_t t0 = tile * kTokenTile;
      const int tokens = static_cast<int>(std::min<std::int64_t>(kTokenTile, p.n - t0));
      const float* xs[kTokenTile];
      for (int t = 0; t < kTokenTile; ++t) xs[t] = xs_buf.data() + t * p.hidden;
      if (widened_tile != tile) {
        for (int t = 0; t < tokens; ++t) {
          widen_row(x + (t0 + t) * x_stride, p.hidden, xs_buf.data() + t * p.hidden);
        }
        widened_tile = tile;
      }
      const std::int64_t e_end = std::min(p.experts, (chunk + 1) * expert_chunk);
      for (std::int64_t ex = chunk * expert_chunk; ex < e_end; ++ex) {
        float out[kTokenTile];
        dot_tile(xs, tokens, w + ex * p.hidden, p.hidden, out);
        for (int t = 0; t < tokens; ++t) logits[(t0 + t) * p.experts + ex] = out[t];
      }
    }
  });

  // Pass 2: the route of each row.
  parallel_for(p.n, 64, [&](std::int64_t b, std::int64_t e) {
    route_rows(b, e, p.experts, p.k, p.scale, p.bias, p.weights, stride_or(p.weights_stride, p.k),
               p.ids, p.ids_dtype, stride_or(p.ids_stride, p.k),
               [&](std::int64_t n, float*) { return logits.data() + n * p.experts; });
  });
  return Status::success();
}

Status route_logits(const RouteLogitsParams& p) {
  Status st = validate(p);
  if (!st.ok() || p.n == 0) return st;
  const std::int64_t stride = stride_or(p.logits_stride, p.experts);
  parallel_for(p.n, 64, [&](std::int64_t b, std::int64_t e) {
    route_rows(b, e, p.experts, p.k, p.scale, p.bias, p.weights, stride_or(p.weights_stride, p.k),
               p.ids, p.ids_dtype, stride_or(p.ids_stride, p.k),
               [&](std::int64_t n, float* buf) -> const float* {
                 if (p.logits_dtype == DType::kF32) {
                   return static_cast<const float*>(p.logits) + n * stride;
                 }
                 for (std::int64_t ex = 0; ex < p.experts; ++ex) {
                   buf[ex] = load_real(p.logits, p.logits_dtype, n * stride + ex);
                 }
                 return buf;
               });
  });
  return Status::success();
}

Status hash_route(const HashRouteParams& p) {
  Status st = validate(p);
  if (!st.ok() || p.n == 0) return st;
  const std::int64_t w_stride = stride_or(p.weights_stride, p.k);
  const std::int64_t ids_stride = stride_or(p.ids_stride, p.k);
  const std::int64_t x_stride = stride_or(p.x_stride, p.hidden);
  const std::int64_t logits_stride = stride_or(p.logits_stride, p.experts);
  std::atomic<std::int64_t> first_bad{p.n};

  parallel_for(p.n, 256, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> s(p.k), xs(p.source == HashWeights::kFromX ? p.hidden : 0);
    std::vector<std::int64_t> row_ids(p.k);
    for (std::int64_t n = b; n < e; ++n) {
      float* w_out = p.weights + n * w_stride;
      const std::int64_t token = load_index(p.token_ids, p.token_dtype, n);
      bool bad = token < 0 || token >= p.vocab;
      for (int j = 0; j < p.k && !bad; ++j) {
        row_ids[j] = load_index(p.table, p.table_dtype, token * p.k + j);
        bad = row_ids[j] < 0 || row_ids[j] >= p.experts;
      }
      if (bad) {
        for (int j = 0; j < p.k; ++j) {
          w_out[j] = 0.0f;
          store_index(p.ids, p.ids_dtype, n * ids_stride + j, -1);
        }
        std::int64_t cur = first_bad.load();
        while (n < cur && !first_bad.compare_exchange_weak(cur, n)) {
        }
        continue;
      }
      if (p.source == HashWeights::kUniform) {
        for (int j = 0; j < p.k; ++j) w_out[j] = p.scale / static_cast<float>(p.k);
      } else {
        if (p.source == HashWeights::kFromX) {
          widen_row(static_cast<const bf16*>(p.x) + n * x_stride, p.hidden, xs.data());
        }
        for (int j = 0; j < p.k; ++j) {
          float logit;
          if (p.source == HashWeights::kFromX) {
            const float* xrow = xs.data();
            dot_tile(&xrow, 1, static_cast<const bf16*>(p.w) + row_ids[j] * p.hidden, p.hidden,
                     &logit);
          } else {
            logit = load_real(p.logits, p.logits_dtype, n * logits_stride + row_ids[j]);
          }
          s[j] = detail::sqrt_softplus(logit);
        }
        detail::renormalize(s.data(), p.k, p.scale, w_out);
      }
      for (int j = 0; j < p.k; ++j) store_index(p.ids, p.ids_dtype, n * ids_stride + j, row_ids[j]);
    }
  });

  const std::int64_t bad = first_bad.load();
  if (bad < p.n) {
    if (p.error_flag) *p.error_flag = 1;
    const std::int64_t token = load_index(p.token_ids, p.token_dtype, bad);
    return Status(StatusCode::kInvalidTokenId,
                  "hash_route: row " + std::to_string(bad) + " (token id " +
                      std::to_string(token) + ", vocab " + std::to_string(p.vocab) +
                      ") has a token id outside [0, vocab) or a tid2eid entry outside [0, " +
                      "experts=" + std::to_string(p.experts) +
                      "); such rows were written as ids -1, weights 0");
  }
  return Status::success();
}

Status topk(const TopkParams& p) {
  Status st = validate(p);
  if (!st.ok() || p.n == 0) return st;
  const std::int64_t v_stride = stride_or(p.values_stride, p.length);
  const std::int64_t i_stride = stride_or(p.indices_stride, p.k);
  const std::int64_t o_stride = stride_or(p.out_values_stride, p.k);
  parallel_for(p.n, 16, [&](std::int64_t b, std::int64_t e) {
    std::vector<std::int32_t> order;
    std::vector<float> row;
    for (std::int64_t n = b; n < e; ++n) {
      std::int64_t len = p.lengths ? p.lengths[n] : p.length;
      len = std::clamp<std::int64_t>(len, 0, p.length);
      row.resize(static_cast<std::size_t>(len));
      for (std::int64_t i = 0; i < len; ++i) row[i] = load_real(p.values, p.values_dtype, n * v_stride + i);
      order.resize(static_cast<std::size_t>(len));
      std::iota(order.begin(), order.end(), 0);
      const std::int64_t kept = std::min<std::int64_t>(p.k, len);
      std::partial_sort(order.begin(), order.begin() + kept, order.end(),
                        [&](std::int32_t a, std::int32_t c) {
                          return detail::ranks_before(row[a], a, row[c], c);
                        });
      if (!p.sorted) std::sort(order.begin(), order.begin() + kept);
      for (std::int64_t j = 0; j < p.k; ++j) {
        const bool valid = j < kept;
        p.indices[n * i_stride + j] = valid ? order[j] : -1;
        if (p.out_values) {
          p.out_values[n * o_stride + j] = valid ? row[order[j]] : -INFINITY;
        }
      }
    }
  });
  return Status::success();
}

}  // namespace cpu
}  // namespace moerouter
