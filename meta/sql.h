// Internal to the metadata store: the statement wrapper and the chunk-map helpers shared by
// meta_store.cc (schema, namespace, transactions) and chunk_map.cc (chunks, patches, segments).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>

#include "meta/chunk_row_cache.h"
#include "meta/meta_store.h"

namespace strata::meta::internal {

inline constexpr uint64_t kFirstPlacementSegment = uint64_t{1} << 40;  // = journal's

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

inline ChunkRow ReadChunkRow(Stmt& q) {
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
      : rows_(rows), ino_(ino), whole_inode_(!index), index_(index.value_or(0)) {}
  ~ForgetRowsOnExit() { whole_inode_ ? rows_->ForgetInode(ino_) : rows_->Forget(ino_, index_); }
  ForgetRowsOnExit(const ForgetRowsOnExit&) = delete;
  ForgetRowsOnExit& operator=(const ForgetRowsOnExit&) = delete;

 private:
  // Plain fields, not an optional: GCC 12 warns of an uninitialised optional once inlined.
  ChunkRowCache* rows_;
  uint64_t ino_;
  bool whole_inode_;
  uint64_t index_;
};

}  // namespace strata::meta::internal

// Prepares `sql` (cached by the store) into a Stmt named `var` that resets itself at scope end.
#define PREP(var, sql)                                     \
  ASSIGN_OR_RETURN(sqlite3_stmt* var##_raw, Prepare(sql)); \
  Stmt var(var##_raw)

#define STEP_DONE(stmt, what)                                \
  do {                                                       \
    if ((stmt).Step() != SQLITE_DONE) return SqlError(what); \
  } while (0)
