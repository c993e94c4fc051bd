// Metadata operations: the payload of journal records, and the only way the SQLite view
// changes. The live path and recovery replay apply the same encoded op through
// MetaStore::Apply, so the database is always a function of the journal.
//
// Names and symlink targets and xattrs arrive already encrypted (SIV / AEAD blobs): nothing
// in an op is plaintext file data or a plaintext name.
//
// Encoding (inside the sealed part of a kMeta record, all little-endian):
//   u8 op kind | u8 op version (1) | fields in the order declared below
//   (u64/i64 fixed, blobs as u32 length + bytes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::meta {

enum class OpKind : uint8_t {
  kCreate = 1,  // new inode + entry (regular, dir, symlink, fifo, socket, device)
  kLink = 2,    // new entry for an existing inode
  kUnlink = 3,  // remove an entry (file or empty directory); nlink drops
  kRename = 4,
  kSetAttr = 5,
  kSetXattr = 6,
  kRemoveXattr = 7,
  kDeleteInode = 8,  // an inode with nlink 0 and no open handle is gone, with its chunks
  kChunk = 9,        // a data chunk was stored (applied from kData records)
  // Tiering (docs/tiering.md). A placement segment changes state: `segment`, `name` = tier
  // name (plain: not patient data), `flags` = SegmentState.
  kSegmentState = 10,
  // Chunks copied verbatim into placement segment `segment` (verified on its tier, `size`
  // bytes): `blob` = packed MoveEntry list. The segment becomes live. Each entry applies only
  // if the chunk still has that version and length; otherwise the copy is dead.
  kMoveChunks = 11,
  // Ranges of a stored chunk rewritten (applied from kData records with the patch flag): a
  // patch over the chunk, which must exist; it grows the chunk's logical length to
  // `logical_len`. Never encoded: like kChunk, built from the record's header.
  kPatch = 12,
};

// Where a placement segment is in its life. Rows of journal segments are always kLive.
enum class SegmentState : uint32_t {
  kLive = 0,       // verified on its tier; chunks may point at it
  kUploading = 1,  // intent logged before the upload: if no kMoveChunks follows, roll back
  kDeleting = 2,   // no live chunk: the object is being removed from its tier
  kGone = 3,       // removed: the row is dropped
};

struct MoveEntry {
  uint64_t ino = 0, index = 0, version = 0, offset = 0;
  uint32_t stored_len = 0;
};
std::string EncodeMoveEntries(const std::vector<MoveEntry>& entries);
Status DecodeMoveEntries(std::string_view in, std::vector<MoveEntry>* out);

// SetAttr field mask.
enum SetAttrMask : uint32_t {
  kSetMode = 1,
  kSetUid = 2,
  kSetGid = 4,
  kSetSize = 8,
  kSetAtime = 16,
  kSetMtime = 32,
  kSetCtime = 64,
};

struct Op {
  OpKind kind{};
  // Common fields; which ones matter depends on kind (see Encode/Apply).
  uint64_t ino = 0;
  uint64_t parent = 0;
  std::string name;         // encrypted entry name (SIV, context = parent)
  uint64_t new_parent = 0;  // kRename
  std::string new_name;     // kRename: encrypted under new_parent
  uint32_t flags = 0;       // kRename: RENAME_NOREPLACE/EXCHANGE; kSetXattr: 0
  uint32_t mode = 0;        // kCreate: type|perm; kSetAttr
  uint32_t uid = 0, gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;                        // kSetAttr; kChunk: file size after this chunk
  int64_t atime = 0, mtime = 0, ctime = 0;  // ns since the epoch
  uint32_t mask = 0;                        // kSetAttr
  std::string blob;  // kCreate: sealed symlink target; kSetXattr: sealed value
  // kChunk, kPatch: where the sealed record lives and how to check it.
  uint64_t chunk_index = 0;
  uint64_t segment = 0, offset = 0;
  uint32_t stored_len = 0;   // record payload length in the segment
  uint32_t logical_len = 0;  // plaintext bytes in the chunk
  uint64_t version = 0;      // bound into the chunk's AEAD associated data
};

std::string EncodeOp(const Op& op);
Status DecodeOp(std::string_view in, Op* op);

}  // namespace strata::meta
