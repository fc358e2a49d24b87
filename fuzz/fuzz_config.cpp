// libFuzzer target: the config.json parser on arbitrary text. Any input must either give a
// consistent ModelShape or throw RouterError.
#include <cstdint>
#include <string>

#include "moerouter/router.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto s = moerouter::parse_model_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    if (s.k < 1 || s.k > s.experts || s.hidden < 1 || s.num_hash_layers > s.num_layers) {
      __builtin_trap();
    }
  } catch (const moerouter::RouterError&) {
  }
  return 0;
}
