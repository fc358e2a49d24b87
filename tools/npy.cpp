#include "npy.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moerouter {
namespace cli {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::size_t descr_size(const std::string& d) {
  if (d == "<i4" || d == "<f4" || d == "<u4") return 4;
  if (d == "<i8" || d == "<f8") return 8;
  if (d == "<u2" || d == "<f2") return 2;
  return 0;
}

// The value of 'key' in a header dict like {'descr': '<f4', 'fortran_order': False, ...}.
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) fail(path, "npy header has no '" + key + "'");
  std::size_t p = header.find(':', k);
  if (p == std::string::npos) fail(path, "malformed npy header");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size()) fail(path, "malformed npy header");
  if (header[p] == '\'') {
    const std::size_t e = header.find('\'', p + 1);
    if (e == std::string::npos) fail(path, "malformed npy header");
    return header.substr(p + 1, e - p - 1);
  }
  if (header[p] == '(') {
    const std::size_t e = header.find(')', p);
    if (e == std::string::npos) fail(path, "malformed npy header");
    return header.substr(p + 1, e - p - 1);
  }
  const std::size_t e = header.find_first_of(",}", p);
  if (e == std::string::npos) fail(path, "malformed npy header");
  return header.substr(p, e - p);
}

}  // namespace

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    fail(path, "not a .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(path, "truncated npy header");
    header_len = 0;
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    start = 12;
  } else {
    fail(path, "unsupported npy version " + std::to_string(major));
  }
  if (header_len > bytes.size() - start) fail(path, "truncated npy header");
  const std::string header = bytes.substr(start, header_len);
  NpyArray a;
  a.descr = dict_value(header, "descr", path);
  if (a.descr == "|u1" || a.descr == "|i1") fail(path, "unsupported dtype " + a.descr);
  if (descr_size(a.descr) == 0) fail(path, "unsupported dtype '" + a.descr + "'");
  if (dict_value(header, "fortran_order", path).find("False") == std::string::npos) {
    fail(path, "Fortran-order arrays are not supported");
  }
  std::stringstream shape(dict_value(header, "shape", path));
  std::string dim;
  while (std::getline(shape, dim, ',')) {
    const std::size_t b = dim.find_first_not_of(' ');
    if (b == std::string::npos) continue;
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(dim.substr(b), &used);
    } catch (const std::exception&) {
      fail(path, "bad shape entry '" + dim + "'");
    }
    if (v < 0 || v > (1ll << 40)) fail(path, "bad shape entry '" + dim + "'");
    a.shape.push_back(v);
  }
  const std::size_t need = static_cast<std::size_t>(a.numel()) * descr_size(a.descr);
  if (bytes.size() - start - header_len < need) {
    fail(path, "data holds " + std::to_string(bytes.size() - start - header_len) +
                   " bytes, the shape needs " + std::to_string(need));
  }
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start + header_len),
                bytes.begin() + static_cast<std::ptrdiff_t>(start + header_len + need));
  return a;
}

void write_npy(const std::string& path, const std::string& descr,
               const std::vector<std::int64_t>& shape, const void* data, std::size_t bytes) {
  std::string dims;
  for (std::int64_t d : shape) dims += std::to_string(d) + ",";
  if (shape.size() > 1) dims.pop_back();  // "(n, k)" vs the 1-tuple "(n,)"
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot open for writing");
  out.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(len), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) fail(path, "write failed");
}

}  // namespace cli
}  // namespace moerouter
