// The POSIX Env. Appends that must be durable go through liburing: the write and the
// fdatasync are linked in one submission, so a group commit costs one syscall.
#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <set>

#include "base/env.h"
#include "base/logging.h"

namespace strata {
namespace {

Status ErrnoStatus(const std::string& op, const std::string& path, int err) {
  std::string msg = op + " " + path;
  if (err == ENOENT) return Status::NotFound(msg + ": " + std::strerror(err));
  return Status::IOError(msg, err);
}

std::atomic<bool> g_io_uring{true};     // SetIoUringForTesting
std::atomic<uint64_t> g_data_syncs{0};  // DataSyncsForTesting

// Filesystems (by device) that refused a direct write after taking O_DIRECT at open: their
// files are not asked again, so one warning covers them.
std::mutex g_refused_mu;
std::set<dev_t>& RefusedDevices() {
  static auto* s = new std::set<dev_t>;
  return *s;
}

// One ring per thread that issues durable writes (in practice: the journal committer).
class Ring {
 public:
  Ring() { ok_ = io_uring_queue_init(8, &ring_, 0) == 0; }
  ~Ring() {
    if (ok_) io_uring_queue_exit(&ring_);
  }
  bool ok() const { return ok_; }
  io_uring* get() { return &ring_; }

 private:
  io_uring ring_{};
  bool ok_ = false;
};

// Submits a write of n bytes at `off` through wfd linked to an fdatasync of sfd as one
// io_uring batch (one syscall for a group commit). *written gets the bytes the write took (a
// short write, e.g. on a full disk, leaves the rest and the sync to the caller). False if this
// thread has no ring (the caller then writes and syncs the plain way).
bool RingWriteAndSync(int wfd, int sfd, const char* p, size_t n, uint64_t off,
                      const std::string& path, Status* status, size_t* written) {
  // A ring is shared memory with the kernel: after fork() the child must not touch the
  // parent's (both would advance the same queues), so each process makes its own.
  thread_local std::unique_ptr<Ring> ring;
  thread_local pid_t ring_pid = 0;
  if (ring == nullptr || ring_pid != ::getpid()) {
    (void)ring.release();  // an inherited ring belongs to the parent: leave it alone
    ring = std::make_unique<Ring>();
    ring_pid = ::getpid();
  }
  io_uring* r = ring->get();
  // Both entries or neither: a write left queued alone would go out with a later submit.
  if (!ring->ok() || !g_io_uring || io_uring_sq_space_left(r) < 2 || n > (1u << 30)) return false;
  io_uring_sqe* w = io_uring_get_sqe(r);
  *written = 0;
  io_uring_prep_write(w, wfd, p, static_cast<unsigned>(n), off);
  w->flags |= IOSQE_IO_LINK;
  w->user_data = 1;
  io_uring_sqe* s = io_uring_get_sqe(r);
  io_uring_prep_fsync(s, sfd, IORING_FSYNC_DATASYNC);
  s->user_data = 2;
  int sub = io_uring_submit_and_wait(r, 2);
  if (sub < 0) {
    *status = ErrnoStatus("io_uring submit for", path, -sub);
    return true;
  }
  int write_res = 0, sync_res = 0;
  for (int i = 0; i < 2; i++) {
    io_uring_cqe* cqe = nullptr;
    int rc;
    do {  // a signal interrupts the wait, not the write and sync in flight: wait again
      rc = io_uring_wait_cqe(r, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) {
      *status = ErrnoStatus("io_uring wait for", path, -rc);
      return true;
    }
    (cqe->user_data == 1 ? write_res : sync_res) = cqe->res;
    io_uring_cqe_seen(r, cqe);
  }
  if (write_res < 0) {
    *status = Status::IOError("write " + path, -write_res);
    return true;
  }
  *written = static_cast<size_t>(write_res);
  if (*written < n) {  // the linked sync was cancelled; the caller finishes
    *status = Status::OK();
    return true;
  }
  *status = sync_res < 0 ? ErrnoStatus("fdatasync", path, -sync_res) : Status::OK();
  if (sync_res >= 0) g_data_syncs++;
  return true;
}

class PosixFile final : public File {
 public:
  PosixFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFile() override {
    ::close(fd_);
    if (dfd_ >= 0) ::close(dfd_);
  }

  Status Read(uint64_t offset, size_t n, char* scratch, size_t* got) override {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, scratch + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("read", path_, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    *got = done;
    return Status::OK();
  }

  Status Write(uint64_t offset, std::string_view data) override {
    if (dfd_ >= 0) return DirectWrite(offset, data, /*sync=*/false);
    return BufferedWrite(offset, data);
  }

  Status WriteAndSync(uint64_t offset, std::string_view data) override {
    if (dfd_ >= 0) return DirectWrite(offset, data, /*sync=*/true);
    Status s;
    size_t written = 0;
    if (!RingWriteAndSync(fd_, fd_, data.data(), data.size(), offset, path_, &s, &written)) {
      RETURN_IF_ERROR(BufferedWrite(offset, data));
      return Sync();
    }
    RETURN_IF_ERROR(s);
    if (written < data.size()) {
      // Short write (e.g. the disk filled mid-way): finish it, then sync, the plain way.
      RETURN_IF_ERROR(BufferedWrite(offset + written, data.substr(written)));
      return Sync();
    }
    return Status::OK();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoStatus("fdatasync", path_, errno);
    g_data_syncs++;
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return ErrnoStatus("truncate", path_, errno);
    end_ = size;
    tail_off_ = kNoTail;
    return Status::OK();
  }

  Result<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return ErrnoStatus("stat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Status Preallocate(uint64_t offset, uint64_t len) override {
    // Best effort: NFS/SMB or old filesystems may not support it; the writes will still work.
    int rc =
        ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(len));
    if (rc != 0 && errno == ENOSPC) return ErrnoStatus("fallocate", path_, errno);
    return Status::OK();
  }

  const std::string& path() const override { return path_; }

  void WillNeed(uint64_t offset, uint64_t n) override {
    (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(n),
                          POSIX_FADV_WILLNEED);
  }

  bool EnableDirectWrites() override {
    if (dfd_ >= 0) return true;
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    {
      std::lock_guard<std::mutex> l(g_refused_mu);
      if (RefusedDevices().count(st.st_dev)) return false;
    }
    // The same open file, not whatever the path names now.
    std::string self = "/proc/self/fd/" + std::to_string(fd_);
    int fd = ::open(self.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) fd = ::open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return false;  // EINVAL: this filesystem has no O_DIRECT
    dfd_ = fd;
    end_ = static_cast<uint64_t>(st.st_size);
    tail_off_ = kNoTail;
    return true;
  }

 private:
  static constexpr uint64_t kNoTail = ~uint64_t{0};
  // The most a direct write stages at once; longer writes go out in pieces this size.
  static constexpr size_t kMaxStage = 8u << 20;

  Status BufferedWrite(uint64_t offset, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t r =
          ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", path_, errno);
      }
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  // Copies the file's bytes [off, off + n) into dst: from the cached last block when it holds
  // them (an append), else read back (a short read means zeros).
  Status ReadExisting(uint64_t off, size_t n, char* dst) {
    if (tail_off_ != kNoTail && off >= tail_off_ && off + n <= tail_off_ + kDirectBlock) {
      std::memcpy(dst, tail_.get() + (off - tail_off_), n);
      return Status::OK();
    }
    size_t got = 0;
    RETURN_IF_ERROR(Read(off, n, dst, &got));
    std::memset(dst + got, 0, n - got);
    return Status::OK();
  }

  // Writes data at offset as whole blocks through dfd_: the block-aligned range around it, the
  // bytes before and after it that the file already holds (below end_) copied in, zeros past
  // end_. With sync, the last piece goes out linked to the fdatasync.
  Status DirectWrite(uint64_t offset, std::string_view data, bool sync) {
    const uint64_t stop = offset + data.size();
    const uint64_t first = offset & ~uint64_t{kDirectBlock - 1};
    const uint64_t last = (stop + kDirectBlock - 1) & ~uint64_t{kDirectBlock - 1};
    bool synced = false;
    for (uint64_t pos = first; pos < last;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(last - pos, kMaxStage));
      RETURN_IF_ERROR(Stage(n));
      char* b = stage_.get();
      // [pos, pos + n) = existing bytes below offset | data | existing bytes below end_ | zeros
      const uint64_t d0 = std::max(pos, offset), d1 = std::min(pos + n, stop);
      if (d0 > pos) RETURN_IF_ERROR(ReadExisting(pos, d0 - pos, b));
      if (d1 > d0) std::memcpy(b + (d0 - pos), data.data() + (d0 - offset), d1 - d0);
      const uint64_t e1 = std::min(pos + n, std::max(end_, d1));
      if (e1 > d1) RETURN_IF_ERROR(ReadExisting(d1, e1 - d1, b + (d1 - pos)));
      std::memset(b + (e1 - pos), 0, pos + n - e1);
      const bool final_piece = pos + n == last;
      size_t written = 0;
      Status s;
      const bool ring =
          sync && final_piece && RingWriteAndSync(dfd_, fd_, b, n, pos, path_, &s, &written);
      if (!ring) s = PwriteDirect(b, n, pos, &written);
      if (s.ok() && written == n) {
        synced = ring;  // the linked fdatasync ran and succeeded
        if (final_piece) {
          tail_off_ = last - kDirectBlock;
          if (!tail_) tail_.reset(new char[kDirectBlock]);
          std::memcpy(tail_.get(), b + (n - kDirectBlock), kDirectBlock);
        }
        pos += n;
        continue;
      }
      // The filesystem took O_DIRECT at open but refuses this write (EINVAL: it wants other
      // alignment), or wrote part of it: the rest goes through the page cache, as do later
      // writes. Nothing before `written` needs writing again.
      const bool refused = s.IsIOError() && s.ToErrno() == EINVAL;
      if (!s.ok() && !refused) return s;
      if (refused) {
        log::Warn(
            "{}: the filesystem refused a direct (O_DIRECT) write; writes to its files go "
            "through the page cache",
            path_);
        struct stat st;
        if (::fstat(fd_, &st) == 0) {
          std::lock_guard<std::mutex> l(g_refused_mu);
          RefusedDevices().insert(st.st_dev);
        }
        ::close(dfd_);
        dfd_ = -1;
      }
      const uint64_t done_to = std::max(offset, pos + (written & ~(kDirectBlock - 1)));
      end_ = std::max(end_, pos + written);
      tail_off_ = kNoTail;
      if (done_to < stop) RETURN_IF_ERROR(BufferedWrite(done_to, data.substr(done_to - offset)));
      end_ = std::max(end_, stop);
      if (sync) return Sync();
      return Status::OK();
    }
    end_ = std::max(end_, stop);
    // No ring on this thread (seccomp, io_uring_disabled), or an empty write: sync here.
    if (sync && !synced) return Sync();
    return Status::OK();
  }

  Status PwriteDirect(const char* b, size_t n, uint64_t pos, size_t* written) {
    *written = 0;
    while (*written < n) {
      ssize_t r = ::pwrite(dfd_, b + *written, n - *written, static_cast<off_t>(pos + *written));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::IOError("write " + path_, errno);
      }
      if (r == 0) return Status::IOError("write " + path_ + ": no progress", EIO);
      *written += static_cast<size_t>(r);
      if (*written % kDirectBlock != 0) break;  // not block-aligned: finish buffered
    }
    return Status::OK();
  }

  Status Stage(size_t n) {
    if (n <= stage_size_) return Status::OK();
    void* p = nullptr;
    if (::posix_memalign(&p, kDirectBlock, n) != 0)
      return Status::IOError("out of memory for a direct write to " + path_, ENOMEM);
    stage_.reset(static_cast<char*>(p));
    stage_size_ = n;
    return Status::OK();
  }

  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };

  std::string path_;
  int fd_;
  // Direct writes (EnableDirectWrites); -1 when off. Write/Sync/Truncate are serialised by the
  // caller, so what follows needs no lock; Read uses only fd_.
  int dfd_ = -1;
  uint64_t end_ = 0;             // the highest byte written (or the size at enable/truncate)
  uint64_t tail_off_ = kNoTail;  // the last block written, as written: an append's head
  std::unique_ptr<char[]> tail_;
  std::unique_ptr<char, FreeDeleter> stage_;  // kDirectBlock-aligned
  size_t stage_size_ = 0;
};

class PosixFileLock final : public FileLock {
 public:
  PosixFileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFileLock() override;

 private:
  int fd_;
  std::string path_;
};

// flock() locks are per open file description, so two opens in one process would conflict
// correctly; we still track paths to give a clear message and to be robust on NFS.
std::mutex g_locks_mu;
std::set<std::string>& LockedPaths() {
  static auto* s = new std::set<std::string>;
  return *s;
}

PosixFileLock::~PosixFileLock() {
  {
    std::lock_guard<std::mutex> l(g_locks_mu);
    LockedPaths().erase(path_);
  }
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::kReadOnly:
        flags |= O_RDONLY;
        break;
      case OpenMode::kReadWrite:
        flags |= O_RDWR;
        break;
      case OpenMode::kCreate:
        flags |= O_RDWR | O_CREAT;
        break;
      case OpenMode::kCreateExclusive:
        flags |= O_RDWR | O_CREAT | O_EXCL;
        break;
    }
    int fd = ::open(path.c_str(), flags, 0600);
    if (fd < 0) {
      if (errno == EEXIST) return Status::Posix(EEXIST, "create " + path);
      return ErrnoStatus("open", path, errno);
    }
    return std::unique_ptr<File>(new PosixFile(path, fd));
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open directory", dir, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    // Some network filesystems refuse fsync on a directory; their metadata is synchronous.
    if (rc != 0 && err != EINVAL && err != EROFS) return ErrnoStatus("fsync directory", dir, err);
    return Status::OK();
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return ErrnoStatus("rename " + from + " to", to, errno);
    return Status::OK();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return Status::OK();
  }

  Status CreateDir(const std::string& path, int mode) override {
    if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST)
      return ErrnoStatus("mkdir", path, errno);
    return Status::OK();
  }

  Result<bool> FileExists(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus("stat", path, errno);
  }

  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return ErrnoStatus("opendir", path, errno);
    std::vector<std::string> out;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      out.emplace_back(e->d_name);
    }
    ::closedir(d);
    return out;
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    {
      std::lock_guard<std::mutex> l(g_locks_mu);
      if (LockedPaths().count(path)) return Status::Busy(path + " is locked by this process");
    }
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("open lock file", path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return Status::Busy(path + " is locked by another process");
      return ErrnoStatus("lock", path, err);
    }
    std::lock_guard<std::mutex> l(g_locks_mu);
    LockedPaths().insert(path);
    return std::unique_ptr<FileLock>(new PosixFileLock(fd, path));
  }

  int64_t NowNanos() override {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }
};

}  // namespace

void SetIoUringForTesting(bool enabled) { g_io_uring = enabled; }
uint64_t DataSyncsForTesting() { return g_data_syncs; }

Env* Env::Default() {
  static Env* env = new PosixEnv;
  return env;
}

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data) {
  std::string tmp = path + ".tmp";
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(auto f, env->OpenFile(tmp, OpenMode::kCreate));
    RETURN_IF_ERROR(f->Truncate(0));
    RETURN_IF_ERROR(f->Write(0, data));
    RETURN_IF_ERROR(f->Sync());
    return Status::OK();
  }();
  if (s.ok()) s = env->RenameFile(tmp, path);
  if (!s.ok()) {
    // A full disk, say: leave no half-written temp file behind (the old file is untouched).
    env->RemoveFile(tmp).IgnoreError();
    return s;
  }
  return env->SyncDir(DirName(path));
}

Status CreateDirDurably(Env* env, const std::string& path, int mode) {
  RETURN_IF_ERROR(env->CreateDir(path, mode));
  return env->SyncDir(DirName(path));
}

Result<std::string> ReadWholeFile(Env* env, const std::string& path) {
  ASSIGN_OR_RETURN(auto f, env->OpenFile(path, OpenMode::kReadOnly));
  ASSIGN_OR_RETURN(uint64_t size, f->Size());
  std::string out(size, '\0');
  size_t got = 0;
  RETURN_IF_ERROR(f->Read(0, size, out.data(), &got));
  out.resize(got);
  return out;
}

}  // namespace strata
