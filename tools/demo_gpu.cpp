// The demo on the CUDA backend (cuBLASLt GEMM + the fused route kernel).
#include <stdexcept>

#include "demo_backend.h"

namespace moerouter {
namespace cli {

std::unique_ptr<DemoBackend> make_gpu_demo_backend() {
  throw std::runtime_error("the GPU demo backend is not built yet");
}

}  // namespace cli
}  // namespace moerouter
