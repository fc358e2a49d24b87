// moerouter: a small, strict safetensors reader (and a writer for test checkpoints).
//
// Format: 8 bytes little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {...}}, then the data; offsets are relative to the end of the header.
// The reader checks everything before any tensor is used: the header length against the file,
// the JSON, every dtype, shape and offset pair, that each byte range holds exactly
// numel * dtype size bytes inside the file, and that no two tensors overlap. Any failure is a
// SafetensorsError naming the file and what is wrong; it never reads out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace moerouter {

/// A malformed or unreadable safetensors file (the message names the file and the problem).
class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string dtype;                ///< "BF16", "F32", "I64", ... as written in the file
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0; ///< byte range, relative to the start of the data
  std::int64_t numel() const;
};

/// Bytes per element of a safetensors dtype name; 0 for a name this reader does not know.
std::size_t safetensors_dtype_size(const std::string& dtype);

/// A parsed safetensors header over bytes owned elsewhere (a mapped file or a buffer).
class SafetensorsView {
 public:
  /// Parses and checks `size` bytes at `data` (the whole file). `name` labels errors.
  /// Limits: header at most 100 MB, at most 1M tensors, rank at most 8.
  static SafetensorsView parse(const std::uint8_t* data, std::size_t size,
                               const std::string& name);

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& tensor) const { return tensors_.count(tensor) != 0; }
  /// The entry of `tensor`; throws SafetensorsError naming it when absent.
  const TensorInfo& info(const std::string& tensor) const;
  /// Pointer to the tensor's bytes (inside the checked range).
  const std::uint8_t* bytes(const std::string& tensor) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  const std::uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
};

/// A safetensors file mapped read-only into memory (pages are read only when touched).
class SafetensorsFile {
 public:
  /// Maps and parses `path`; throws SafetensorsError on any problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const SafetensorsView& view() const { return view_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  SafetensorsView view_;
};

/// A tensor to write: name, dtype name, shape and raw little-endian bytes.
struct TensorToWrite {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

/// Writes a safetensors file (tensors laid out in the given order, header padded to 8 bytes).
/// Throws SafetensorsError if the file cannot be written or a tensor's bytes disagree with its
/// dtype and shape.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace moerouter
