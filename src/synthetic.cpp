#include "moerouter/synthetic.h"

#include <cmath>
#include <numeric>
#include <stdexcept>

#include "moerouter/detail/math.h"

namespace moerouter {

ModelShape dsv4_flash() {
  return ModelShape{"flash", 4096, 256, 6, 1.5f, 129280, 3, 43, 512};
}

ModelShape dsv4_pro() { return ModelShape{"pro", 7168, 384, 6, 2.5f, 129280, 3, 61, 1024}; }

ModelShape model_shape_by_name(const std::string& name) {
  if (name == "flash") return dsv4_flash();
  if (name == "pro") return dsv4_pro();
  throw std::invalid_argument("model must be 'flash' or 'pro', got '" + name + "'");
}

std::uint64_t SeededRng::next_u64() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double SeededRng::uniform() { return double(next_u64() >> 11) * 0x1p-53; }

double SeededRng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * M_PI * u2);
  has_spare_ = true;
  return r * std::cos(2.0 * M_PI * u2);
}

SyntheticLayer make_synthetic_layer(const ModelShape& shape, std::uint64_t seed,
                                    bool with_table) {
  SyntheticLayer layer;
  SeededRng rng(seed);
  const double sigma = 1.5 / std::sqrt(double(shape.hidden));
  layer.w.resize(static_cast<std::size_t>(shape.experts * shape.hidden));
  for (auto& v : layer.w) v = detail::float_to_bf16(float(rng.normal() * sigma));
  layer.bias.resize(static_cast<std::size_t>(shape.experts));
  for (auto& b : layer.bias) b = float(8.08 + 0.02 * rng.normal());
  if (with_table) {
    layer.tid2eid.resize(static_cast<std::size_t>(shape.vocab * shape.k));
    std::vector<std::int32_t> perm(static_cast<std::size_t>(shape.experts));
    for (std::int64_t t = 0; t < shape.vocab; ++t) {
      // k distinct experts: a partial Fisher-Yates shuffle.
      std::iota(perm.begin(), perm.end(), 0);
      for (std::int32_t j = 0; j < shape.k; ++j) {
        const auto r = static_cast<std::int64_t>(j + rng.below(shape.experts - j));
        std::swap(perm[j], perm[r]);
        layer.tid2eid[t * shape.k + j] = perm[j];
      }
    }
  }
  return layer;
}

std::vector<bf16> make_hidden(std::int64_t n, std::int64_t hidden, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<bf16> x(static_cast<std::size_t>(n * hidden));
  for (auto& v : x) v = detail::float_to_bf16(float(rng.normal()));
  return x;
}

std::vector<std::int32_t> make_tokens(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
  SeededRng rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& v : t) v = static_cast<std::int32_t>(rng.below(vocab));
  return t;
}

}  // namespace moerouter
