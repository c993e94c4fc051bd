// Internal: the byte layout of journal segments (version 1). The normative specification is
// docs/formats/journal.md; this file and that one must change together, and any change to the
// layout bumps kFormatVersion (readers of old versions must keep working).
//
// Not part of the journal's public API: used by journal.cc and by tests that corrupt files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace strata::journal::format {

inline constexpr char kSegmentMagic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'S', 'G'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr size_t kSegmentHeaderCrcOffset = 60;
inline constexpr size_t kRecordHeaderSize = 20;
// Every segment keeps room for its kSegmentEnd record, so the largest payload is
// segment_size - kSegmentHeaderSize - 2 * kRecordHeaderSize.
inline constexpr uint64_t kSegmentOverhead = kSegmentHeaderSize + 2 * kRecordHeaderSize;

// Record type byte values (journal::RecordType).
inline constexpr uint8_t kTypeData = 1;
inline constexpr uint8_t kTypeMeta = 2;
inline constexpr uint8_t kTypeCheckpoint = 3;
inline constexpr uint8_t kTypeSegmentEnd = 4;

inline bool IsKnownType(uint8_t t) { return t >= kTypeData && t <= kTypeSegmentEnd; }
inline bool IsUserType(uint8_t t) { return t >= kTypeData && t <= kTypeCheckpoint; }

struct SegmentHeader {
  uint32_t version = kFormatVersion;
  std::array<unsigned char, 16> fs_uuid{};
  uint64_t segment_id = 0;
  uint64_t first_lsn = 0;
  int64_t created_ns = 0;
};

// Returns exactly kSegmentHeaderSize bytes.
std::string EncodeSegmentHeader(const SegmentHeader& h);

enum class HeaderProblem {
  kNone,
  kShort,        // fewer than 64 bytes
  kBadMagic,     // not a strata segment at all
  kBadChecksum,  // magic present, CRC does not match
  kBadVersion,   // CRC ok, a version this program does not read
  kBadLayout,    // CRC ok, version 1, but header length or reserved bytes are wrong
};

// Decodes the header at the start of `in`. Does not check fs_uuid or segment id: the caller
// knows what to expect. `*why` says what is wrong when the result is not kNone.
HeaderProblem DecodeSegmentHeader(std::string_view in, SegmentHeader* h, std::string* why);

// Appends one encoded record (header + payload) to *dst.
void AppendRecord(std::string* dst, uint8_t type, uint64_t lsn, std::string_view payload);

struct RecordHeader {
  uint32_t masked_crc = 0;
  uint32_t length = 0;  // payload bytes
  uint8_t type = 0;
  uint64_t lsn = 0;
};

// Decodes the fixed 20-byte record header at p. Returns false when the type is unknown or a
// reserved byte is not zero (the record is bad whatever its checksum says).
bool DecodeRecordHeader(const char* p, RecordHeader* h);

// True when the masked CRC-32C stored in the first 4 bytes of `record` (header + payload, the
// whole record) matches bytes [4, end).
bool RecordChecksumOk(std::string_view record);

std::string UuidToString(const std::array<unsigned char, 16>& uuid);

}  // namespace strata::journal::format
