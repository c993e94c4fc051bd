#include "meta/meta_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>

#include "base/logging.h"
#include "meta/chunk_row_cache.h"
#include "meta/sql.h"

namespace strata::meta {
namespace {

using internal::kFirstPlacementSegment;
using internal::Stmt;

constexpr int kSchemaVersion = 3;
// Rows per generation of the chunk-row cache: at most twice this many, ~100 bytes each.
constexpr size_t kCachedChunkRows = 32768;
constexpr size_t kCachedInodeRows = 8192;

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inodes(
  ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  nlink INTEGER NOT NULL, size INTEGER NOT NULL, atime INTEGER NOT NULL, mtime INTEGER NOT NULL,
  ctime INTEGER NOT NULL, btime INTEGER NOT NULL, rdev INTEGER NOT NULL,
  stored INTEGER NOT NULL DEFAULT 0, symlink BLOB);
CREATE INDEX IF NOT EXISTS inodes_orphans ON inodes(nlink) WHERE nlink = 0;
CREATE TABLE IF NOT EXISTS entries(
  cookie INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL, name BLOB NOT NULL,
  ino INTEGER NOT NULL, mode INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS entries_name ON entries(parent, name);
CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent, cookie);
CREATE TABLE IF NOT EXISTS chunks(
  ino INTEGER NOT NULL, idx INTEGER NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL,
  stored_len INTEGER NOT NULL, logical_len INTEGER NOT NULL, version INTEGER NOT NULL,
  patches INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(ino, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS patches(
  ino INTEGER NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL, segment INTEGER NOT NULL,
  offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, version INTEGER NOT NULL,
  PRIMARY KEY(ino, idx, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs(
  ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(ino, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments(id INTEGER PRIMARY KEY, live_bytes INTEGER NOT NULL,
  tier TEXT NOT NULL DEFAULT '', state INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0);
)sql";

// Version 1 -> 2: placement segments on tiers (tier, state, size).
const char* kUpgrade1To2 = R"sql(
ALTER TABLE segments ADD COLUMN tier TEXT NOT NULL DEFAULT '';
ALTER TABLE segments ADD COLUMN state INTEGER NOT NULL DEFAULT 0;
ALTER TABLE segments ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET value = 2 WHERE key = 'schema_version';
)sql";

// Version 2 -> 3: patch records (a chunk's rewritten ranges, applied over its base).
const char* kUpgrade2To3 = R"sql(
ALTER TABLE chunks ADD COLUMN patches INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS patches(
  ino INTEGER NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL, segment INTEGER NOT NULL,
  offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, version INTEGER NOT NULL,
  PRIMARY KEY(ino, idx, seq)) WITHOUT ROWID;
UPDATE meta SET value = 3 WHERE key = 'schema_version';
)sql";

// The inode columns, in the order ReadInodeRow reads them from column `first` on.
#define INODE_COLUMNS(t)                                                                      \
  t "mode, " t "uid, " t "gid, " t "nlink, " t "size, " t "atime, " t "mtime, " t "ctime, " t \
    "btime, " t "rdev, " t "stored, " t "symlink"

InodeRow ReadInodeRow(Stmt& q, uint64_t ino, int first) {
  InodeRow r;
  r.ino = ino;
  r.mode = static_cast<uint32_t>(q.Int(first + 0));
  r.uid = static_cast<uint32_t>(q.Int(first + 1));
  r.gid = static_cast<uint32_t>(q.Int(first + 2));
  r.nlink = static_cast<uint32_t>(q.Int(first + 3));
  r.size = static_cast<uint64_t>(q.Int(first + 4));
  r.atime = q.Int(first + 5);
  r.mtime = q.Int(first + 6);
  r.ctime = q.Int(first + 7);
  r.btime = q.Int(first + 8);
  r.rdev = static_cast<uint64_t>(q.Int(first + 9));
  r.stored_bytes = static_cast<uint64_t>(q.Int(first + 10));
  r.symlink = q.Blob(first + 11);
  return r;
}

// An entry's ino, mode and cookie, from column `first` on.
EntryRow ReadEntryRow(Stmt& q, std::string name, int first) {
  EntryRow e;
  e.name = std::move(name);
  e.ino = static_cast<uint64_t>(q.Int(first + 0));
  e.mode = static_cast<uint32_t>(q.Int(first + 1));
  e.cookie = static_cast<uint64_t>(q.Int(first + 2));
  return e;
}

}  // namespace

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& path, uint32_t chunk_size,
                                                   bool create, bool read_only) {
  std::unique_ptr<MetaStore> m(new MetaStore);
  m->rows_ = std::make_unique<ChunkRowCache>(kCachedChunkRows);
  m->path_ = path;
  m->chunk_size_ = chunk_size;
  int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (create) flags |= SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &m->db_, flags, nullptr) != SQLITE_OK) {
    Status s = Status::IOError("open metadata database " + path + ": " +
                               (m->db_ ? sqlite3_errmsg(m->db_) : "out of memory"));
    return s;
  }
  sqlite3_extended_result_codes(m->db_, 1);
  // WAL + synchronous=NORMAL: a crash may lose the last commits but never corrupts; the
  // journal replays what was lost. Commits happen only after the journal is durable.
  if (!read_only) RETURN_IF_ERROR(m->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(m->Exec("PRAGMA synchronous=NORMAL"));
  RETURN_IF_ERROR(m->Exec("PRAGMA cache_size=-65536"));
  RETURN_IF_ERROR(m->Exec("PRAGMA temp_store=MEMORY"));
  // Freed pages are overwritten: old (encrypted) names do not linger in free pages either.
  RETURN_IF_ERROR(m->Exec("PRAGMA secure_delete=FAST"));
  if (create) {
    RETURN_IF_ERROR(m->Exec("BEGIN"));
    RETURN_IF_ERROR(m->Exec(kSchema));
    std::string ins = "INSERT OR IGNORE INTO meta VALUES('schema_version'," +
                      std::to_string(kSchemaVersion) +
                      "),('applied_lsn',0),('next_ino',2),('inodes',0),('stored_bytes',0)," +
                      "('next_placement'," + std::to_string(kFirstPlacementSegment) + ")";
    RETURN_IF_ERROR(m->Exec(ins.c_str()));
    RETURN_IF_ERROR(m->Exec("COMMIT"));
  }
  RETURN_IF_ERROR(m->MaybeUpgrade(read_only));
  RETURN_IF_ERROR(m->LoadCounters());
  return m;
}

MetaStore::~MetaStore() {
  if (in_txn_) Rollback();
  for (auto& [sql, s] : stmts_) sqlite3_finalize(s);
  if (db_) sqlite3_close(db_);
}

Status MetaStore::SqlError(const char* what) {
  return Status::IOError(std::string("metadata database ") + path_ + ": " + what + ": " +
                         sqlite3_errmsg(db_));
}

Status MetaStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::IOError("metadata database " + path_ + ": " + msg);
  }
  return Status::OK();
}

Result<sqlite3_stmt*> MetaStore::Prepare(const char* sql) {
  for (auto& [k, s] : stmts_)
    if (k == sql) return s;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
    return SqlError("prepare");
  stmts_.emplace_back(sql, s);
  return s;
}

Status MetaStore::MaybeUpgrade(bool read_only) {
  int64_t version = 0;
  {
    PREP(q, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (q.Step() == SQLITE_ROW) version = q.Int(0);
  }
  if (version != 1 && version != 2) return Status::OK();  // LoadCounters judges the others
  if (read_only)
    return Status::InvalidArgument("metadata database " + path_ + " has schema version " +
                                   std::to_string(version) +
                                   ": mount it read-write once to upgrade");
  RETURN_IF_ERROR(Exec("BEGIN"));
  std::string sql;
  if (version == 1)
    sql = std::string(kUpgrade1To2) + "INSERT OR IGNORE INTO meta VALUES('next_placement'," +
          std::to_string(kFirstPlacementSegment) + ");";
  sql += kUpgrade2To3;
  Status s = Exec(sql.c_str());
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return s.WithContext("upgrading the metadata schema from version " + std::to_string(version) +
                         " to " + std::to_string(kSchemaVersion));
  }
  return Status::OK();
}

Status MetaStore::LoadCounters() {
  PREP(q, "SELECT key, value FROM meta");
  int rc;
  bool have_schema = false;
  while ((rc = q.Step()) == SQLITE_ROW) {
    std::string k = q.Blob(0);
    int64_t v = q.Int(1);
    if (k == "applied_lsn") applied_lsn_ = static_cast<uint64_t>(v);
    if (k == "next_ino") next_ino_ = static_cast<uint64_t>(v);
    if (k == "inodes") totals_.inodes = static_cast<uint64_t>(v);
    if (k == "stored_bytes") totals_.stored_bytes = static_cast<uint64_t>(v);
    if (k == "next_placement") next_placement_ = static_cast<uint64_t>(v);
    if (k == "schema_version") {
      have_schema = true;
      if (v != kSchemaVersion)
        return Status::InvalidArgument("metadata database " + path_ + " has schema version " +
                                       std::to_string(v) + ", this strata reads version " +
                                       std::to_string(kSchemaVersion));
    }
  }
  if (rc != SQLITE_DONE) return SqlError("read counters");
  if (!have_schema) return Status::Corruption("metadata database " + path_ + " has no schema");
  return Status::OK();
}

Status MetaStore::CheckTxn() {
  if (in_txn_ && sqlite3_get_autocommit(db_) != 0) {
    // SQLite ended our transaction on its own: what it held is gone, and so are the rows
    // cached from it. Going on in autocommit mode would split the journal's records.
    in_txn_ = false;
    ForgetCachedRows();
    LoadCounters().IgnoreError();
    lost_ = Status::Aborted("metadata database " + path_ +
                            ": SQLite rolled back the open transaction after an error; remount "
                            "to replay the journal into it");
    log::Error("{}", lost_.ToString());
  }
  return lost_;
}

Status MetaStore::Begin() {
  RETURN_IF_ERROR(CheckTxn());
  if (in_txn_) return Status::OK();
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  in_txn_ = true;
  return Status::OK();
}

Status MetaStore::Commit() {
  RETURN_IF_ERROR(CheckTxn());
  if (!in_txn_) return Status::OK();
  Status s = CommitTxn();
  if (!s.ok()) ForgetCachedRows();  // as in Apply
  return s;
}

Status MetaStore::CommitTxn() {
  PREP(u,
       "UPDATE meta SET value = CASE key WHEN 'applied_lsn' THEN ?1 WHEN 'next_ino' THEN ?2 "
       "WHEN 'inodes' THEN ?3 WHEN 'stored_bytes' THEN ?4 WHEN 'next_placement' THEN ?5 "
       "ELSE value END");
  u.Bind(1, applied_lsn_).Bind(2, next_ino_).Bind(3, totals_.inodes).Bind(4, totals_.stored_bytes);
  u.Bind(5, next_placement_);
  STEP_DONE(u, "store applied LSN");
  Status s = Exec("COMMIT");
  if (!s.ok()) {
    Rollback();
    return s;
  }
  in_txn_ = false;
  return Status::OK();
}

void MetaStore::Rollback() {
  if (!in_txn_) return;
  Exec("ROLLBACK").IgnoreError();
  in_txn_ = false;
  ForgetCachedRows();  // they may hold rows of the dropped transaction
  LoadCounters().IgnoreError();
}

Status MetaStore::Checkpoint() {
  RETURN_IF_ERROR(Commit());
  // (busy, WAL frames, frames checkpointed): anything but (0, n, n) left part of the WAL out.
  int rc = SQLITE_OK, busy = -1, log = -1, done = -1;
  {
    sqlite3_stmt* q = nullptr;
    rc = sqlite3_prepare_v2(db_, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &q, nullptr);
    if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
      busy = sqlite3_column_int(q, 0);
      log = sqlite3_column_int(q, 1);
      done = sqlite3_column_int(q, 2);
      rc = SQLITE_OK;
    }
    sqlite3_finalize(q);
  }
  if (rc != SQLITE_OK) return SqlError("checkpoint");
  if (busy != 0 || log != done)
    return Status::Busy("metadata database " + path_ + ": checkpoint incomplete (" +
                        std::to_string(done) + " of " + std::to_string(log) +
                        " WAL frames; another process has the database open?)");
  return Status::OK();
}

Result<uint64_t> MetaStore::WriteSnapshot(const std::string& out) const {
  // A second, read-only connection sees the last committed state as one consistent snapshot
  // (WAL), while this one goes on applying: the copy holds no lock the owner needs.
  sqlite3* src = nullptr;
  auto close = [](sqlite3* d) { sqlite3_close_v2(d); };
  if (sqlite3_open_v2(path_.c_str(), &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string m = src ? sqlite3_errmsg(src) : "out of memory";
    close(src);
    return Status::IOError("snapshot of " + path_ + ": " + m);
  }
  std::unique_ptr<sqlite3, decltype(close)> guard(src, close);
  sqlite3_stmt* q = nullptr;
  int rc = sqlite3_prepare_v2(src, "VACUUM INTO ?", -1, &q, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(q, 1, out.c_str(), -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(q);
  }
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE)
    return Status::IOError("snapshot of " + path_ + " into " + out + ": " + sqlite3_errmsg(src));
  // The LSN it covers, read from the copy itself.
  sqlite3* copy = nullptr;
  uint64_t lsn = 0;
  rc = sqlite3_open_v2(out.c_str(), &copy, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, decltype(close)> copy_guard(copy, close);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(copy, "SELECT value FROM meta WHERE key = 'applied_lsn'", -1, &q,
                            nullptr);
  if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    lsn = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
  else
    rc = SQLITE_ERROR;
  sqlite3_finalize(q);
  if (rc != SQLITE_OK) return Status::Corruption("snapshot " + out + ": no applied LSN in it");
  return lsn;
}

Status MetaStore::Apply(const Op& op, uint64_t lsn) {
  Status s = ApplyOp(op, lsn);
  // A statement that failed (a full disk, an I/O error) may have ended the transaction:
  // cached rows read inside it may be gone with it.
  if (!s.ok()) ForgetCachedRows();
  return s;
}

void MetaStore::ForgetCachedRows() {
  rows_->Clear();
  inode_rows_.clear();
  has_xattrs_.clear();
}

Status MetaStore::ApplyOp(const Op& op, uint64_t lsn) {
  RETURN_IF_ERROR(Begin());
  Status s;
  switch (op.kind) {
    case OpKind::kCreate:
      s = ApplyCreate(op);
      break;
    case OpKind::kLink:
      s = ApplyLink(op);
      break;
    case OpKind::kUnlink:
      s = ApplyUnlink(op);
      break;
    case OpKind::kRename:
      s = ApplyRename(op);
      break;
    case OpKind::kSetAttr:
      s = ApplySetAttr(op);
      break;
    case OpKind::kSetXattr: {
      has_xattrs_.erase(op.ino);
      PREP(q, "INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?,?,?)");
      q.Bind(1, op.ino).Bind(2, op.name).Bind(3, op.blob);
      STEP_DONE(q, "set xattr");
      s = SetCtime(op.ino, op.ctime);
      break;
    }
    case OpKind::kRemoveXattr: {
      has_xattrs_.erase(op.ino);
      PREP(q, "DELETE FROM xattrs WHERE ino = ? AND name = ?");
      q.Bind(1, op.ino).Bind(2, op.name);
      STEP_DONE(q, "remove xattr");
      s = SetCtime(op.ino, op.ctime);
      break;
    }
    case OpKind::kDeleteInode:
      s = ApplyDeleteInode(op);
      break;
    case OpKind::kChunk:
      s = ApplyChunk(op);
      break;
    case OpKind::kPatch:
      s = ApplyPatch(op);
      break;
    case OpKind::kSegmentState:
      s = ApplySegmentState(op);
      break;
    case OpKind::kMoveChunks:
      s = ApplyMoveChunks(op);
      break;
  }
  if (!s.ok()) return s.WithContext("applying LSN " + std::to_string(lsn));
  applied_lsn_ = lsn;
  return Status::OK();
}

Status MetaStore::InsertEntry(uint64_t parent, const std::string& name, uint64_t ino,
                              uint32_t mode) {
  PREP(q, "INSERT INTO entries(parent, name, ino, mode) VALUES(?,?,?,?)");
  q.Bind(1, parent).Bind(2, name).Bind(3, ino).Bind(4, mode);
  if (q.Step() != SQLITE_DONE)
    return Status::Corruption("entry in directory " + std::to_string(parent) +
                              " already exists (journal and database disagree)");
  return Status::OK();
}

Status MetaStore::DeleteEntry(uint64_t parent, const std::string& name) {
  PREP(q, "DELETE FROM entries WHERE parent = ? AND name = ?");
  q.Bind(1, parent).Bind(2, name);
  STEP_DONE(q, "delete entry");
  if (sqlite3_changes(db_) != 1)
    return Status::Corruption("entry in directory " + std::to_string(parent) +
                              " is missing (journal and database disagree)");
  return Status::OK();
}

Status MetaStore::AdjustNlink(uint64_t ino, int delta) {
  inode_rows_.erase(ino);
  PREP(q, "UPDATE inodes SET nlink = MAX(nlink + ?, 0) WHERE ino = ?");
  q.Bind(1, static_cast<int64_t>(delta)).Bind(2, ino);
  STEP_DONE(q, "update link count");
  return Status::OK();
}

Status MetaStore::AdjustNlinkAndCtime(uint64_t ino, int delta, int64_t t) {
  inode_rows_.erase(ino);
  PREP(q, "UPDATE inodes SET nlink = MAX(nlink + ?, 0), ctime = ? WHERE ino = ?");
  q.Bind(1, static_cast<int64_t>(delta)).Bind(2, t).Bind(3, ino);
  STEP_DONE(q, "update link count");
  return Status::OK();
}

Status MetaStore::TouchDir(uint64_t ino, int64_t t) {
  inode_rows_.erase(ino);
  PREP(q, "UPDATE inodes SET mtime = ?, ctime = ? WHERE ino = ?");
  q.Bind(1, t).Bind(2, t).Bind(3, ino);
  STEP_DONE(q, "update directory times");
  return Status::OK();
}

Status MetaStore::SetCtime(uint64_t ino, int64_t t) {
  inode_rows_.erase(ino);
  PREP(q, "UPDATE inodes SET ctime = ? WHERE ino = ?");
  q.Bind(1, t).Bind(2, ino);
  STEP_DONE(q, "update ctime");
  return Status::OK();
}

Status MetaStore::ApplyCreate(const Op& op) {
  bool dir = S_ISDIR(op.mode);
  inode_rows_.erase(op.ino);
  has_xattrs_.erase(op.ino);
  PREP(q,
       "INSERT INTO inodes(ino, mode, uid, gid, nlink, size, atime, mtime, ctime, btime, "
       "rdev, symlink) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
  q.Bind(1, op.ino).Bind(2, op.mode).Bind(3, op.uid).Bind(4, op.gid);
  q.Bind(5, static_cast<int64_t>(dir ? 2 : 1)).Bind(6, op.size);
  q.Bind(7, op.ctime).Bind(8, op.ctime).Bind(9, op.ctime).Bind(10, op.ctime).Bind(11, op.rdev);
  if (S_ISLNK(op.mode)) q.Bind(12, op.blob);
  if (q.Step() != SQLITE_DONE)
    return Status::Corruption("inode " + std::to_string(op.ino) + " already exists");
  totals_.inodes++;
  if (op.ino >= next_ino_) next_ino_ = op.ino + 1;
  if (op.parent == 0) return Status::OK();  // the root directory, made by mkfs
  RETURN_IF_ERROR(InsertEntry(op.parent, op.name, op.ino, op.mode));
  if (dir) RETURN_IF_ERROR(AdjustNlink(op.parent, 1));
  return TouchDir(op.parent, op.ctime);
}

Status MetaStore::ApplyLink(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::Corruption("link to missing inode " + std::to_string(op.ino));
  RETURN_IF_ERROR(InsertEntry(op.parent, op.name, op.ino, inode->mode));
  RETURN_IF_ERROR(AdjustNlinkAndCtime(op.ino, 1, op.ctime));
  return TouchDir(op.parent, op.ctime);
}

Status MetaStore::ApplyUnlink(const Op& op) {
  ASSIGN_OR_RETURN(auto e, LookupEntry(op.parent, op.name));
  if (!e) return Status::Corruption("unlink of a missing entry in " + std::to_string(op.parent));
  RETURN_IF_ERROR(DeleteEntry(op.parent, op.name));
  const bool dir = S_ISDIR(e->mode);
  if (dir) RETURN_IF_ERROR(AdjustNlink(op.parent, -1));
  RETURN_IF_ERROR(AdjustNlinkAndCtime(e->ino, dir ? -2 : -1, op.ctime));
  return TouchDir(op.parent, op.ctime);
}

Status MetaStore::ApplyRename(const Op& op) {
  constexpr uint32_t kExchange = 2;  // RENAME_EXCHANGE
  ASSIGN_OR_RETURN(auto src, LookupEntry(op.parent, op.name));
  if (!src) return Status::Corruption("rename of a missing entry in " + std::to_string(op.parent));
  ASSIGN_OR_RETURN(auto dst, LookupEntry(op.new_parent, op.new_name));
  bool cross = op.parent != op.new_parent;
  if (op.flags & kExchange) {
    if (!dst) return Status::Corruption("exchange with a missing entry");
    // Entries keep their cookies; only the inodes they name swap. Names are re-encrypted by
    // the caller only when they move between directories, so delete and insert both.
    RETURN_IF_ERROR(DeleteEntry(op.parent, op.name));
    RETURN_IF_ERROR(DeleteEntry(op.new_parent, op.new_name));
    RETURN_IF_ERROR(InsertEntry(op.parent, op.name, dst->ino, dst->mode));
    RETURN_IF_ERROR(InsertEntry(op.new_parent, op.new_name, src->ino, src->mode));
    if (cross && S_ISDIR(src->mode) != S_ISDIR(dst->mode)) {
      int d = S_ISDIR(src->mode) ? 1 : -1;
      RETURN_IF_ERROR(AdjustNlink(op.new_parent, d));
      RETURN_IF_ERROR(AdjustNlink(op.parent, -d));
    }
    RETURN_IF_ERROR(SetCtime(dst->ino, op.ctime));
  } else {
    if (dst) {
      if (dst->ino == src->ino) return Status::OK();  // hard links to one inode: no-op
      RETURN_IF_ERROR(DeleteEntry(op.new_parent, op.new_name));
      const bool dir = S_ISDIR(dst->mode);
      if (dir) RETURN_IF_ERROR(AdjustNlink(op.new_parent, -1));
      RETURN_IF_ERROR(AdjustNlinkAndCtime(dst->ino, dir ? -2 : -1, op.ctime));
    }
    RETURN_IF_ERROR(DeleteEntry(op.parent, op.name));
    RETURN_IF_ERROR(InsertEntry(op.new_parent, op.new_name, src->ino, src->mode));
    if (cross && S_ISDIR(src->mode)) {
      RETURN_IF_ERROR(AdjustNlink(op.parent, -1));
      RETURN_IF_ERROR(AdjustNlink(op.new_parent, 1));
    }
  }
  RETURN_IF_ERROR(SetCtime(src->ino, op.ctime));
  RETURN_IF_ERROR(TouchDir(op.parent, op.ctime));
  if (cross) RETURN_IF_ERROR(TouchDir(op.new_parent, op.ctime));
  return Status::OK();
}

Status MetaStore::ApplySetAttr(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::Corruption("setattr of missing inode " + std::to_string(op.ino));
  InodeRow r = *inode;
  inode_rows_.erase(op.ino);
  if (op.mask & kSetMode) r.mode = (r.mode & S_IFMT) | (op.mode & 07777);
  if (op.mask & kSetUid) r.uid = op.uid;
  if (op.mask & kSetGid) r.gid = op.gid;
  if (op.mask & kSetAtime) r.atime = op.atime;
  if (op.mask & kSetMtime) r.mtime = op.mtime;
  if (op.mask & kSetCtime) r.ctime = op.ctime;
  if (op.mask & kSetSize) {
    if (op.size < r.size) RETURN_IF_ERROR(TruncateChunks(op.ino, op.size));
    r.size = op.size;
  }
  PREP(q, "UPDATE inodes SET mode=?, uid=?, gid=?, size=?, atime=?, mtime=?, ctime=? WHERE ino=?");
  q.Bind(1, r.mode).Bind(2, r.uid).Bind(3, r.gid).Bind(4, r.size).Bind(5, r.atime);
  q.Bind(6, r.mtime).Bind(7, r.ctime).Bind(8, op.ino);
  STEP_DONE(q, "setattr");
  return Status::OK();
}

Status MetaStore::ApplyDeleteInode(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::OK();  // already gone: idempotent
  // Every chunk and patch row counts its stored bytes (never 0: a sealed record has a tag), so
  // an inode that stores nothing has none of them.
  if (inode->stored_bytes > 0) RETURN_IF_ERROR(TruncateChunks(op.ino, 0));
  ASSIGN_OR_RETURN(bool xattrs, HasXattrs(op.ino));
  inode_rows_.erase(op.ino);
  has_xattrs_.erase(op.ino);
  if (xattrs) {
    PREP(x, "DELETE FROM xattrs WHERE ino = ?");
    x.Bind(1, op.ino);
    STEP_DONE(x, "delete xattrs");
  }
  PREP(q, "DELETE FROM inodes WHERE ino = ?");
  q.Bind(1, op.ino);
  STEP_DONE(q, "delete inode");
  totals_.inodes--;
  return Status::OK();
}

Result<std::optional<InodeRow>> MetaStore::GetInode(uint64_t ino) {
  if (auto it = inode_rows_.find(ino); it != inode_rows_.end())
    return std::optional<InodeRow>(it->second);
  PREP(q, "SELECT " INODE_COLUMNS("") " FROM inodes WHERE ino = ?");
  q.Bind(1, ino);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<InodeRow>();
  if (rc != SQLITE_ROW) return SqlError("read inode");
  InodeRow row = ReadInodeRow(q, ino, 0);
  if (inode_rows_.size() >= kCachedInodeRows) inode_rows_.clear();
  inode_rows_.emplace(ino, row);
  return std::optional<InodeRow>(std::move(row));
}

Result<std::optional<EntryInode>> MetaStore::LookupEntryInode(uint64_t parent,
                                                              const std::string& name) {
  PREP(q, "SELECT e.ino, e.mode, e.cookie, " INODE_COLUMNS(
              "i.") " FROM entries e LEFT JOIN inodes i ON i.ino = e.ino "
                    "WHERE e.parent = ? AND e.name = ?");
  q.Bind(1, parent).Bind(2, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<EntryInode>();
  if (rc != SQLITE_ROW) return SqlError("lookup");
  EntryInode r;
  r.entry = ReadEntryRow(q, name, 0);
  if (!q.IsNull(3)) r.inode = ReadInodeRow(q, r.entry.ino, 3);
  return std::optional<EntryInode>(std::move(r));
}

Result<std::optional<EntryRow>> MetaStore::LookupEntry(uint64_t parent, const std::string& name) {
  PREP(q, "SELECT ino, mode, cookie FROM entries WHERE parent = ? AND name = ?");
  q.Bind(1, parent).Bind(2, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<EntryRow>();
  if (rc != SQLITE_ROW) return SqlError("lookup");
  return std::optional<EntryRow>(ReadEntryRow(q, name, 0));
}

Result<std::vector<EntryRow>> MetaStore::ListEntries(uint64_t parent, uint64_t after,
                                                     size_t limit) {
  PREP(q,
       "SELECT name, ino, mode, cookie FROM entries WHERE parent = ? AND cookie > ? "
       "ORDER BY cookie LIMIT ?");
  q.Bind(1, parent).Bind(2, after).Bind(3, static_cast<uint64_t>(limit));
  std::vector<EntryRow> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ReadEntryRow(q, q.Blob(0), 1));
  if (rc != SQLITE_DONE) return SqlError("list directory");
  return out;
}

Result<bool> MetaStore::DirIsEmpty(uint64_t ino) {
  PREP(q, "SELECT 1 FROM entries WHERE parent = ? LIMIT 1");
  q.Bind(1, ino);
  int rc = q.Step();
  if (rc == SQLITE_ROW) return false;
  if (rc != SQLITE_DONE) return SqlError("check empty directory");
  return true;
}

Result<std::optional<std::string>> MetaStore::GetXattr(uint64_t ino, const std::string& name) {
  PREP(q, "SELECT value FROM xattrs WHERE ino = ? AND name = ?");
  q.Bind(1, ino).Bind(2, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError("read xattr");
  return std::optional<std::string>(q.Blob(0));
}

Result<bool> MetaStore::HasXattrs(uint64_t ino) {
  if (auto it = has_xattrs_.find(ino); it != has_xattrs_.end()) return it->second;
  PREP(q, "SELECT 1 FROM xattrs WHERE ino = ? LIMIT 1");
  q.Bind(1, ino);
  int rc = q.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqlError("read xattrs");
  if (has_xattrs_.size() >= kCachedInodeRows) has_xattrs_.clear();
  has_xattrs_.emplace(ino, rc == SQLITE_ROW);
  return rc == SQLITE_ROW;
}

Result<std::vector<std::pair<std::string, std::string>>> MetaStore::ListXattrs(uint64_t ino) {
  PREP(q, "SELECT name, value FROM xattrs WHERE ino = ?");
  q.Bind(1, ino);
  std::vector<std::pair<std::string, std::string>> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.emplace_back(q.Blob(0), q.Blob(1));
  if (rc != SQLITE_DONE) return SqlError("list xattrs");
  return out;
}

Result<std::vector<uint64_t>> MetaStore::Orphans() {
  PREP(q, "SELECT ino FROM inodes WHERE nlink = 0");
  std::vector<uint64_t> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(static_cast<uint64_t>(q.Int(0)));
  if (rc != SQLITE_DONE) return SqlError("list orphans");
  return out;
}

}  // namespace strata::meta
