// The data path: open handles, per-inode dirty chunk buffers, chunk sealing, reads through the
// decoded-chunk cache.
#include <fcntl.h>
#include <linux/falloc.h>
// ZSTD_c_literalCompressionMode: an experimental parameter (zstd >= 1.5.1), checked at use.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "base/coding.h"
#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/chunk_cache.h"
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
// relatime's period: a read moves an atime at least this old.
constexpr int64_t kRelatimeNs = 86400ll * 1000000000;

// The noisy plane of 16-bit samples (below): at zstd's level 1 the match finder costs ~70% of
// the chunk's compression time and finds almost nothing; a fast level with Huffman-coded
// literals forced on keeps the entropy coding (the ratio on CT data: 4.22x against 4.29x for the
// whole chunk at level 1, zstd -1 of the file 4.06x) at ~1.5x the speed (bench/README.md).
constexpr int kNoisePlaneLevel = -20;
// Levels up to this one compress the noisy plane with kNoisePlaneLevel; above it the operator
// asked for ratio, and both planes get the configured level.
constexpr int kFastNoisePlaneUpTo = 2;

struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx* noise = NoiseContext();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeCCtx(noise);
    ZSTD_freeDCtx(d);
  }
  // Null when this libzstd refuses the settings: the noisy plane then gets the configured level.
  static ZSTD_CCtx* NoiseContext() {
    ZSTD_CCtx* z = ZSTD_createCCtx();
    if (ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, kNoisePlaneLevel)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_literalCompressionMode, ZSTD_ps_enable))) {
      ZSTD_freeCCtx(z);
      return nullptr;
    }
    return z;
  }
};
ZstdContexts& Zstd() {
  thread_local ZstdContexts z;
  return z;
}

// 16-bit little-endian samples (CT, MR, CR pixel data) have a high byte with few distinct
// values and a noisy low byte; text and already-compressed data look alike in both planes.
bool LooksLike16BitSamples(std::string_view d) {
  if (d.size() < 1024) return false;
  bool seen_even[256] = {}, seen_odd[256] = {};
  int even = 0, odd = 0;
  size_t n = std::min<size_t>(d.size() & ~size_t{1}, 8192);
  for (size_t i = 0; i < n; i += 2) {
    auto e = static_cast<unsigned char>(d[i]), o = static_cast<unsigned char>(d[i + 1]);
    if (!seen_even[e]) seen_even[e] = true, even++;
    if (!seen_odd[o]) seen_odd[o] = true, odd++;
  }
  return odd <= 48 && even >= 2 * odd;
}

// Even bytes first, then odd bytes. Through raw pointers in pairs: indexing the std::string
// reloads its data pointer after each store and keeps the loop from being vectorised.
void SplitPlanes(std::string_view in, std::string* out) {
  const size_t n = in.size(), half = (n + 1) / 2, pairs = n / 2;
  out->resize(n);
  const char* src = in.data();
  char* even = out->data();
  char* odd = even + half;
  for (size_t i = 0; i < pairs; i++) {
    even[i] = src[2 * i];
    odd[i] = src[2 * i + 1];
  }
  if (n & 1) even[pairs] = src[n - 1];
}

void JoinPlanes(std::string_view in, std::string* out) {
  const size_t n = in.size(), half = (n + 1) / 2, pairs = n / 2;
  out->resize(n);
  const char* even = in.data();
  const char* odd = even + half;
  char* dst = out->data();
  for (size_t i = 0; i < pairs; i++) {
    dst[2 * i] = even[i];
    dst[2 * i + 1] = odd[i];
  }
  if (n & 1) dst[n - 1] = even[pairs];
}

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

// Adds [b, e) to sorted, disjoint, non-adjacent ranges.
void AddRange(Ranges* r, uint32_t b, uint32_t e) {
  auto it = std::lower_bound(r->begin(), r->end(), b,
                             [](const auto& x, uint32_t v) { return x.second < v; });
  // it: the first range ending at or after b; merge every range that touches [b, e).
  auto last = it;
  while (last != r->end() && last->first <= e) {
    b = std::min(b, last->first);
    e = std::max(e, last->second);
    ++last;
  }
  it = r->erase(it, last);
  r->insert(it, {b, e});
}

// The parts of [from, min(to, base_len)) no range covers: the stored chunk's bytes.
void CollectGaps(const Ranges& r, uint32_t base_len, uint32_t from, uint32_t to, Ranges* gaps) {
  const uint32_t end = std::min(to, base_len);
  uint32_t at = from;
  for (const auto& [b, e] : r) {
    if (at >= end) break;
    if (e <= at) continue;
    if (b >= end) break;
    if (b > at) gaps->emplace_back(at, b);
    at = std::max(at, e);
  }
  if (at < end) gaps->emplace_back(at, end);
}

// A patch's plaintext: u32 n, n x (u32 offset, u32 length), then those bytes of `data`.
std::string EncodePatch(const Ranges& r, const std::string& data) {
  std::string out;
  size_t bytes = 0;
  for (const auto& [b, e] : r) bytes += e - b;
  out.reserve(4 + 8 * r.size() + bytes);
  PutFixed32(&out, static_cast<uint32_t>(r.size()));
  for (const auto& [b, e] : r) {
    PutFixed32(&out, b);
    PutFixed32(&out, e - b);
  }
  for (const auto& [b, e] : r) out.append(data, b, e - b);
  return out;
}

// Applies a patch's plaintext to `chunk`, which then holds at least `logical_len` bytes.
Status ApplyPatch(std::string_view plain, uint32_t logical_len, std::string* chunk) {
  if (plain.size() < 4) return Status::Corruption("patch: no range table");
  const uint64_t n = DecodeFixed32(plain.data());
  if (plain.size() < 4 + 8 * n) return Status::Corruption("patch: range table cut short");
  uint64_t at = 4 + 8 * n;
  if (chunk->size() < logical_len) chunk->resize(logical_len);
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t off = DecodeFixed32(plain.data() + 4 + 8 * i);
    const uint64_t len = DecodeFixed32(plain.data() + 8 + 8 * i);
    if (off + len > logical_len || at + len > plain.size())
      return Status::Corruption("patch: a range lies outside the chunk or the record");
    std::memcpy(chunk->data() + off, plain.data() + at, len);
    at += len;
  }
  if (at != plain.size()) return Status::Corruption("patch: bytes past its ranges");
  return Status::OK();
}
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
      thread_local std::string planes;
      std::string* dst = got->planes ? &planes : plain;
      // A patch's plaintext (its range table and bytes) is at most a chunk and a table; its
      // length is in the frames' headers (zstd writes it; an unknown size is a huge value).
      const uint64_t bound =
          got->patch ? ZSTD_findDecompressedSize(body.data(), body.size()) : got->logical_len;
      if (bound > 2 * uint64_t{sb_.chunk_size}) {
        s = Status::Corruption("chunk record is larger than a chunk");
      } else {
        dst->resize(bound);
        size_t n =
            ZSTD_decompressDCtx(Zstd().d, dst->data(), dst->size(), body.data(), body.size());
        if (ZSTD_isError(n) || n != bound) {
          s = Status::Corruption("chunk does not decompress to its recorded length");
        } else if (got->planes) {
          JoinPlanes(planes, plain);
        }
      }
    } else if (!got->patch && body.size() != got->logical_len) {
      s = Status::Corruption("raw chunk length differs from its recorded length");
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
    uint64_t ino, const meta::ChunkRow& c, const std::vector<meta::ChunkRow>& patches,
    bool allow_cold, bool* blocked) {
  // Cached by the version of the last record that shaped it: every record's is unique.
  const uint64_t top = patches.empty() ? c.version : patches.back().version;
  if (auto hit = cache_->Get(ino, c.index, top)) return hit;
  std::shared_ptr<const std::string> base = cache_->Get(ino, c.index, c.version);
  if (base == nullptr) {
    ChunkHeader got;
    auto data = std::make_shared<std::string>();
    RETURN_IF_ERROR(DecodeRecord(ino, c, allow_cold, blocked, &got, data.get()));
    if (got.patch) return Status::Corruption("a patch record where a chunk was expected");
    base = std::move(data);
    cache_->Put(ino, c.index, c.version, base);
  }
  if (patches.empty()) return base;
  auto merged = std::make_shared<std::string>(*base);
  std::string plain;
  for (const meta::ChunkRow& p : patches) {
    ChunkHeader got;
    RETURN_IF_ERROR(DecodeRecord(ino, p, allow_cold, blocked, &got, &plain));
    Status s = got.patch ? ApplyPatch(plain, got.logical_len, merged.get())
                         : Status::Corruption("a chunk record where a patch was expected");
    if (!s.ok()) {
      log::Alert("filesystem {}: inode {} chunk {} patch {}: {}", sb_.name, ino, c.index, p.patches,
                 s.message());
      return s;
    }
  }
  std::shared_ptr<const std::string> out = std::move(merged);
  cache_->Put(ino, c.index, top, out);
  return out;
}

Status Filesystem::ReadStoredChunk(uint64_t ino, uint64_t index, uint64_t off, size_t n, char* buf,
                                   bool allow_cold, bool* blocked, bool* cold) {
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
      auto on_cold = [&](uint64_t segment) {
        return internal::IsPlacement(segment) && TierOfLocked(segment) != internal::kHot;
      };
      *cold = *cold || on_cold(st->row->segment);
      for (const auto& p : st->patches) *cold = *cold || on_cold(p.segment);
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
    auto r = LoadChunk(ino, *st.row, st.patches, allow_cold, blocked);
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
  return ReadImpl(ino, fh, offset, size, buf, true, nullptr);
}

void Filesystem::ReadAsync(uint64_t ino, uint64_t fh, uint64_t offset, size_t size, ReadDone done) {
  // One buffer per calling thread: a fresh allocation per hot read costs page faults.
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  bool blocked = false;
  auto n = ReadImpl(ino, fh, offset, size, buf.data(), cold_readers_ == nullptr, &blocked);
  if (!blocked) {
    done(n.status(), buf.data(), n.ok() ? *n : 0);
    return;
  }
  cold_readers_->Submit([this, ino, fh, offset, size, done = std::move(done)] {
    std::string own(size, '\0');
    auto r = ReadImpl(ino, fh, offset, size, own.data(), true, nullptr);
    done(r.status(), own.data(), r.ok() ? *r : 0);
  });
}

Result<size_t> Filesystem::ReadImpl(uint64_t ino, uint64_t fh, uint64_t offset, size_t size,
                                    char* buf, bool allow_cold, bool* blocked) {
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
  for (const Part& p : stored) {
    if (p.gaps.empty()) {
      RETURN_IF_ERROR(
          ReadStoredChunk(ino, p.index, p.off, p.n, buf + p.pos, allow_cold, blocked, &cold));
      continue;
    }
    // The buffer's bytes are in place; fill the gaps from the chunk as stored. A seal that
    // lands meanwhile changes only the written ranges, not these.
    std::string whole(p.n, '\0');
    RETURN_IF_ERROR(
        ReadStoredChunk(ino, p.index, p.off, p.n, whole.data(), allow_cold, blocked, &cold));
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
  auto cold = [&](uint64_t segment) {
    return internal::IsPlacement(segment) && TierOfLocked(segment) != internal::kHot;
  };
  if (cold(row->segment)) return Stored::kWhole;
  if (row->patches > 0) {
    ASSIGN_OR_RETURN(auto patches, meta_->ListPatches(ino, index));
    for (const auto& p : patches)
      if (cold(p.segment)) return Stored::kWhole;
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
    RETURN_IF_ERROR(ReadStoredChunk(ino, index, 0, c->base_len, base.data(), allow_cold,
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
      if (in == 0 && part == cs) {
        c.data.resize(cs);  // all of it is written: nothing to keep
      } else if (auto sit = f->sealing.find(idx); sit != f->sealing.end()) {
        c = *sit->second;  // on from the version being sealed (lazy or whole)
        c.data.resize(cs);
      } else {
        c.data.resize(cs);
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
                ReadStoredChunk(ino, idx, 0, keep, c.data.data(), true, nullptr, nullptr));
          }
        }
      }
      // Bytes past the current size are zeros even if an older, longer chunk had data.
      if (f->size < start + cs) c.CutAt(f->size > start ? f->size - start : 0);
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
    if (in + part == cs) full.push_back(idx);
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
  if (start >= f->size) return Status::OK();  // cut off by a truncate
  uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(cs, f->size - start));
  uint64_t file_size = std::max<uint64_t>(f->persisted_size, start + len);
  f->persisted_size = file_size;
  int64_t mtime = f->mtime;
  chunk.data.resize(len);
  // The buffer goes on into the decoded-chunk cache, which counts size(): a small file's last
  // chunk must not keep a whole chunk's allocation there.
  if (len < cs / 2) chunk.data.shrink_to_fit();
  auto data = std::make_shared<const DirtyChunk>(std::move(chunk));
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
  if (sb_.compression_level > 0) {
    thread_local std::string planes;
    const size_t blen = body.size();
    size_t n;
    if (LooksLike16BitSamples(body)) {
      // Two zstd frames, one per plane: decompressing their concatenation gives the planes.
      SplitPlanes(body, &planes);
      h.planes = true;
      const size_t noisy = (blen + 1) / 2, smooth = blen / 2;
      compressed.resize(ZSTD_compressBound(noisy) + ZSTD_compressBound(smooth));
      size_t a = sb_.compression_level <= kFastNoisePlaneUpTo && Zstd().noise != nullptr
                     ? ZSTD_compress2(Zstd().noise, compressed.data(), compressed.size(),
                                      planes.data(), noisy)
                     : ZSTD_compressCCtx(Zstd().c, compressed.data(), compressed.size(),
                                         planes.data(), noisy, sb_.compression_level);
      n = a;
      if (!ZSTD_isError(a)) {
        n = ZSTD_compressCCtx(Zstd().c, compressed.data() + a, compressed.size() - a,
                              planes.data() + noisy, smooth, sb_.compression_level);
        if (!ZSTD_isError(n)) n += a;
      }
    } else {
      compressed.resize(ZSTD_compressBound(blen));
      n = ZSTD_compressCCtx(Zstd().c, compressed.data(), compressed.size(), body.data(), blen,
                            sb_.compression_level);
    }
    if (!ZSTD_isError(n) && n < blen) {
      compressed.resize(n);
      body = compressed;
      h.compressed = true;
    } else {
      h.planes = false;  // stored raw, as written
    }
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
  handles_.erase(fh);
  auto it = open_.find(ino);
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
  SetAttrRequest req;
  req.size = offset + length;
  req.grow_only = true;
  auto r = SetAttr(ino, req, Caller{});
  return r.status();
}

}  // namespace strata::fs
