#include "fs/read_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "base/logging.h"

namespace strata::fs {
ReadCache::ReadCache(Env* env, std::string dir, uint64_t capacity_bytes)
    : env_(env), dir_(std::move(dir)), capacity_(capacity_bytes) {}

std::string ReadCache::PathOf(const Key& k) const {
  return fmt::format("{}/{:016x}-{:016x}", dir_, k.segment, k.offset);
}

Status ReadCache::Open() {
  RETURN_IF_ERROR(env_->CreateDir(dir_));
  ASSIGN_OR_RETURN(auto names, env_->ListDir(dir_));
  std::lock_guard<std::mutex> l(mu_);
  for (const std::string& n : names) {
    Key k{};
    char* end = nullptr;
    if (n.size() != 33 || n[16] != '-') {
      env_->RemoveFile(dir_ + "/" + n).IgnoreError();  // a temp file of an interrupted put
      continue;
    }
    k.segment = std::strtoull(n.substr(0, 16).c_str(), &end, 16);
    k.offset = std::strtoull(n.substr(17).c_str(), &end, 16);
    auto f = env_->OpenFile(PathOf(k), OpenMode::kReadOnly);
    if (!f.ok()) continue;
    auto size = (*f)->Size();
    if (!size.ok() || *size == 0) continue;
    AddLocked(k, *size);
  }
  EvictLocked();
  return Status::OK();
}

const std::pair<const uint64_t, ReadCache::Entry>* ReadCache::CoveringLocked(
    uint64_t segment, uint64_t offset, uint64_t length) const {
  auto s = index_.find(segment);
  if (s == index_.end()) return nullptr;
  const auto& entries = s->second.entries;
  // Entries starting at or before `offset`, nearest first, while one could still reach it.
  for (auto it = entries.upper_bound(offset); it != entries.begin();) {
    --it;
    if (it->first + s->second.longest <= offset) break;
    if (offset + length <= it->first + it->second.size) return &*it;
  }
  return nullptr;
}

uint64_t ReadCache::SizeAtLocked(const Key& k) const {
  auto s = index_.find(k.segment);
  if (s == index_.end()) return 0;
  auto it = s->second.entries.find(k.offset);
  return it == s->second.entries.end() ? 0 : it->second.size;
}

std::optional<std::string> ReadCache::Get(uint64_t segment, uint64_t offset, uint64_t length) {
  Key k{segment, 0};
  {
    std::lock_guard<std::mutex> l(mu_);
    const auto* e = CoveringLocked(segment, offset, length);
    if (e == nullptr) {
      ++misses_;
      return std::nullopt;
    }
    k.offset = e->first;
    lru_.splice(lru_.begin(), lru_, e->second.lru);
  }
  auto f = env_->OpenFile(PathOf(k), OpenMode::kReadOnly);
  std::string out(length, '\0');
  size_t got = 0;
  if (!f.ok() || !(*f)->Read(offset - k.offset, length, out.data(), &got).ok() || got != length) {
    std::lock_guard<std::mutex> l(mu_);
    EraseLocked(k);  // that entry only: others may hold the bytes intact
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return out;
}

void ReadCache::Put(uint64_t segment, uint64_t offset, std::string_view bytes) {
  if (capacity_ == 0 || bytes.empty() || bytes.size() > capacity_ / 4) return;
  const Key k{segment, offset};
  auto kept = [&] {  // REQUIRES: mu_ held
    return CoveringLocked(segment, offset, bytes.size()) != nullptr ||
           SizeAtLocked(k) >= bytes.size();
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    if (kept()) return;
  }
  // Write beside, then rename under mu_: a reader never sees a half-written entry under its
  // name, and the index never claims more bytes than the file has.
  const std::string path = PathOf(k);
  const std::string tmp = fmt::format("{}.{}.tmp", path, env_->NowNanos());
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(auto f, env_->OpenFile(tmp, OpenMode::kCreate));
    return f->Write(0, bytes);
  }();
  std::lock_guard<std::mutex> l(mu_);
  if (s.ok() && kept()) {
    env_->RemoveFile(tmp).IgnoreError();  // another put won meanwhile
    return;
  }
  if (s.ok()) s = env_->RenameFile(tmp, path);  // over a shorter entry at the same byte, if any
  if (!s.ok()) {
    env_->RemoveFile(tmp).IgnoreError();
    log::Warn("read cache {}: {}", dir_, s.ToString());
    return;
  }
  if (uint64_t old = SizeAtLocked(k)) {
    auto& e = index_[segment].entries[offset];
    bytes_ += bytes.size() - old;
    e.size = bytes.size();
    lru_.splice(lru_.begin(), lru_, e.lru);
    index_[segment].longest = std::max<uint64_t>(index_[segment].longest, bytes.size());
  } else {
    AddLocked(k, bytes.size());
  }
  EvictLocked();
}

void ReadCache::AddLocked(const Key& k, uint64_t size) {
  lru_.push_front(k);
  Segment& seg = index_[k.segment];
  seg.entries[k.offset] = Entry{size, lru_.begin()};
  seg.longest = std::max(seg.longest, size);
  bytes_ += size;
}

void ReadCache::Drop(uint64_t segment, uint64_t offset) {
  std::lock_guard<std::mutex> l(mu_);
  while (const auto* e = CoveringLocked(segment, offset, 1)) EraseLocked(Key{segment, e->first});
}

void ReadCache::EraseLocked(Key k) {
  auto s = index_.find(k.segment);
  if (s == index_.end()) return;
  auto it = s->second.entries.find(k.offset);
  if (it == s->second.entries.end()) return;
  bytes_ -= it->second.size;
  lru_.erase(it->second.lru);
  s->second.entries.erase(it);
  if (s->second.entries.empty()) index_.erase(s);
  env_->RemoveFile(PathOf(k)).IgnoreError();
}

void ReadCache::EvictLocked() {
  while (bytes_ > capacity_ && !lru_.empty()) EraseLocked(lru_.back());
}

uint64_t ReadCache::bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return bytes_;
}

}  // namespace strata::fs
