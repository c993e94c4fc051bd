#include "tests/integration/fs_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <utility>

namespace strata::it {
namespace {

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void AppendRandom(uint64_t& state, size_t len, std::string* out) {
  while (len > 0) {
    uint64_t v = SplitMix(state);
    size_t n = std::min<size_t>(len, 8);
    out->append(reinterpret_cast<const char*>(&v), n);
    len -= n;
  }
}

void AppendText(uint64_t& state, size_t len, std::string* out) {
  static const char* const kWords[] = {
      "study ",  "series ",  "instance ", "patient ", "modality CT ", "MR ",      "report ",
      "normal ", "finding ", "contrast ", "axial ",   "slice ",       "0.625mm ", "\n",
  };
  const size_t target = out->size() + len;
  while (out->size() < target) {
    const char* w = kWords[SplitMix(state) % (sizeof kWords / sizeof kWords[0])];
    out->append(w, std::min(std::strlen(w), target - out->size()));
  }
}

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string Octal(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0%o", v);
  return buf;
}

std::string OpenFlags(int flags) {
  std::string s;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      s = "O_RDONLY";
      break;
    case O_WRONLY:
      s = "O_WRONLY";
      break;
    default:
      s = "O_RDWR";
      break;
  }
  const std::pair<int, const char*> kNames[] = {
      {O_CREAT, "O_CREAT"},       {O_EXCL, "O_EXCL"},           {O_TRUNC, "O_TRUNC"},
      {O_APPEND, "O_APPEND"},     {O_DIRECTORY, "O_DIRECTORY"}, {O_NOFOLLOW, "O_NOFOLLOW"},
      {O_NONBLOCK, "O_NONBLOCK"}, {O_SYNC, "O_SYNC"},
  };
  int rest = flags & ~O_ACCMODE & ~O_CLOEXEC;
  for (const auto& [bit, name] : kNames) {
    if ((rest & bit) == bit) {
      s += std::string("|") + name;
      rest &= ~bit;
    }
  }
  if (rest != 0) s += "|" + Octal(static_cast<unsigned>(rest));
  return s;
}

std::string TimeStr(const timespec& t) {
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "reg";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "lnk";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "sock";
    case S_IFCHR:
      return "chr";
    case S_IFBLK:
      return "blk";
    default:
      return "type" + Octal(mode & S_IFMT);
  }
}

}  // namespace

std::string MakeData(uint64_t seed, size_t len, DataKind kind) {
  std::string out;
  out.reserve(len);
  uint64_t state = seed * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(kind) + 1;
  switch (kind) {
    case DataKind::kRandom:
      AppendRandom(state, len, &out);
      break;
    case DataKind::kText:
      AppendText(state, len, &out);
      break;
    case DataKind::kZeros:
      out.assign(len, '\0');
      break;
    case DataKind::kMixed:
      while (out.size() < len) {
        size_t run = std::min<size_t>(len - out.size(), 1 + SplitMix(state) % 20000);
        switch (SplitMix(state) % 3) {
          case 0:
            AppendRandom(state, run, &out);
            break;
          case 1:
            AppendText(state, run, &out);
            break;
          default:
            out.append(run, '\0');
            break;
        }
      }
      break;
  }
  return out;
}

uint64_t Fnv1a(std::string_view data, uint64_t h) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string ErrnoName(int err) {
  if (err == 0) return "0";
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "errno " + std::to_string(err);
}

std::string Summary(std::string_view data) {
  if (data.size() <= 64) return Printable(data);
  return "<" + std::to_string(data.size()) + " bytes, fnv " + Hex(Fnv1a(data)) + ">";
}

std::string Printable(std::string_view s) {
  if (s.size() > 96) {
    return Printable(s.substr(0, 32)) + "...<" + std::to_string(s.size()) + " bytes, fnv " +
           Hex(Fnv1a(s)) + ">";
  }
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string Describe(const Event& e) {
  std::string s = e.call + " = " + std::to_string(e.ret);
  if (e.ret == -1) s += " " + ErrnoName(e.err);
  if (!e.data.empty()) s += " -> " + Summary(e.data);
  return s;
}

std::string StatSummary(const struct stat& st) {
  std::ostringstream os;
  os << TypeName(st.st_mode) << " mode=" << Octal(st.st_mode & 07777);
  if (!S_ISDIR(st.st_mode)) os << " size=" << st.st_size;  // directory sizes are fs-specific
  os << " nlink=" << (S_ISDIR(st.st_mode) ? std::string("-") : std::to_string(st.st_nlink))
     << " uid=" << st.st_uid << " gid=" << st.st_gid;
  return os.str();
}

// ---- Sys ------------------------------------------------------------------------------------

Sys::Sys(std::string root) : root_(std::move(root)) {}

Sys::~Sys() { CloseAll(); }

std::string Sys::Path(std::string_view rel) const {
  if (rel.empty()) return root_;
  return root_ + "/" + std::string(rel);
}

int Sys::fd(int slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? -1 : it->second;
}

long long Sys::Rec(std::string call, long long ret, std::string data) {
  Event e;
  e.call = std::move(call);
  e.ret = ret;
  e.err = ret == -1 ? errno : 0;
  e.data = std::move(data);
  events_.push_back(std::move(e));
  return ret;
}

void Sys::Note(std::string call, long long ret, int err, std::string data) {
  events_.push_back(Event{std::move(call), ret, err, std::move(data)});
}

void Sys::Open(int slot, std::string_view rel, int flags, mode_t mode) {
  if (int old = fd(slot); old >= 0) close(old);
  int fd = open(Path(rel).c_str(), flags | O_CLOEXEC, mode);
  slots_[slot] = fd;
  std::string call = "open#" + std::to_string(slot) + "(" + Printable(rel) + ", " +
                     OpenFlags(flags) + ((flags & O_CREAT) ? ", " + Octal(mode) : "") + ")";
  Rec(std::move(call), fd >= 0 ? 0 : -1);
}

void Sys::Close(int slot) {
  int f = fd(slot);
  slots_.erase(slot);
  Rec("close#" + std::to_string(slot), close(f));
}

void Sys::CloseAll() {
  for (auto& [slot, f] : slots_) {
    if (f >= 0) close(f);
  }
  slots_.clear();
}

void Sys::Write(int slot, std::string_view data) {
  Rec("write#" + std::to_string(slot) + "(" + Summary(data) + ")",
      write(fd(slot), data.data(), data.size()));
}

void Sys::Pwrite(int slot, std::string_view data, off_t off) {
  Rec("pwrite#" + std::to_string(slot) + "(" + Summary(data) + ", " + std::to_string(off) + ")",
      pwrite(fd(slot), data.data(), data.size(), off));
}

void Sys::Read(int slot, size_t len) {
  std::string buf(len, '\0');
  ssize_t n = read(fd(slot), buf.data(), len);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  Rec("read#" + std::to_string(slot) + "(" + std::to_string(len) + ")", n, std::move(buf));
}

void Sys::Pread(int slot, size_t len, off_t off) {
  std::string buf(len, '\0');
  // A short read is legal in general but not on a regular file that has the bytes: loop like
  // an application would and record the total.
  size_t done = 0;
  ssize_t n = 0;
  while (done < len) {
    n = pread(fd(slot), buf.data() + done, len - done, off + static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  long long ret = (n < 0 && done == 0) ? -1 : static_cast<long long>(done);
  buf.resize(done);
  Rec("pread#" + std::to_string(slot) + "(" + std::to_string(len) + ", " + std::to_string(off) +
          ")",
      ret, std::move(buf));
}

void Sys::Lseek(int slot, off_t off, int whence) {
  Rec("lseek#" + std::to_string(slot) + "(" + std::to_string(off) + ", " + std::to_string(whence) +
          ")",
      lseek(fd(slot), off, whence));
}

void Sys::Ftruncate(int slot, off_t len) {
  Rec("ftruncate#" + std::to_string(slot) + "(" + std::to_string(len) + ")",
      ftruncate(fd(slot), len));
}

void Sys::Fallocate(int slot, int mode, off_t off, off_t len) {
  Rec("fallocate#" + std::to_string(slot) + "(" + std::to_string(mode) + ", " +
          std::to_string(off) + ", " + std::to_string(len) + ")",
      fallocate(fd(slot), mode, off, len));
}

void Sys::Fsync(int slot) { Rec("fsync#" + std::to_string(slot), fsync(fd(slot))); }

void Sys::Fdatasync(int slot) { Rec("fdatasync#" + std::to_string(slot), fdatasync(fd(slot))); }

void Sys::Fstat(int slot) {
  struct stat st {};
  int rc = fstat(fd(slot), &st);
  Rec("fstat#" + std::to_string(slot), rc, rc == 0 ? StatSummary(st) : "");
}

void Sys::Fchmod(int slot, mode_t mode) {
  Rec("fchmod#" + std::to_string(slot) + "(" + Octal(mode) + ")", fchmod(fd(slot), mode));
}

void Sys::Stat(std::string_view rel) {
  struct stat st {};
  int rc = stat(Path(rel).c_str(), &st);
  Rec("stat(" + Printable(rel) + ")", rc, rc == 0 ? StatSummary(st) : "");
}

void Sys::Lstat(std::string_view rel) {
  struct stat st {};
  int rc = lstat(Path(rel).c_str(), &st);
  Rec("lstat(" + Printable(rel) + ")", rc, rc == 0 ? StatSummary(st) : "");
}

void Sys::Access(std::string_view rel, int mode) {
  Rec("access(" + Printable(rel) + ", " + std::to_string(mode) + ")",
      access(Path(rel).c_str(), mode));
}

void Sys::Truncate(std::string_view rel, off_t len) {
  Rec("truncate(" + Printable(rel) + ", " + std::to_string(len) + ")",
      truncate(Path(rel).c_str(), len));
}

void Sys::Mkdir(std::string_view rel, mode_t mode) {
  Rec("mkdir(" + Printable(rel) + ", " + Octal(mode) + ")", mkdir(Path(rel).c_str(), mode));
}

void Sys::Rmdir(std::string_view rel) {
  Rec("rmdir(" + Printable(rel) + ")", rmdir(Path(rel).c_str()));
}

void Sys::Unlink(std::string_view rel) {
  Rec("unlink(" + Printable(rel) + ")", unlink(Path(rel).c_str()));
}

void Sys::Rename(std::string_view from, std::string_view to) {
  Rec("rename(" + Printable(from) + ", " + Printable(to) + ")",
      rename(Path(from).c_str(), Path(to).c_str()));
}

void Sys::Renameat2(std::string_view from, std::string_view to, unsigned flags) {
  std::string f;
  if (flags & RENAME_NOREPLACE) f += "RENAME_NOREPLACE";
  if (flags & RENAME_EXCHANGE) f += (f.empty() ? "" : "|") + std::string("RENAME_EXCHANGE");
  if (f.empty()) f = "0";
  long rc = syscall(SYS_renameat2, AT_FDCWD, Path(from).c_str(), AT_FDCWD, Path(to).c_str(), flags);
  Rec("renameat2(" + Printable(from) + ", " + Printable(to) + ", " + f + ")", rc);
}

void Sys::Link(std::string_view from, std::string_view to) {
  Rec("link(" + Printable(from) + ", " + Printable(to) + ")",
      link(Path(from).c_str(), Path(to).c_str()));
}

void Sys::Symlink(std::string_view target, std::string_view rel) {
  Rec("symlink(" + Printable(target) + ", " + Printable(rel) + ")",
      symlink(std::string(target).c_str(), Path(rel).c_str()));
}

void Sys::Readlink(std::string_view rel, size_t bufsize) {
  std::string buf(bufsize, '\0');
  ssize_t n = readlink(Path(rel).c_str(), buf.data(), bufsize);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  Rec("readlink(" + Printable(rel) + ", " + std::to_string(bufsize) + ")", n, std::move(buf));
}

void Sys::Mknod(std::string_view rel, mode_t mode) {
  Rec("mknod(" + Printable(rel) + ", " + Octal(mode) + ")", mknod(Path(rel).c_str(), mode, 0));
}

void Sys::Chmod(std::string_view rel, mode_t mode) {
  Rec("chmod(" + Printable(rel) + ", " + Octal(mode) + ")", chmod(Path(rel).c_str(), mode));
}

void Sys::Chown(std::string_view rel, uid_t uid, gid_t gid) {
  Rec("chown(" + Printable(rel) + ", " + std::to_string(static_cast<int>(uid)) + ", " +
          std::to_string(static_cast<int>(gid)) + ")",
      chown(Path(rel).c_str(), uid, gid));
}

void Sys::Lchown(std::string_view rel, uid_t uid, gid_t gid) {
  Rec("lchown(" + Printable(rel) + ", " + std::to_string(static_cast<int>(uid)) + ", " +
          std::to_string(static_cast<int>(gid)) + ")",
      lchown(Path(rel).c_str(), uid, gid));
}

void Sys::Utimens(std::string_view rel, timespec atime, timespec mtime, int flags) {
  auto fmt = [](const timespec& t) {
    if (t.tv_nsec == UTIME_NOW) return std::string("UTIME_NOW");
    if (t.tv_nsec == UTIME_OMIT) return std::string("UTIME_OMIT");
    return TimeStr(t);
  };
  const timespec times[2] = {atime, mtime};
  int rc = utimensat(AT_FDCWD, Path(rel).c_str(), times, flags);
  std::string data;
  const bool explicit_times = atime.tv_nsec != UTIME_NOW && atime.tv_nsec != UTIME_OMIT &&
                              mtime.tv_nsec != UTIME_NOW && mtime.tv_nsec != UTIME_OMIT;
  if (rc == 0 && explicit_times) {
    struct stat st {};
    if (fstatat(AT_FDCWD, Path(rel).c_str(), &st, flags & AT_SYMLINK_NOFOLLOW) == 0) {
      data = "atime=" + TimeStr(st.st_atim) + " mtime=" + TimeStr(st.st_mtim);
    }
  }
  Rec("utimensat(" + Printable(rel) + ", " + fmt(atime) + ", " + fmt(mtime) + ", " +
          std::to_string(flags) + ")",
      rc, std::move(data));
}

void Sys::Setxattr(std::string_view rel, std::string_view name, std::string_view value, int flags) {
  Rec("setxattr(" + Printable(rel) + ", " + Printable(name) + ", " + Summary(value) + ", " +
          std::to_string(flags) + ")",
      setxattr(Path(rel).c_str(), std::string(name).c_str(), value.data(), value.size(), flags));
}

void Sys::Getxattr(std::string_view rel, std::string_view name, size_t size) {
  std::string buf(size, '\0');
  ssize_t n = getxattr(Path(rel).c_str(), std::string(name).c_str(),
                       size == 0 ? nullptr : buf.data(), size);
  buf.resize(n > 0 && size > 0 ? static_cast<size_t>(n) : 0);
  Rec("getxattr(" + Printable(rel) + ", " + Printable(name) + ", " + std::to_string(size) + ")", n,
      std::move(buf));
}

void Sys::Listxattr(std::string_view rel, size_t size) {
  std::string buf(size, '\0');
  ssize_t n = listxattr(Path(rel).c_str(), size == 0 ? nullptr : buf.data(), size);
  std::vector<std::string> names;
  if (n > 0 && size > 0) {
    for (size_t i = 0; i < static_cast<size_t>(n);) {
      std::string name(buf.c_str() + i);
      i += name.size() + 1;
      if (name.rfind("user.", 0) == 0) names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  std::string data;
  for (const std::string& name : names) data += name + ";";
  Rec("listxattr(" + Printable(rel) + ", " + std::to_string(size) + ")", n, std::move(data));
}

void Sys::Removexattr(std::string_view rel, std::string_view name) {
  Rec("removexattr(" + Printable(rel) + ", " + Printable(name) + ")",
      removexattr(Path(rel).c_str(), std::string(name).c_str()));
}

void Sys::ReadDir(std::string_view rel) {
  DIR* dir = opendir(Path(rel).c_str());
  if (dir == nullptr) {
    Rec("readdir(" + Printable(rel) + ")", -1);
    return;
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* de = readdir(dir)) names.emplace_back(de->d_name);
  int err = errno;
  closedir(dir);
  std::sort(names.begin(), names.end());
  std::string data;
  for (const std::string& n : names) data += n + "/";
  errno = err;
  Rec("readdir(" + Printable(rel) + ")", err == 0 ? static_cast<long long>(names.size()) : -1,
      std::move(data));
}

void Sys::ReadFile(std::string_view rel) {
  int f = open(Path(rel).c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) {
    Rec("readfile(" + Printable(rel) + ")", -1);
    return;
  }
  std::string data;
  char buf[65536];
  ssize_t n;
  while ((n = read(f, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  int err = errno;
  close(f);
  errno = err;
  Rec("readfile(" + Printable(rel) + ")", n < 0 ? -1 : static_cast<long long>(data.size()),
      std::move(data));
}

void Sys::WriteFile(std::string_view rel, std::string_view data, mode_t mode) {
  std::string call = "writefile(" + Printable(rel) + ", " + Summary(data) + ")";
  int f = open(Path(rel).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (f < 0) {
    Rec(std::move(call), -1);
    return;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(f, data.data() + done, data.size() - done);
    if (n <= 0) {
      int err = errno;
      close(f);
      errno = err;
      Rec(std::move(call), -1);
      return;
    }
    done += static_cast<size_t>(n);
  }
  Rec(std::move(call), close(f) == 0 ? static_cast<long long>(done) : -1);
}

std::string CompareEvents(const std::vector<Event>& expected, const std::vector<Event>& actual,
                          const std::string& expected_name, const std::string& actual_name) {
  const size_t n = std::min(expected.size(), actual.size());
  for (size_t i = 0; i <= n; ++i) {
    std::string why;
    if (i == n) {
      if (expected.size() == actual.size()) return "";
      why = "the traces have different lengths (" + std::to_string(expected.size()) + " vs " +
            std::to_string(actual.size()) + ")";
    } else {
      const Event& e = expected[i];
      const Event& a = actual[i];
      if (e.call != a.call) {
        why = "the scripts diverged (a test bug)";
      } else if (e.ret != a.ret || e.err != a.err) {
        why = "different result";
      } else if (e.data != a.data) {
        why = "different output";
        if (e.data.size() > 64 || a.data.size() > 64) {
          size_t k = 0;
          while (k < e.data.size() && k < a.data.size() && e.data[k] == a.data[k]) ++k;
          why += " (first difference at byte " + std::to_string(k) + ")";
        }
      } else {
        continue;
      }
    }
    std::ostringstream os;
    os << "step " << i << ": " << why << "\n";
    const size_t from = i >= 8 ? i - 8 : 0;
    for (size_t k = from; k < i; ++k) os << "    [" << k << "] " << Describe(expected[k]) << "\n";
    // For a descriptor call, show where that slot was opened.
    if (i < expected.size()) {
      const std::string& call = expected[i].call;
      const size_t hash = call.find('#');
      if (hash != std::string::npos && call.rfind("open#", 0) != 0) {
        size_t end = hash + 1;
        while (end < call.size() && isdigit(static_cast<unsigned char>(call[end]))) ++end;
        const std::string open_prefix = "open" + call.substr(hash, end - hash) + "(";
        for (size_t k = i; k-- > 0;) {
          if (expected[k].call.rfind(open_prefix, 0) == 0) {
            if (k < from)
              os << "    (slot opened at [" << k << "] " << Describe(expected[k]) << ")\n";
            break;
          }
        }
      }
    }
    if (i < expected.size()) os << "  " << expected_name << ": " << Describe(expected[i]) << "\n";
    if (i < actual.size()) os << "  " << actual_name << ": " << Describe(actual[i]) << "\n";
    return os.str();
  }
  return "";
}

// ---- Trees ----------------------------------------------------------------------------------

namespace {

void SnapshotInto(const std::string& root, const std::string& rel, Tree* tree) {
  const std::string path = rel.empty() ? root : root + "/" + rel;
  Node& node = (*tree)[rel];
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    node.error = errno;
    return;
  }
  node.mode = st.st_mode;
  node.size = st.st_size;
  node.nlink = st.st_nlink;
  node.uid = st.st_uid;
  node.gid = st.st_gid;
  node.ino = st.st_ino;
  node.mtime = st.st_mtim;
  node.ctime = st.st_ctim;

  if (!S_ISLNK(st.st_mode)) {
    char names[65536];
    ssize_t n = llistxattr(path.c_str(), names, sizeof names);
    for (ssize_t i = 0; i < n;) {
      std::string name(names + i);
      i += static_cast<ssize_t>(name.size()) + 1;
      if (name.rfind("user.", 0) != 0) continue;
      std::string value(65536, '\0');
      ssize_t v = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      value.resize(v > 0 ? static_cast<size_t>(v) : 0);
      node.xattrs[name] = v < 0 ? "<error " + ErrnoName(errno) + ">" : value;
    }
  }

  if (S_ISLNK(st.st_mode)) {
    std::string buf(8192, '\0');
    ssize_t n = readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      node.error = errno;
    } else {
      node.link_target.assign(buf.data(), static_cast<size_t>(n));
    }
  } else if (S_ISREG(st.st_mode)) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      node.error = errno;
      return;
    }
    std::string buf(1 << 20, '\0');
    uint64_t h = 0xcbf29ce484222325ULL;
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) {
      h = Fnv1a(std::string_view(buf.data(), static_cast<size_t>(n)), h);
    }
    if (n < 0) node.error = errno;
    node.hash = h;
    close(fd);
  } else if (S_ISDIR(st.st_mode)) {
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) {
      node.error = errno;
      return;
    }
    errno = 0;
    while (dirent* de = readdir(dir)) {
      std::string name = de->d_name;
      if (name != "." && name != "..") node.entries.push_back(name);
    }
    if (errno != 0) node.error = errno;
    closedir(dir);
    std::sort(node.entries.begin(), node.entries.end());
    const std::vector<std::string> children = node.entries;  // `node` may move on insert
    for (const std::string& name : children) {
      SnapshotInto(root, rel.empty() ? name : rel + "/" + name, tree);
    }
  }
}

}  // namespace

Tree Snapshot(const std::string& root) {
  Tree tree;
  SnapshotInto(root, "", &tree);
  return tree;
}

std::vector<std::string> DiffTrees(const Tree& expected, const Tree& actual,
                                   const DiffOptions& options) {
  std::vector<std::string> diffs;
  auto add = [&](const std::string& path, const std::string& what) {
    diffs.push_back((path.empty() ? std::string("<root>") : Printable(path)) + ": " + what);
  };
  for (const auto& [path, e] : expected) {
    auto it = actual.find(path);
    if (it == actual.end()) {
      add(path, "missing");
      continue;
    }
    const Node& a = it->second;
    if (e.error != a.error) {
      add(path, "error " + ErrnoName(e.error) + " expected, got " + ErrnoName(a.error));
      continue;
    }
    const bool is_root = path.empty();
    if ((e.mode & S_IFMT) != (a.mode & S_IFMT)) {
      add(path, "type " + TypeName(e.mode) + " expected, got " + TypeName(a.mode));
      continue;
    }
    if (!is_root || options.root_attrs) {
      if ((e.mode & 07777) != (a.mode & 07777)) {
        add(path, "mode " + Octal(e.mode & 07777) + " expected, got " + Octal(a.mode & 07777));
      }
      if (options.owner && (e.uid != a.uid || e.gid != a.gid)) {
        add(path, "owner " + std::to_string(e.uid) + ":" + std::to_string(e.gid) +
                      " expected, got " + std::to_string(a.uid) + ":" + std::to_string(a.gid));
      }
      const bool compare_nlink = !S_ISDIR(e.mode) || e.nlink != 1;
      if (compare_nlink && e.nlink != a.nlink) {
        add(path, "nlink " + std::to_string(e.nlink) + " expected, got " + std::to_string(a.nlink));
      }
    }
    if (!S_ISDIR(e.mode) && e.size != a.size) {
      add(path, "size " + std::to_string(e.size) + " expected, got " + std::to_string(a.size));
    }
    if (S_ISREG(e.mode) && e.hash != a.hash) add(path, "contents differ");
    if (S_ISLNK(e.mode) && e.link_target != a.link_target) {
      add(path, "symlink target " + Printable(e.link_target) + " expected, got " +
                    Printable(a.link_target));
    }
    if (e.xattrs != a.xattrs) {
      std::string es, as;
      for (const auto& [k, v] : e.xattrs) es += k + "=" + Summary(v) + " ";
      for (const auto& [k, v] : a.xattrs) as += k + "=" + Summary(v) + " ";
      add(path, "xattrs {" + es + "} expected, got {" + as + "}");
    }
    if (options.ino && e.ino != a.ino) {
      add(path, "inode " + std::to_string(e.ino) + " expected, got " + std::to_string(a.ino));
    }
    if (options.times) {
      if (e.mtime.tv_sec != a.mtime.tv_sec || e.mtime.tv_nsec != a.mtime.tv_nsec) {
        add(path, "mtime " + TimeStr(e.mtime) + " expected, got " + TimeStr(a.mtime));
      }
      if (e.ctime.tv_sec != a.ctime.tv_sec || e.ctime.tv_nsec != a.ctime.tv_nsec) {
        add(path, "ctime " + TimeStr(e.ctime) + " expected, got " + TimeStr(a.ctime));
      }
    }
  }
  for (const auto& [path, a] : actual) {
    if (expected.count(path) == 0) add(path, "unexpected entry (" + TypeName(a.mode) + ")");
  }
  return diffs;
}

std::string FirstDifference(const std::string& a, const std::string& b) {
  int fa = open(a.c_str(), O_RDONLY | O_CLOEXEC);
  int fb = open(b.c_str(), O_RDONLY | O_CLOEXEC);
  std::string result;
  if (fa < 0 || fb < 0) {
    result = "cannot open for comparison";
  } else {
    std::string ba(1 << 16, '\0'), bb(1 << 16, '\0');
    off_t off = 0;
    for (;;) {
      ssize_t na = pread(fa, ba.data(), ba.size(), off);
      ssize_t nb = pread(fb, bb.data(), bb.size(), off);
      if (na < 0 || nb < 0) {
        result = "read error at offset " + std::to_string(off) + ": " + ErrnoName(errno);
        break;
      }
      const ssize_t common = std::min(na, nb);
      ssize_t k = 0;
      while (k < common && ba[static_cast<size_t>(k)] == bb[static_cast<size_t>(k)]) ++k;
      if (k < common || na != nb) {
        result = "first difference at byte " + std::to_string(off + k);
        if (k < common) {
          char buf[64];
          snprintf(buf, sizeof buf, " (0x%02x expected, got 0x%02x)",
                   static_cast<unsigned char>(ba[static_cast<size_t>(k)]),
                   static_cast<unsigned char>(bb[static_cast<size_t>(k)]));
          result += buf;
        } else {
          result += " (one file ends there)";
        }
        break;
      }
      if (na == 0) {
        result = "no difference found on re-reading";
        break;
      }
      off += na;
    }
  }
  if (fa >= 0) close(fa);
  if (fb >= 0) close(fb);
  return result;
}

std::string CompareDirs(const std::string& expected_root, const std::string& actual_root,
                        const DiffOptions& options) {
  const Tree expected = Snapshot(expected_root);
  const Tree actual = Snapshot(actual_root);
  std::vector<std::string> diffs = DiffTrees(expected, actual, options);
  if (diffs.empty()) return "";
  std::ostringstream os;
  os << diffs.size() << " difference(s) between " << expected_root << " (expected) and "
     << actual_root << ":\n";
  size_t shown = 0;
  for (const std::string& d : diffs) {
    if (++shown > 40) {
      os << "  ...\n";
      break;
    }
    os << "  " << d << "\n";
  }
  // Name the first differing byte of the files whose contents differ.
  size_t detailed = 0;
  for (const auto& [path, e] : expected) {
    auto it = actual.find(path);
    if (it == actual.end() || !S_ISREG(e.mode) || !S_ISREG(it->second.mode) ||
        e.hash == it->second.hash || e.error != 0 || it->second.error != 0) {
      continue;
    }
    if (++detailed > 10) break;
    os << "  " << Printable(path) << ": "
       << FirstDifference(expected_root + "/" + path, actual_root + "/" + path) << "\n";
  }
  return os.str();
}

}  // namespace strata::it
