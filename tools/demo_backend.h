// The demo's view of a backend: load a layer once, then route batches and report the time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moerouter/synthetic.h"

namespace moerouter {
namespace cli {

class DemoBackend {
 public:
  virtual ~DemoBackend() = default;
  virtual std::string name() const = 0;         ///< "cpu" / "gpu"
  virtual std::string description() const = 0;  ///< threads, device name
  virtual std::int64_t prefill_size() const = 0;
  virtual void load(const ModelShape& shape, const SyntheticLayer& dense,
                    const SyntheticLayer& hash) = 0;
  /// Routes n tokens; returns the median time of a call in microseconds. Throws on error.
  virtual double route_dense(const std::vector<bf16>& x, std::int64_t n,
                             std::vector<float>& weights, std::vector<std::int32_t>& ids) = 0;
  virtual double route_hash(const std::vector<bf16>& x, const std::vector<std::int32_t>& tokens,
                            std::int64_t n, std::vector<float>& weights,
                            std::vector<std::int32_t>& ids) = 0;
};

std::unique_ptr<DemoBackend> make_cpu_demo_backend();
/// Throws when the build has no CUDA backend.
std::unique_ptr<DemoBackend> make_gpu_demo_backend();

}  // namespace cli
}  // namespace moerouter
