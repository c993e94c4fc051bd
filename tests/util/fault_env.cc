#include "tests/util/fault_env.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iterator>
#include <random>

namespace strata::test {
namespace {

std::string NormalizeDir(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

}  // namespace

class FaultFile final : public File {
 public:
  FaultFile(FaultEnv* env, std::unique_ptr<File> base, uint64_t size)
      : env_(env), base_(std::move(base)), end_(size) {}

  Status Read(uint64_t offset, size_t n, char* scratch, size_t* got) override {
    return base_->Read(offset, n, scratch, got);
  }

  void WillNeed(uint64_t offset, uint64_t n) override {
    {
      std::lock_guard<std::mutex> l(env_->mu_);
      env_->hints_.push_back({path(), offset, n});
    }
    base_->WillNeed(offset, n);
  }

  Status Write(uint64_t offset, std::string_view data) override {
    uint64_t allowed = 0;
    Status charge = env_->ChargeWrite(path(), data.size(), &allowed);
    if (allowed > 0) RETURN_IF_ERROR(WriteBase(offset, data.substr(0, allowed)));
    return charge;
  }

  Status WriteAndSync(uint64_t offset, std::string_view data) override {
    // The real file's own WriteAndSync when no fault gets in the way: the path the journal
    // takes in production (a linked write and fdatasync, direct or not).
    uint64_t allowed = 0;
    Status fault = env_->ChargeWrite(path(), data.size(), &allowed);
    if (fault.ok()) fault = env_->ChargeSync(path());
    if (!fault.ok()) {  // what the write got goes out; none of it becomes durable
      if (allowed > 0) RETURN_IF_ERROR(WriteBase(offset, data.substr(0, allowed)));
      return fault;
    }
    RETURN_IF_ERROR(base_->WriteAndSync(offset, data));
    end_ = std::max(end_, offset + data.size());
    env_->MarkSynced(path(), end_);
    return Status::OK();
  }

  Status Sync() override {
    RETURN_IF_ERROR(env_->ChargeSync(path()));
    RETURN_IF_ERROR(base_->Sync());
    // The logical end, not the file's size: a direct write's padding past it is not data.
    env_->MarkSynced(path(), end_);
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    RETURN_IF_ERROR(base_->Truncate(size));
    end_ = size;
    env_->MarkTruncated(path(), size);
    return Status::OK();
  }

  Result<uint64_t> Size() override { return base_->Size(); }
  Status Preallocate(uint64_t offset, uint64_t len) override {
    return base_->Preallocate(offset, len);
  }
  const std::string& path() const override { return base_->path(); }
  bool EnableDirectWrites() override { return env_->direct_writes_ && base_->EnableDirectWrites(); }

 private:
  Status WriteBase(uint64_t offset, std::string_view data) {
    RETURN_IF_ERROR(base_->Write(offset, data));
    end_ = std::max(end_, offset + data.size());
    return Status::OK();
  }

  FaultEnv* env_;
  std::unique_ptr<File> base_;
  uint64_t end_;  // the highest byte written through this File (or its size at open)
};

FaultEnv::FaultEnv(Env* base) : base_(base) {}

void FaultEnv::SetNoSpaceAfter(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  space_limited_ = true;
  space_left_ = bytes;
}

void FaultEnv::ClearFaults() {
  fail_sync_ = false;
  fail_writes_ = false;
  std::lock_guard<std::mutex> l(mu_);
  space_limited_ = false;
}

Status FaultEnv::ChargeWrite(const std::string& path, uint64_t n, uint64_t* allowed) {
  write_count_++;
  *allowed = 0;
  if (fail_writes_) return Status::IOError("write " + path + " (injected)", EIO);
  std::lock_guard<std::mutex> l(mu_);
  if (space_limited_ && n > space_left_) {
    *allowed = space_left_;
    space_left_ = 0;
    return Status::IOError("write " + path + " (injected)", ENOSPC);
  }
  if (space_limited_) space_left_ -= n;
  *allowed = n;
  return Status::OK();
}

Status FaultEnv::ChargeSync(const std::string& path) {
  sync_count_++;
  if (fail_sync_) return Status::IOError("fdatasync " + path + " (injected)", EIO);
  return Status::OK();
}

void FaultEnv::MarkSynced(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> l(mu_);
  files_[path].synced_size = size;
}

void FaultEnv::MarkTruncated(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(path);
  if (it != files_.end() && it->second.synced_size > size) it->second.synced_size = size;
}

void FaultEnv::DropUnsyncedData() { Drop(nullptr); }

void FaultEnv::DropRandomUnsyncedData(uint64_t seed) {
  std::mt19937_64 rng(seed);
  Drop(&rng);
}

void FaultEnv::Drop(std::mt19937_64* rng) {
  std::lock_guard<std::mutex> l(mu_);
  auto under = [](const std::string& path, const std::string& dir) {
    return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
           path[dir.size()] == '/';
  };
  for (const std::string& d : unsynced_dirs_) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);  // the directory's entry never reached the disk
    for (auto it = files_.begin(); it != files_.end();)
      it = under(it->first, d) ? files_.erase(it) : std::next(it);
  }
  unsynced_dirs_.clear();
  for (auto it = files_.begin(); it != files_.end();) {
    const std::string& path = it->first;
    if (!it->second.dir_entry_synced) {
      base_->RemoveFile(path).IgnoreError();  // may already be gone
      it = files_.erase(it);
      continue;
    }
    auto f = base_->OpenFile(path, OpenMode::kReadWrite);
    if (f.ok()) {
      auto size = (*f)->Size();
      if (size.ok() && *size > it->second.synced_size) {
        uint64_t keep = it->second.synced_size;
        if (rng != nullptr) keep += (*rng)() % (*size - keep + 1);
        (*f)->Truncate(keep).IgnoreError();
        it->second.synced_size = keep;
        // What a direct write leaves on disk: zeros up to the block boundary.
        const uint64_t block = File::kDirectBlock;
        const uint64_t padded = (keep + block - 1) / block * block;
        if (block_padding_ && path.ends_with(padding_suffix_) && padded <= *size)
          (*f)->Truncate(padded).IgnoreError();
      }
    }
    ++it;
  }
}

Result<std::unique_ptr<File>> FaultEnv::OpenFile(const std::string& path, OpenMode mode) {
  bool existed = true;
  if (mode == OpenMode::kCreate || mode == OpenMode::kCreateExclusive) {
    ASSIGN_OR_RETURN(existed, base_->FileExists(path));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, base_->OpenFile(path, mode));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (files_.find(path) == files_.end()) {
      FileState st;
      if (existed) {
        auto size = f->Size();
        st.synced_size = size.ok() ? *size : 0;
      }
      st.dir_entry_synced = existed;
      files_.emplace(path, st);
    }
  }
  auto size = f->Size();
  const uint64_t end = size.ok() ? *size : 0;
  return std::unique_ptr<File>(new FaultFile(this, std::move(f), end));
}

Status FaultEnv::SyncDir(const std::string& dir) {
  dir_sync_count_++;
  if (fail_sync_) return Status::IOError("fsync directory " + dir + " (injected)", EIO);
  RETURN_IF_ERROR(base_->SyncDir(dir));
  std::string d = NormalizeDir(dir);
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [path, st] : files_) {
    if (NormalizeDir(DirName(path)) == d) st.dir_entry_synced = true;
  }
  for (auto it = unsynced_dirs_.begin(); it != unsynced_dirs_.end();)
    it = NormalizeDir(DirName(*it)) == d ? unsynced_dirs_.erase(it) : std::next(it);
  return Status::OK();
}

Status FaultEnv::RenameFile(const std::string& from, const std::string& to) {
  RETURN_IF_ERROR(base_->RenameFile(from, to));
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(from);
  if (it != files_.end()) {
    FileState st = it->second;
    files_.erase(it);
    files_[to] = st;
  }
  return Status::OK();
}

Status FaultEnv::RemoveFile(const std::string& path) {
  RETURN_IF_ERROR(base_->RemoveFile(path));
  std::lock_guard<std::mutex> l(mu_);
  files_.erase(path);
  return Status::OK();
}

Status FaultEnv::CreateDir(const std::string& path, int mode) {
  std::lock_guard<std::mutex> l(mu_);  // the check and the mkdir as one step
  ASSIGN_OR_RETURN(bool existed, base_->FileExists(path));
  RETURN_IF_ERROR(base_->CreateDir(path, mode));
  if (!existed) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    unsynced_dirs_.insert(p);
  }
  return Status::OK();
}
Result<bool> FaultEnv::FileExists(const std::string& path) { return base_->FileExists(path); }
Result<std::vector<std::string>> FaultEnv::ListDir(const std::string& path) {
  return base_->ListDir(path);
}
Result<std::unique_ptr<FileLock>> FaultEnv::LockFile(const std::string& path) {
  return base_->LockFile(path);
}
int64_t FaultEnv::NowNanos() { return base_->NowNanos(); }

}  // namespace strata::test
