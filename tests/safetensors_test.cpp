// The safetensors reader: round trips and every malformed input it must refuse cleanly.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "moerouter/safetensors.h"

namespace moerouter {
namespace {

// A file image: 8-byte length, header text, data bytes.
std::vector<std::uint8_t> image(const std::string& header, std::size_t data_bytes,
                                std::uint64_t claimed_len = ~0ull) {
  const std::uint64_t len = claimed_len == ~0ull ? header.size() : claimed_len;
  std::vector<std::uint8_t> b(8 + header.size() + data_bytes, 0xab);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(len >> (8 * i));
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

std::string parse_error(const std::vector<std::uint8_t>& b) {
  try {
    SafetensorsView::parse(b.data(), b.size(), "t.safetensors");
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ParsesAValidHeader) {
  const auto b = image(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"I64","shape":[1],"data_offsets":[12,20]},"c":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[20,24]}})",
      24);
  const auto v = SafetensorsView::parse(b.data(), b.size(), "t");
  ASSERT_EQ(v.tensors().size(), 3u);
  EXPECT_EQ(v.info("a").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(v.info("b").numel(), 1);
  EXPECT_EQ(v.bytes("b") - v.bytes("a"), 12);
  EXPECT_THROW(v.info("zzz"), SafetensorsError);
}

TEST(Safetensors, RefusesMalformedFiles) {
  struct Bad {
    const char* what;
    std::vector<std::uint8_t> bytes;
  };
  const std::string ok_tensor = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const Bad cases[] = {
      {"shorter than the 8-byte", std::vector<std::uint8_t>{1, 2, 3}},
      {"runs past the end", image(ok_tensor, 8, 10000)},
      {"exceeds the 100 MB limit", image(ok_tensor, 8, 1ull << 40)},
      {"not valid JSON", image("{\"a\":", 8)},
      {"must be a JSON object", image("[1,2]", 8)},
      {"truncated file", image(ok_tensor, 4)},
      {"needs 8 bytes but its data_offsets span 4",
       image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8)},
      {"begin > end", image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8)},
      {"overlap", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12)},
      {"no string dtype", image(R"({"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", 8)},
      {"no shape array", image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8)},
      {"data_offsets [begin, end]", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)},
      {"not a non-negative integer",
       image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)},
      {"not a non-negative integer",
       image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", 8)},
      {"overflows",
       image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8)},
      {"must be an object", image(R"({"a":[1]})", 8)},
  };
  for (const Bad& b : cases) {
    const std::string err = parse_error(b.bytes);
    EXPECT_NE(err.find(b.what), std::string::npos) << "want '" << b.what << "', got '" << err << "'";
    EXPECT_NE(err.find("t.safetensors"), std::string::npos) << err;
  }
}

TEST(Safetensors, UnknownDtypeIsListedButNotReadable) {
  const auto b = image(R"({"q":{"dtype":"F4_PACKED","shape":[3],"data_offsets":[0,2]}})", 2);
  const auto v = SafetensorsView::parse(b.data(), b.size(), "t");
  EXPECT_TRUE(v.contains("q"));
  EXPECT_THROW(v.bytes("q"), SafetensorsError);
}

TEST(Safetensors, WriteThenMapRoundTrip) {
  const std::string path = ::testing::TempDir() + "/moer_rt.safetensors";
  std::vector<std::uint8_t> a(2 * 3 * 2), b(4 * 8);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::uint8_t>(i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(255 - i);
  write_safetensors(path, {{"w", "BF16", {2, 3}, a}, {"t", "I64", {4}, b}}, {{"format", "pt"}});
  const SafetensorsFile f(path);
  EXPECT_EQ(0, std::memcmp(f.view().bytes("w"), a.data(), a.size()));
  EXPECT_EQ(0, std::memcmp(f.view().bytes("t"), b.data(), b.size()));
  EXPECT_THROW(write_safetensors(path, {{"w", "BF16", {2, 3}, b}}), SafetensorsError);
  EXPECT_THROW(SafetensorsFile("/nonexistent/x.safetensors"), SafetensorsError);
}

}  // namespace
}  // namespace moerouter
