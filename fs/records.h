// The payloads strata puts in journal records (the journal itself only frames them).
// Normative spec: docs/formats/records.md.
//
// kData (one chunk of one file, or a patch of one), 48-byte plaintext header then the sealed
// chunk:
//   0 u8 format=1 | 1 u8 flags (bit0: zstd, bit1: byte planes, bit2: patch) | 2 u16 0 |
//   4 u32 logical_len | 8 u64 ino | 16 u64 chunk index | 24 u64 version |
//   32 u64 file size after | 40 i64 mtime ns | 48 nonce(12) ciphertext tag(16)
//   AEAD associated data = "strata-chunk-1" | fs uuid | header bytes [0,48)
// kMeta (one metadata op), 16-byte header then the sealed op (meta/ops.h encoding):
//   0 u8 format=1 | 1..7 zero | 8 u64 version | 16 nonce ciphertext tag
//   associated data = "strata-meta-1" | fs uuid | header bytes [0,16)
// version = epoch << 40 | counter: the nonce's own fields, unique for the filesystem's life,
// so a chunk's AD changes with every rewrite and an older copy cannot be swapped in.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "journal/journal.h"
#include "meta/ops.h"

namespace strata::crypto {
class Aead;
class NonceSequence;
}  // namespace strata::crypto

namespace strata::fs {

struct ChunkHeader {
  uint32_t logical_len = 0;
  bool compressed = false;
  // The compressed plaintext is the chunk split in two byte planes (even offsets, then odd):
  // 16-bit image data compresses better and faster that way.
  bool planes = false;
  // The plaintext is a patch, not a whole chunk: u32 n, n x (u32 offset, u32 length), then
  // the bytes of those ranges, applied over the chunk as it was (docs/formats/records.md).
  bool patch = false;
  uint64_t ino = 0, index = 0, version = 0, file_size = 0;
  int64_t mtime = 0;
};

inline constexpr size_t kChunkHeaderSize = 48;

// The chunk-map op (kChunk or kPatch) a kData record stands for. The live path and recovery both
// build it here, so the database is the same function of the journal either way.
meta::Op ChunkOp(const ChunkHeader& h, const journal::Location& loc);
inline constexpr size_t kMetaHeaderSize = 16;

class RecordCodec {
 public:
  RecordCodec(const crypto::Aead* aead, crypto::NonceSequence* nonces,
              const std::array<unsigned char, 16>& fs_uuid)
      : aead_(aead), nonces_(nonces), uuid_(fs_uuid) {}

  // Seals `body` (already compressed or raw) into a kData payload; fills h->version.
  Status SealChunk(ChunkHeader* h, std::string_view body, std::string* out) const;
  // Parses a kData payload's header without the key (recovery needs only this).
  static Status ParseChunkHeader(std::string_view payload, ChunkHeader* h);
  // Verifies identity (ino/index/version must match `expect`) and the tag; returns the body.
  Status OpenChunk(std::string_view payload, const ChunkHeader& expect, ChunkHeader* got,
                   std::string* body) const;

  Status SealMeta(std::string_view op, std::string* out) const;
  Status OpenMeta(std::string_view payload, std::string* op) const;

  // A value for AD-binding that is unique per seal; used for xattr/symlink blobs too.
  Status SealBlob(std::string_view domain, uint64_t ino, std::string_view extra,
                  std::string_view plaintext, std::string* out) const;
  Status OpenBlob(std::string_view domain, uint64_t ino, std::string_view extra,
                  std::string_view sealed, std::string* out) const;

 private:
  Status NextNonce(std::array<unsigned char, 12>* nonce, uint64_t* version) const;
  const crypto::Aead* aead_;
  crypto::NonceSequence* nonces_;
  std::array<unsigned char, 16> uuid_;
};

}  // namespace strata::fs
