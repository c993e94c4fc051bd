#include "journal/journal.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "base/coding.h"
#include "base/logging.h"
#include "journal/format.h"
#include "journal/journal_internal.h"

namespace strata::journal {

using format::kRecordHeaderSize;
using format::kSegmentHeaderSize;

namespace {

constexpr uint64_t kMinSegmentSize = 4096;
constexpr size_t kMaxReadFiles = 64;
constexpr char kLockName[] = "LOCK";

}  // namespace

bool Journal::Holds(const Chunk& c, const Location& loc) {
  const uint64_t n = kRecordHeaderSize + uint64_t{loc.length};
  return c.segment == loc.segment && loc.offset >= c.offset &&
         loc.offset - c.offset <= c.data.size() && n <= c.data.size() - (loc.offset - c.offset);
}

Journal::Journal(const Options& opts)
    : opts_(opts),
      env_(opts.env),
      max_payload_(std::min<uint64_t>(opts.segment_size - format::kSegmentOverhead,
                                      std::numeric_limits<uint32_t>::max())) {}

Result<std::unique_ptr<Journal>> Journal::Open(const Options& opts) {
  if (opts.env == nullptr) return Status::InvalidArgument("journal: Options.env is required");
  if (opts.dir.empty()) return Status::InvalidArgument("journal: Options.dir is required");
  if (opts.segment_size < kMinSegmentSize) {
    return Status::InvalidArgument(
        fmt::format("journal {}: segment_size {} is below the minimum {}", opts.dir,
                    opts.segment_size, kMinSegmentSize));
  }
  std::unique_ptr<Journal> j(new Journal(opts));
  if (!opts.read_only) {
    ASSIGN_OR_RETURN(j->lock_, opts.env->LockFile(JoinPath(opts.dir, kLockName)));
  }
  RETURN_IF_ERROR(j->Recover());
  return j;
}

Status Journal::CreateSegment(uint64_t id, uint64_t first_lsn, std::shared_ptr<File>* out) {
  const std::string path = SegmentPath(id);
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, env_->OpenFile(path, OpenMode::kCreateExclusive));
  if (direct_) f->EnableDirectWrites();
  Status pa = f->Preallocate(0, opts_.segment_size);  // best effort; the writes will tell
  if (!pa.ok()) log::Warn("journal: {}", pa.ToString());
  format::SegmentHeader h;
  h.fs_uuid = opts_.fs_uuid;
  h.segment_id = id;
  h.first_lsn = first_lsn;
  h.created_ns = env_->NowNanos();
  RETURN_IF_ERROR(f->WriteAndSync(0, format::EncodeSegmentHeader(h)));
  RETURN_IF_ERROR(env_->SyncDir(opts_.dir));
  log::Debug("journal: created segment {} (first LSN {})", id, first_lsn);
  *out = std::move(f);
  return Status::OK();
}

Journal::~Journal() {
  std::unique_lock<std::mutex> l(mu_);
  while (io_busy_) cv_.wait(l);
  if (opts_.read_only || !error_.ok() || buf_ == nullptr) return;
  PushBufferLocked();
  io_busy_ = true;
  Status s = DrainLocked(l, pending_.size(), /*sync_last=*/false);
  // Direct writes leave the active segment padded to a whole block: a clean close leaves it
  // ending at its last record, and keeps the rest of its preallocation (the cut frees it).
  // Not synced: either end is one recovery accepts.
  if (s.ok() && direct_ && io_file_ != nullptr && io_segment_ == active_segment_) {
    s = io_file_->Truncate(active_end_);
    if (s.ok() && active_end_ < opts_.segment_size)
      io_file_->Preallocate(active_end_, opts_.segment_size - active_end_).IgnoreError();
  }
  io_busy_ = false;
  if (!s.ok()) log::Error("journal {}: flushing at close failed: {}", opts_.dir, s.ToString());
}

std::shared_ptr<Journal::Chunk> Journal::NewChunkLocked() const {
  auto c = std::make_shared<Chunk>();
  c->segment = active_segment_;
  c->offset = active_end_;
  c->last_lsn = next_lsn_ - 1;
  // Room for the record that crosses write_buffer too (a chunk record of up to 256 KiB): a
  // full buffer would otherwise double its allocation on that last append.
  c->data.reserve(std::min<uint64_t>(opts_.write_buffer + (256u << 10), opts_.segment_size));
  return c;
}

void Journal::PushBufferLocked() {
  if (buf_->data.empty()) return;
  pending_bytes_ += buf_->data.size();
  pending_.push_back(std::move(buf_));
  buf_ = NewChunkLocked();
}

void Journal::SealLocked() {
  format::AppendRecord(&buf_->data, format::kTypeSegmentEnd, next_lsn_ - 1, {});
  buf_->seal = true;
  buf_->next_first_lsn = next_lsn_;
  PushBufferLocked();
  active_segment_++;
  active_end_ = kSegmentHeaderSize;
  segments_.push_back({active_segment_, next_lsn_});
  buf_ = NewChunkLocked();
}

void Journal::SetErrorLocked(const Status& s) {
  if (error_.ok()) {
    error_ = s;
    log::Error("journal {}: {}; every later write fails until remount", opts_.dir, s.ToString());
  }
  cv_.notify_all();
}

Status Journal::AbortedLocked() const {
  return Status::Aborted("journal is in a failed state after " + error_.ToString() +
                         "; remount to recover");
}

Status Journal::Append(RecordType type, std::string_view payload, uint64_t* lsn, Location* loc) {
  if (opts_.read_only) return Status::NotSupported("journal " + opts_.dir + " is read-only");
  if (!format::IsUserType(static_cast<uint8_t>(type))) {
    return Status::InvalidArgument(
        fmt::format("journal: cannot append a record of type {}", static_cast<int>(type)));
  }
  if (payload.size() > max_payload_) {
    return Status::InvalidArgument(
        fmt::format("journal: record of {} bytes exceeds the limit of {} for segment_size {}",
                    payload.size(), max_payload_, opts_.segment_size));
  }
  const uint64_t size = kRecordHeaderSize + payload.size();
  std::unique_lock<std::mutex> l(mu_);
  if (!error_.ok()) return AbortedLocked();
  bool push = false;
  if (active_end_ + size + kRecordHeaderSize > opts_.segment_size) {
    SealLocked();
    push = true;
  }
  const uint64_t n = next_lsn_++;
  const uint64_t offset = active_end_;
  format::AppendRecord(&buf_->data, static_cast<uint8_t>(type), n, payload);
  buf_->last_lsn = n;
  active_end_ += size;
  if (lsn != nullptr) *lsn = n;
  if (loc != nullptr)
    *loc = Location{active_segment_, offset, static_cast<uint32_t>(payload.size())};
  if (buf_->data.size() >= opts_.write_buffer) {
    PushBufferLocked();
    push = true;
  }
  return push ? MaybeWriteLocked(l) : Status::OK();
}

Status Journal::MaybeWriteLocked(std::unique_lock<std::mutex>& l) {
  // Bounds the memory held by unwritten chunks when the disk falls behind.
  const uint64_t max_pending = std::max<uint64_t>(2 * uint64_t{opts_.write_buffer}, 1 << 20);
  while (error_.ok() && !pending_.empty()) {
    if (!io_busy_) {
      io_busy_ = true;
      Status s = DrainLocked(l, pending_.size(), /*sync_last=*/false);
      Status r = ReleaseIoLocked(l);
      return s.ok() ? r : s;
    }
    if (pending_bytes_ <= max_pending) return Status::OK();
    cv_.wait(l);
  }
  return error_.ok() ? Status::OK() : AbortedLocked();
}

Status Journal::DrainLocked(std::unique_lock<std::mutex>& l, size_t count, bool sync_last) {
  for (size_t i = 0; i < count; i++) {
    std::shared_ptr<const Chunk> c = pending_.front();
    const bool sync = c->seal || (sync_last && i + 1 == count);
    l.unlock();
    Status s = WriteChunk(*c, sync);
    std::shared_ptr<const Chunk> keep = s.ok() ? ForKeeping(c) : nullptr;  // copies unlocked
    l.lock();
    if (!s.ok()) {
      SetErrorLocked(s);
      return s;
    }
    pending_.pop_front();
    pending_bytes_ -= c->data.size();
    if (keep != nullptr) KeepLocked(std::move(keep));
    written_lsn_ = std::max(written_lsn_, c->last_lsn);
    if (sync) durable_lsn_ = std::max(durable_lsn_, c->last_lsn);
    if (c->seal) disk_segment_ = c->segment + 1;
    cv_.notify_all();
  }
  return Status::OK();
}

std::shared_ptr<const Journal::Chunk> Journal::ForKeeping(
    const std::shared_ptr<const Chunk>& c) const {
  // Through the page cache, the page cache keeps them.
  if (!direct_ || c->data.empty() || c->data.size() > opts_.keep_written) return nullptr;
  // A full chunk is kept as it is. A group commit's chunk is small in a buffer reserved for
  // write_buffer bytes: keep a copy of just its bytes rather than the whole allocation.
  if (c->data.size() >= opts_.write_buffer / 2 ||
      c->data.capacity() <= c->data.size() + c->data.size() / 4) {
    return c;
  }
  try {
    auto small = std::make_shared<Chunk>();
    small->segment = c->segment;
    small->offset = c->offset;
    small->data.assign(c->data);
    return small;
  } catch (const std::bad_alloc&) {
    return nullptr;  // the I/O token is held: never leave by an exception
  }
}

void Journal::KeepLocked(std::shared_ptr<const Chunk> c) {
  kept_bytes_ += c->data.capacity();
  kept_.push_back(std::move(c));
  while (kept_bytes_ > opts_.keep_written && !kept_.empty()) {
    kept_bytes_ -= kept_.front()->data.capacity();
    kept_.pop_front();
  }
}

uint64_t Journal::KeptBytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return kept_bytes_;
}

Status Journal::ReleaseIoLocked(std::unique_lock<std::mutex>& l) {
  // A seal queued while we held the token would otherwise wait for the next writer, leaving a
  // segment below ActiveSegment()+1 half-written; finish every queued seal first. Checked and
  // released under mu_, so a seal pushed later finds the token free and is written by its
  // pusher.
  Status s;
  while (error_.ok()) {
    size_t n = 0;
    for (size_t i = 0; i < pending_.size(); i++) {
      if (pending_[i]->seal) n = i + 1;
    }
    if (n == 0) break;
    s = DrainLocked(l, n, /*sync_last=*/false);
  }
  io_busy_ = false;
  cv_.notify_all();
  return s;
}

Status Journal::WriteChunk(const Chunk& c, bool sync) {
  if (c.segment != io_segment_ || io_file_ == nullptr) {
    return Status::Aborted(fmt::format(
        "journal: internal error: chunk for segment {} while {} is open", c.segment, io_segment_));
  }
  if (!c.seal)
    return sync ? io_file_->WriteAndSync(c.offset, c.data) : io_file_->Write(c.offset, c.data);
  // A sealed segment ends exactly at its segment-end record: cut a direct write's padding (this
  // one's, or an earlier mount's) off before the sync that makes the seal durable. It also gives
  // back what the preallocation reserved past the end.
  RETURN_IF_ERROR(io_file_->Write(c.offset, c.data));
  RETURN_IF_ERROR(io_file_->Truncate(c.offset + c.data.size()));
  RETURN_IF_ERROR(io_file_->Sync());
  std::shared_ptr<File> next;
  RETURN_IF_ERROR(CreateSegment(c.segment + 1, c.next_first_lsn, &next));
  io_file_ = std::move(next);
  io_segment_ = c.segment + 1;
  return Status::OK();
}

Status Journal::Sync(uint64_t lsn) {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    if (!error_.ok()) return AbortedLocked();
    const uint64_t target = std::min(lsn, next_lsn_ - 1);
    if (durable_lsn_ >= target) return Status::OK();
    if (io_busy_) {  // a leader (or a writer) is at work: its sync may cover us
      cv_.wait(l);
      continue;
    }
    io_busy_ = true;
    PushBufferLocked();
    Status s;
    if (!pending_.empty()) {
      s = DrainLocked(l, pending_.size(), /*sync_last=*/true);
    } else {  // everything is written already, only the fdatasync is missing
      const uint64_t written = written_lsn_;
      l.unlock();
      s = io_file_->Sync();
      l.lock();
      if (s.ok()) {
        durable_lsn_ = std::max(durable_lsn_, written);
      } else {
        SetErrorLocked(s);
      }
    }
    Status r = ReleaseIoLocked(l);
    if (!s.ok()) return s;
    if (!r.ok()) return r;
  }
}

Status Journal::Read(const Location& loc, std::string* payload) const {
  if (loc.offset < kSegmentHeaderSize) {
    return Status::InvalidArgument(
        fmt::format("journal: no record at offset {} of segment {}", loc.offset, loc.segment));
  }
  const uint64_t n = kRecordHeaderSize + uint64_t{loc.length};
  std::string rec;
  bool in_memory = false;
  std::shared_ptr<const Chunk> chunk;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (loc.segment == 0 || loc.segment > active_segment_) {
      return Status::InvalidArgument(fmt::format("journal: no segment {}", loc.segment));
    }
    if (Holds(*buf_, loc)) {
      rec.assign(buf_->data, loc.offset - buf_->offset, n);
      in_memory = true;
    } else {
      chunk = FindInMemoryLocked(loc);
    }
  }
  if (chunk != nullptr) {
    rec.assign(chunk->data, loc.offset - chunk->offset, n);
    in_memory = true;
  }
  if (!in_memory) {
    ASSIGN_OR_RETURN(std::shared_ptr<File> file, ReadFile(loc.segment));
    rec.resize(n);
    size_t got = 0;
    RETURN_IF_ERROR(file->Read(loc.offset, n, rec.data(), &got));
    if (got < n) {
      return CorruptionAt(loc.segment, loc.offset,
                          fmt::format("record of {} payload bytes is cut short at offset {}",
                                      loc.length, loc.offset + got));
    }
  }
  format::RecordHeader h;
  if (!format::DecodeRecordHeader(rec.data(), &h)) {
    return CorruptionAt(loc.segment, loc.offset, "unknown record type or nonzero reserved bytes");
  }
  if (h.length != loc.length) {
    return CorruptionAt(
        loc.segment, loc.offset,
        fmt::format("record holds {} payload bytes, expected {}", h.length, loc.length));
  }
  if (!format::IsUserType(h.type)) {
    return CorruptionAt(loc.segment, loc.offset, "segment-end record where a record was expected");
  }
  if (!format::RecordChecksumOk(rec)) {
    return CorruptionAt(loc.segment, loc.offset, "checksum mismatch");
  }
  rec.erase(0, kRecordHeaderSize);
  *payload = std::move(rec);
  return Status::OK();
}

std::shared_ptr<const Journal::Chunk> Journal::FindInMemoryLocked(const Location& loc) const {
  for (const auto& c : pending_)
    if (Holds(*c, loc)) return c;
  if (kept_.empty()) return nullptr;
  // The last kept chunk that starts at or before the record (kept_ is in file order).
  auto it = std::upper_bound(kept_.begin(), kept_.end(), loc,
                             [](const Location& l, const std::shared_ptr<const Chunk>& c) {
                               return l.segment != c->segment ? l.segment < c->segment
                                                              : l.offset < c->offset;
                             });
  if (it != kept_.begin() && Holds(**std::prev(it), loc)) return *std::prev(it);
  return nullptr;
}

void Journal::WillRead(std::vector<Location> locs) const {
  // Records this close together are hinted as one range: the gap costs less to read than a
  // second request does.
  constexpr uint64_t kJoinGap = 64 << 10;
  {
    std::lock_guard<std::mutex> l(mu_);
    std::erase_if(locs, [&](const Location& loc) {
      // A damaged row must not wrap the range, nor reopen a removed segment (whose space the
      // file descriptor would then pin).
      auto seg = std::lower_bound(segments_.begin(), segments_.end(), loc.segment,
                                  [](const SegmentInfo& s, uint64_t id) { return s.id < id; });
      return seg == segments_.end() || seg->id != loc.segment || loc.segment > active_segment_ ||
             loc.offset < kSegmentHeaderSize ||
             loc.offset > UINT64_MAX - kRecordHeaderSize - uint64_t{loc.length} ||
             Holds(*buf_, loc) || FindInMemoryLocked(loc) != nullptr;
    });
  }
  std::sort(locs.begin(), locs.end(), [](const Location& a, const Location& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.offset < b.offset;
  });
  for (size_t i = 0; i < locs.size();) {
    const uint64_t segment = locs[i].segment, begin = locs[i].offset;
    uint64_t end = begin + kRecordHeaderSize + locs[i].length;
    for (++i; i < locs.size() && locs[i].segment == segment && locs[i].offset <= end + kJoinGap;
         ++i)
      end = std::max(end, locs[i].offset + kRecordHeaderSize + locs[i].length);
    auto file = ReadFile(segment);
    if (file.ok()) (*file)->WillNeed(begin, end - begin);
  }
}

Result<std::shared_ptr<File>> Journal::ReadFile(uint64_t id) const {
  std::lock_guard<std::mutex> l(files_mu_);
  auto it = read_files_.find(id);
  if (it != read_files_.end()) return it->second;
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, env_->OpenFile(SegmentPath(id), OpenMode::kReadOnly));
  // Evict the oldest segment: recent segments are read most.
  if (read_files_.size() >= kMaxReadFiles) read_files_.erase(read_files_.begin());
  std::shared_ptr<File> shared(std::move(f));
  read_files_.emplace(id, shared);
  return shared;
}

Status Journal::CorruptionAt(uint64_t segment, uint64_t offset, std::string_view what) const {
  std::string msg =
      fmt::format("journal segment {} offset {}: {}", SegmentPath(segment), offset, what);
  log::Alert("{}", msg);
  return Status::Corruption(msg);
}

uint64_t Journal::LastLsn() const {
  std::lock_guard<std::mutex> l(mu_);
  return next_lsn_ - 1;
}

uint64_t Journal::DurableLsn() const {
  std::lock_guard<std::mutex> l(mu_);
  return durable_lsn_;
}

Status Journal::error() const {
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

std::vector<uint64_t> Journal::SegmentIds() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<uint64_t> ids;
  ids.reserve(segments_.size());
  for (const SegmentInfo& s : segments_) {
    if (s.id <= disk_segment_) ids.push_back(s.id);
  }
  return ids;
}

uint64_t Journal::ActiveSegment() const {
  std::lock_guard<std::mutex> l(mu_);
  return disk_segment_;
}

Status Journal::RemoveSegments(const std::vector<uint64_t>& ids, uint64_t max_lsn,
                               std::vector<uint64_t>* removed) {
  if (opts_.read_only) return Status::NotSupported("journal opened read-only");
  std::vector<uint64_t> victims;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint64_t id : ids) {
      auto it = std::lower_bound(segments_.begin(), segments_.end(), id,
                                 [](const SegmentInfo& s, uint64_t v) { return s.id < v; });
      if (it == segments_.end() || it->id != id) continue;
      if (id >= disk_segment_ || it + 1 == segments_.end())
        return Status::InvalidArgument(
            fmt::format("{}: the active segment cannot be removed", SegmentPath(id)));
      const uint64_t last_lsn = (it + 1)->first_lsn - 1;
      if (last_lsn <= max_lsn) victims.push_back(id);  // else: not yet durable elsewhere
    }
    std::sort(victims.begin(), victims.end());
    std::erase_if(segments_, [&](const SegmentInfo& s) {
      return std::binary_search(victims.begin(), victims.end(), s.id);
    });
    std::erase_if(kept_, [&](const std::shared_ptr<const Chunk>& c) {
      const bool gone = std::binary_search(victims.begin(), victims.end(), c->segment);
      if (gone) kept_bytes_ -= c->data.capacity();
      return gone;
    });
  }
  {
    std::lock_guard<std::mutex> l(files_mu_);
    for (uint64_t id : victims) read_files_.erase(id);  // readers holding it may finish
  }
  Status first;
  for (uint64_t id : victims) {
    Status s = env_->RemoveFile(SegmentPath(id));
    if (!s.ok() && first.ok()) first = s;
    if (s.ok() && removed != nullptr) removed->push_back(id);
  }
  if (!victims.empty()) {
    Status s = env_->SyncDir(opts_.dir);
    if (first.ok()) first = s;
    log::Info("journal: removed {} reclaimed segments ({:x}..{:x})", victims.size(),
              victims.front(), victims.back());
  }
  return first;
}

std::string Journal::SegmentPath(uint64_t id) const {
  return JoinPath(opts_.dir, fmt::format("{:016x}{}", id, kSegmentSuffix));
}

}  // namespace strata::journal
