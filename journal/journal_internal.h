// Internals shared by the journal's files (journal.cc: appends, reads, segment removal;
// recovery.cc: the scan at open and Replay). Not part of the library's interface.
#pragma once

#include <cstdint>
#include <string>

#include "journal/journal.h"

namespace strata::journal {

// A run of whole encoded records bound for [offset, offset + data.size()) of one segment.
// Immutable once it leaves buf_ for pending_.
struct Journal::Chunk {
  uint64_t segment = 0;
  uint64_t offset = 0;
  std::string data;
  uint64_t last_lsn = 0;  // the highest LSN assigned when the chunk was last appended to
  // data ends with the kSegmentEnd record: write it with an fdatasync, then create segment + 1
  // whose first LSN is next_first_lsn.
  bool seal = false;
  uint64_t next_first_lsn = 0;
};

inline constexpr char kSegmentSuffix[] = ".seg";

}  // namespace strata::journal
