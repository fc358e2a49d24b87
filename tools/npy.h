// Minimal strict .npy (NumPy format v1/v2) reading and writing for the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moerouter {
namespace cli {

struct NpyArray {
  std::string descr;                 ///< e.g. "<i4", "<f4", "<i8", "<u2"
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;    ///< little-endian, C order
  std::int64_t numel() const;
};

/// Reads `path`; throws std::runtime_error naming the file and the problem (bad magic,
/// Fortran order, unsupported dtype, data shorter than the shape needs, ...).
NpyArray read_npy(const std::string& path);

/// Writes a C-order array; `descr` is "<i4", "<i8" or "<f4".
void write_npy(const std::string& path, const std::string& descr,
               const std::vector<std::int64_t>& shape, const void* data, std::size_t bytes);

}  // namespace cli
}  // namespace moerouter
