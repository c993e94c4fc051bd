// The bytes of a chunk record's plaintext: compression (zstd, on two byte planes for 16-bit
// samples) and patches (the ranges of a chunk rewritten since it was stored).
// docs/formats/records.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace strata::fs {

// Compresses `body` at zstd `level` (> 0) into *result: the low-byte plane in four frames and the
// high-byte plane in one when it looks like 16-bit samples (*planes set). False when it does
// not shrink: store it raw.
bool CompressBody(int level, std::string_view body, std::string* result, bool* planes);
// Undoes CompressBody: `len` plaintext bytes, or Corruption.
Status DecompressBody(std::string_view body, bool planes, uint64_t len, std::string* out);
// The plaintext length a compressed body's frame headers state (huge when they do not).
uint64_t CompressedBodyLength(std::string_view body);

// Byte ranges [begin, end) of a chunk: sorted, disjoint, not adjacent.
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;
// Adds [b, e), merging what it touches.
void AddRange(Ranges* r, uint32_t b, uint32_t e);
// The parts of [from, min(to, base_len)) no range covers: the stored chunk's bytes.
void CollectGaps(const Ranges& r, uint32_t base_len, uint32_t from, uint32_t to, Ranges* gaps);
// A patch's plaintext: u32 n, n x (u32 offset, u32 length), then those bytes of `data`.
std::string EncodePatch(const Ranges& r, const std::string& data);
// Applies a patch's plaintext to `chunk`, which then holds at least `logical_len` bytes.
Status ApplyPatch(std::string_view plain, uint32_t logical_len, std::string* chunk);

}  // namespace strata::fs
