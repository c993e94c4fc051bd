// The write path: open handles, per-inode dirty chunk buffers (lazy ones for small rewrites),
// chunk and patch sealing, flush, fsync and release. Reads are in read_path.cc.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cstring>

#include "base/coding.h"
#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/chunk_bytes.h"
#include "fs/chunk_cache.h"
#include "fs/chunk_memory.h"
#include "fs/filesystem.h"
#include "fs/records.h"
#include "fs/tiering_internal.h"
#include "fs/worker_pool.h"
#include "journal/journal.h"
#include "meta/meta_store.h"
#include "meta/ops.h"

namespace strata::fs {
namespace {

// Past this a file offset is EFBIG: 2^44 chunks is more than any tier will hold.
constexpr uint64_t kMaxFileSize = uint64_t{1} << 56;
// Per-file cap on chunks waiting for or in the sealing pool.
constexpr int kMaxSealingPerFile = 16;
// A lazy chunk with more written ranges than this is read and made whole at once.
constexpr size_t kMaxRanges = 64;
// Patches a chunk may carry; the next rewrite after these seals it whole again.
constexpr uint32_t kMaxPatches = 8;

}  // namespace

std::shared_ptr<Filesystem::OpenInode> Filesystem::GetOpen(uint64_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = open_.find(ino);
  return it == open_.end() ? nullptr : it->second;
}

Result<uint64_t> Filesystem::Open(uint64_t ino, int flags) {
  bool writable = (flags & O_ACCMODE) != O_RDONLY;
  uint64_t fh;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
    if (!row) return Status::Posix(ENOENT);
    if (S_ISDIR(row->mode) && writable) return Status::Posix(EISDIR);
    if (writable) RETURN_IF_ERROR(CheckWritable());
    auto& f = open_[ino];
    if (!f) {
      f = std::make_shared<OpenInode>();
      f->size = row->size;
      f->persisted_size = row->size;
      f->mtime = row->mtime;
    }
    f->open_count++;
    if (writable) f->writers++;
    fh = next_fh_++;
    handles_[fh] = Handle{ino, flags};
  }
  if ((flags & O_TRUNC) && writable) {
    SetAttrRequest req;
    req.size = 0;
    auto r = SetAttr(ino, req, Caller{});
    if (!r.ok()) {
      Release(ino, fh).IgnoreError();
      return r.status();
    }
  }
  return fh;
}

Result<std::pair<Attr, uint64_t>> Filesystem::Create(uint64_t parent, const std::string& name,
                                                     uint32_t mode, int flags,
                                                     const Caller& caller) {
  Result<Attr> a = Status::Posix(EIO);
  {
    std::lock_guard<std::mutex> l(mu_);
    a = CreateNode(parent, name, S_IFREG | (mode & 07777), 0, {}, caller);
  }
  if (!a.ok()) {
    if (a.status().ToErrno() != EEXIST || (flags & O_EXCL)) return a.status();
    a = Lookup(parent, name);  // lost a race with another creator: open the existing file
    if (!a.ok()) return a.status();
    if (S_ISDIR(a->mode)) {
      Forget(a->ino, 1);
      return Status::Posix(EISDIR);
    }
  } else {
    flags &= ~O_TRUNC;
  }
  auto fh = Open(a->ino, flags);
  if (!fh.ok()) {
    Forget(a->ino, 1);
    return fh.status();
  }
  ASSIGN_OR_RETURN(Attr now, GetAttr(a->ino));
  return std::make_pair(now, *fh);
}

void Filesystem::DirtyChunk::Wrote(uint32_t b, uint32_t e) {
  if (!lazy) return;
  AddRange(&ranges, b, e);
  if (ranges.front().first == 0 && ranges.front().second >= base_len) {
    lazy = false;  // everything the stored chunk had is written over
    ranges.clear();
    base_len = 0;
  }
}

void Filesystem::DirtyChunk::CutAt(uint64_t keep) {
  if (keep < data.size()) std::fill(data.begin() + static_cast<ptrdiff_t>(keep), data.end(), '\0');
  if (!lazy) return;
  base_len = static_cast<uint32_t>(std::min<uint64_t>(base_len, keep));
  std::erase_if(ranges, [&](const auto& r) { return r.first >= keep; });
  if (!ranges.empty() && ranges.back().second > keep)
    ranges.back().second = static_cast<uint32_t>(keep);
  if (base_len == 0) {
    lazy = false;
    ranges.clear();
  }
}

Result<Filesystem::Stored> Filesystem::WhereStored(uint64_t ino, uint64_t index) {
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(auto row, meta_->GetChunk(ino, index));
  if (!row) return Stored::kNone;
  if (row->logical_len != sb_.chunk_size || row->patches >= kMaxPatches) return Stored::kWhole;
  if (OnColdTierLocked(row->segment)) return Stored::kWhole;
  if (row->patches > 0) {
    ASSIGN_OR_RETURN(auto patches, meta_->ListPatches(ino, index));
    for (const auto& p : patches)
      if (OnColdTierLocked(p.segment)) return Stored::kWhole;
  }
  return Stored::kPatchable;
}

Status Filesystem::Materialize(uint64_t ino, uint64_t index, DirtyChunk* c, bool allow_cold) {
  if (!c->lazy) return Status::OK();
  Ranges gaps;
  CollectGaps(c->ranges, c->base_len, 0, c->base_len, &gaps);
  if (!gaps.empty()) {
    std::string base(c->base_len, '\0');
    bool blocked = false;
    RETURN_IF_ERROR(ReadStoredChunk(ino, index, 0, c->base_len, base.data(),
                                    allow_cold ? Reach::kAny : Reach::kHot,
                                    allow_cold ? nullptr : &blocked, nullptr));
    for (const auto& [b, e] : gaps) std::memcpy(c->data.data() + b, base.data() + b, e - b);
  }
  c->lazy = false;
  c->ranges.clear();
  c->base_len = 0;
  return Status::OK();
}

Result<size_t> Filesystem::Write(uint64_t ino, uint64_t fh, uint64_t offset,
                                 std::string_view data) {
  int flags = 0;
  std::shared_ptr<OpenInode> f;
  {
    std::lock_guard<std::mutex> l(mu_);
    RETURN_IF_ERROR(CheckWritable());
    auto h = handles_.find(fh);
    if (h == handles_.end() || h->second.ino != ino) return Status::Posix(EBADF);
    flags = h->second.flags;
    auto it = open_.find(ino);
    if (it == open_.end()) return Status::Posix(EBADF);
    f = it->second;
  }
  const uint64_t cs = sb_.chunk_size;
  std::unique_lock<std::mutex> fl(f->mu);
  if (flags & O_APPEND) offset = f->size;
  if (data.empty()) return size_t{0};
  if (offset + data.size() > kMaxFileSize || offset + data.size() < offset)
    return Status::Posix(EFBIG);
  // Before anything changes: a refused write leaves the file as it was. Counted as at least a
  // chunk: a small write into a stored chunk may seal all of it again.
  RETURN_IF_ERROR(AdmitNewBytes(std::max<uint64_t>(data.size(), cs)));
  if (null_data_) {  // a benchmark of FUSE alone: the size moves, the bytes go nowhere
    if (offset + data.size() > f->size) f->size = offset + data.size();
    f->mtime = Now();
    f->null_written = true;
    return data.size();
  }
  size_t pos = 0;
  std::vector<uint64_t> full;
  while (pos < data.size()) {
    uint64_t at = offset + pos;
    uint64_t idx = at / cs, in = at % cs;
    size_t part = static_cast<size_t>(std::min<uint64_t>(cs - in, data.size() - pos));
    auto it = f->dirty.find(idx);
    if (it == f->dirty.end()) {
      DirtyChunk c;
      const uint64_t start = idx * cs;
      const bool whole = in == 0 && part == cs;
      if (whole) {
        // All of it is written below: nothing to keep, nothing to zero (a sequential writer's
        // zero fill of every chunk was 3-4% of its CPU).
        c.data = memory_->TakeToOverwrite(cs);
      } else if (auto sit = f->sealing.find(idx); sit != f->sealing.end()) {
        c = *sit->second;  // on from the version being sealed (lazy or whole)
        c.data.resize(cs);
      } else {
        c.data = memory_->Take(cs);
        const uint64_t keep = f->size > start ? std::min(cs, f->size - start) : 0;
        if (keep > 0 && start < f->persisted_size) {
          // A partial write over stored bytes. Over a whole chunk on the hot tier with room
          // for a patch they are not read: the sealer journals just the written ranges (and
          // if they grow past half the chunk, reads it then, or patches it anyway if that
          // read fails). Any other chunk is read here, so that a damaged chunk or a tier that
          // is down fails this write, not a later seal.
          ASSIGN_OR_RETURN(Stored where, WhereStored(ino, idx));
          if (where == Stored::kPatchable && keep == cs) {
            c.lazy = true;
            c.base_len = static_cast<uint32_t>(keep);
          } else if (where != Stored::kNone) {
            RETURN_IF_ERROR(
                ReadStoredChunk(ino, idx, 0, keep, c.data.data(), Reach::kAny, nullptr, nullptr));
          }
        }
      }
      // Bytes past the current size are zeros even if an older, longer chunk had data.
      if (!whole && f->size < start + cs) c.CutAt(f->size > start ? f->size - start : 0);
      c.since = Now();
      it = f->dirty.emplace(idx, std::move(c)).first;
      f->dirty_bytes += cs;
      dirty_bytes_ += static_cast<int64_t>(cs);
    }
    DirtyChunk& c = it->second;
    // Too many separate ranges: read the chunk and make the buffer whole first (a write adds
    // at most one range per chunk), so that a failed read leaves no byte of this write behind.
    if (c.lazy && c.ranges.size() >= kMaxRanges) RETURN_IF_ERROR(Materialize(ino, idx, &c));
    std::memcpy(c.data.data() + in, data.data() + pos, part);
    c.Wrote(static_cast<uint32_t>(in), static_cast<uint32_t>(in + part));
    // A write that reaches the chunk's end seals it, as a sequential writer has filled it. A
    // lazy buffer still has unwritten gaps: that is a random writer, whose next write may land
    // in the same chunk, so it stays buffered (one patch per chunk at the flush, not one per
    // write that happens to touch the last block).
    if (in + part == cs && !c.lazy) full.push_back(idx);
    pos += part;
  }
  if (offset + data.size() > f->size) f->size = offset + data.size();
  f->mtime = Now();
  for (uint64_t idx : full) RETURN_IF_ERROR(SubmitChunk(ino, f, fl, idx));
  // Over the dirty limit (all files): hand this file's oldest dirty chunks, not the ones this
  // write touched, to the sealers until 1/32 of the limit is free again: a writer crossing it
  // waits for a few dozen seals at most (SubmitChunk bounds the chunks in flight per file).
  // Under it, a chunk stays buffered until it is full, flushed, or older than dirty_expire:
  // random writes to a file then cost one seal per chunk, not one per write.
  const auto limit = static_cast<int64_t>(config_.dirty_limit_bytes);
  if (dirty_bytes_.load() > limit) {
    const uint64_t first = offset / cs, last = (offset + data.size() - 1) / cs;
    std::vector<std::pair<int64_t, uint64_t>> by_age;  // (since, index)
    by_age.reserve(f->dirty.size());
    for (const auto& [idx, c] : f->dirty)
      if (idx < first || idx > last) by_age.emplace_back(c.since, idx);
    std::sort(by_age.begin(), by_age.end());
    for (const auto& [since, idx] : by_age) {
      if (dirty_bytes_.load() <= limit - limit / 32) break;
      RETURN_IF_ERROR(SubmitChunk(ino, f, fl, idx));
    }
  }
  return data.size();
}

Status Filesystem::SubmitChunk(uint64_t ino, const std::shared_ptr<OpenInode>& f,
                               std::unique_lock<std::mutex>& lk, uint64_t index) {
  // One version of a chunk in flight at a time, and a bounded backlog per file.
  f->cv.wait(lk, [&] { return !f->sealing.count(index) && f->inflight < kMaxSealingPerFile; });
  auto it = f->dirty.find(index);
  if (it == f->dirty.end()) return Status::OK();  // submitted by another thread meanwhile
  const uint64_t cs = sb_.chunk_size;
  DirtyChunk chunk = std::move(it->second);
  f->dirty.erase(it);
  f->dirty_bytes -= cs;
  dirty_bytes_ -= static_cast<int64_t>(cs);
  uint64_t start = index * cs;
  if (start >= f->size) {  // cut off by a truncate
    memory_->Give(std::move(chunk.data));
    return Status::OK();
  }
  uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(cs, f->size - start));
  uint64_t file_size = std::max<uint64_t>(f->persisted_size, start + len);
  f->persisted_size = file_size;
  int64_t mtime = f->mtime;
  chunk.data.resize(len);
  // The buffer goes on into the decoded-chunk cache, which counts size(): a small file's last
  // chunk must not keep a whole chunk's allocation there.
  if (len < cs / 2) {
    std::string small(chunk.data);
    memory_->Give(std::move(chunk.data));
    chunk.data = std::move(small);
  }
  // The buffer comes back for reuse once the seal, the cache and any reader are done with it.
  std::shared_ptr<const DirtyChunk> data =
      memory_->Share(std::move(chunk), [](DirtyChunk& c) -> std::string& { return c.data; });
  // Not started (tools and tests that never mount): seal on this thread.
  if (!sealers_) return SealAndStore(ino, index, len, file_size, mtime, data);
  f->sealing[index] = data;
  f->inflight++;
  sealers_->Submit([this, ino, f, index, len, file_size, mtime, data] {
    Status s = SealAndStore(ino, index, len, file_size, mtime, data);
    std::lock_guard<std::mutex> fl(f->mu);
    auto sit = f->sealing.find(index);
    if (sit != f->sealing.end() && sit->second == data) f->sealing.erase(sit);
    f->inflight--;
    if (!s.ok() && f->async_error.ok()) f->async_error = s;
    f->cv.notify_all();
  });
  return Status::OK();
}

Status Filesystem::SealAndStore(uint64_t ino, uint64_t index, uint32_t len, uint64_t file_size,
                                int64_t mtime, std::shared_ptr<const DirtyChunk> chunk) {
  const uint32_t cs = sb_.chunk_size;
  ChunkHeader h;
  h.ino = ino;
  h.index = index;
  h.logical_len = len;
  h.file_size = file_size;
  h.mtime = mtime;
  if (chunk->lazy) {
    uint64_t written = 0;
    for (const auto& [b, e] : chunk->ranges) written += e - b;
    // Only over a whole stored chunk: one a truncate cut short is rewritten whole, so that no
    // patch can bring its cut-off bytes back. Rewriting most of a chunk rewrites it whole.
    bool can_patch = false;
    uint32_t patches = 0;
    if (len == cs && chunk->base_len == cs) {
      std::lock_guard<std::mutex> l(mu_);
      ASSIGN_OR_RETURN(auto row, meta_->GetChunk(ino, index));
      can_patch = row && row->logical_len == cs;
      patches = row ? row->patches : 0;
    }
    h.patch = can_patch && written <= cs / 2 && patches < kMaxPatches;
    if (!h.patch) {
      auto whole = std::make_shared<DirtyChunk>(*chunk);
      // Where a patch would do, a sealer does not wait on a cold tier (a migration may have
      // moved the chunk since the write), and a failed read does not lose the write.
      Status s = Materialize(ino, index, whole.get(), /*allow_cold=*/!can_patch);
      if (s.ok()) {
        chunk = std::move(whole);
      } else if (can_patch) {
        log::Warn(
            "filesystem {}: inode {} chunk {}: the stored chunk was not read ({}); the rewrite "
            "is journaled as a patch over it",
            sb_.name, ino, index, s.ToString());
        h.patch = true;
      } else {
        return s;
      }
    }
  }
  std::string patch;
  if (h.patch) patch = EncodePatch(chunk->ranges, chunk->data);
  std::string_view body = h.patch ? std::string_view(patch) : std::string_view(chunk->data);
  body = body.substr(0, h.patch ? body.size() : len);
  std::string compressed;
  if (sb_.compression_level > 0 &&
      CompressBody(sb_.compression_level, body, &compressed, &h.planes)) {
    body = compressed;
    h.compressed = true;
  }
  std::string payload;
  RETURN_IF_ERROR(codec_->SealChunk(&h, body, &payload));
  {
    std::lock_guard<std::mutex> l(mu_);
    RETURN_IF_ERROR(CheckWritable());
    uint64_t lsn;
    journal::Location loc;
    RETURN_IF_ERROR(journal_->Append(journal::RecordType::kData, payload, &lsn, &loc));
    RETURN_IF_ERROR(ApplyLocked(ChunkOp(h, loc), lsn));
  }
  // A whole chunk goes into the decoded-chunk cache as it is: the buffer itself, no copy. A
  // patch's chunk is merged when it is next read.
  if (!h.patch) cache_->Put(ino, index, h.version, {chunk, &chunk->data});
  return Status::OK();
}

Status Filesystem::Drain(OpenInode* f, std::unique_lock<std::mutex>& lk) {
  f->cv.wait(lk, [&] { return f->inflight == 0; });
  Status s = f->async_error;
  f->async_error = Status::OK();
  return s;
}

Status Filesystem::FlushAll(uint64_t ino, const std::shared_ptr<OpenInode>& f,
                            std::unique_lock<std::mutex>& lk) {
  if (null_data_ && f->null_written) {
    // No chunk op carries size and mtime: record them, at flush, close and fsync only (lock
    // order: the inode's mu, then mu_).
    meta::Op op;
    op.kind = meta::OpKind::kSetAttr;
    op.ino = ino;
    op.mask = meta::kSetMtime | meta::kSetCtime;
    op.mtime = f->mtime;
    op.ctime = Now();
    if (f->size > f->persisted_size) {
      op.mask |= meta::kSetSize;
      op.size = f->size;
    }
    std::lock_guard<std::mutex> l(mu_);
    RETURN_IF_ERROR(LogLocked(op));
    if (op.mask & meta::kSetSize) f->persisted_size = op.size;
    f->null_written = false;
  }
  while (!f->dirty.empty()) RETURN_IF_ERROR(SubmitChunk(ino, f, lk, f->dirty.begin()->first));
  return Drain(f.get(), lk);
}

Status Filesystem::FlushOlderThan(int64_t deadline) {
  std::vector<std::pair<uint64_t, std::shared_ptr<OpenInode>>> open;
  {
    std::lock_guard<std::mutex> l(mu_);
    open.assign(open_.begin(), open_.end());
  }
  for (auto& [ino, f] : open) {
    std::unique_lock<std::mutex> fl(f->mu);
    std::vector<uint64_t> old;
    for (auto& [idx, c] : f->dirty)
      if (c.since <= deadline) old.push_back(idx);
    for (uint64_t idx : old) RETURN_IF_ERROR(SubmitChunk(ino, f, fl, idx));
  }
  return Status::OK();
}

Status Filesystem::Flush(uint64_t ino, uint64_t fh) {
  auto f = GetOpen(ino);
  if (!f) return Status::OK();
  std::unique_lock<std::mutex> fl(f->mu);
  return FlushAll(ino, f, fl);
}

Status Filesystem::Release(uint64_t ino, uint64_t fh) {
  Status s;
  auto f = GetOpen(ino);
  if (f) {
    std::unique_lock<std::mutex> fl(f->mu);
    s = FlushAll(ino, f, fl);
  }
  std::lock_guard<std::mutex> l(mu_);
  auto h = handles_.find(fh);
  const bool writable = h != handles_.end() && (h->second.flags & O_ACCMODE) != O_RDONLY;
  if (h != handles_.end()) handles_.erase(h);
  auto it = open_.find(ino);
  if (it != open_.end() && writable) it->second->writers--;
  if (it != open_.end() && --it->second->open_count == 0) {
    open_.erase(it);
    if (!read_only_ && CheckWritable().ok()) {
      Status d = MaybeDeleteLocked(ino);
      if (s.ok()) s = d;
    }
  }
  return s;
}

Status Filesystem::Fsync(uint64_t ino, bool datasync) {
  if (read_only_) return Status::OK();
  if (auto f = GetOpen(ino)) {
    std::unique_lock<std::mutex> fl(f->mu);
    RETURN_IF_ERROR(FlushAll(ino, f, fl));
  }
  return journal_->Sync(journal_->LastLsn());
}

Status Filesystem::Fallocate(uint64_t ino, uint64_t fh, int mode, uint64_t offset,
                             uint64_t length) {
  if (mode & ~FALLOC_FL_KEEP_SIZE) return Status::Posix(EOPNOTSUPP);
  if (length == 0) return Status::Posix(EINVAL);
  if (offset + length > kMaxFileSize || offset + length < offset) return Status::Posix(EFBIG);
  if (mode & FALLOC_FL_KEEP_SIZE) return Status::OK();  // nothing to reserve: chunks are sealed
  auto f = GetOpen(ino);
  uint64_t size;
  if (f) {
    size = f->size;
  } else {
    ASSIGN_OR_RETURN(Attr a, GetAttr(ino));
    size = a.size;
  }
  if (offset + length <= size) return Status::OK();
  // Nothing is allocated (holes cost nothing), but space the disk does not have is refused,
  // as a filesystem that allocates would.
  RETURN_IF_ERROR(AdmitNewBytes(offset + length - std::max(offset, size)));
  SetAttrRequest req;
  req.size = offset + length;
  req.grow_only = true;
  auto r = SetAttr(ino, req, Caller{});
  return r.status();
}

}  // namespace strata::fs
