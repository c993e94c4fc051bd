#include "fs/chunk_bytes.h"

// ZSTD_c_literalCompressionMode, ZSTD_findDecompressedSize: zstd >= 1.5.1, checked at use.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/coding.h"

namespace strata::fs {
namespace {

// The noisy plane of 16-bit samples (below): at zstd's level 1 the match finder costs ~70% of
// the chunk's compression time and finds almost nothing; a fast level with Huffman-coded
// literals forced on keeps the entropy coding (the ratio on CT data: 4.22x against 4.29x for the
// whole chunk at level 1, zstd -1 of the file 4.06x) at ~1.5x the speed (bench/README.md).
constexpr int kNoisePlaneLevel = -20;
// Levels up to this one compress the noisy plane with kNoisePlaneLevel; above it the operator
// asked for ratio, and both planes get the configured level.
constexpr int kFastNoisePlaneUpTo = 2;
// The noisy plane goes as this many frames of consecutive samples, each with a Huffman table of
// its own: an image's regions (air, tissue, bone) have different low-byte statistics, so CT
// data compresses ~5% better (4.16x -> 4.40x), and each frame decodes in a quarter of the time.
constexpr size_t kNoiseFrames = 4;

struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx* noise = NoiseContext();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeCCtx(noise);
    ZSTD_freeDCtx(d);
  }
  // Null when this libzstd refuses the settings: the noisy plane then gets the configured level.
  static ZSTD_CCtx* NoiseContext() {
    ZSTD_CCtx* z = ZSTD_createCCtx();
    if (ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, kNoisePlaneLevel)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_literalCompressionMode, ZSTD_ps_enable))) {
      ZSTD_freeCCtx(z);
      return nullptr;
    }
    return z;
  }
};
ZstdContexts& Zstd() {
  thread_local ZstdContexts z;
  return z;
}

// 16-bit little-endian samples (CT, MR, CR pixel data) have a high byte with few distinct
// values and a noisy low byte; text and already-compressed data look alike in both planes.
// The values seen are bits in two 256-bit sets: no branch per byte.
bool LooksLike16BitSamples(std::string_view d) {
  if (d.size() < 1024) return false;
  uint64_t seen_even[4] = {}, seen_odd[4] = {};
  const auto* p = reinterpret_cast<const unsigned char*>(d.data());
  const size_t n = std::min<size_t>(d.size() & ~size_t{1}, 8192);
  for (size_t i = 0; i < n; i += 2) {
    seen_even[p[i] >> 6] |= uint64_t{1} << (p[i] & 63);
    seen_odd[p[i + 1] >> 6] |= uint64_t{1} << (p[i + 1] & 63);
  }
  int even = 0, odd = 0;
  for (int w = 0; w < 4; w++) {
    even += std::popcount(seen_even[w]);
    odd += std::popcount(seen_odd[w]);
  }
  return odd <= 48 && even >= 2 * odd;
}

// Even bytes first, then odd bytes. SSE2 (every x86-64) takes 32 bytes a step: the even bytes
// are the low halves of 16-bit lanes, the odd ones the high halves, each packed back to bytes.
// The tail, and other machines, go byte by byte (through raw pointers: indexing the
// std::string reloads its data pointer after each store).
void SplitPlanes(std::string_view in, std::string* out) {
  const size_t n = in.size(), half = (n + 1) / 2, pairs = n / 2;
  out->resize(n);
  const char* src = in.data();
  char* even = out->data();
  char* odd = even + half;
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i low = _mm_set1_epi16(0x00ff);
  for (; i + 16 <= pairs; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i + 16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(even + i),
                     _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(odd + i),
                     _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
  }
#endif
  for (; i < pairs; i++) {
    even[i] = src[2 * i];
    odd[i] = src[2 * i + 1];
  }
  if (n & 1) even[pairs] = src[n - 1];
}

void JoinPlanes(std::string_view in, std::string* out) {
  const size_t n = in.size(), half = (n + 1) / 2, pairs = n / 2;
  out->resize(n);
  const char* even = in.data();
  const char* odd = even + half;
  char* dst = out->data();
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= pairs; i += 16) {
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(even + i));
    const __m128i o = _mm_loadu_si128(reinterpret_cast<const __m128i*>(odd + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm_unpacklo_epi8(e, o));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i + 16), _mm_unpackhi_epi8(e, o));
  }
#endif
  for (; i < pairs; i++) {
    dst[2 * i] = even[i];
    dst[2 * i + 1] = odd[i];
  }
  if (n & 1) dst[n - 1] = even[pairs];
}
}  // namespace

bool CompressBody(int level, std::string_view body, std::string* result, bool* planes_out) {
  thread_local std::string planes;
  // zstd writes into this and only what it wrote is copied out: growing a fresh string to the
  // compression bound zero-filled ~66 KiB per chunk (4% of a sequential write's CPU).
  thread_local std::string scratch;
  std::string* const out = &scratch;
  const size_t len = body.size();
  size_t n;
  *planes_out = false;
  if (LooksLike16BitSamples(body)) {
    // The noisy plane in kNoiseFrames frames, then the smooth plane in one: decompressing
    // their concatenation gives the planes.
    SplitPlanes(body, &planes);
    *planes_out = true;
    const size_t noisy = (len + 1) / 2, smooth = len / 2;
    const size_t part = (noisy + kNoiseFrames - 1) / kNoiseFrames;
    out->resize(std::max(out->size(),
                         kNoiseFrames * ZSTD_compressBound(part) + ZSTD_compressBound(smooth)));
    n = 0;
    for (size_t from = 0; from < noisy && !ZSTD_isError(n); from += part) {
      const size_t take = std::min(part, noisy - from);
      size_t a = level <= kFastNoisePlaneUpTo && Zstd().noise != nullptr
                     ? ZSTD_compress2(Zstd().noise, out->data() + n, out->size() - n,
                                      planes.data() + from, take)
                     : ZSTD_compressCCtx(Zstd().c, out->data() + n, out->size() - n,
                                         planes.data() + from, take, level);
      n = ZSTD_isError(a) ? a : n + a;
    }
    if (!ZSTD_isError(n)) {
      size_t b = ZSTD_compressCCtx(Zstd().c, out->data() + n, out->size() - n,
                                   planes.data() + noisy, smooth, level);
      n = ZSTD_isError(b) ? b : n + b;
    }
  } else {
    out->resize(std::max(out->size(), ZSTD_compressBound(len)));
    n = ZSTD_compressCCtx(Zstd().c, out->data(), out->size(), body.data(), len, level);
  }
  if (ZSTD_isError(n) || n >= len) {
    *planes_out = false;  // stored raw, as written
    return false;
  }
  result->assign(scratch.data(), n);
  return true;
}

Status DecompressBody(std::string_view body, bool planes, uint64_t len, std::string* out) {
  thread_local std::string split;
  std::string* dst = planes ? &split : out;
  dst->resize(len);
  size_t n = ZSTD_decompressDCtx(Zstd().d, dst->data(), dst->size(), body.data(), body.size());
  if (ZSTD_isError(n) || n != len)
    return Status::Corruption("chunk does not decompress to its recorded length");
  if (planes) JoinPlanes(split, out);
  return Status::OK();
}

uint64_t CompressedBodyLength(std::string_view body) {
  return ZSTD_findDecompressedSize(body.data(), body.size());
}

void AddRange(Ranges* r, uint32_t b, uint32_t e) {
  auto it = std::lower_bound(r->begin(), r->end(), b,
                             [](const auto& x, uint32_t v) { return x.second < v; });
  // it: the first range ending at or after b; merge every range that touches [b, e).
  auto last = it;
  while (last != r->end() && last->first <= e) {
    b = std::min(b, last->first);
    e = std::max(e, last->second);
    ++last;
  }
  it = r->erase(it, last);
  r->insert(it, {b, e});
}

void CollectGaps(const Ranges& r, uint32_t base_len, uint32_t from, uint32_t to, Ranges* gaps) {
  const uint32_t end = std::min(to, base_len);
  uint32_t at = from;
  for (const auto& [b, e] : r) {
    if (at >= end) break;
    if (e <= at) continue;
    if (b >= end) break;
    if (b > at) gaps->emplace_back(at, b);
    at = std::max(at, e);
  }
  if (at < end) gaps->emplace_back(at, end);
}

std::string EncodePatch(const Ranges& r, const std::string& data) {
  std::string out;
  size_t bytes = 0;
  for (const auto& [b, e] : r) bytes += e - b;
  out.reserve(4 + 8 * r.size() + bytes);
  PutFixed32(&out, static_cast<uint32_t>(r.size()));
  for (const auto& [b, e] : r) {
    PutFixed32(&out, b);
    PutFixed32(&out, e - b);
  }
  for (const auto& [b, e] : r) out.append(data, b, e - b);
  return out;
}

Status ApplyPatch(std::string_view plain, uint32_t logical_len, std::string* chunk) {
  if (plain.size() < 4) return Status::Corruption("patch: no range table");
  const uint64_t n = DecodeFixed32(plain.data());
  if (plain.size() < 4 + 8 * n) return Status::Corruption("patch: range table cut short");
  // The whole table is checked before a byte of the chunk changes.
  uint64_t end = 4 + 8 * n, prev_end = 0;
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t off = DecodeFixed32(plain.data() + 4 + 8 * i);
    const uint64_t len = DecodeFixed32(plain.data() + 8 + 8 * i);
    if (off + len > logical_len) return Status::Corruption("patch: a range lies outside the chunk");
    if (off < prev_end) return Status::Corruption("patch: ranges not ascending and disjoint");
    prev_end = off + len;
    end += len;
  }
  if (end != plain.size())
    return Status::Corruption(end < plain.size() ? "patch: bytes past its ranges"
                                                 : "patch: range bytes cut short");
  if (chunk->size() < logical_len) chunk->resize(logical_len);
  uint64_t at = 4 + 8 * n;
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t off = DecodeFixed32(plain.data() + 4 + 8 * i);
    const uint64_t len = DecodeFixed32(plain.data() + 8 + 8 * i);
    std::memcpy(chunk->data() + off, plain.data() + at, len);
    at += len;
  }
  return Status::OK();
}

}  // namespace strata::fs
