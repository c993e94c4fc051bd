// ChunkRowCache: the chunk map rows MetaStore::GetChunk found lately, so that a read of a
// chunk costs no SQL query once its row is known. Every read takes one; a query costs 7-14 us.
//
// Exact, not eventually right: MetaStore forgets a row once a statement that may change it has
// run (a chunk stored, patched, moved, truncated or deleted), and everything on a rollback or a
// failed apply or commit, so a hit is always what the database (with its open transaction)
// would answer. The absence of a row (a hole) is cached too.
//
// Bounded by two generations of at most `per_generation` rows: a row found in the old one
// moves to the young one, and a full young generation becomes the old one, dropping the rows
// not used since the last turn.
//
// Thread-safety: none; MetaStore's owner serialises every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "meta/meta_store.h"

namespace strata::meta {

class ChunkRowCache {
 public:
  explicit ChunkRowCache(size_t per_generation) : per_generation_(per_generation) {}

  // Whether the row of (ino, index) is known; if so, *row is it (nullopt: no stored chunk).
  bool Find(uint64_t ino, uint64_t index, std::optional<ChunkRow>* row);
  void Put(uint64_t ino, uint64_t index, const std::optional<ChunkRow>& row);
  void Forget(uint64_t ino, uint64_t index);
  // Every row of `ino`.
  void ForgetInode(uint64_t ino);
  void Clear();
  size_t size() const { return young_.size() + old_.size(); }

 private:
  using Key = std::pair<uint64_t, uint64_t>;
  using Map = std::map<Key, std::optional<ChunkRow>>;
  static void EraseInode(Map* m, uint64_t ino);
  // Turns a full young generation into the old one.
  void MakeRoom();

  size_t per_generation_;
  Map young_, old_;
};

}  // namespace strata::meta
