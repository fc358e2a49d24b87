// Built instead of src/cuda/*.cu when nvcc is absent: the CPU backend is all there is.
#include "moerouter/device.h"

namespace moerouter {

bool built_with_cuda() { return false; }
bool cuda_available() { return false; }
std::string cuda_device_description() { return "none (moerouter was built without CUDA)"; }

}  // namespace moerouter
