// The read path: chunk records decoded and merged with their patches, the decoded-chunk cache,
// reads that combine buffered and stored bytes, and atime on read.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/logging.h"
#include "fs/chunk_bytes.h"
#include "fs/chunk_cache.h"
#include "fs/chunk_memory.h"
#include "fs/filesystem.h"
#include "fs/records.h"
#include "fs/tiering_internal.h"
#include "fs/worker_pool.h"
#include "meta/meta_store.h"
#include "meta/ops.h"

namespace strata::fs {
namespace {

// relatime's period: a read moves an atime at least this old.
constexpr int64_t kRelatimeNs = 86400ll * 1000000000;

}  // namespace

Status Filesystem::DecodeRecord(uint64_t ino, const meta::ChunkRow& c, bool allow_cold,
                                bool* blocked, ChunkHeader* got, std::string* plain) {
  std::string payload;
  Status s = ReadChunkPayload(ino, c, allow_cold, blocked, &payload);
  if (blocked != nullptr && *blocked) return s;
  ChunkHeader expect;
  expect.ino = ino;
  expect.index = c.index;
  expect.version = c.version;
  std::string body;
  if (s.ok()) s = codec_->OpenChunk(payload, expect, got, &body);
  if (s.ok()) {
    if (got->compressed) {
      // A patch's plaintext (its range table and bytes) is at most a chunk and a table; its
      // length is in the frames' headers.
      const uint64_t len = got->patch ? CompressedBodyLength(body) : got->logical_len;
      s = len > 2 * uint64_t{sb_.chunk_size}
              ? Status::Corruption("chunk record is larger than a chunk")
              : DecompressBody(body, got->planes, len, plain);
    } else if (!got->patch && body.size() != got->logical_len) {
      s = Status::Corruption("raw chunk length differs from its recorded length");
    } else if (plain->capacity() >= body.size()) {
      plain->assign(body);  // keeps the caller's (reused) buffer
    } else {
      *plain = std::move(body);
    }
  }
  if (!s.ok() && s.IsCorruption())
    log::Alert(
        "filesystem {}: inode {} chunk {} (segment {:x} offset {}{}) failed its integrity check: "
        "{}",
        sb_.name, ino, c.index, c.segment, c.offset,
        c.logical_len == 0 ? fmt::format(", patch {}", c.patches) : "", s.message());
  return s;
}

Result<std::shared_ptr<const std::string>> Filesystem::LoadChunk(
    uint64_t ino, const meta::ChunkRow& c, const std::vector<meta::ChunkRow>& patches, Reach reach,
    bool* blocked) {
  // Cached by the version of the last record that shaped it: every record's is unique.
  const uint64_t top = patches.empty() ? c.version : patches.back().version;
  if (auto hit = cache_->Get(ino, c.index, top)) return hit;
  if (reach == Reach::kMemory) {
    if (blocked != nullptr) *blocked = true;
    return Status::Unavailable("decoding must not run here");
  }
  const bool allow_cold = reach == Reach::kAny;
  std::shared_ptr<const std::string> base = cache_->Get(ino, c.index, c.version);
  // A chunk of half the chunk size or more is decoded into a reused buffer (chunk_memory.h);
  // a small file's is not, as the cache counts the bytes it holds, not the buffer's.
  const bool pooled = uint64_t{c.logical_len} * 2 >= sb_.chunk_size;
  if (base == nullptr) {
    ChunkHeader got;
    // Not zeroed: DecodeRecord sets its size to what it decodes and writes every byte of it
    // (or fails, and the buffer goes back unread).
    std::string data = pooled ? memory_->TakeToOverwrite(c.logical_len) : std::string();
    Status s = DecodeRecord(ino, c, allow_cold, blocked, &got, &data);
    if (s.ok() && got.patch) s = Status::Corruption("a patch record where a chunk was expected");
    if (!s.ok()) {
      // Not decoded (often just blocked on a cold tier, to be read again off this thread).
      if (pooled) memory_->Give(std::move(data));
      return s;
    }
    base = pooled ? memory_->Share(std::move(data))
                  : std::make_shared<const std::string>(std::move(data));
    cache_->Put(ino, c.index, c.version, base);
  }
  if (patches.empty()) return base;
  std::string merged = memory_->Take(0);  // a patched chunk is a whole one
  merged.assign(*base);
  std::string plain;
  for (const meta::ChunkRow& p : patches) {
    ChunkHeader got;
    Status s = DecodeRecord(ino, p, allow_cold, blocked, &got, &plain);
    if (s.ok()) {
      s = got.patch ? ApplyPatch(plain, got.logical_len, &merged)
                    : Status::Corruption("a chunk record where a patch was expected");
      if (!s.ok())
        log::Alert("filesystem {}: inode {} chunk {} patch {}: {}", sb_.name, ino, c.index,
                   p.patches, s.message());
    }
    if (!s.ok()) {
      memory_->Give(std::move(merged));
      return s;
    }
  }
  std::shared_ptr<const std::string> out = memory_->Share(std::move(merged));
  cache_->Put(ino, c.index, top, out);
  return out;
}

Status Filesystem::ReadStoredChunk(uint64_t ino, uint64_t index, uint64_t off, size_t n, char* buf,
                                   Reach reach, bool* blocked, bool* cold) {
  struct Found {
    std::optional<meta::ChunkRow> row;
    std::vector<meta::ChunkRow> patches;
  };
  auto look = [&](Found* st) -> Status {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(st->row, meta_->GetChunk(ino, index));
    if (st->row && st->row->patches > 0) {
      ASSIGN_OR_RETURN(st->patches, meta_->ListPatches(ino, index));
    }
    if (cold != nullptr && st->row) {
      *cold = *cold || OnColdTierLocked(st->row->segment);
      for (const auto& p : st->patches) *cold = *cold || OnColdTierLocked(p.segment);
    }
    return Status::OK();
  };
  auto same_place = [](const meta::ChunkRow& a, const meta::ChunkRow& b) {
    return a.segment == b.segment && a.offset == b.offset && a.version == b.version;
  };
  Found st;
  RETURN_IF_ERROR(look(&st));
  std::shared_ptr<const std::string> data;
  for (int attempt = 0; st.row; ++attempt) {
    auto r = LoadChunk(ino, *st.row, st.patches, reach, blocked);
    if (r.ok()) {
      data = std::move(r).value();
      break;
    }
    if (blocked != nullptr && *blocked) return r.status();
    // A migration pass may have moved the chunk (or a patch) and freed the segment it was
    // read from between the lookup and the read: look again, and read it where it is now.
    Found now;
    RETURN_IF_ERROR(look(&now));
    bool moved =
        !now.row || !same_place(*now.row, *st.row) || now.patches.size() != st.patches.size();
    for (size_t i = 0; !moved && i < now.patches.size(); i++)
      moved = !same_place(now.patches[i], st.patches[i]);
    if (!moved || attempt == 3) return r.status();
    st = std::move(now);
  }
  if (!st.row) {
    std::memset(buf, 0, n);
    return Status::OK();
  }
  uint64_t valid = std::min<uint64_t>(st.row->logical_len, data->size());
  size_t have = off < valid ? static_cast<size_t>(std::min<uint64_t>(n, valid - off)) : 0;
  if (have > 0) std::memcpy(buf, data->data() + off, have);
  if (have < n) std::memset(buf + have, 0, n - have);
  return Status::OK();
}

Result<size_t> Filesystem::Read(uint64_t ino, uint64_t fh, uint64_t offset, size_t size,
                                char* buf) {
  return ReadImpl(ino, fh, offset, size, buf, Reach::kAny, nullptr);
}

void Filesystem::ReadAsync(uint64_t ino, uint64_t fh, uint64_t offset, size_t size, ReadDone done) {
  ReadWithin(hot_readers_ ? Reach::kMemory : Reach::kHot, ino, fh, offset, size, std::move(done));
}

void Filesystem::ReadWithin(Reach reach, uint64_t ino, uint64_t fh, uint64_t offset, size_t size,
                            ReadDone done) {
  if (reach == Reach::kHot && !cold_readers_) reach = Reach::kAny;  // not started
  // One buffer per calling thread: a fresh allocation per hot read costs page faults.
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  bool blocked = false;
  auto n = ReadImpl(ino, fh, offset, size, buf.data(), reach, &blocked);
  if (!blocked) {
    done(n.status(), buf.data(), n.ok() ? *n : 0);
    return;
  }
  if (reach == Reach::kHot) {
    cold_readers_->Submit([this, ino, fh, offset, size, done = std::move(done)]() mutable {
      ReadWithin(Reach::kAny, ino, fh, offset, size, std::move(done));
    });
    return;
  }
  // Records to decode, on a FUSE worker. While fewer reads than cores are decoding, this one
  // decodes here at once: a hop to another thread would only add a wake-up. Beyond that it
  // joins the hot readers' queue, so that the cores finish reads in the order they came.
  // Decoding every read on the FUSE workers let all of them share the cores at once, so none
  // finished soon, and the cheap requests (lookups, opens) waited behind them
  // (bench/README.md, item 16). A read with records on a cold tier never joins that queue: it
  // goes on here as before, to the read cache or the cold readers.
  struct Counted {  // one of hot_reads_ until this read is answered or handed on
    std::atomic<unsigned>* n;
    ~Counted() { n->fetch_sub(1); }
  };
  if (hot_reads_.fetch_add(1) < hot_inline_ || !HintHotRecords(ino, offset, size)) {
    Counted counted{&hot_reads_};
    ReadWithin(Reach::kHot, ino, fh, offset, size, std::move(done));
    return;
  }
  hot_readers_->Submit([this, ino, fh, offset, size, done = std::move(done)]() mutable {
    Counted counted{&hot_reads_};
    ReadWithin(Reach::kHot, ino, fh, offset, size, std::move(done));
  });
}

bool Filesystem::HintHotRecords(uint64_t ino, uint64_t offset, size_t size) {
  const uint64_t cs = sb_.chunk_size;
  std::vector<journal::Location> want;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint64_t idx = offset / cs; size > 0 && idx <= (offset + size - 1) / cs; idx++) {
      auto row = meta_->GetChunk(ino, idx);
      if (!row.ok() || !*row) continue;
      std::vector<meta::ChunkRow> records{**row};
      if ((*row)->patches > 0) {
        auto patches = meta_->ListPatches(ino, idx);
        if (patches.ok()) records.insert(records.end(), patches->begin(), patches->end());
      }
      for (const meta::ChunkRow& c : records) {
        if (OnColdTierLocked(c.segment)) return false;
        if (!internal::IsPlacement(c.segment)) want.push_back({c.segment, c.offset, c.stored_len});
      }
    }
  }
  journal_->WillRead(std::move(want));
  return true;
}

Result<size_t> Filesystem::ReadImpl(uint64_t ino, uint64_t fh, uint64_t offset, size_t size,
                                    char* buf, Reach reach, bool* blocked) {
  auto f = GetOpen(ino);
  if (!f) return Status::Posix(EBADF);
  const uint64_t cs = sb_.chunk_size;
  // A part of the read served by the stored chunk: all of it, or (under a lazy buffer) the
  // gaps between what was written since.
  struct Part {
    uint64_t index, off;
    size_t n, pos;
    Ranges gaps;  // chunk offsets; empty: the whole part
  };
  std::vector<Part> stored;
  size_t n;
  bool first = false;  // the first read since the open: AfterRead sees to atime
  {
    std::lock_guard<std::mutex> fl(f->mu);
    first = !f->accessed;
    uint64_t fsize = f->size;
    if (offset >= fsize) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(size, fsize - offset));
    if (null_data_) {
      std::memset(buf, 0, n);
      return n;
    }
    size_t pos = 0;
    while (pos < n) {
      uint64_t at = offset + pos;
      uint64_t idx = at / cs, in = at % cs;
      size_t part = static_cast<size_t>(std::min<uint64_t>(cs - in, n - pos));
      const DirtyChunk* c = nullptr;
      if (auto it = f->dirty.find(idx); it != f->dirty.end()) {
        c = &it->second;
      } else if (auto sit = f->sealing.find(idx); sit != f->sealing.end()) {
        c = sit->second.get();
      }
      if (c != nullptr) {
        const std::string& d = c->data;
        size_t have = in < d.size() ? std::min(part, static_cast<size_t>(d.size() - in)) : 0;
        if (have > 0) std::memcpy(buf + pos, d.data() + in, have);
        std::memset(buf + pos + have, 0, part - have);
        if (c->lazy) {
          Part p{idx, in, part, pos, {}};
          CollectGaps(c->ranges, c->base_len, static_cast<uint32_t>(in),
                      static_cast<uint32_t>(in + part), &p.gaps);
          if (!p.gaps.empty()) stored.push_back(std::move(p));
        }
      } else {
        stored.push_back(Part{idx, in, part, pos, {}});
      }
      pos += part;
    }
  }
  bool cold = false;  // some of it is on a cold tier
  // Parts served whole by their stored chunk (a 512 KiB READ is 8 chunks of 64 KiB) are decoded
  // in parallel when fewer reads than cores are decoding: one file's read then uses every core.
  // Under more reads every core has one already, and handing chunks around only adds switches
  // (32 PACS readers lost up to 11% with it). Only for a read that decodes hot records
  // (Reach::kHot, on a FUSE worker or a hot reader): a read that may wait on a cold tier would
  // hold a helper for the tier's timeout.
  const auto wholes =
      std::count_if(stored.begin(), stored.end(), [](const Part& p) { return p.gaps.empty(); });
  struct Decoding {  // counts the reads that could use the helpers, while they decode
    std::atomic<unsigned>* n;
    unsigned before;
    explicit Decoding(std::atomic<unsigned>* c) : n(c), before(c ? c->fetch_add(1) : 0) {}
    ~Decoding() {
      if (n) n->fetch_sub(1);
    }
  } decoding(wholes >= 2 && reach == Reach::kHot && read_helpers_ ? &reads_decoding_ : nullptr);
  if (decoding.n != nullptr && decoding.before < read_helpers_->threads()) {
    struct Outcome {
      Status s;
      bool blocked = false, cold = false;
    };
    std::vector<Outcome> out(stored.size());
    read_helpers_->RunWithHelp(stored.size(), [&](size_t i) {
      const Part& p = stored[i];
      if (!p.gaps.empty()) return;  // below, on this thread
      out[i].s = ReadStoredChunk(ino, p.index, p.off, p.n, buf + p.pos, reach,
                                 blocked != nullptr ? &out[i].blocked : nullptr, &out[i].cold);
    });
    for (const Outcome& o : out) {
      cold = cold || o.cold;
      if (o.blocked) {
        *blocked = true;
        return o.s;
      }
    }
    for (const Outcome& o : out) RETURN_IF_ERROR(o.s);
  } else {
    for (const Part& p : stored) {
      if (!p.gaps.empty()) continue;
      RETURN_IF_ERROR(
          ReadStoredChunk(ino, p.index, p.off, p.n, buf + p.pos, reach, blocked, &cold));
    }
  }
  for (const Part& p : stored) {
    if (p.gaps.empty()) continue;
    // The buffer's bytes are in place; fill the gaps from the chunk as stored. A seal that
    // lands meanwhile changes only the written ranges, not these.
    std::string whole(p.n, '\0');
    RETURN_IF_ERROR(ReadStoredChunk(ino, p.index, p.off, p.n, whole.data(), reach, blocked, &cold));
    for (const auto& [b, e] : p.gaps)
      std::memcpy(buf + p.pos + (b - p.off), &whole[b - p.off], e - b);
  }
  // Most reads are neither: they take no further lock.
  if (!read_only_ && (first || cold)) AfterRead(ino, f.get(), cold);
  return n;
}

void Filesystem::AfterRead(uint64_t ino, OpenInode* f, bool cold) {
  bool first;
  {
    std::lock_guard<std::mutex> fl(f->mu);
    first = !f->accessed;  // decided here: concurrent first reads update atime once
    f->accessed = true;
    // One recall candidate per open, not one per FUSE read of a large cold file.
    cold = cold && !f->cold_seen;
    f->cold_seen = f->cold_seen || cold;
  }
  if (!first && !cold) return;
  std::lock_guard<std::mutex> l(mu_);
  if (first) {
    auto row = meta_->GetInode(ino);
    if (!row.ok() || !*row) return;
    const meta::InodeRow& r = **row;
    f->atime_before = r.atime;
    const int64_t now = Now();
    // relatime: a read moves atime only when it is not newer than the last change, or is a
    // day old. Enough for not_accessed_for, and at most one record per file per day.
    if (r.atime <= r.mtime || r.atime <= r.ctime || now - r.atime >= kRelatimeNs) {
      meta::Op op;
      op.kind = meta::OpKind::kSetAttr;
      op.ino = ino;
      op.mask = meta::kSetAtime;
      op.atime = now;
      Status s = LogLocked(op);  // durable with the next commit, like any unsynced change
      if (!s.ok()) log::Warn("filesystem {}: atime of inode {}: {}", sb_.name, ino, s.ToString());
    }
  }
  if (cold && f->atime_before >= 0) MaybeQueueRecallLocked(ino, f->atime_before);
}

}  // namespace strata::fs
