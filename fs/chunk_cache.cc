#include "fs/chunk_cache.h"

namespace strata::fs {

ChunkCache::ChunkCache(uint64_t capacity_bytes)
    : per_shard_(capacity_bytes / kShards), shards_(kShards) {}

std::shared_ptr<const std::string> ChunkCache::Get(uint64_t ino, uint64_t index, uint64_t version) {
  Key k{ino, index, version};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(k);
  if (it == s.map.end()) return nullptr;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  return it->second->second;
}

void ChunkCache::Put(uint64_t ino, uint64_t index, uint64_t version,
                     std::shared_ptr<const std::string> data) {
  if (per_shard_ == 0) return;
  Key k{ino, index, version};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  if (s.map.count(k)) return;
  s.bytes += data->size();
  s.lru.emplace_front(k, std::move(data));
  s.map[k] = s.lru.begin();
  while (s.bytes > per_shard_ && !s.lru.empty()) {
    auto& back = s.lru.back();
    s.bytes -= back.second->size();
    s.map.erase(back.first);
    s.lru.pop_back();
  }
}

}  // namespace strata::fs
