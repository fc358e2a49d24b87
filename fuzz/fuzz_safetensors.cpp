// libFuzzer target: the safetensors header parser on arbitrary bytes. Any input must either
// parse (and then every listed tensor's bytes lie inside the buffer) or throw SafetensorsError.
#include <cstdint>
#include <cstring>

#include "moerouter/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto v = moerouter::SafetensorsView::parse(data, size, "fuzz");
    volatile std::uint8_t sink = 0;
    for (const auto& [name, info] : v.tensors()) {
      if (moerouter::safetensors_dtype_size(info.dtype) == 0) continue;
      const std::uint8_t* p = v.bytes(name);
      if (p < data || p + (info.end - info.begin) > data + size) __builtin_trap();
      if (info.end > info.begin) sink = sink ^ p[0] ^ p[info.end - info.begin - 1];
    }
    (void)sink;
  } catch (const moerouter::SafetensorsError&) {
  }
  return 0;
}
