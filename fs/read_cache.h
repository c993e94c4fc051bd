// ReadCache: records fetched from cold tiers, kept on the hot tier so a second read of a cold
// file does not wait on the tier. Entries are the sealed record bytes exactly as stored on the
// tier (never plaintext: promise 1), one file per record under <hot>/cache/, named by segment
// id and offset. Bounded by bytes with LRU eviction; the index is rebuilt from a directory
// listing at open.
//
// Nothing here is durable or authoritative: entries are not fsynced, and a damaged entry is
// caught by the record checksum and AEAD tag, dropped, and fetched again from the tier.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/env.h"

namespace strata::fs {

class ReadCache {
 public:
  ReadCache(Env* env, std::string dir, uint64_t capacity_bytes);
  // Creates the directory and indexes what is already there (evicting down to capacity).
  Status Open();

  std::optional<std::string> Get(uint64_t segment, uint64_t offset);
  void Put(uint64_t segment, uint64_t offset, std::string_view record);
  void Drop(uint64_t segment, uint64_t offset);

  uint64_t bytes() const;
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Key {
    uint64_t segment, offset;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.segment * 31 ^ k.offset);
    }
  };
  struct Entry {
    uint64_t size;
    std::list<Key>::iterator lru;
  };
  std::string PathOf(const Key& k) const;
  // REQUIRES: mu_ held.
  void EvictLocked();
  void EraseLocked(const Key& k);

  Env* env_;
  const std::string dir_;
  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Key> lru_;  // front = most recent
  std::unordered_map<Key, Entry, KeyHash> index_;
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace strata::fs
