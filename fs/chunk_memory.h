// Chunk-sized buffers kept for reuse.
//
// A page the process touches for the first time is expensive on the virtual machines strata
// runs on: ~3 us per 4 KiB page where the hypervisor backs guest memory on first use and takes
// freed pages back, so ~90 us for a 128 KiB chunk, a quarter of a cold 4 KiB read (bench/
// README.md). Decoded chunks and write buffers are therefore taken from here and given back
// when their last reference drops, and a mount reserves the decoded-chunk cache's worth in the
// background, so that neither the first reads after a mount nor a steady stream of writes pays
// for fresh memory.
//
// Spare buffers plus the cache's decoded bytes stay within the cache's budget, with a small
// floor of spares so that a full cache still recycles what it evicts. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace strata::fs {

class ChunkMemory : public std::enable_shared_from_this<ChunkMemory> {
 public:
  static std::shared_ptr<ChunkMemory> Make(size_t chunk_size, uint64_t budget_bytes);
  ~ChunkMemory();
  ChunkMemory(const ChunkMemory&) = delete;
  ChunkMemory& operator=(const ChunkMemory&) = delete;

  // n zero bytes (n <= the chunk size), in a spare buffer when there is one.
  std::string Take(size_t n);
  // n bytes (n <= the chunk size) that may still hold what a spare buffer held before (another
  // file's data), for a caller that writes every one of them before anything reads them, or
  // gives the buffer back unread: a decoder. It saves Take's zero fill, which a decoder
  // overwrites anyway (~4% of the daemon's CPU under 32 readers).
  std::string TakeToOverwrite(size_t n);
  // Keeps s for reuse when it holds a chunk and the budget has room; frees it otherwise.
  void Give(std::string&& s);
  // obj, shared and read-only; its chunk buffer (`buffer(obj)`) comes back here when the last
  // reference drops.
  template <class T, class Buffer>
  std::shared_ptr<const T> Share(T obj, Buffer buffer) {
    return std::shared_ptr<const T>(new T(std::move(obj)),
                                    [self = shared_from_this(), buffer](const T* p) {
                                      auto* owned = const_cast<T*>(p);
                                      self->Give(std::move(buffer(*owned)));
                                      delete owned;
                                    });
  }
  std::shared_ptr<const std::string> Share(std::string s) {
    return Share(std::move(s), [](std::string& b) -> std::string& { return b; });
  }

  // The decoded-chunk cache reports what it holds: spares make room for it.
  void Cached(int64_t delta);

  // Touches spare buffers on a thread of its own until `bytes` are spare (or the budget is
  // full); StopReserving, or the destructor, ends it.
  void StartReserving(uint64_t bytes);
  void StopReserving();

  uint64_t spare_bytes() const;
  size_t chunk_size() const { return chunk_size_; }

 private:
  ChunkMemory(size_t chunk_size, uint64_t budget_bytes);
  uint64_t SpareLimit() const;  // REQUIRES: mu_
  std::string TakeSpare();      // empty when there is none

  const size_t chunk_size_;
  const uint64_t budget_;
  const uint64_t floor_;  // spares kept whatever the cache holds
  std::atomic<int64_t> cached_{0};
  mutable std::mutex mu_;
  std::vector<std::string> spare_;
  std::atomic<bool> stop_{false};
  std::thread reserver_;
};

}  // namespace strata::fs
