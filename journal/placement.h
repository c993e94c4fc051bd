// Placement segments: the files and objects that hold data once it leaves the journal (cold
// tiers, compaction). Same framing as journal segments (docs/formats/journal.md), so one
// reader and one spec cover both; what differs is documented in docs/formats/placement.md:
//   - the header's first LSN is 0 (a placement segment is not part of the LSN sequence);
//   - every record is kData with LSN 0: a sealed chunk copied verbatim from where it was
//     (the AEAD binds filesystem, inode, chunk index and version, not the location);
//   - ids come from the metadata's placement counter, starting at kFirstPlacementSegment, so
//     they never collide with journal segment ids.
// A segment is written locally by SegmentBuilder, fdatasync'ed, then uploaded whole.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/env.h"
#include "base/status.h"
#include "journal/journal.h"

namespace strata::journal {

inline constexpr uint64_t kFirstPlacementSegment = uint64_t{1} << 40;
inline constexpr uint32_t kRecordHeaderBytes = 20;

class SegmentBuilder {
 public:
  // Creates (truncating) the local file at `path`.
  static Result<std::unique_ptr<SegmentBuilder>> Create(Env* env, const std::string& path,
                                                        const std::array<unsigned char, 16>& uuid,
                                                        uint64_t id, int64_t now_ns);
  // Appends a kData record; *loc says where it is in the segment.
  Status Add(std::string_view payload, Location* loc);
  // Writes the kSegmentEnd record and makes the file durable. Returns the final size.
  Result<uint64_t> Finish();
  uint64_t size() const { return size_; }
  uint64_t id() const { return id_; }
  const std::string& path() const { return path_; }

 private:
  SegmentBuilder() = default;
  Status FlushBuffer();
  std::unique_ptr<File> file_;
  std::string path_;
  uint64_t id_ = 0;
  uint64_t size_ = 0;     // bytes in the segment so far, written or buffered
  uint64_t written_ = 0;  // bytes written to the file
  std::string buf_;
};

// Checks one record read back from a segment: `bytes` must be the whole record (header and
// payload) that `loc` names. Returns the payload, or Corruption saying what is wrong (the
// caller adds where the bytes came from).
Status ParseRecord(std::string_view bytes, const Location& loc, std::string* payload);

// Checks a whole placement segment as read back from a tier: header (uuid, id, first LSN 0),
// every record's CRC and framing, and the closing kSegmentEnd record.
Status VerifyPlacementSegment(std::string_view bytes, const std::array<unsigned char, 16>& uuid,
                              uint64_t id);

}  // namespace strata::journal
