// The superblock: <hot>/superblock, the small file that says "a strata filesystem lives here"
// and carries what is fixed at mkfs, plus the writer epoch bumped (durably, before any write)
// at every mount so AEAD nonces never repeat. Written atomically (temp, fsync, rename, fsync
// of the directory). Normative spec: docs/formats/superblock.md.
//
//   0       8        12          28         32           40      44       48
//   +-------+--------+-----------+----------+------------+-------+--------+---------+-------+
//   | magic | ver u32| fs uuid   | chunk u32| segment u64| epoch | level  | name    | crc32c|
//   |STRATSB|   = 1  | 16 bytes  |   size   |   size     |  u32  |  i32   | u32+str | masked|
//   +-------+--------+-----------+----------+------------+-------+--------+---------+-------+
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "base/env.h"
#include "base/status.h"

namespace strata::fs {

struct Superblock {
  static constexpr uint32_t kVersion = 1;
  std::array<unsigned char, 16> uuid{};
  uint32_t chunk_size = 0;
  uint64_t segment_size = 0;
  uint32_t epoch = 0;
  int32_t compression_level = 1;
  std::string name;
};

std::string EncodeSuperblock(const Superblock& sb);
Status DecodeSuperblock(std::string_view in, const std::string& where, Superblock* sb);
Result<Superblock> ReadSuperblock(Env* env, const std::string& path);
Status WriteSuperblock(Env* env, const std::string& path, const Superblock& sb);
std::string UuidToString(const std::array<unsigned char, 16>& u);

}  // namespace strata::fs
