// Built instead of src/cuda/*.cu when nvcc is absent: the CPU backend is all there is.
#include "moerouter/device.h"

namespace moerouter {

bool built_with_cuda() { return false; }
bool cuda_available() { return false; }
std::string cuda_device_description() { return "none (moerouter was built without CUDA)"; }

}  // namespace moerouter

#include "moerouter/router.h"
#include "router_backend.h"

namespace moerouter {
namespace detail {

std::unique_ptr<RouterBackend> make_cuda_router_backend() {
  throw RouterError("moerouter was built without CUDA: no GPU router");
}

}  // namespace detail
}  // namespace moerouter
