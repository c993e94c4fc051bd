// Chunk plaintext coding: byte planes of 16-bit samples in several zstd frames, and bodies of
// earlier writers (one frame per plane) still decoding to the same chunk.
#include "fs/chunk_bytes.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/coding.h"

namespace strata::fs {
namespace {

// 16-bit little-endian samples: a smooth high byte, a noisy low byte.
std::string Samples(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 1 < n; i += 2) {
    const uint32_t v = 1000 + (i / 512) % 300 + rng() % 64;
    s[i] = static_cast<char>(v & 0xff);
    s[i + 1] = static_cast<char>(v >> 8);
  }
  return s;
}

size_t CountFrames(std::string_view body) {
  size_t frames = 0;
  while (!body.empty()) {
    const size_t n = ZSTD_findFrameCompressedSize(body.data(), body.size());
    if (ZSTD_isError(n)) return 0;
    body.remove_prefix(n);
    frames++;
  }
  return frames;
}

TEST(ChunkBytesTest, SamplesGoAsFourNoiseFramesAndOneSmoothFrameAndComeBack) {
  const std::string chunk = Samples(128 << 10, 1);
  std::string body, back;
  bool planes = false;
  ASSERT_TRUE(CompressBody(1, chunk, &body, &planes));
  EXPECT_TRUE(planes);
  EXPECT_EQ(CountFrames(body), 5u);
  EXPECT_EQ(CompressedBodyLength(body), chunk.size());
  ASSERT_TRUE(DecompressBody(body, planes, chunk.size(), &back).ok());
  EXPECT_EQ(back, chunk);

  // An odd length: the low-byte plane is one byte longer.
  const std::string odd = Samples((64 << 10) + 1, 2);
  ASSERT_TRUE(CompressBody(1, odd, &body, &planes));
  ASSERT_TRUE(DecompressBody(body, planes, odd.size(), &back).ok());
  EXPECT_EQ(back, odd);
}

TEST(ChunkBytesTest, OneFramePerPlaneFromEarlierWritersStillDecodes) {
  const std::string chunk = Samples(128 << 10, 3);
  std::string even, odd;
  for (size_t i = 0; i < chunk.size(); i += 2) {
    even.push_back(chunk[i]);
    odd.push_back(chunk[i + 1]);
  }
  std::string body(ZSTD_compressBound(even.size()) + ZSTD_compressBound(odd.size()), '\0');
  size_t a = ZSTD_compress(body.data(), body.size(), even.data(), even.size(), 1);
  ASSERT_FALSE(ZSTD_isError(a));
  size_t b = ZSTD_compress(body.data() + a, body.size() - a, odd.data(), odd.size(), 1);
  ASSERT_FALSE(ZSTD_isError(b));
  body.resize(a + b);
  std::string back;
  ASSERT_TRUE(DecompressBody(body, true, chunk.size(), &back).ok());
  EXPECT_EQ(back, chunk);
  EXPECT_FALSE(DecompressBody(body.substr(0, a), true, chunk.size(), &back).ok())
      << "a missing plane is corruption";
}

// The planes on disk are the even bytes, then the odd ones, whatever the length (the vector
// code's 32-byte steps and the byte-by-byte tail, odd lengths): decompressing the frames as
// plain zstd gives exactly that, and the body decodes back to the chunk.
TEST(ChunkBytesTest, PlanesAreTheEvenThenTheOddBytesAtEveryLength) {
  std::vector<size_t> lengths;
  for (size_t n = 1024; n < 1024 + 70; n++) lengths.push_back(n);
  lengths.insert(lengths.end(),
                 {size_t{64} << 10, (size_t{64} << 10) + 1, (size_t{64} << 10) + 33});
  for (size_t n : lengths) {
    SCOPED_TRACE("length " + std::to_string(n));
    const std::string chunk = Samples(n, static_cast<uint32_t>(n));
    std::string body, back;
    bool planes = false;
    ASSERT_TRUE(CompressBody(1, chunk, &body, &planes));
    ASSERT_TRUE(planes);
    std::string want;
    for (size_t i = 0; i < n; i += 2) want.push_back(chunk[i]);
    for (size_t i = 1; i < n; i += 2) want.push_back(chunk[i]);
    std::string got;
    for (std::string_view rest = body; !rest.empty();) {
      const size_t f = ZSTD_findFrameCompressedSize(rest.data(), rest.size());
      ASSERT_FALSE(ZSTD_isError(f));
      std::string part(n, '\0');
      const size_t m = ZSTD_decompress(part.data(), part.size(), rest.data(), f);
      ASSERT_FALSE(ZSTD_isError(m));
      got.append(part, 0, m);
      rest.remove_prefix(f);
    }
    ASSERT_EQ(got, want);
    ASSERT_TRUE(DecompressBody(body, planes, n, &back).ok());
    ASSERT_EQ(back, chunk);
  }
}

// A patch's plaintext applies its ranges; a table that breaks the format (out of the chunk,
// out of order, overlapping, bytes missing or extra) is corruption and leaves the chunk as it was.
TEST(ChunkBytesTest, PatchesApplyAndMalformedTablesAreCorruption) {
  std::string data(64, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>('A' + i % 26);
  const std::string patch = EncodePatch({{2, 5}, {10, 12}}, data);
  std::string chunk(32, '.');
  ASSERT_TRUE(ApplyPatch(patch, 32, &chunk).ok());
  EXPECT_EQ(chunk, std::string("..CDE.....KL") + std::string(20, '.'));

  auto table = [](std::vector<std::pair<uint32_t, uint32_t>> ranges, size_t bytes) {
    std::string p;
    PutFixed32(&p, static_cast<uint32_t>(ranges.size()));
    for (auto [off, len] : ranges) {
      PutFixed32(&p, off);
      PutFixed32(&p, len);
    }
    return p + std::string(bytes, 'x');
  };
  const struct {
    const char* what;
    std::string plain;
  } bad[] = {
      {"outside the chunk", table({{30, 4}}, 4)},    {"descending", table({{10, 2}, {2, 3}}, 5)},
      {"overlapping", table({{2, 5}, {6, 2}}, 7)},   {"bytes cut short", table({{2, 5}}, 4)},
      {"bytes past its ranges", table({{2, 5}}, 6)}, {"no table", std::string(3, '\0')},
  };
  for (const auto& b : bad) {
    std::string before(32, '.'), c = before;
    Status s = ApplyPatch(b.plain, 32, &c);
    EXPECT_TRUE(s.IsCorruption()) << b.what << ": " << s.ToString();
    EXPECT_EQ(c, before) << b.what << ": the chunk changed";
  }
}

}  // namespace
}  // namespace strata::fs
