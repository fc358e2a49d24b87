// moerouter: which backends this build and machine offer.
#pragma once

#include <string>

namespace moerouter {

/// True when the library was built with the CUDA backend (nvcc was found at build time).
bool built_with_cuda();

/// True when built with CUDA and at least one CUDA device is usable now. Never throws.
bool cuda_available();

/// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" for the current device, or why there is none.
std::string cuda_device_description();

}  // namespace moerouter
