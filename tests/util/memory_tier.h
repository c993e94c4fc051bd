// An in-memory Tier for unit tests, with switches to simulate an outage and to corrupt
// stored bytes. Test-only: never linked into the product.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tiering/tier.h"

namespace strata::test {

class MemoryTier final : public tiering::Tier {
 public:
  explicit MemoryTier(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }
  Status PutFile(const std::string& key, const std::string& local_path) override;
  Status Put(const std::string& key, std::string_view data) override;
  Status Get(const std::string& key, uint64_t offset, uint64_t length, std::string* out) override;
  Result<uint64_t> Size(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Status List(const std::string& prefix, std::vector<tiering::ObjectInfo>* out) override;

  // While down, every call fails with Unavailable.
  void SetDown(bool down);
  // Flips one bit of a stored object (no-op when absent).
  void FlipBit(const std::string& key, uint64_t byte_offset);
  size_t object_count();
  uint64_t get_calls();

 private:
  Status Check(const std::string& op, const std::string& key);
  std::string name_;
  std::mutex mu_;
  std::map<std::string, std::string> objects_;
  bool down_ = false;
  uint64_t get_calls_ = 0;
};

}  // namespace strata::test
