// A bounded LRU of decoded (decrypted, decompressed) chunks, keyed by inode, chunk index and
// version, so a rewritten chunk can never be served stale. Sharded to keep dozens of
// concurrent readers off one lock. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata::fs {

class ChunkMemory;

class ChunkCache {
 public:
  // `memory`, if given, is told what the cache holds (its spares make room for it).
  explicit ChunkCache(uint64_t capacity_bytes, std::shared_ptr<ChunkMemory> memory = nullptr);
  std::shared_ptr<const std::string> Get(uint64_t ino, uint64_t index, uint64_t version);
  void Put(uint64_t ino, uint64_t index, uint64_t version, std::shared_ptr<const std::string> data);

 private:
  struct Key {
    uint64_t ino, index, version;
    bool operator==(const Key& o) const {
      return ino == o.ino && index == o.index && version == o.version;
    }
  };
  struct KeyHash {
    // splitmix64 finaliser over all three fields: sequentially written files have versions
    // that grow with the index, which a plain XOR cancels into a few shards.
    static uint64_t Mix(uint64_t z) {
      z += 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    }
    size_t operator()(const Key& k) const {
      return static_cast<size_t>(Mix(Mix(Mix(k.ino) ^ k.index) ^ k.version));
    }
  };
  struct Shard {
    std::mutex mu;
    std::list<std::pair<Key, std::shared_ptr<const std::string>>> lru;  // front = newest
    std::unordered_map<Key, decltype(lru)::iterator, KeyHash> map;
    uint64_t bytes = 0;
  };
  static constexpr size_t kShards = 16;
  Shard& ShardFor(const Key& k) { return shards_[KeyHash()(k) % kShards]; }
  uint64_t per_shard_;
  std::vector<Shard> shards_;
  std::shared_ptr<ChunkMemory> memory_;
};

}  // namespace strata::fs
