#include "fs/read_cache.h"

#include <fmt/format.h>

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
    if (!size.ok()) continue;
    lru_.push_back(k);
    index_[k] = Entry{*size, std::prev(lru_.end())};
    bytes_ += *size;
  }
  EvictLocked();
  return Status::OK();
}

std::optional<std::string> ReadCache::Get(uint64_t segment, uint64_t offset) {
  Key k{segment, offset};
  uint64_t size;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = index_.find(k);
    if (it == index_.end()) {
      ++misses_;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    size = it->second.size;
  }
  auto f = env_->OpenFile(PathOf(k), OpenMode::kReadOnly);
  std::string out(size, '\0');
  size_t got = 0;
  if (!f.ok() || !(*f)->Read(0, size, out.data(), &got).ok() || got != size) {
    Drop(segment, offset);
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return out;
}

void ReadCache::Put(uint64_t segment, uint64_t offset, std::string_view record) {
  if (capacity_ == 0 || record.size() > capacity_ / 4) return;
  Key k{segment, offset};
  {
    std::lock_guard<std::mutex> l(mu_);
    if (index_.count(k)) return;
  }
  // Write beside, then rename: a reader never sees a half-written entry under its name.
  std::string path = PathOf(k);
  std::string tmp = fmt::format("{}.{}.tmp", path, env_->NowNanos());
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(auto f, env_->OpenFile(tmp, OpenMode::kCreate));
    RETURN_IF_ERROR(f->Write(0, record));
    return env_->RenameFile(tmp, path);
  }();
  if (!s.ok()) {
    env_->RemoveFile(tmp).IgnoreError();
    log::Warn("read cache {}: {}", dir_, s.ToString());
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (index_.count(k)) return;
  lru_.push_front(k);
  index_[k] = Entry{record.size(), lru_.begin()};
  bytes_ += record.size();
  EvictLocked();
}

void ReadCache::Drop(uint64_t segment, uint64_t offset) {
  std::lock_guard<std::mutex> l(mu_);
  EraseLocked(Key{segment, offset});
}

void ReadCache::EraseLocked(const Key& k) {
  auto it = index_.find(k);
  if (it == index_.end()) return;
  bytes_ -= it->second.size;
  lru_.erase(it->second.lru);
  index_.erase(it);
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
