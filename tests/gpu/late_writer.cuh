// A stand-in for the previous kernel of a programmatic dependent launch (PDL), for the suites
// that test PDL launches. Included by one translation unit each (internal linkage).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "moerouter/detail/pdl.cuh"

namespace moerouter {
namespace testing {
namespace {

// The "previous layer" of a PDL launch: lets its dependent start at once, spins for `cycles`,
// then writes dst from src. A kernel launched after it with PDL that read dst before its
// griddepcontrol.wait would see dst's old contents (zeros).
__global__ void late_writer_kernel(const std::uint32_t* src, std::uint32_t* dst,
                                   std::size_t words, long long cycles) {
  detail::trigger_dependents();
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < words;
       i += std::size_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

}  // namespace
}  // namespace testing
}  // namespace moerouter
