// ReadCache: byte ranges fetched from cold tiers, kept on the hot tier so a second read of a
// cold file does not wait on the tier. An entry is one fetched range of a segment (the records
// of a file, usually), exactly the bytes stored on the tier (sealed records, never plaintext:
// promise 1), one file per range under <hot>/cache/ named by segment id and start offset; a
// record is read from the entry that covers it. Bounded by bytes with LRU eviction over
// entries; the index is rebuilt from a directory listing at open.
//
// Nothing here is durable or authoritative: entries are not fsynced, and a damaged entry is
// caught by the record checksum and AEAD tag, dropped, and fetched again from the tier.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
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

  // The bytes [offset, offset + length) of the segment, if one entry holds them all.
  std::optional<std::string> Get(uint64_t segment, uint64_t offset, uint64_t length);
  // Keeps `bytes`, which start at `offset` of the segment, unless an entry already covers them;
  // a longer range replaces a shorter one starting at the same byte.
  void Put(uint64_t segment, uint64_t offset, std::string_view bytes);
  // Forgets every entry holding the byte at `offset` (found damaged).
  void Drop(uint64_t segment, uint64_t offset);

  // Whether a range of `size` bytes would be kept (a fetch larger than this is thrown away).
  bool Keeps(uint64_t size) const { return capacity_ > 0 && size <= capacity_ / 4; }
  uint64_t bytes() const;
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Key {
    uint64_t segment, offset;  // the entry's first byte
  };
  struct Entry {
    uint64_t size;
    std::list<Key>::iterator lru;
  };
  struct Segment {
    std::map<uint64_t, Entry> entries;  // by first byte
    uint64_t longest = 0;               // no entry was ever longer: bounds a lookup's probe
  };
  std::string PathOf(const Key& k) const;
  // REQUIRES: mu_ held. The entry holding [offset, offset + length), or null.
  const std::pair<const uint64_t, Entry>* CoveringLocked(uint64_t segment, uint64_t offset,
                                                         uint64_t length) const;
  // The size of the entry starting exactly at `k`, 0 if none.
  uint64_t SizeAtLocked(const Key& k) const;
  void AddLocked(const Key& k, uint64_t size);
  void EvictLocked();
  void EraseLocked(Key k);  // by value: callers pass lru_ elements it erases

  Env* env_;
  const std::string dir_;
  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Key> lru_;                           // front = most recent
  std::unordered_map<uint64_t, Segment> index_;  // by segment id
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace strata::fs
