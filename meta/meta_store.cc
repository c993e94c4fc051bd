#include "meta/meta_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>

#include "meta/chunk_row_cache.h"

namespace strata::meta {
namespace {

constexpr int kSchemaVersion = 3;
constexpr uint64_t kFirstPlacementSegment = uint64_t{1} << 40;  // = journal::kFirstPlacementSegment
// Rows per generation of the chunk-row cache: at most twice this many, ~100 bytes each.
constexpr size_t kCachedChunkRows = 32768;

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

class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, uint64_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, uint32_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  int64_t Int(int c) { return sqlite3_column_int64(s_, c); }
  bool IsNull(int c) { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string Blob(int c) {
    const void* p = sqlite3_column_blob(s_, c);
    int n = sqlite3_column_bytes(s_, c);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }

 private:
  sqlite3_stmt* s_;
};

// The chunk map columns every chunk query selects, in the order ReadChunkRow reads them.
#define CHUNK_COLUMNS "idx, segment, offset, stored_len, logical_len, version, patches"
// The same for patch rows (logical_len: none of its own).
#define PATCH_COLUMNS "idx, segment, offset, stored_len, 0, version, seq"

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

ChunkRow ReadChunkRow(Stmt& q) {
  ChunkRow c;
  c.index = static_cast<uint64_t>(q.Int(0));
  c.segment = static_cast<uint64_t>(q.Int(1));
  c.offset = static_cast<uint64_t>(q.Int(2));
  c.stored_len = static_cast<uint32_t>(q.Int(3));
  c.logical_len = static_cast<uint32_t>(q.Int(4));
  c.version = static_cast<uint64_t>(q.Int(5));
  c.patches = static_cast<uint32_t>(q.Int(6));
  return c;
}

// Forgets the cached rows of a chunk (or of every chunk of an inode) when it goes out of
// scope: after the statements below it changed them, however the change ends.
class ForgetRowsOnExit {
 public:
  ForgetRowsOnExit(ChunkRowCache* rows, uint64_t ino, std::optional<uint64_t> index)
      : rows_(rows), ino_(ino), index_(index) {}
  ~ForgetRowsOnExit() { index_ ? rows_->Forget(ino_, *index_) : rows_->ForgetInode(ino_); }
  ForgetRowsOnExit(const ForgetRowsOnExit&) = delete;
  ForgetRowsOnExit& operator=(const ForgetRowsOnExit&) = delete;

 private:
  ChunkRowCache* rows_;
  uint64_t ino_;
  std::optional<uint64_t> index_;
};

}  // namespace

#define PREP(var, sql)                                     \
  ASSIGN_OR_RETURN(sqlite3_stmt* var##_raw, Prepare(sql)); \
  Stmt var(var##_raw)

#define STEP_DONE(stmt, what)                                \
  do {                                                       \
    if ((stmt).Step() != SQLITE_DONE) return SqlError(what); \
  } while (0)

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

Status MetaStore::Begin() {
  if (in_txn_) return Status::OK();
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  in_txn_ = true;
  return Status::OK();
}

Status MetaStore::Commit() {
  if (!in_txn_) return Status::OK();
  Status s = CommitTxn();
  if (!s.ok()) rows_->Clear();  // as in Apply
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
  rows_->Clear();  // they may hold rows of the dropped transaction
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
  if (!s.ok()) rows_->Clear();
  return s;
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
      PREP(q, "INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?,?,?)");
      q.Bind(1, op.ino).Bind(2, op.name).Bind(3, op.blob);
      STEP_DONE(q, "set xattr");
      s = SetCtime(op.ino, op.ctime);
      break;
    }
    case OpKind::kRemoveXattr: {
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
  PREP(q, "UPDATE inodes SET nlink = MAX(nlink + ?, 0) WHERE ino = ?");
  q.Bind(1, static_cast<int64_t>(delta)).Bind(2, ino);
  STEP_DONE(q, "update link count");
  return Status::OK();
}

Status MetaStore::TouchDir(uint64_t ino, int64_t t) {
  PREP(q, "UPDATE inodes SET mtime = ?, ctime = ? WHERE ino = ?");
  q.Bind(1, t).Bind(2, t).Bind(3, ino);
  STEP_DONE(q, "update directory times");
  return Status::OK();
}

Status MetaStore::SetCtime(uint64_t ino, int64_t t) {
  PREP(q, "UPDATE inodes SET ctime = ? WHERE ino = ?");
  q.Bind(1, t).Bind(2, ino);
  STEP_DONE(q, "update ctime");
  return Status::OK();
}

Status MetaStore::ApplyCreate(const Op& op) {
  bool dir = S_ISDIR(op.mode);
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
  RETURN_IF_ERROR(AdjustNlink(op.ino, 1));
  RETURN_IF_ERROR(SetCtime(op.ino, op.ctime));
  return TouchDir(op.parent, op.ctime);
}

Status MetaStore::ApplyUnlink(const Op& op) {
  ASSIGN_OR_RETURN(auto e, LookupEntry(op.parent, op.name));
  if (!e) return Status::Corruption("unlink of a missing entry in " + std::to_string(op.parent));
  RETURN_IF_ERROR(DeleteEntry(op.parent, op.name));
  if (S_ISDIR(e->mode)) {
    RETURN_IF_ERROR(AdjustNlink(e->ino, -2));
    RETURN_IF_ERROR(AdjustNlink(op.parent, -1));
  } else {
    RETURN_IF_ERROR(AdjustNlink(e->ino, -1));
  }
  RETURN_IF_ERROR(SetCtime(e->ino, op.ctime));
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
      if (S_ISDIR(dst->mode)) {
        RETURN_IF_ERROR(AdjustNlink(dst->ino, -2));
        RETURN_IF_ERROR(AdjustNlink(op.new_parent, -1));
      } else {
        RETURN_IF_ERROR(AdjustNlink(dst->ino, -1));
      }
      RETURN_IF_ERROR(SetCtime(dst->ino, op.ctime));
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

Status MetaStore::AddStored(uint64_t ino, uint64_t segment, int64_t delta) {
  if (delta == 0) return Status::OK();
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

Status MetaStore::ApplySetAttr(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::Corruption("setattr of missing inode " + std::to_string(op.ino));
  InodeRow r = *inode;
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

Status MetaStore::ApplyDeleteInode(const Op& op) {
  ASSIGN_OR_RETURN(auto inode, GetInode(op.ino));
  if (!inode) return Status::OK();  // already gone: idempotent
  RETURN_IF_ERROR(TruncateChunks(op.ino, 0));
  {
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
  PREP(q, "SELECT " INODE_COLUMNS("") " FROM inodes WHERE ino = ?");
  q.Bind(1, ino);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<InodeRow>();
  if (rc != SQLITE_ROW) return SqlError("read inode");
  return std::optional<InodeRow>(ReadInodeRow(q, ino, 0));
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

Result<bool> MetaStore::HasChunks() {
  PREP(q, "SELECT 1 FROM chunks LIMIT 1");
  int rc = q.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return SqlError("look for chunks");
  return false;
}

Result<bool> MetaStore::DirIsEmpty(uint64_t ino) {
  PREP(q, "SELECT 1 FROM entries WHERE parent = ? LIMIT 1");
  q.Bind(1, ino);
  int rc = q.Step();
  if (rc == SQLITE_ROW) return false;
  if (rc != SQLITE_DONE) return SqlError("check empty directory");
  return true;
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

Result<std::optional<std::string>> MetaStore::GetXattr(uint64_t ino, const std::string& name) {
  PREP(q, "SELECT value FROM xattrs WHERE ino = ? AND name = ?");
  q.Bind(1, ino).Bind(2, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError("read xattr");
  return std::optional<std::string>(q.Blob(0));
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
