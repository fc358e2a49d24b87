#include "moerouter/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

namespace moerouter {
namespace {

constexpr std::uint64_t kMaxHeader = 100ull << 20;
constexpr std::size_t kMaxTensors = 1u << 20;
constexpr std::size_t kMaxRank = 8;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw SafetensorsError(file + ": " + what);
}

}  // namespace

std::size_t safetensors_dtype_size(const std::string& d) {
  if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2" ||
      d == "F8_E8M0") {
    return 1;
  }
  if (d == "BF16" || d == "F16" || d == "I16" || d == "U16") return 2;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  return 0;
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

SafetensorsView SafetensorsView::parse(const std::uint8_t* data, std::size_t size,
                                       const std::string& name) {
  if (size < 8) fail(name, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeader) {
    fail(name, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  }
  if (header_len > size - 8) {
    fail(name, "header length " + std::to_string(header_len) + " runs past the end of the " +
                   std::to_string(size) + "-byte file (truncated?)");
  }
  const std::uint64_t data_size = size - 8 - header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(name, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(name, "header must be a JSON object");
  if (header.size() > kMaxTensors) fail(name, "too many tensors in the header");

  SafetensorsView v;
  v.name_ = name;
  v.data_ = data + 8 + header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(name, "__metadata__ must be an object");
      continue;
    }
    const std::string where = "tensor '" + it.key() + "'";
    const nlohmann::json& t = *it;
    if (!t.is_object()) fail(name, where + " must be an object");
    if (!t.contains("dtype") || !t["dtype"].is_string()) fail(name, where + " has no string dtype");
    if (!t.contains("shape") || !t["shape"].is_array()) fail(name, where + " has no shape array");
    if (!t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2) {
      fail(name, where + " needs data_offsets [begin, end]");
    }
    TensorInfo info;
    info.dtype = t["dtype"].get<std::string>();
    if (t["shape"].size() > kMaxRank) fail(name, where + " has rank above 8");
    // numel * size must fit the file; multiply with an overflow check.
    std::uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) fail(name, where + " has a shape entry that is not a non-negative integer");
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail(name, where + " has a dimension too large");
      }
      info.shape.push_back(static_cast<std::int64_t>(dim));
      if (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / dim) {
        fail(name, where + " has a shape whose element count overflows");
      }
      numel *= dim;
    }
    for (const auto& o : t["data_offsets"]) {
      if (!o.is_number_unsigned()) fail(name, where + " has a data offset that is not a non-negative integer");
    }
    info.begin = t["data_offsets"][0].get<std::uint64_t>();
    info.end = t["data_offsets"][1].get<std::uint64_t>();
    if (info.begin > info.end) fail(name, where + " has data_offsets with begin > end");
    if (info.end > data_size) {
      fail(name, where + " ends at byte " + std::to_string(info.end) + " of a " +
                     std::to_string(data_size) + "-byte data section (truncated file?)");
    }
    const std::size_t esize = safetensors_dtype_size(info.dtype);
    // An unknown dtype cannot be checked against its byte range; such a tensor stays listed
    // (real checkpoints hold other tensors) but reading it is refused (see bytes()).
    if (esize != 0) {
      if (numel > std::numeric_limits<std::uint64_t>::max() / esize ||
          numel * esize != info.end - info.begin) {
        fail(name, where + " (" + info.dtype + ", " + std::to_string(numel) +
                       " elements) needs " + std::to_string(numel * esize) +
                       " bytes but its data_offsets span " +
                       std::to_string(info.end - info.begin));
      }
    }
    v.tensors_.emplace(it.key(), std::move(info));
  }

  // No two tensors may share bytes.
  std::vector<std::pair<std::uint64_t, const std::string*>> starts;
  starts.reserve(v.tensors_.size());
  for (const auto& [tname, info] : v.tensors_) {
    if (info.end > info.begin) starts.emplace_back(info.begin, &tname);
  }
  std::sort(starts.begin(), starts.end());
  for (std::size_t i = 1; i < starts.size(); ++i) {
    const TensorInfo& prev = v.tensors_.at(*starts[i - 1].second);
    if (starts[i].first < prev.end) {
      fail(name, "tensors '" + *starts[i - 1].second + "' and '" + *starts[i].second +
                     "' overlap");
    }
  }
  return v;
}

const TensorInfo& SafetensorsView::info(const std::string& tensor) const {
  const auto it = tensors_.find(tensor);
  if (it == tensors_.end()) fail(name_, "no tensor '" + tensor + "'");
  return it->second;
}

const std::uint8_t* SafetensorsView::bytes(const std::string& tensor) const {
  const TensorInfo& i = info(tensor);
  if (safetensors_dtype_size(i.dtype) == 0) {
    fail(name_, "tensor '" + tensor + "' has unknown dtype '" + i.dtype + "'");
  }
  return data_ + i.begin;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      ::close(fd);
      fail(path, std::string("cannot map: ") + std::strerror(errno));
    }
  }
  ::close(fd);
  try {
    view_ = SafetensorsView::parse(static_cast<const std::uint8_t*>(map_), size_, path);
  } catch (...) {
    if (map_) ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    std::uint64_t numel = 1;
    for (std::int64_t d : t.shape) numel *= static_cast<std::uint64_t>(d);
    if (numel * safetensors_dtype_size(t.dtype) != t.bytes.size()) {
      fail(path, "tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) +
                     " bytes, its dtype and shape need " +
                     std::to_string(numel * safetensors_dtype_size(t.dtype)));
    }
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot open for writing");
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(text.size() >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorToWrite& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  }
  if (!out) fail(path, "write failed");
}

}  // namespace moerouter
