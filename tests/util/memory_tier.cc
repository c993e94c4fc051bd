#include "tests/util/memory_tier.h"

#include "base/env.h"

namespace strata::test {

Status MemoryTier::Check(const std::string& op, const std::string& key) {
  if (down_) return Status::Unavailable("tier " + name_ + ": " + op + " " + key + ": down");
  return Status::OK();
}

Status MemoryTier::PutFile(const std::string& key, const std::string& local_path) {
  ASSIGN_OR_RETURN(std::string data, ReadWholeFile(Env::Default(), local_path));
  return Put(key, data);
}

Status MemoryTier::Put(const std::string& key, std::string_view data) {
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(Check("put", key));
  objects_[key] = std::string(data);
  return Status::OK();
}

Status MemoryTier::Get(const std::string& key, uint64_t offset, uint64_t length, std::string* out) {
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(Check("get", key));
  ++get_calls_;
  auto it = objects_.find(key);
  if (it == objects_.end()) return Status::NotFound("tier " + name_ + ": get " + key);
  if (offset > it->second.size() || length > it->second.size() - offset)
    return Status::Corruption("tier " + name_ + ": get " + key + ": range past the end");
  out->assign(it->second, offset, length);
  return Status::OK();
}

Result<uint64_t> MemoryTier::Size(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(Check("size", key));
  auto it = objects_.find(key);
  if (it == objects_.end()) return Status::NotFound("tier " + name_ + ": size " + key);
  return static_cast<uint64_t>(it->second.size());
}

Status MemoryTier::Delete(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(Check("delete", key));
  objects_.erase(key);
  return Status::OK();
}

Status MemoryTier::List(const std::string& prefix, std::vector<tiering::ObjectInfo>* out) {
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(Check("list", prefix));
  out->clear();
  for (auto it = objects_.lower_bound(prefix); it != objects_.end(); ++it) {
    if (!it->first.starts_with(prefix)) break;
    out->push_back({it->first, it->second.size()});
  }
  return Status::OK();
}

void MemoryTier::SetDown(bool down) {
  std::lock_guard<std::mutex> l(mu_);
  down_ = down;
}

void MemoryTier::FlipBit(const std::string& key, uint64_t byte_offset) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = objects_.find(key);
  if (it != objects_.end() && byte_offset < it->second.size()) it->second[byte_offset] ^= 0x10;
}

size_t MemoryTier::object_count() {
  std::lock_guard<std::mutex> l(mu_);
  return objects_.size();
}

uint64_t MemoryTier::get_calls() {
  std::lock_guard<std::mutex> l(mu_);
  return get_calls_;
}

}  // namespace strata::test
