#include "fs/read_cache.h"

#include <fmt/format.h>

#include <cstdlib>

#include "base/logging.h"

namespace strata::fs {
namespace {
// Entries never overlap by more than this many neighbours (two fetches of one file that
// started at different chunks), so a lookup looks no further back.
constexpr int kMaxOverlapProbe = 4;
}  // namespace

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

const ReadCache::Segment::value_type* ReadCache::CoveringLocked(uint64_t segment, uint64_t offset,
                                                                uint64_t length) const {
  auto s = index_.find(segment);
  if (s == index_.end()) return nullptr;
  auto it = s->second.upper_bound(offset);
  for (int i = 0; i < kMaxOverlapProbe && it != s->second.begin(); i++) {
    --it;
    if (offset + length <= it->first + it->second.size) return &*it;
  }
  return nullptr;
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
    Drop(segment, offset);
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return out;
}

void ReadCache::Put(uint64_t segment, uint64_t offset, std::string_view bytes) {
  if (capacity_ == 0 || bytes.empty() || bytes.size() > capacity_ / 4) return;
  Key k{segment, offset};
  {
    std::lock_guard<std::mutex> l(mu_);
    if (CoveringLocked(segment, offset, bytes.size()) != nullptr) return;
    if (index_.count(segment) && index_[segment].count(offset)) return;  // a shorter one
  }
  // Write beside, then rename: a reader never sees a half-written entry under its name.
  std::string path = PathOf(k);
  std::string tmp = fmt::format("{}.{}.tmp", path, env_->NowNanos());
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(auto f, env_->OpenFile(tmp, OpenMode::kCreate));
    RETURN_IF_ERROR(f->Write(0, bytes));
    return env_->RenameFile(tmp, path);
  }();
  if (!s.ok()) {
    env_->RemoveFile(tmp).IgnoreError();
    log::Warn("read cache {}: {}", dir_, s.ToString());
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (index_.count(segment) && index_[segment].count(offset)) return;
  AddLocked(k, bytes.size());
  EvictLocked();
}

void ReadCache::AddLocked(const Key& k, uint64_t size) {
  lru_.push_front(k);
  index_[k.segment][k.offset] = Entry{size, lru_.begin()};
  bytes_ += size;
}

void ReadCache::Drop(uint64_t segment, uint64_t offset) {
  std::lock_guard<std::mutex> l(mu_);
  while (const auto* e = CoveringLocked(segment, offset, 1)) EraseLocked(Key{segment, e->first});
}

void ReadCache::EraseLocked(Key k) {
  auto s = index_.find(k.segment);
  if (s == index_.end()) return;
  auto it = s->second.find(k.offset);
  if (it == s->second.end()) return;
  bytes_ -= it->second.size;
  lru_.erase(it->second.lru);
  s->second.erase(it);
  if (s->second.empty()) index_.erase(s);
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
