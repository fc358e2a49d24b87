// Shared test bed: seeded data with the hard cases SPEC.md asks for (exact ties, near ties,
// NaN/inf, huge and tiny logits, a Flash-like bias), and a printable config.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "moerouter/detail/math.h"
#include "moerouter/synthetic.h"
#include "moerouter/types.h"

namespace moerouter {
namespace testing {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

/// What kind of values fill a logits matrix.
enum class LogitPattern {
  kNormal,     ///< N(0, 1.5^2)
  kTies,       ///< few distinct values (exact ties everywhere)
  kNearTies,   ///< values that differ in the last bits
  kExtreme,    ///< +-100, -200 (underflow), mixed with normal values
  kSpecial,    ///< NaN, +-inf sprinkled in
};

inline const char* pattern_name(LogitPattern p) {
  switch (p) {
    case LogitPattern::kNormal: return "normal";
    case LogitPattern::kTies: return "ties";
    case LogitPattern::kNearTies: return "near_ties";
    case LogitPattern::kExtreme: return "extreme";
    case LogitPattern::kSpecial: return "special";
  }
  return "?";
}

inline std::vector<float> make_logits(std::int64_t n, std::int64_t experts, LogitPattern pattern,
                                      std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n * experts));
  for (auto& x : v) {
    const double r = rng.uniform();
    switch (pattern) {
      case LogitPattern::kNormal: x = float(1.5 * rng.normal()); break;
      case LogitPattern::kTies: x = float(int(rng.below(4)) - 1) * 0.5f; break;
      case LogitPattern::kNearTies: x = std::nextafter(0.75f, r < 0.5 ? 0.0f : 2.0f) + float(rng.below(3)) * 1e-7f; break;
      case LogitPattern::kExtreme:
        x = r < 0.25 ? 100.0f : r < 0.5 ? -100.0f : r < 0.7 ? -200.0f : float(3.0 * rng.normal());
        break;
      case LogitPattern::kSpecial:
        x = r < 0.1 ? kNaN : r < 0.2 ? kInf : r < 0.3 ? -kInf : float(rng.normal());
        break;
    }
  }
  return v;
}

/// A realistic DSV4 bias: about 8.08 on every expert, nearly uniform.
inline std::vector<float> make_bias(std::int64_t experts, std::uint64_t seed, double base = 8.08) {
  SeededRng rng(seed);
  std::vector<float> b(static_cast<std::size_t>(experts));
  for (auto& x : b) x = float(base + 0.02 * rng.normal());
  return b;
}

/// bf16 values ~ N(0, sigma^2).
inline std::vector<bf16> make_bf16(std::int64_t count, double sigma, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<bf16> v(static_cast<std::size_t>(count));
  for (auto& x : v) x = detail::float_to_bf16(float(sigma * rng.normal()));
  return v;
}

/// "N=64 E=256 k=6 pattern=normal seed=3" for failure messages.
inline std::string config(std::int64_t n, std::int64_t e, int k, const std::string& extra = "") {
  std::ostringstream os;
  os << "N=" << n << " E=" << e << " k=" << k << (extra.empty() ? "" : " ") << extra;
  return os.str();
}

/// A float from bit patterns where every bit of the order key decides: ~20% just above 1 and
/// differing only in the low 16 bits, ~10% zeros of both signs, ~30% the tiniest values of both
/// signs (subnormal, below 2^-133), ~5% NaNs of either sign whose top 16 bits are an
/// infinity's, the rest in (-4, -1].
inline float low_bits_value(SeededRng& rng) {
  const double u = rng.uniform();
  const std::uint32_t low = std::uint32_t(rng.below(0x10000));
  const std::uint32_t sign = rng.below(2) != 0 ? 0x80000000u : 0u;
  const std::uint32_t bits = u < 0.2   ? 0x3f800000u | low
                             : u < 0.3 ? sign
                             : u < 0.6 ? sign | low
                             : u < 0.65
                                 ? sign | 0x7f800000u | (low | 1u)
                                 : 0x80000000u | (0x3f800000u + std::uint32_t(rng.below(1u << 24)));
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

}  // namespace testing
}  // namespace moerouter
