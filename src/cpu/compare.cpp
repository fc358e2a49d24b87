// Backend-vs-oracle comparison with SPEC.md's tolerances (see oracle.h for the rules).
#include <cmath>
#include <sstream>
#include <vector>

#include "access.h"
#include "moerouter/detail/math.h"
#include "moerouter/oracle.h"

namespace moerouter {
namespace oracle {
namespace {

constexpr double kRel = 1e-6;            // SPEC.md: fp32 rounding allowance, relative
constexpr double kSubnormalLogit = -87;  // below this, softplus is subnormal in fp32
// Largest absolute error of an fp32 softplus in the subnormal range (a few half-ulps of 2^-149).
const double kSubnormalSoftplusError = std::ldexp(1.0, -147);

// |s(l') - s(l)| for l' = l +- d: the exact propagation of a logit error d through
// s = sqrt(softplus) (monotonic), plus what fp32's subnormal softplus can lose.
double score_bound(double logit, double d) {
  const double s = detail::sqrt_softplus(logit);
  double b = 0.0;
  if (d > 0) {
    b = std::fmax(std::fabs(detail::sqrt_softplus(logit + d) - s),
                  std::fabs(detail::sqrt_softplus(logit - d) - s));
  }
  if (logit - d < kSubnormalLogit) {
    const double sp = detail::softplus(logit);
    b += std::sqrt(sp + kSubnormalSoftplusError) - std::sqrt(sp);
  }
  return b;
}

}  // namespace

RouteComparison compare_route(const RouteResult& ref, const void* ids, DType ids_dtype,
                              std::int64_t ids_stride, const float* weights,
                              std::int64_t weights_stride) {
  RouteComparison c;
  const int k = ref.k;
  const std::int64_t E = ref.experts;
  c.rows = ref.n;
  c.ids_total = ref.n * k;
  std::vector<std::int64_t> got(static_cast<std::size_t>(k));
  std::vector<double> b(static_cast<std::size_t>(E)), tol(static_cast<std::size_t>(E));
  std::vector<std::uint8_t> chosen(static_cast<std::size_t>(E));
  std::vector<double> s(static_cast<std::size_t>(k)), ds(s.size());  // per row, reused
  auto fail = [&](std::int64_t n, const std::string& why) {
    if (c.first_failure.empty()) {
      std::ostringstream os;
      os << "row " << n << ": " << why << "; got ids [";
      for (int j = 0; j < k; ++j) os << (j ? " " : "") << got[j];
      os << "], oracle [";
      for (int j = 0; j < k; ++j) os << (j ? " " : "") << ref.ids[n * k + j];
      os << "]";
      c.first_failure = os.str();
    }
  };

  for (std::int64_t n = 0; n < ref.n; ++n) {
    const std::int64_t* want = ref.ids.data() + n * k;
    const double* logit = ref.logits.data() + n * E;
    const double* bound = ref.logit_bound.empty() ? nullptr : ref.logit_bound.data() + n * E;
    const float* w = weights + n * weights_stride;
    bool same = true;
    for (int j = 0; j < k; ++j) {
      got[j] = cpu::load_index(ids, ids_dtype, n * ids_stride + j);
      if (got[j] == want[j]) ++c.ids_equal;
      same = same && got[j] == want[j];
    }

    // --- ids ---
    if (ref.hash || ref.bad_row[n]) {
      if (!same) {
        ++c.rows_mismatched;
        fail(n, "hash ids differ from the table");
        continue;
      }
    } else if (!same) {
      std::fill(chosen.begin(), chosen.end(), 0);
      bool valid = true;
      for (int j = 0; j < k; ++j) {
        valid = valid && got[j] >= 0 && got[j] < E && !chosen[got[j]];
        if (valid) chosen[got[j]] = 1;
      }
      if (!valid) {
        ++c.rows_mismatched;
        fail(n, "ids are not k distinct experts in [0, E)");
        continue;
      }
      for (std::int64_t e = 0; e < E; ++e) {
        b[e] = detail::sqrt_softplus(logit[e]) + ref.bias[e];
        tol[e] = std::isfinite(b[e])
                     ? score_bound(logit[e], bound ? bound[e] : 0.0) + kRel * std::fabs(b[e])
                     : 0.0;
      }
      // Expert u clearly ranks before expert v: beyond both error bounds. NaN ranks below every
      // number and NaNs rank by index, exactly (no rounding is involved there).
      auto clearly_before = [&](std::int64_t u, std::int64_t v) {
        const bool nu = std::isnan(b[u]), nv = std::isnan(b[v]);
        if (nu || nv) return nu && nv ? u < v : nv;
        return b[u] - tol[u] > b[v] + tol[v];
      };
      // A difference is excused only by a near tie: no expert left out clearly ranks before
      // one chosen, and each chosen expert is not clearly below the next.
      bool excused = true;
      for (int j = 0; excused && j < k; ++j) {
        const std::int64_t cj = got[j];
        if (j + 1 < k && clearly_before(got[j + 1], cj)) excused = false;
        for (std::int64_t u = 0; excused && u < E; ++u) {
          if (!chosen[u] && clearly_before(u, cj)) excused = false;
        }
      }
      if (!excused) {
        ++c.rows_mismatched;
        fail(n, "ids differ beyond a near tie");
        continue;
      }
      ++c.rows_near_tie;
    }

    // --- weights, from the oracle's formula on the backend's own ids ---
    if (ref.bad_row[n]) {
      for (int j = 0; j < k; ++j) {
        if (w[j] != 0.0f) {
          ++c.weights_out_of_tolerance;
          fail(n, "a bad row's weights must be 0");
          break;
        }
      }
      continue;
    }
    double sum = 0.0, dsum = 0.0;
    bool subnormal = false;
    for (int j = 0; j < k; ++j) {
      const double l = logit[got[j]];
      const double d = bound ? bound[got[j]] : 0.0;
      s[j] = detail::sqrt_softplus(l);
      ds[j] = score_bound(l, d);
      subnormal = subnormal || l - d < kSubnormalLogit;
      sum += s[j];
      dsum += ds[j];
    }
    const double denom = detail::renorm_denominator(sum);
    const double scale = ref.scale;
    for (int j = 0; j < k; ++j) {
      double expect, t;
      if (ref.uniform) {
        expect = scale / k;
        t = kRel * std::fabs(expect);
      } else {
        expect = s[j] / denom * scale;
        t = kRel * std::fabs(expect) +
            std::fabs(scale) * (ds[j] / denom + s[j] * dsum / (denom * denom));
        if (subnormal) t += kRel * std::fabs(scale);
      }
      const double got_w = w[j];
      const bool nan_ok = std::isnan(expect) && std::isnan(got_w);
      const double err = std::fabs(got_w - expect);
      if (!nan_ok && !(err <= t)) {
        ++c.weights_out_of_tolerance;
        std::ostringstream os;
        os << "weight " << j << " is " << got_w << ", oracle " << expect << " (tolerance " << t
           << ")";
        fail(n, os.str());
        break;
      }
      if (!nan_ok && err > c.max_weight_error) c.max_weight_error = err;
    }
  }
  return c;
}

}  // namespace oracle
}  // namespace moerouter
