// Recovery at open (the last segment's scan, torn tails and direct-write padding), Replay, and
// the record scanner both use. Specified in docs/formats/journal.md, sections 6-8.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/coding.h"
#include "base/logging.h"
#include "journal/format.h"
#include "journal/journal.h"
#include "journal/journal_internal.h"

namespace strata::journal {

using format::kRecordHeaderSize;
using format::kSegmentHeaderSize;

namespace {

constexpr size_t kReadAhead = 1 << 20;

bool ParseSegmentName(const std::string& name, uint64_t* id) {
  if (name.size() != 16 + 4 || name.compare(16, 4, kSegmentSuffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; i++) {
    char c = name[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *id = v;
  return true;
}

// Reads the records of one segment in order: file bytes [64, file_end), then in-memory spans
// that continue exactly where the file part ends. Checks each record's structure and CRC but
// not its LSN (the caller knows what to expect).
class RecordScanner {
 public:
  enum class Step { kRecord, kEnd, kTruncated, kBad, kIOError };
  using Span = std::pair<uint64_t, std::string_view>;  // segment offset, bytes

  RecordScanner(File* file, uint64_t file_end, std::vector<Span> spans)
      : file_(file),
        file_end_(file == nullptr ? kSegmentHeaderSize : file_end),
        spans_(std::move(spans)) {
    end_ = spans_.empty() ? file_end_ : spans_.back().first + spans_.back().second.size();
  }

  // On kRecord fills *h, *payload (valid until the next call) and *offset, the record's
  // segment offset. On kTruncated/kBad, *offset is where the bad record starts and *why says
  // what is wrong. On kIOError, status() says why.
  Step Next(format::RecordHeader* h, std::string_view* payload, uint64_t* offset,
            std::string* why) {
    *offset = pos_;
    if (pos_ >= end_) return Step::kEnd;
    if (!Fill(kRecordHeaderSize)) return Failed(why, "incomplete record header");
    const char* p = window_.data() + (pos_ - window_off_);
    if (!format::DecodeRecordHeader(p, h)) {
      *why = "unknown record type or nonzero reserved bytes";
      return Step::kBad;
    }
    uint64_t total = kRecordHeaderSize + uint64_t{h->length};
    if (pos_ + total > end_) {
      *why = fmt::format("record of {} payload bytes runs past the end of the data at {}",
                         h->length, end_);
      return Step::kTruncated;
    }
    if (!Fill(total)) return Failed(why, "incomplete record");
    std::string_view rec(window_.data() + (pos_ - window_off_), total);
    if (!format::RecordChecksumOk(rec)) {
      *why = "checksum mismatch";
      return Step::kBad;
    }
    *payload = rec.substr(kRecordHeaderSize);
    pos_ += total;
    return Step::kRecord;
  }

  uint64_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= end_; }
  const Status& status() const { return status_; }

 private:
  Step Failed(std::string* why, const char* what) {
    if (!status_.ok()) return Step::kIOError;
    *why = what;
    return Step::kTruncated;
  }

  // Makes window_ hold at least n bytes from pos_. False at the end of the data (or when the
  // file turned out shorter than file_end_) or on an I/O error (status_).
  bool Fill(uint64_t n) {
    while (window_off_ + window_.size() < pos_ + n) {
      if (pos_ > window_off_) {
        window_.erase(0, pos_ - window_off_);
        window_off_ = pos_;
      }
      uint64_t have_end = window_off_ + window_.size();
      if (file_ != nullptr && file_pos_ < file_end_) {
        uint64_t want = std::min<uint64_t>(file_end_ - file_pos_,
                                           std::max<uint64_t>(pos_ + n - have_end, kReadAhead));
        size_t old = window_.size();
        window_.resize(old + want);
        size_t got = 0;
        status_ = file_->Read(file_pos_, want, window_.data() + old, &got);
        if (!status_.ok()) {
          window_.resize(old);
          return false;
        }
        window_.resize(old + got);
        file_pos_ += got;
        if (got < want) file_end_ = file_pos_;  // shorter than expected: a gap before spans_
      } else if (span_idx_ < spans_.size() && spans_[span_idx_].first == have_end) {
        window_.append(spans_[span_idx_++].second);
      } else {
        return false;
      }
    }
    return true;
  }

  File* file_;
  uint64_t file_pos_ = kSegmentHeaderSize;
  uint64_t file_end_;
  std::vector<Span> spans_;
  size_t span_idx_ = 0;
  uint64_t end_ = 0;
  std::string window_;  // bytes [window_off_, window_off_ + size)
  uint64_t window_off_ = kSegmentHeaderSize;
  uint64_t pos_ = kSegmentHeaderSize;
  Status status_;
};

// The offset in `tail` (> 0) of a record with a valid checksum and LSN >= min_lsn, or 0.
size_t FindValidRecord(std::string_view tail, uint64_t min_lsn) {
  for (size_t p = 1; p + kRecordHeaderSize <= tail.size(); p++) {
    format::RecordHeader h;
    if (!format::DecodeRecordHeader(tail.data() + p, &h) || h.lsn < min_lsn) continue;
    if (kRecordHeaderSize + uint64_t{h.length} > tail.size() - p) continue;
    if (format::RecordChecksumOk(tail.substr(p, kRecordHeaderSize + h.length))) return p;
  }
  return 0;
}

bool AllZero(std::string_view bytes) {
  return bytes.find_first_not_of('\0') == std::string_view::npos;
}

// Whether `bytes`, the last ones of a file that ends at `end`, are the padding a direct write
// leaves after a segment's last record (File::EnableDirectWrites): all zero, shorter than a
// block, ending on a block boundary.
bool IsDirectPadding(std::string_view bytes, uint64_t end) {
  return !bytes.empty() && bytes.size() < File::kDirectBlock && end % File::kDirectBlock == 0 &&
         AllZero(bytes);
}

// The same for the file's bytes [off, end), read from it.
Result<bool> IsDirectPadding(File* file, uint64_t off, uint64_t end) {
  if (file == nullptr || end <= off || end - off >= File::kDirectBlock) return false;
  std::string bytes(end - off, '\0');
  size_t got = 0;
  RETURN_IF_ERROR(file->Read(off, bytes.size(), bytes.data(), &got));
  return got == bytes.size() && IsDirectPadding(bytes, end);
}

}  // namespace

Status Journal::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(opts_.dir));
  std::vector<uint64_t> ids;
  for (const std::string& name : names) {
    uint64_t id;
    if (ParseSegmentName(name, &id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  if (!ids.empty() && ids.front() == 0) {
    return Status::Corruption(SegmentPath(0) + ": segment id 0 is not valid (ids start at 1)");
  }

  const bool ro = opts_.read_only;
  std::shared_ptr<File> last_file;
  uint64_t removed_id = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    const uint64_t id = ids[i];
    const bool is_last = i + 1 == ids.size();
    const std::string path = SegmentPath(id);
    ASSIGN_OR_RETURN(
        std::unique_ptr<File> f,
        env_->OpenFile(path, is_last && !ro ? OpenMode::kReadWrite : OpenMode::kReadOnly));
    ASSIGN_OR_RETURN(uint64_t size, f->Size());
    std::string raw(kSegmentHeaderSize, '\0');
    size_t got = 0;
    RETURN_IF_ERROR(f->Read(0, raw.size(), raw.data(), &got));
    raw.resize(got);
    format::SegmentHeader h;
    std::string why;
    format::HeaderProblem problem = format::DecodeSegmentHeader(raw, &h, &why);
    if (problem != format::HeaderProblem::kNone) {
      // Records are written into a segment only after its header is durable, so a last
      // segment with an incomplete header and nothing after it was being created during a
      // crash and holds nothing: drop it. Anything else is damage for fsck to look at.
      // A direct header write makes the file one block long, the rest zeros.
      bool header_only = size <= kSegmentHeaderSize;
      if (!header_only && is_last && size <= File::kDirectBlock) {
        std::string block(size, '\0');
        RETURN_IF_ERROR(f->Read(0, block.size(), block.data(), &got));
        header_only = got == size && AllZero(std::string_view(block).substr(kSegmentHeaderSize));
      }
      bool torn_create = is_last && header_only && (i > 0 || id == 1) &&
                         (problem == format::HeaderProblem::kShort ||
                          problem == format::HeaderProblem::kBadMagic ||
                          problem == format::HeaderProblem::kBadChecksum);
      if (torn_create) {
        log::Warn("journal: segment {} ({}) was being created during a crash ({}); {}", id, path,
                  why, ro ? "ignoring it (read-only)" : "removing it");
        if (!ro) {
          f.reset();
          RETURN_IF_ERROR(env_->RemoveFile(path));
          RETURN_IF_ERROR(env_->SyncDir(opts_.dir));
          removed_id = id;
        }
        break;
      }
      if (problem == format::HeaderProblem::kBadVersion) {
        return Status::InvalidArgument(path + ": " + why);
      }
      return Status::Corruption(path + ": " + why);
    }
    if (h.fs_uuid != opts_.fs_uuid) {
      return Status::InvalidArgument(
          fmt::format("{}: segment belongs to filesystem {}, but this filesystem is {}", path,
                      format::UuidToString(h.fs_uuid), format::UuidToString(opts_.fs_uuid)));
    }
    if (h.segment_id != id) {
      return Status::Corruption(
          fmt::format("{}: header says segment {}, file name says {}", path, h.segment_id, id));
    }
    if (h.first_lsn == 0 || (!segments_.empty() && h.first_lsn <= segments_.back().first_lsn)) {
      return Status::Corruption(
          fmt::format("{}: first LSN {} does not follow the previous segment's first LSN {}", path,
                      h.first_lsn, segments_.empty() ? 0 : segments_.back().first_lsn));
    }
    segments_.push_back({id, h.first_lsn});
    if (is_last) last_file = std::move(f);
  }

  if (segments_.empty()) {
    if (ro) return Status::NotFound("no journal segments in " + opts_.dir);
    uint64_t id = removed_id != 0 ? removed_id : 1;
    RETURN_IF_ERROR(CreateSegment(id, 1, &io_file_));
    segments_.push_back({id, 1});
    active_segment_ = id;
    active_end_ = kSegmentHeaderSize;
    log::Info("journal: created {} (segment {})", opts_.dir, id);
  } else {
    const SegmentInfo last = segments_.back();
    if (last_file == nullptr) {  // the torn last segment was removed
      ASSIGN_OR_RETURN(last_file, env_->OpenFile(SegmentPath(last.id),
                                                 ro ? OpenMode::kReadOnly : OpenMode::kReadWrite));
    }
    bool sealed = false;
    RETURN_IF_ERROR(ScanLastSegment(last_file.get(), last.first_lsn, &sealed));
    active_segment_ = last.id;
    if (!ro) {
      // What recovery found may be only in the page cache (a process crash): make it durable
      // before anyone builds on it, and before a successor segment exists.
      RETURN_IF_ERROR(last_file->Sync());
      if (sealed) {
        RETURN_IF_ERROR(CreateSegment(last.id + 1, next_lsn_, &io_file_));
        segments_.push_back({last.id + 1, next_lsn_});
        active_segment_ = last.id + 1;
        active_end_ = kSegmentHeaderSize;
      } else {
        io_file_ = last_file;
        if (active_end_ < opts_.segment_size) {
          Status pa = io_file_->Preallocate(active_end_, opts_.segment_size - active_end_);
          if (!pa.ok()) log::Warn("journal: {}", pa.ToString());
        }
      }
    }
    log::Info("journal: opened {}: {} segments, last LSN {}, active segment {}{}", opts_.dir,
              segments_.size(), next_lsn_ - 1, active_segment_, ro ? " (read-only)" : "");
  }

  if (!ro && opts_.direct_writes) {
    direct_ = io_file_->EnableDirectWrites();
    log::Info("journal: {}: appends {}", opts_.dir,
              direct_ ? "bypass the page cache (O_DIRECT)"
                      : "go through the page cache (this filesystem has no O_DIRECT)");
  }
  std::lock_guard<std::mutex> l(mu_);
  io_segment_ = disk_segment_ = active_segment_;
  written_lsn_ = durable_lsn_ = next_lsn_ - 1;
  buf_ = NewChunkLocked();
  return Status::OK();
}

Status Journal::ScanLastSegment(File* file, uint64_t first_lsn, bool* sealed) {
  const uint64_t id = segments_.back().id;
  ASSIGN_OR_RETURN(uint64_t size, file->Size());
  RecordScanner scanner(file, size, {});
  uint64_t expected = first_lsn;
  *sealed = false;
  for (;;) {
    format::RecordHeader h;
    std::string_view payload;
    uint64_t off = 0;
    std::string why;
    RecordScanner::Step step = scanner.Next(&h, &payload, &off, &why);
    if (step == RecordScanner::Step::kIOError) return scanner.status();
    if (step == RecordScanner::Step::kEnd) break;
    if (step == RecordScanner::Step::kRecord) {
      if (h.type == format::kTypeSegmentEnd) {
        if (h.lsn != expected - 1 || h.length != 0) {
          return CorruptionAt(
              id, off,
              fmt::format("segment-end record says last LSN {}, expected {}", h.lsn, expected - 1));
        }
        if (!scanner.AtEnd()) {
          // A crash between a seal's direct write and the truncate that follows it.
          ASSIGN_OR_RETURN(bool padding, IsDirectPadding(file, scanner.pos(), size));
          if (!padding) return CorruptionAt(id, scanner.pos(), "data after the segment-end record");
          if (!opts_.read_only) RETURN_IF_ERROR(file->Truncate(scanner.pos()));
        }
        *sealed = true;
        break;
      }
      if (h.lsn != expected) {
        return CorruptionAt(id, off,
                            fmt::format("record has LSN {}, expected {}", h.lsn, expected));
      }
      expected++;
      continue;
    }
    // A bad or incomplete record at `off`. If any valid record follows, the damage is in the
    // middle of the log (not a torn write): refuse, so fsck can look at it.
    std::string tail(size - off, '\0');
    size_t got = 0;
    RETURN_IF_ERROR(file->Read(off, tail.size(), tail.data(), &got));
    tail.resize(got);
    if (tail.size() == size - off && IsDirectPadding(tail, size)) {
      // The zeros a direct write pads the last block with: nothing was torn, and the next
      // append writes over them (a cut would also free the segment's preallocation).
      log::Debug("journal: segment {} ends at offset {} ({} bytes of padding)", id, off,
                 tail.size());
      break;
    }
    if (size_t p = FindValidRecord(tail, expected); p != 0) {
      return CorruptionAt(id, off,
                          fmt::format("{}, but a valid record (LSN {}) follows at offset {}", why,
                                      DecodeFixed64(tail.data() + p + 12), off + p));
    }
    log::Warn("journal: discarding the torn tail of segment {} ({}) at offset {}: {} bytes ({})",
              id, SegmentPath(id), off, size - off, why);
    if (!opts_.read_only) {
      RETURN_IF_ERROR(file->Truncate(off));
      RETURN_IF_ERROR(file->Sync());
    }
    break;
  }
  next_lsn_ = expected;
  active_end_ = scanner.pos();
  return Status::OK();
}

Status Journal::Replay(uint64_t after_lsn, const std::function<Status(const Record&)>& fn) const {
  std::vector<SegmentInfo> segs;  // from the one holding after_lsn + 1 on
  std::vector<std::shared_ptr<const Chunk>> mem;
  uint64_t end_lsn, active, active_end;
  {
    std::lock_guard<std::mutex> l(mu_);
    end_lsn = next_lsn_ - 1;
    if (after_lsn >= end_lsn) return Status::OK();
    auto first = std::upper_bound(segments_.begin(), segments_.end(), after_lsn + 1,
                                  [](uint64_t v, const SegmentInfo& s) { return v < s.first_lsn; });
    if (first == segments_.begin()) {
      return Status::NotFound(fmt::format(
          "journal {}: LSN {} is older than the oldest segment here ({} starts at LSN {})",
          opts_.dir, after_lsn + 1, SegmentPath(segments_.front().id),
          segments_.front().first_lsn));
    }
    segs.assign(first - 1, segments_.end());
    active = active_segment_;
    active_end = active_end_;
    mem.assign(pending_.begin(), pending_.end());
    if (!buf_->data.empty()) mem.push_back(std::make_shared<const Chunk>(*buf_));
  }
  auto it = segs.begin();
  uint64_t expected = it->first_lsn;
  for (; it != segs.end(); ++it) {
    const uint64_t id = it->id;
    if (it->first_lsn != expected) {
      return CorruptionAt(id, 0,
                          fmt::format("segment starts at LSN {} but LSN {} comes next: a segment "
                                      "is missing or the previous one is damaged",
                                      it->first_lsn, expected));
    }
    std::vector<RecordScanner::Span> spans;
    for (const auto& c : mem) {
      if (c->segment == id) spans.emplace_back(c->offset, c->data);
    }
    uint64_t file_end = std::numeric_limits<uint64_t>::max();  // the whole (sealed) file
    if (!spans.empty()) {
      file_end = spans.front().first;
    } else if (id == active) {
      file_end = active_end;
    }
    std::shared_ptr<File> file;
    if (file_end > kSegmentHeaderSize) {
      ASSIGN_OR_RETURN(file, ReadFile(id));
      uint64_t first_lsn = 0;
      RETURN_IF_ERROR(ReadSegmentHeader(file.get(), id, &first_lsn));
      if (first_lsn != it->first_lsn) {
        return CorruptionAt(id, 0,
                            fmt::format("header now says first LSN {}, it said {} at open",
                                        first_lsn, it->first_lsn));
      }
      if (file_end == std::numeric_limits<uint64_t>::max()) {
        ASSIGN_OR_RETURN(file_end, file->Size());
      }
    }
    RecordScanner scanner(file.get(), file_end, std::move(spans));
    bool sealed = false;
    for (;;) {
      format::RecordHeader h;
      std::string_view payload;
      uint64_t off = 0;
      std::string why;
      RecordScanner::Step step = scanner.Next(&h, &payload, &off, &why);
      if (step == RecordScanner::Step::kIOError) return scanner.status();
      if (step == RecordScanner::Step::kEnd) break;
      if (step != RecordScanner::Step::kRecord) return CorruptionAt(id, off, why);
      if (h.type == format::kTypeSegmentEnd) {
        if (h.lsn != expected - 1 || h.length != 0) {
          return CorruptionAt(
              id, off,
              fmt::format("segment-end record says last LSN {}, expected {}", h.lsn, expected - 1));
        }
        if (!scanner.AtEnd()) {
          // Only a read-only open leaves a last seal's padding (ScanLastSegment cuts it off).
          ASSIGN_OR_RETURN(bool padding, IsDirectPadding(file.get(), scanner.pos(), file_end));
          if (!padding) return CorruptionAt(id, scanner.pos(), "data after the segment-end record");
        }
        sealed = true;
        break;
      }
      if (h.lsn != expected) {
        return CorruptionAt(id, off,
                            fmt::format("record has LSN {}, expected {}", h.lsn, expected));
      }
      if (h.lsn > after_lsn) {
        Record r{h.lsn, static_cast<RecordType>(h.type), Location{id, off, h.length},
                 std::string(payload)};
        RETURN_IF_ERROR(fn(r));
      }
      if (expected == end_lsn) return Status::OK();
      expected++;
    }
    if (!sealed && id != active) {
      return CorruptionAt(id, scanner.pos(),
                          "sealed segment ends without its segment-end record (truncated?)");
    }
  }
  return CorruptionAt(
      active, active_end,
      fmt::format("the journal ends before LSN {} (last LSN {})", expected, end_lsn));
}

Status Journal::ReadSegmentHeader(File* file, uint64_t id, uint64_t* first_lsn) const {
  std::string raw(kSegmentHeaderSize, '\0');
  size_t got = 0;
  RETURN_IF_ERROR(file->Read(0, raw.size(), raw.data(), &got));
  raw.resize(got);
  format::SegmentHeader h;
  std::string why;
  if (format::DecodeSegmentHeader(raw, &h, &why) != format::HeaderProblem::kNone) {
    return CorruptionAt(id, 0, why);
  }
  if (h.fs_uuid != opts_.fs_uuid || h.segment_id != id) {
    return CorruptionAt(id, 0, "header names another filesystem or segment");
  }
  *first_lsn = h.first_lsn;
  return Status::OK();
}

}  // namespace strata::journal
