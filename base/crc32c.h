// CRC-32C (Castagnoli). Journal records carry one so that a torn tail and a flipped bit are
// found without the keys (the mirror site holds no keys but must validate what it stores).
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::crc32c {

// Extends `crc` (0 to start) with data[0, n).
uint32_t Extend(uint32_t crc, const char* data, size_t n);
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// Masked form stored on disk, so a CRC of data that embeds CRCs is not degenerate (leveldb).
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t Unmask(uint32_t m) {
  uint32_t rot = m - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace strata::crc32c
