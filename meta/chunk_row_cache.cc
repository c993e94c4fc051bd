#include "meta/chunk_row_cache.h"

namespace strata::meta {

bool ChunkRowCache::Find(uint64_t ino, uint64_t index, std::optional<ChunkRow>* row) {
  const Key k{ino, index};
  if (auto it = young_.find(k); it != young_.end()) {
    *row = it->second;
    return true;
  }
  auto it = old_.find(k);
  if (it == old_.end()) return false;
  *row = it->second;
  auto node = old_.extract(it);  // moves to the young generation, without a new allocation
  MakeRoom();
  young_.insert(std::move(node));
  return true;
}

void ChunkRowCache::MakeRoom() {
  if (young_.size() < per_generation_) return;
  old_ = std::move(young_);
  young_.clear();
}

void ChunkRowCache::Put(uint64_t ino, uint64_t index, const std::optional<ChunkRow>& row) {
  if (per_generation_ == 0) return;
  old_.erase(Key{ino, index});
  MakeRoom();
  young_.insert_or_assign(Key{ino, index}, row);
}

void ChunkRowCache::Forget(uint64_t ino, uint64_t index) {
  young_.erase(Key{ino, index});
  old_.erase(Key{ino, index});
}

void ChunkRowCache::EraseInode(Map* m, uint64_t ino) {
  m->erase(m->lower_bound(Key{ino, 0}),
           ino == UINT64_MAX ? m->end() : m->lower_bound(Key{ino + 1, 0}));
}

void ChunkRowCache::ForgetInode(uint64_t ino) {
  EraseInode(&young_, ino);
  EraseInode(&old_, ino);
}

void ChunkRowCache::Clear() {
  young_.clear();
  old_.clear();
}

}  // namespace strata::meta
