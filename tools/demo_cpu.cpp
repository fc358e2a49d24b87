// The demo on the CPU backend.
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "demo_backend.h"
#include "moerouter/cpu.h"
#include "moerouter/router.h"

namespace moerouter {
namespace cli {
namespace {

void check(const Status& s) {
  if (!s.ok()) throw std::runtime_error(s.to_string());
}

// Median wall time of `reps` calls, in microseconds.
template <typename F>
double median_us(int reps, F&& call) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

class CpuDemoBackend final : public DemoBackend {
 public:
  std::string name() const override { return "cpu"; }
  std::string description() const override {
    return "CPU (fp32, " + std::to_string(cpu::num_threads()) + " threads)";
  }
  std::int64_t prefill_size() const override { return 1024; }

  void load(const ModelShape& shape, const SyntheticLayer& dense,
            const SyntheticLayer& hash) override {
    shape_ = shape;
    dense_ = &dense;
    hash_ = &hash;
  }

  double route_dense(const std::vector<bf16>& x, std::int64_t n, std::vector<float>& weights,
                     std::vector<std::int32_t>& ids) override {
    const RouteParams p = dense_gate_params(shape_, dense_->w.data(), dense_->bias.data(), x.data(),
                                            0, n, weights.data(), ids.data(), DType::kI32);
    return median_us(reps(n), [&] { check(cpu::route(p)); });
  }

  double route_hash(const std::vector<bf16>& x, const std::vector<std::int32_t>& tokens,
                    std::int64_t n, std::vector<float>& weights,
                    std::vector<std::int32_t>& ids) override {
    const HashRouteParams p =
        hash_gate_params(shape_, hash_->w.data(), hash_->tid2eid.data(), x.data(), 0,
                         tokens.data(), DType::kI32, n, weights.data(), ids.data(), DType::kI32);
    return median_us(reps(n), [&] { check(cpu::hash_route(p)); });
  }

 private:
  static int reps(std::int64_t n) { return n >= 1024 ? 3 : 11; }
  ModelShape shape_;
  const SyntheticLayer* dense_ = nullptr;
  const SyntheticLayer* hash_ = nullptr;
};

}  // namespace

std::unique_ptr<DemoBackend> make_cpu_demo_backend() { return std::make_unique<CpuDemoBackend>(); }

}  // namespace cli
}  // namespace moerouter
