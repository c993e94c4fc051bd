#include "fs/chunk_cache.h"

#include "fs/chunk_memory.h"

namespace strata::fs {

ChunkCache::ChunkCache(uint64_t capacity_bytes, std::shared_ptr<ChunkMemory> memory)
    : per_shard_(capacity_bytes / kShards), shards_(kShards), memory_(std::move(memory)) {}

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
  std::unique_lock<std::mutex> l(s.mu);
  if (s.map.count(k)) return;
  const int64_t added = static_cast<int64_t>(data->size());
  s.bytes += data->size();
  s.lru.emplace_front(k, std::move(data));
  s.map[k] = s.lru.begin();
  int64_t dropped = 0;
  std::vector<std::shared_ptr<const std::string>> evicted;  // released past the lock
  while (s.bytes > per_shard_ && !s.lru.empty()) {
    auto& back = s.lru.back();
    s.bytes -= back.second->size();
    dropped += static_cast<int64_t>(back.second->size());
    evicted.push_back(std::move(back.second));
    s.map.erase(back.first);
    s.lru.pop_back();
  }
  l.unlock();
  if (memory_) memory_->Cached(added - dropped);
}

}  // namespace strata::fs
