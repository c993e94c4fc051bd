// The chunk map (chunks, their patches and the segments that hold them) of MetaStore.
#include <sqlite3.h>

#include <optional>
#include <vector>

#include "meta/chunk_row_cache.h"
#include "meta/meta_store.h"
#include "meta/sql.h"

namespace strata::meta {

using internal::ForgetRowsOnExit;
using internal::kFirstPlacementSegment;
using internal::ReadChunkRow;
using internal::Stmt;

Status MetaStore::AddStored(uint64_t ino, uint64_t segment, int64_t delta) {
  if (delta == 0) return Status::OK();
  inode_rows_.erase(ino);
  {
    PREP(q, "UPDATE inodes SET stored = stored + ? WHERE ino = ?");
    q.Bind(1, delta).Bind(2, ino);
    STEP_DONE(q, "update stored bytes");
  }
  PREP(s,
       "INSERT INTO segments(id, live_bytes) VALUES(?1, ?2) "
       "ON CONFLICT(id) DO UPDATE SET live_bytes = live_bytes + ?2");
  s.Bind(1, segment).Bind(2, delta);
  STEP_DONE(s, "update segment live bytes");
  totals_.stored_bytes = static_cast<uint64_t>(static_cast<int64_t>(totals_.stored_bytes) + delta);
  return Status::OK();
}

Status MetaStore::TruncateChunks(uint64_t ino, uint64_t size) {
  ForgetRowsOnExit forget(rows_.get(), ino, std::nullopt);
  uint64_t first_dead = (size + chunk_size_ - 1) / chunk_size_;
  {
    PREP(q,
         "SELECT segment, stored_len FROM chunks WHERE ino = ?1 AND idx >= ?2 UNION ALL "
         "SELECT segment, stored_len FROM patches WHERE ino = ?1 AND idx >= ?2");
    q.Bind(1, ino).Bind(2, first_dead);
    std::vector<std::pair<uint64_t, int64_t>> dead;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) dead.emplace_back(q.Int(0), q.Int(1));
    if (rc != SQLITE_DONE) return SqlError("list truncated chunks");
    for (auto& [seg, len] : dead) RETURN_IF_ERROR(AddStored(ino, seg, -len));
  }
  {
    PREP(d, "DELETE FROM chunks WHERE ino = ? AND idx >= ?");
    d.Bind(1, ino).Bind(2, first_dead);
    STEP_DONE(d, "delete truncated chunks");
  }
  {
    PREP(d, "DELETE FROM patches WHERE ino = ? AND idx >= ?");
    d.Bind(1, ino).Bind(2, first_dead);
    STEP_DONE(d, "delete truncated patches");
  }
  // A chunk cut in the middle keeps its stored bytes (and patches); only its logical length
  // shrinks, so the cut-off tail reads as zeros if the file grows again. A patch is never
  // written over a shortened chunk (the next write rewrites it whole), so none can bring the
  // cut-off bytes back.
  if (size % chunk_size_ != 0) {
    PREP(c, "UPDATE chunks SET logical_len = MIN(logical_len, ?) WHERE ino = ? AND idx = ?");
    c.Bind(1, static_cast<uint64_t>(size % chunk_size_)).Bind(2, ino).Bind(3, size / chunk_size_);
    STEP_DONE(c, "shorten chunk");
  }
  return Status::OK();
}

Status MetaStore::ApplyChunk(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::Corruption("chunk of missing inode " + std::to_string(op.ino));
  ForgetRowsOnExit forget(rows_.get(), op.ino, op.chunk_index);
  ASSIGN_OR_RETURN(auto old, GetChunk(op.ino, op.chunk_index));
  if (old) RETURN_IF_ERROR(AddStored(op.ino, old->segment, -static_cast<int64_t>(old->stored_len)));
  if (old && old->patches > 0) {  // the whole chunk again: its patches are dead
    ASSIGN_OR_RETURN(auto patches, ListPatches(op.ino, op.chunk_index));
    for (const auto& p : patches)
      RETURN_IF_ERROR(AddStored(op.ino, p.segment, -static_cast<int64_t>(p.stored_len)));
    PREP(d, "DELETE FROM patches WHERE ino = ? AND idx = ?");
    d.Bind(1, op.ino).Bind(2, op.chunk_index);
    STEP_DONE(d, "delete patches");
  }
  {
    PREP(q,
         "INSERT OR REPLACE INTO chunks(ino, idx, segment, offset, stored_len, logical_len, "
         "version, patches) VALUES(?,?,?,?,?,?,?,0)");
    q.Bind(1, op.ino).Bind(2, op.chunk_index).Bind(3, op.segment).Bind(4, op.offset);
    q.Bind(5, op.stored_len).Bind(6, op.logical_len).Bind(7, op.version);
    STEP_DONE(q, "store chunk");
  }
  RETURN_IF_ERROR(AddStored(op.ino, op.segment, op.stored_len));
  return GrowFromChunk(op);
}

Status MetaStore::ApplyPatch(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::Corruption("patch of missing inode " + std::to_string(op.ino));
  ForgetRowsOnExit forget(rows_.get(), op.ino, op.chunk_index);
  ASSIGN_OR_RETURN(auto base, GetChunk(op.ino, op.chunk_index));
  if (!base)
    return Status::Corruption("patch of inode " + std::to_string(op.ino) + " chunk " +
                              std::to_string(op.chunk_index) + ", which has no stored chunk");
  const uint32_t seq = base->patches + 1;
  {
    PREP(q,
         "INSERT INTO patches(ino, idx, seq, segment, offset, stored_len, version) "
         "VALUES(?,?,?,?,?,?,?)");
    q.Bind(1, op.ino).Bind(2, op.chunk_index).Bind(3, seq).Bind(4, op.segment);
    q.Bind(5, op.offset).Bind(6, op.stored_len).Bind(7, op.version);
    STEP_DONE(q, "store patch");
  }
  {
    PREP(u,
         "UPDATE chunks SET patches = ?, logical_len = MAX(logical_len, ?) "
         "WHERE ino = ? AND idx = ?");
    u.Bind(1, seq).Bind(2, op.logical_len).Bind(3, op.ino).Bind(4, op.chunk_index);
    STEP_DONE(u, "count patch");
  }
  RETURN_IF_ERROR(AddStored(op.ino, op.segment, op.stored_len));
  return GrowFromChunk(op);
}

Status MetaStore::GrowFromChunk(const Op& op) {
  // Chunks of one file may be sealed in parallel and land in any order: writes only ever grow
  // a file and move its mtime forward. Truncations and utimes are separate ops.
  inode_rows_.erase(op.ino);
  PREP(u,
       "UPDATE inodes SET size = MAX(size, ?1), mtime = MAX(mtime, ?2), ctime = MAX(ctime, ?2) "
       "WHERE ino = ?3");
  u.Bind(1, op.size).Bind(2, op.mtime).Bind(3, op.ino);
  STEP_DONE(u, "update size");
  return Status::OK();
}

Status MetaStore::ApplySegmentState(const Op& op) {
  auto state = static_cast<SegmentState>(op.flags);
  if (state == SegmentState::kGone) {
    PREP(q, "DELETE FROM segments WHERE id = ?");
    q.Bind(1, op.segment);
    STEP_DONE(q, "drop segment");
    return Status::OK();
  }
  if (op.flags > static_cast<uint32_t>(SegmentState::kGone))
    return Status::Corruption("segment " + std::to_string(op.segment) + ": unknown state " +
                              std::to_string(op.flags));
  PREP(q,
       "INSERT INTO segments(id, live_bytes, tier, state, size) VALUES(?1, 0, ?2, ?3, ?4) "
       "ON CONFLICT(id) DO UPDATE SET tier = ?2, state = ?3, size = MAX(size, ?4)");
  q.Bind(1, op.segment).Bind(2, op.name).Bind(3, op.flags).Bind(4, op.size);
  STEP_DONE(q, "set segment state");
  if (op.segment >= kFirstPlacementSegment && op.segment >= next_placement_)
    next_placement_ = op.segment + 1;
  return Status::OK();
}

Status MetaStore::ApplyMoveChunks(const Op& op) {
  std::vector<MoveEntry> entries;
  RETURN_IF_ERROR(DecodeMoveEntries(op.blob, &entries));
  for (const MoveEntry& e : entries) {
    ForgetRowsOnExit forget(rows_.get(), e.ino, e.index);
    ASSIGN_OR_RETURN(auto old, GetChunk(e.ino, e.index));
    if (old && old->version != e.version && old->patches > 0) {
      // Not the chunk itself: one of its patches (versions are unique), if still there.
      ASSIGN_OR_RETURN(auto patches, ListPatches(e.ino, e.index));
      for (const auto& p : patches) {
        if (p.version != e.version || p.stored_len != e.stored_len) continue;
        RETURN_IF_ERROR(AddStored(e.ino, p.segment, -static_cast<int64_t>(p.stored_len)));
        PREP(q, "UPDATE patches SET segment = ?, offset = ? WHERE ino = ? AND idx = ? AND seq = ?");
        q.Bind(1, op.segment).Bind(2, e.offset).Bind(3, e.ino).Bind(4, e.index);
        q.Bind(5, p.patches);
        STEP_DONE(q, "move patch");
        RETURN_IF_ERROR(AddStored(e.ino, op.segment, e.stored_len));
      }
      continue;
    }
    // Rewritten, truncated or deleted since it was copied: the copy is dead weight.
    if (!old || old->version != e.version || old->stored_len != e.stored_len) continue;
    RETURN_IF_ERROR(AddStored(e.ino, old->segment, -static_cast<int64_t>(old->stored_len)));
    PREP(q, "UPDATE chunks SET segment = ?, offset = ? WHERE ino = ? AND idx = ?");
    q.Bind(1, op.segment).Bind(2, e.offset).Bind(3, e.ino).Bind(4, e.index);
    STEP_DONE(q, "move chunk");
    RETURN_IF_ERROR(AddStored(e.ino, op.segment, e.stored_len));
  }
  PREP(s, "UPDATE segments SET state = 0, size = ? WHERE id = ?");
  s.Bind(1, op.size).Bind(2, op.segment);
  STEP_DONE(s, "mark segment live");
  return Status::OK();
}

Result<std::vector<SegmentRow>> MetaStore::ListSegments() {
  PREP(q, "SELECT id, tier, state, live_bytes, size FROM segments ORDER BY id");
  std::vector<SegmentRow> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    SegmentRow r;
    r.id = static_cast<uint64_t>(q.Int(0));
    r.tier = q.Blob(1);
    r.state = static_cast<SegmentState>(q.Int(2));
    r.live_bytes = static_cast<uint64_t>(q.Int(3));
    r.size = static_cast<uint64_t>(q.Int(4));
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError("list segments");
  return out;
}

Result<std::vector<ChunkRow>> MetaStore::ListPatches(uint64_t ino, std::optional<uint64_t> index) {
  std::vector<ChunkRow> out;
  int rc;
  if (index) {
    PREP(q, "SELECT " PATCH_COLUMNS " FROM patches WHERE ino = ? AND idx = ? ORDER BY seq");
    q.Bind(1, ino).Bind(2, *index);
    while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ReadChunkRow(q));
  } else {
    PREP(q, "SELECT " PATCH_COLUMNS " FROM patches WHERE ino = ? ORDER BY idx, seq");
    q.Bind(1, ino);
    while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ReadChunkRow(q));
  }
  if (rc != SQLITE_DONE) return SqlError("list patches");
  return out;
}

Result<std::vector<ChunkRow>> MetaStore::ListChunks(uint64_t ino) {
  PREP(q, "SELECT " CHUNK_COLUMNS " FROM chunks WHERE ino = ? ORDER BY idx");
  q.Bind(1, ino);
  std::vector<ChunkRow> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ReadChunkRow(q));
  if (rc != SQLITE_DONE) return SqlError("list chunks");
  return out;
}

Result<bool> MetaStore::HasChunks() {
  PREP(q, "SELECT 1 FROM chunks LIMIT 1");
  int rc = q.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return SqlError("look for chunks");
  return false;
}

size_t MetaStore::cached_chunk_rows() const { return rows_->size(); }

Result<std::optional<ChunkRow>> MetaStore::GetChunk(uint64_t ino, uint64_t index) {
  std::optional<ChunkRow> row;
  if (rows_->Find(ino, index, &row)) return row;
  PREP(q, "SELECT " CHUNK_COLUMNS " FROM chunks WHERE ino = ? AND idx = ?");
  q.Bind(1, ino).Bind(2, index);
  int rc = q.Step();
  if (rc == SQLITE_ROW) {
    row = ReadChunkRow(q);
  } else if (rc != SQLITE_DONE) {
    return SqlError("read chunk map");
  }
  rows_->Put(ino, index, row);
  return row;
}

}  // namespace strata::meta
