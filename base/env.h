// Env: every byte strata writes to its own files goes through this interface, so tests can
// swap in a fault-injecting implementation that drops unsynced data (a simulated power loss),
// fails a sync, or fills the disk. SQLite does its own I/O and is recovered from the journal.
//
// Thread-safety: an Env is safe to use from many threads. A File is safe for concurrent Read
// calls; Write/Sync/Truncate on one File must be serialised by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata {

enum class OpenMode {
  kReadOnly,         // must exist
  kReadWrite,        // must exist
  kCreate,           // read-write, created if missing
  kCreateExclusive,  // read-write, fails with Posix(EEXIST) if it exists
};

class File {
 public:
  virtual ~File() = default;
  // Reads up to n bytes at offset into scratch. *got < n only at end of file.
  virtual Status Read(uint64_t offset, size_t n, char* scratch, size_t* got) = 0;
  virtual Status Write(uint64_t offset, std::string_view data) = 0;
  // Writes `data` at `offset` and makes it (and every earlier write) durable.
  // The POSIX Env submits the write and the fdatasync as one linked io_uring batch.
  virtual Status WriteAndSync(uint64_t offset, std::string_view data) = 0;
  // fdatasync. After a failure the file's state is unknown: callers must not retry.
  virtual Status Sync() = 0;
  virtual Status Truncate(uint64_t size) = 0;
  virtual Result<uint64_t> Size() = 0;
  // Reserves space (fallocate keep-size). Filesystems without fallocate (NFS, SMB) are fine.
  virtual Status Preallocate(uint64_t offset, uint64_t len) = 0;
  virtual const std::string& path() const = 0;

  // Asks that later Write and WriteAndSync calls bypass the page cache (O_DIRECT), for a file
  // written front to back whose readers stop at its logical end (a journal segment): filling
  // fresh page-cache pages is what an append costs most, and nothing rereads them soon. Writes
  // then go out in whole blocks of kDirectBlock bytes, so the file may grow to the next block
  // boundary past its highest write, the bytes in between reading as zeros; every byte below
  // that write keeps its meaning. Returns false, changing nothing, where this File or its
  // filesystem cannot (no O_DIRECT); a filesystem that refuses a direct write later (EINVAL)
  // gets that write and the later ones through the page cache instead.
  virtual bool EnableDirectWrites() { return false; }
  // Tells the filesystem that [offset, offset + n) is about to be read, so that it starts
  // reading it in without waiting for it (POSIX_FADV_WILLNEED). Advisory: does nothing where
  // it cannot.
  virtual void WillNeed(uint64_t /*offset*/, uint64_t /*n*/) {}
  static constexpr size_t kDirectBlock = 4096;
};

// An advisory exclusive lock held for the life of the object.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;
  // The process-wide POSIX Env. Never destroyed.
  static Env* Default();

  virtual Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) = 0;
  // fsync of a directory: makes creates, renames and unlinks inside it durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Creates the directory; OK when it already exists.
  virtual Status CreateDir(const std::string& path, int mode = 0700) = 0;
  virtual Result<bool> FileExists(const std::string& path) = 0;
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Busy when another process (or another FileLock in this one) holds it.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
  // Wall-clock time (CLOCK_REALTIME) in nanoseconds: the only clock the engine reads.
  virtual int64_t NowNanos() = 0;
};

// Writes `data` to `path` so that either the old or the new content survives any crash:
// temp file, fdatasync, rename, fsync of the directory.
Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data);
Result<std::string> ReadWholeFile(Env* env, const std::string& path);
// Creates the directory unless it exists, then fsyncs its parent: a directory that durable files
// go into must survive a power loss itself. The parent is synced every time (cheap when nothing
// changed), so a directory an earlier run made and crashed before syncing is covered too.
Status CreateDirDurably(Env* env, const std::string& path, int mode = 0700);

// Tests only. Without io_uring (as where seccomp or kernel.io_uring_disabled blocks it) the
// POSIX Env writes and syncs with plain syscalls; DataSyncsForTesting counts the fdatasyncs it
// completed (plain or linked in a ring), process-wide.
void SetIoUringForTesting(bool enabled);
uint64_t DataSyncsForTesting();

std::string DirName(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);

}  // namespace strata
