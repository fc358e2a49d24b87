// What the CUDA build offers: device presence and description.
#include <cuda_runtime.h>

#include <string>

#include "moerouter/device.h"

namespace moerouter {

bool built_with_cuda() { return true; }

bool cuda_available() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::string cuda_device_description() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return std::string("none (") +
           (err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device") + ")";
  }
  int dev = 0;
  cudaDeviceProp prop{};
  if ((err = cudaGetDevice(&dev)) != cudaSuccess ||
      (err = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("none (") + cudaGetErrorString(err) + ")";
  }
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs)";
}

}  // namespace moerouter
