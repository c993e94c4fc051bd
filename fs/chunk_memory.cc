#include "fs/chunk_memory.h"

#include <algorithm>

namespace strata::fs {

std::shared_ptr<ChunkMemory> ChunkMemory::Make(size_t chunk_size, uint64_t budget_bytes) {
  return std::shared_ptr<ChunkMemory>(new ChunkMemory(chunk_size, budget_bytes));
}

ChunkMemory::ChunkMemory(size_t chunk_size, uint64_t budget_bytes)
    : chunk_size_(chunk_size),
      budget_(budget_bytes),
      // A full cache evicts about one chunk per chunk it takes in; a few dozen spares cover
      // the decodes and seals in flight between the two.
      floor_(std::min<uint64_t>(budget_bytes / 8, 64 * uint64_t{chunk_size})) {}

// The reserving thread holds no reference: the last one never drops on it.
ChunkMemory::~ChunkMemory() { StopReserving(); }

void ChunkMemory::Cached(int64_t delta) {
  cached_ += delta;
  if (delta <= 0) return;
  // The cache grew by more than the spares it took (a small chunk, a merged patched one):
  // spares beyond the budget go.
  std::vector<std::string> drop;  // freed past the lock
  std::lock_guard<std::mutex> l(mu_);
  while (!spare_.empty() && spare_.size() * chunk_size_ > SpareLimit()) {
    drop.push_back(std::move(spare_.back()));
    spare_.pop_back();
  }
}

uint64_t ChunkMemory::SpareLimit() const {
  const int64_t cached = cached_.load();
  const uint64_t room = cached >= static_cast<int64_t>(budget_) ? 0 : budget_ - cached;
  return std::max(room, floor_);
}

std::string ChunkMemory::TakeSpare() {
  std::string s;
  std::lock_guard<std::mutex> l(mu_);
  if (!spare_.empty()) {
    s = std::move(spare_.back());
    spare_.pop_back();
  }
  return s;
}

std::string ChunkMemory::Take(size_t n) {
  std::string s = TakeSpare();
  s.assign(n, '\0');
  return s;
}

std::string ChunkMemory::TakeToOverwrite(size_t n) {
  std::string s = TakeSpare();
  s.resize(n);  // zero fills only past what the buffer held
  return s;
}

void ChunkMemory::Give(std::string&& s) {
  // Only chunk-sized buffers: a small file's last chunk is stored in a small one on purpose.
  if (s.capacity() < chunk_size_ || s.capacity() > 2 * chunk_size_) return;
  std::string keep = std::move(s);
  std::lock_guard<std::mutex> l(mu_);
  if ((spare_.size() + 1) * chunk_size_ > SpareLimit()) return;  // `keep` is freed
  spare_.push_back(std::move(keep));
}

void ChunkMemory::StartReserving(uint64_t bytes) {
  if (reserver_.joinable() || bytes < chunk_size_) return;
  stop_ = false;
  // `this`, not a shared_ptr: StopReserving or the destructor joins the thread first.
  reserver_ = std::thread([this, bytes] {
    // At normal priority: it takes mu_, which every read and write takes too, and a thread at
    // SCHED_IDLE preempted while holding it could stall them for hundreds of milliseconds on a
    // busy machine. Its ~0.2 s of one core at mount is the price.
    for (uint64_t done = 0; done < bytes && !stop_.load(std::memory_order_relaxed);
         done += chunk_size_) {
      std::string s(chunk_size_, '\0');  // writing the zeros is what touches the pages
      std::lock_guard<std::mutex> l(mu_);
      if ((spare_.size() + 1) * chunk_size_ > SpareLimit()) break;
      spare_.push_back(std::move(s));
    }
  });
}

void ChunkMemory::StopReserving() {
  stop_ = true;
  if (reserver_.joinable()) reserver_.join();
}

uint64_t ChunkMemory::spare_bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return spare_.size() * chunk_size_;
}

}  // namespace strata::fs
