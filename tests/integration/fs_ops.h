// Tools for differential tests: run the same syscalls under two directories (a native one on
// the host filesystem and one on the strata mount), record every outcome, compare them, and
// compare the resulting trees.
//
// Only POSIX and the C++ standard library; no strata headers, so these tests check the
// filesystem exactly as an application sees it.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace strata::it {

// ---- Test data ------------------------------------------------------------------------------

enum class DataKind {
  kRandom,  // incompressible
  kText,    // words: compresses well
  kZeros,
  kMixed,  // runs of the three above
};
// Deterministic: the same (seed, len, kind) always gives the same bytes.
std::string MakeData(uint64_t seed, size_t len, DataKind kind);

uint64_t Fnv1a(std::string_view data, uint64_t h = 0xcbf29ce484222325ULL);

// "ENOENT", or "errno 1234" for an unknown value.
std::string ErrnoName(int err);

// Quotes and escapes a name for messages (names in tests may hold control bytes). Long
// strings are shortened to a prefix, their length and a hash.
std::string Printable(std::string_view s);

// Printable() for short data, "<N bytes, fnv H>" for long.
std::string Summary(std::string_view data);

// ---- Recorded syscalls ------------------------------------------------------------------------

struct Event {
  std::string call;   // e.g. `open("d/f", O_RDWR|O_CREAT, 0644)`; paths relative to the root
  long long ret = 0;  // normalised: a successful open() records 0, not the fd number
  int err = 0;        // errno when the call failed, else 0
  std::string data;   // what the call produced: bytes read, a stat summary, names listed
};
std::string Describe(const Event& e);

// Performs syscalls relative to `root` and records each outcome. Files opened with Open()
// live in numbered slots so that two Sys objects replaying the same script stay comparable.
class Sys {
 public:
  explicit Sys(std::string root);
  ~Sys();
  Sys(const Sys&) = delete;
  Sys& operator=(const Sys&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(std::string_view rel) const;
  const std::vector<Event>& events() const { return events_; }
  const Event& last() const { return events_.back(); }
  int fd(int slot) const;

  // File descriptors.
  void Open(int slot, std::string_view rel, int flags, mode_t mode = 0644);
  void Close(int slot);
  void CloseAll();  // records nothing
  void Write(int slot, std::string_view data);
  void Pwrite(int slot, std::string_view data, off_t off);
  void Read(int slot, size_t len);
  void Pread(int slot, size_t len, off_t off);
  void Lseek(int slot, off_t off, int whence);
  void Ftruncate(int slot, off_t len);
  void Fallocate(int slot, int mode, off_t off, off_t len);
  void Fsync(int slot);
  void Fdatasync(int slot);
  void Fstat(int slot);
  void Fchmod(int slot, mode_t mode);

  // Paths.
  void Stat(std::string_view rel);
  void Lstat(std::string_view rel);
  void Access(std::string_view rel, int mode);
  void Truncate(std::string_view rel, off_t len);
  void Mkdir(std::string_view rel, mode_t mode = 0755);
  void Rmdir(std::string_view rel);
  void Unlink(std::string_view rel);
  void Rename(std::string_view from, std::string_view to);
  void Renameat2(std::string_view from, std::string_view to, unsigned flags);
  void Link(std::string_view from, std::string_view to);
  void Symlink(std::string_view target, std::string_view rel);
  void Readlink(std::string_view rel, size_t bufsize = 8192);
  void Mknod(std::string_view rel, mode_t mode);
  void Chmod(std::string_view rel, mode_t mode);
  void Chown(std::string_view rel, uid_t uid, gid_t gid);
  void Lchown(std::string_view rel, uid_t uid, gid_t gid);
  // Explicit times (tv_nsec may be UTIME_NOW / UTIME_OMIT); records the resulting stat times
  // only when both are explicit, since "now" differs between the two runs.
  void Utimens(std::string_view rel, timespec atime, timespec mtime, int flags = 0);
  void Setxattr(std::string_view rel, std::string_view name, std::string_view value, int flags);
  void Getxattr(std::string_view rel, std::string_view name, size_t size);
  void Listxattr(std::string_view rel, size_t size);  // records user.* names only
  void Removexattr(std::string_view rel, std::string_view name);
  void ReadDir(std::string_view rel);  // sorted names, "." and ".." included
  void ReadFile(std::string_view rel);
  void WriteFile(std::string_view rel, std::string_view data, mode_t mode = 0644);

  // Records an outcome computed by the test itself.
  void Note(std::string call, long long ret, int err, std::string data = {});

 private:
  long long Rec(std::string call, long long ret, std::string data = {});

  std::string root_;
  std::map<int, int> slots_;
  std::vector<Event> events_;
};

// Summary of a stat for traces: type, permission bits, size, nlink, owner.
std::string StatSummary(const struct stat& st);

// "" when the traces are equal; otherwise a report of the first difference with the calls
// that led to it.
std::string CompareEvents(const std::vector<Event>& expected, const std::vector<Event>& actual,
                          const std::string& expected_name = "native",
                          const std::string& actual_name = "strata");

// ---- Trees ------------------------------------------------------------------------------------

struct Node {
  mode_t mode = 0;  // full st_mode (type and permission bits)
  off_t size = 0;
  nlink_t nlink = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  ino_t ino = 0;
  timespec mtime{};
  timespec ctime{};
  int error = 0;                              // errno of a failed lstat, read, readdir or readlink
  std::string link_target;                    // symlinks
  uint64_t hash = 0;                          // regular files: Fnv1a of the contents
  std::vector<std::string> entries;           // directories: sorted names, without "." and ".."
  std::map<std::string, std::string> xattrs;  // user.* only
};
using Tree = std::map<std::string, Node>;  // path relative to the root; "" is the root itself

Tree Snapshot(const std::string& root);

struct DiffOptions {
  bool root_attrs = false;  // compare the root's own mode, owner and nlink
  bool owner = true;        // uid and gid
  bool ino = false;         // inode numbers (only meaningful for the same filesystem)
  bool times = false;       // mtime and ctime, to the nanosecond
};
// One line per difference of `actual` from `expected`; empty when they match. Directory nlink
// is compared only when `expected` counts subdirectories (btrfs, for one, always says 1).
std::vector<std::string> DiffTrees(const Tree& expected, const Tree& actual,
                                   const DiffOptions& options);

// Snapshots both, diffs them, and for files whose contents differ reports the first differing
// offset. "" when they match.
std::string CompareDirs(const std::string& expected_root, const std::string& actual_root,
                        const DiffOptions& options = {});

// Offset of the first differing byte of two files, or a description of the read error.
std::string FirstDifference(const std::string& a, const std::string& b);

}  // namespace strata::it
