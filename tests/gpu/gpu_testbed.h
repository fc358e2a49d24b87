// Shared pieces of the GPU suites: a fixture that skips without a GPU, device buffers, and
// copies. Every suite compares the CUDA backend with the CPU backend (bit for bit where both
// compute the same fp32 operations) and with the float64 oracle (SPEC.md tolerances).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moerouter/device.h"

namespace moerouter {
namespace testing {

#define MOER_CUDA_OK(expr)                                                      \
  do {                                                                          \
    const cudaError_t moer_e_ = (expr);                                         \
    ASSERT_EQ(moer_e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(moer_e_); \
  } while (0)

/// Skips (reported as skipped) where no CUDA device is usable.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_device_description();
  }
  void TearDown() override {
    if (!cuda_available()) return;
    const cudaError_t err = cudaDeviceSynchronize();
    EXPECT_EQ(err, cudaSuccess) << "pending CUDA error: " << cudaGetErrorString(err);
  }
};

/// A device allocation of `count` T, freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) { resize(count); }
  explicit DeviceBuffer(const std::vector<T>& host) {
    resize(host.size());
    upload(host);
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void resize(std::size_t count) {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = count;
    // Never a null pointer, even for 0 elements: validate() treats null as "missing".
    const cudaError_t err = cudaMalloc(&ptr_, (count == 0 ? 1 : count) * sizeof(T));
    if (err != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc(" << count * sizeof(T) << "): " << cudaGetErrorString(err);
      ptr_ = nullptr;
    }
  }
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(host.size(), count_);
    const cudaError_t err =
        cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    const cudaError_t err =
        cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost);
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
    return host;
  }
  /// Fills every byte with `byte` (poison before a run, to catch unwritten outputs).
  void fill_bytes(int byte) {
    const cudaError_t err = cudaMemset(ptr_, byte, (count_ == 0 ? 1 : count_) * sizeof(T));
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// Bitwise equality of two float arrays (signed zeros included). A NaN equals any NaN: the
/// payload and sign of a NaN made by arithmetic differ between x86 (the "default NaN" has the
/// sign bit set) and the GPU (canonical 0x7fffffff), for the same operations.
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b,
                      std::size_t* first_diff = nullptr) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      if (first_diff != nullptr) *first_diff = i;
      return false;
    }
  }
  return true;
}

/// The bit patterns where a device predicate holds, over all 2^32 of them: how many, and the
/// lowest (0xffffffff where there is none).
struct BitSweep {
  unsigned long long count = 0;
  unsigned first = 0xffffffffu;
};

template <typename Differs>
__global__ void bit_sweep_kernel(Differs differs, unsigned long long* count, unsigned* first) {
  unsigned long long bad = 0;
  for (std::uint64_t x = blockIdx.x * std::uint64_t(blockDim.x) + threadIdx.x;
       x < (std::uint64_t(1) << 32); x += std::uint64_t(gridDim.x) * blockDim.x) {
    if (differs(std::uint32_t(x))) {
      ++bad;
      atomicMin(first, std::uint32_t(x));
    }
  }
  atomicAdd(count, bad);
}

/// Runs `differs` (a functor with a __device__ bool operator()(std::uint32_t bits)) on every
/// 32-bit pattern: the exhaustive equality checks of a branchless device function against its
/// reference.
template <typename Differs>
void sweep_all_bits(Differs differs, BitSweep* out) {
  DeviceBuffer<unsigned long long> d_count(1);
  DeviceBuffer<unsigned> d_first(1);
  d_count.fill_bytes(0);
  d_first.fill_bytes(0xff);
  bit_sweep_kernel<<<132 * 8, 256>>>(differs, d_count.get(), d_first.get());
  MOER_CUDA_OK(cudaGetLastError());
  MOER_CUDA_OK(cudaDeviceSynchronize());
  out->count = d_count.download()[0];
  out->first = d_first.download()[0];
}

}  // namespace testing
}  // namespace moerouter
