// MetaStore: the SQLite (WAL) materialised view of the journal: inodes, directory entries,
// the chunk map, xattrs, per-segment live bytes, and the applied LSN.
//
// Changes arrive only through Apply(op, lsn), in journal order, inside one open write
// transaction that Commit() ends; Commit also stores the applied LSN in that transaction.
// The caller commits only after the journal is durable up to the last applied LSN, so the
// database never runs ahead of the journal, and recovery replays the journal after
// applied_lsn().
//
// Thread-safety: none. The owner (fs::Filesystem) serialises every call under its metadata
// mutex; reads see the uncommitted transaction because there is one connection.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "meta/ops.h"

struct sqlite3;
struct sqlite3_stmt;

namespace strata::meta {

struct InodeRow {
  uint64_t ino = 0;
  uint32_t mode = 0;  // type | permission bits
  uint32_t uid = 0, gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  int64_t atime = 0, mtime = 0, ctime = 0, btime = 0;
  uint64_t rdev = 0;
  uint64_t stored_bytes = 0;  // bytes of sealed chunks: st_blocks
  std::string symlink;        // sealed target, for symlinks
};

struct EntryRow {
  std::string name;  // encrypted
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint64_t cookie = 0;  // stable position for readdir; increases with insertion
};

// An entry and the inode it names (none when the inode row is missing: damage).
struct EntryInode {
  EntryRow entry;
  std::optional<InodeRow> inode;
};

// A stored chunk, or one of its patches (docs/formats/records.md): the ranges of the chunk
// rewritten since, applied over it in order.
struct ChunkRow {
  uint64_t index = 0;
  uint64_t segment = 0, offset = 0;
  uint32_t stored_len = 0, logical_len = 0;  // logical_len: 0 in a patch row
  uint64_t version = 0;
  // A chunk: how many patches it has (numbered 1..patches). A patch: its number.
  uint32_t patches = 0;
};

struct SegmentRow {
  uint64_t id = 0;
  std::string tier;  // "" = a journal segment on the hot tier; else the tier holding it
  SegmentState state = SegmentState::kLive;
  uint64_t live_bytes = 0;  // stored bytes of chunks that point into it
  uint64_t size = 0;        // object size (placement segments)
};

class ChunkRowCache;

struct Totals {
  uint64_t inodes = 0;
  uint64_t stored_bytes = 0;
};

class MetaStore {
 public:
  // Opens (creating the schema when `create`) the database at `path`. `chunk_size` is the
  // filesystem's fixed chunk size, needed to apply truncations to the chunk map.
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& path, uint32_t chunk_size,
                                                 bool create, bool read_only);
  ~MetaStore();
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  // Applies `op`, the payload of the journal record numbered `lsn`. A state that contradicts
  // the op (an entry that should exist does not) is Corruption: the journal and the database
  // disagree.
  Status Apply(const Op& op, uint64_t lsn);
  // Ends the open transaction, recording the last applied LSN in it.
  Status Commit();
  // Drops the uncommitted transaction (used when the journal failed).
  void Rollback();
  // Tests only: runs SQL on the store's connection behind its back (to play SQLite rolling the
  // open transaction back by itself).
  Status ExecForTesting(const char* sql) { return Exec(sql); }
  // Commits, then folds the WAL into the database file and syncs it: afterwards the database
  // file alone is durable up to applied_lsn(). Busy if another connection kept part of the
  // WAL from being folded in.
  Status Checkpoint();
  // Writes a consistent copy of the last committed state to `out` (a new file, not synced:
  // the caller syncs it) through a separate read-only connection, and returns the applied LSN
  // the copy holds. A copy plus the journal after its LSN rebuild the database.
  Result<uint64_t> WriteSnapshot(const std::string& out) const;
  uint64_t applied_lsn() const { return applied_lsn_; }
  uint64_t next_ino() const { return next_ino_; }
  // The id the next placement segment gets (>= journal::kFirstPlacementSegment).
  uint64_t next_placement_segment() const { return next_placement_; }

  Result<std::optional<InodeRow>> GetInode(uint64_t ino);
  // The inode an entry names, if any.
  Result<std::optional<EntryRow>> LookupEntry(uint64_t parent, const std::string& name);
  // LookupEntry and GetInode of what it finds, in one statement (the lookup path).
  Result<std::optional<EntryInode>> LookupEntryInode(uint64_t parent, const std::string& name);
  // Entries of `parent` with cookie > after, in cookie order, at most `limit`.
  Result<std::vector<EntryRow>> ListEntries(uint64_t parent, uint64_t after, size_t limit);
  // Whether any file holds stored data (a chunk row).
  Result<bool> HasChunks();
  Result<bool> DirIsEmpty(uint64_t ino);
  Result<std::optional<ChunkRow>> GetChunk(uint64_t ino, uint64_t index);
  Result<std::optional<std::string>> GetXattr(uint64_t ino, const std::string& name);
  // Whether the inode has any extended attribute (most have none: a cheap first answer).
  Result<bool> HasXattrs(uint64_t ino);
  Result<std::vector<std::pair<std::string, std::string>>> ListXattrs(uint64_t ino);
  // Every segment row, by id: journal segments with data, and placement segments.
  Result<std::vector<SegmentRow>> ListSegments();
  // The chunks of a file, by index (not their patches).
  Result<std::vector<ChunkRow>> ListChunks(uint64_t ino);
  // The patches of one chunk of a file, or of all its chunks, in the order they apply.
  Result<std::vector<ChunkRow>> ListPatches(uint64_t ino,
                                            std::optional<uint64_t> index = std::nullopt);
  // Inodes with nlink 0: unlinked while open when the process stopped.
  Result<std::vector<uint64_t>> Orphans();
  Totals totals() const { return totals_; }
  // Chunk map rows (and holes) kept in memory (chunk_row_cache.h).
  size_t cached_chunk_rows() const;

 private:
  MetaStore() = default;
  Status Exec(const char* sql);
  Result<sqlite3_stmt*> Prepare(const char* sql);
  Status Begin();
  // lost_, after noticing (and cleaning up after) a transaction SQLite rolled back itself.
  Status CheckTxn();
  Status ApplyOp(const Op& op, uint64_t lsn);
  Status CommitTxn();
  Status LoadCounters();
  Status MaybeUpgrade(bool read_only);
  Status AdjustNlink(uint64_t ino, int delta);
  // AdjustNlink and a new ctime, in one statement.
  Status AdjustNlinkAndCtime(uint64_t ino, int delta, int64_t t);
  Status TouchDir(uint64_t ino, int64_t t);
  Status InsertEntry(uint64_t parent, const std::string& name, uint64_t ino, uint32_t mode);
  Status DeleteEntry(uint64_t parent, const std::string& name);
  Status SetCtime(uint64_t ino, int64_t t);
  Status TruncateChunks(uint64_t ino, uint64_t size);
  Status AddStored(uint64_t ino, uint64_t segment, int64_t delta);
  Status ApplyCreate(const Op& op);
  Status ApplyLink(const Op& op);
  Status ApplyUnlink(const Op& op);
  Status ApplyRename(const Op& op);
  Status ApplySetAttr(const Op& op);
  Status ApplyChunk(const Op& op);
  Status ApplyPatch(const Op& op);
  Status GrowFromChunk(const Op& op);
  Status ApplyDeleteInode(const Op& op);
  Status ApplySegmentState(const Op& op);
  Status ApplyMoveChunks(const Op& op);
  Status SqlError(const char* what);
  // Drops every cached answer (after a rollback or a failed statement or commit).
  void ForgetCachedRows();

  sqlite3* db_ = nullptr;
  std::string path_;
  uint32_t chunk_size_ = 0;
  bool in_txn_ = false;
  // Set when SQLite rolled the open transaction back by itself (after an I/O error, a full
  // disk or no memory in any statement, a read included): every later Apply and Commit fails,
  // since the journal's records in that transaction are no longer in the database.
  Status lost_;
  uint64_t applied_lsn_ = 0;
  uint64_t next_ino_ = 2;
  uint64_t next_placement_ = uint64_t{1} << 40;
  Totals totals_;
  std::vector<std::pair<const char*, sqlite3_stmt*>> stmts_;
  std::unique_ptr<ChunkRowCache> rows_;  // GetChunk's answers (chunk_row_cache.h)
  // GetInode's and HasXattrs' answers, exact as rows_ is: a statement that may change an
  // inode row (or add or drop an xattr) forgets that inode's answer before it runs. Bounded:
  // a full map is emptied (the rows asked for again are the hot ones).
  std::unordered_map<uint64_t, InodeRow> inode_rows_;
  std::unordered_map<uint64_t, bool> has_xattrs_;
};

}  // namespace strata::meta
