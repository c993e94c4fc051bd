// FaultEnv: an Env for tests that wraps a real one and simulates what disks and power cuts do
// (RocksDB's FaultInjectionTestFS, simplified).
//
// - Per file it remembers the size at the last successful Sync/WriteAndSync. DropUnsyncedData()
//   is a power loss: every file goes back to that size (writes are assumed to be appends), and
//   files created since the last SyncDir of their directory disappear, as do directories made
//   through CreateDir since the last SyncDir of their parent (with all they hold). Close every
//   File (and whatever owns them) first.
// - Files pass EnableDirectWrites on (SetDirectWrites(false) stops it); the synced size is the
//   logical end written, so a drop also cuts a direct write's padding.
// - SetFailSync(true): every Sync, WriteAndSync and SyncDir fails with IOError(EIO). A failed
//   WriteAndSync still writes its data (it is simply not durable).
// - SetFailWrites(true): every Write and WriteAndSync fails with IOError(EIO), writing nothing.
// - SetNoSpaceAfter(n): after n more bytes have been written (through any file), writes fail
//   with IOError(ENOSPC); the write that crosses the budget writes the part that fits first,
//   as a real short write would. ClearFaults() lifts every fault.
//
// Files that existed before they were first opened through this Env count as synced at the
// size they had then. Thread-safe. Must outlive every File it opened.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/env.h"

namespace strata::test {

class FaultEnv final : public Env {
 public:
  explicit FaultEnv(Env* base = Env::Default());

  void DropUnsyncedData();
  // Like DropUnsyncedData, but each file keeps a random prefix (chosen from `seed`) of its
  // unsynced bytes: a write torn part-way by the power cut.
  void DropRandomUnsyncedData(uint64_t seed);
  void SetFailSync(bool fail) { fail_sync_ = fail; }
  void SetFailWrites(bool fail) { fail_writes_ = fail; }
  void SetNoSpaceAfter(uint64_t bytes);
  // Whether Files pass EnableDirectWrites on to the real ones (default: yes). Either way a
  // power loss keeps what was synced up to its logical end, not a direct write's padding.
  void SetDirectWrites(bool on) { direct_writes_ = on; }
  // With padding on, a drop leaves each cut file whose name ends with `suffix` (all files when
  // empty) zero-filled up to the next 4 KiB boundary, when it was that long: what a power cut
  // leaves after direct writes (a journal segment's are ".seg").
  void SetBlockPadding(bool on, const std::string& suffix = "") {
    std::lock_guard<std::mutex> l(mu_);
    block_padding_ = on;
    padding_suffix_ = suffix;
  }
  void ClearFaults();

  // Successful and failed fdatasync calls (Sync and WriteAndSync), for group-commit tests.
  uint64_t sync_count() const { return sync_count_; }
  uint64_t write_count() const { return write_count_; }
  uint64_t dir_sync_count() const { return dir_sync_count_; }
  // Every File::WillNeed hint so far, in order (they are passed on to the real file).
  struct Hint {
    std::string path;
    uint64_t offset, n;
  };
  std::vector<Hint> hints() const {
    std::lock_guard<std::mutex> l(mu_);
    return hints_;
  }

  // Env.
  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override;
  Status SyncDir(const std::string& dir) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status CreateDir(const std::string& path, int mode = 0700) override;
  Result<bool> FileExists(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  int64_t NowNanos() override;

 private:
  friend class FaultFile;

  struct FileState {
    uint64_t synced_size = 0;
    bool dir_entry_synced = true;  // false: created and its directory not yet SyncDir'ed
  };

  // Called by FaultFile. Returns the number of bytes of an n-byte write that may be written,
  // or the error to return (with *allowed bytes written first).
  void Drop(std::mt19937_64* rng);
  Status ChargeWrite(const std::string& path, uint64_t n, uint64_t* allowed);
  Status ChargeSync(const std::string& path);
  void MarkSynced(const std::string& path, uint64_t size);
  void MarkTruncated(const std::string& path, uint64_t size);

  Env* const base_;
  std::atomic<bool> fail_sync_{false};
  std::atomic<bool> direct_writes_{true};
  bool block_padding_ = false;  // guarded by mu_
  std::string padding_suffix_;  // guarded by mu_
  std::atomic<bool> fail_writes_{false};
  std::atomic<uint64_t> sync_count_{0};
  std::atomic<uint64_t> write_count_{0};
  std::atomic<uint64_t> dir_sync_count_{0};
  std::vector<Hint> hints_;  // guarded by mu_

  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;  // GUARDED_BY(mu_)
  std::set<std::string> unsynced_dirs_;     // made here, parent not synced since (GUARDED_BY)
  bool space_limited_ = false;              // GUARDED_BY(mu_)
  uint64_t space_left_ = 0;                 // GUARDED_BY(mu_)
};

}  // namespace strata::test
