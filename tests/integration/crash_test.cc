// Promise 2, by force: kill -9 the daemon at a random moment while a writer process creates,
// overwrites, patches, atomically replaces (write temp, fsync, rename, fsync dir) and deletes
// files, and logs to a side file on the host disk what each fsync made durable. After each
// kill the filesystem must mount again (recovery), every acknowledged file must hold exactly
// its content, an atomic replace must show the old or the new file and nothing else, and every
// entry that readdir lists must stat and read without error. The same filesystem goes through
// all iterations, so recovery also runs on top of recovered state.
//
//   STRATA_CRASH_ITERATIONS=200 STRATA_SEED=5 ./crash_test
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fs_ops.h"
#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

constexpr int kDirs = 4;
constexpr int kFilesPerDir = 8;

// What the side log says a name must look like after a crash.
struct Expect {
  enum Kind {
    kAbsent,   // must not exist
    kExact,    // must exist with exactly `content`
    kEither,   // atomic replace in flight: `content` (new), or the old state
    kUnknown,  // unsynced changes: anything, but readable if it exists
  };
  Kind kind = kAbsent;
  std::string content;
  // kEither: the state before the replace. kUnknown: the last exact content, if any, which a
  // later patch builds on.
  bool old_absent = true;
  std::string old_content;
};
using State = std::map<std::string, Expect>;

std::string Content(uint64_t seed, size_t size, int kind) {
  return MakeData(seed, size, static_cast<DataKind>(kind));
}

// Applies one side-log line (without its newline) to `state`. Both the writer and the parent
// use this, so they agree on what each line means.
std::string ApplyLine(const std::string& line, State* state) {
  std::istringstream in(line);
  std::string op, name;
  in >> op >> name;
  Expect& e = (*state)[name];
  if (op == "U") {
    if (e.kind == Expect::kExact) {
      e.old_content = e.content;
      e.old_absent = false;
    } else if (e.kind != Expect::kUnknown) {
      e.old_absent = true;
      e.old_content.clear();
    }
    e.kind = Expect::kUnknown;
  } else if (op == "S" || op == "A") {
    uint64_t seed = 0;
    size_t size = 0;
    int kind = 0;
    if (!(in >> seed >> size >> kind)) return "malformed: " + line;
    if (op == "A") {
      if (e.kind == Expect::kExact) {
        e.old_content = e.content;
        e.old_absent = false;
      } else if (e.kind == Expect::kAbsent) {
        e.old_absent = true;
      } else {
        return "atomic replace of a name in an unknown state: " + line;
      }
      e.kind = Expect::kEither;
    } else {
      e.kind = Expect::kExact;
    }
    e.content = Content(seed, size, kind);
  } else if (op == "P") {
    off_t off = 0;
    uint64_t seed = 0;
    size_t len = 0;
    if (!(in >> off >> seed >> len)) return "malformed: " + line;
    if (e.kind != Expect::kUnknown || e.old_absent) return "patch without a base: " + line;
    std::string c = e.old_content;
    const size_t end = static_cast<size_t>(off) + len;
    if (c.size() < end) c.resize(end, '\0');
    c.replace(static_cast<size_t>(off), len, Content(seed, len, 0));
    e.kind = Expect::kExact;
    e.content = std::move(c);
  } else if (op == "G") {
    e = Expect{};
  } else {
    return "unknown side-log line: " + line;
  }
  return "";
}

// Built by appending: GCC 12 warns (-Wrestrict, a false positive) on "literal" + string.
std::string DirName(int dir) {
  std::string name = "d";
  name += std::to_string(dir);
  return name;
}

std::string FileName(int dir, int file) {
  std::string name = DirName(dir);
  name += "/f";
  name += std::to_string(file);
  return name;
}

// The writer process. Never returns. Every line it logs is written after the operation it
// describes has been acknowledged (S, A-before-rename aside, P, G), or before the change
// starts (U), so the log never claims more durability than fsync promised.
[[noreturn]] void WriterMain(const std::string& mnt, const std::string& log_path, State state,
                             uint64_t seed) {
  int logfd = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (logfd < 0) _exit(3);
  std::mt19937_64 rng(seed);
  auto uniform = [&](uint64_t lo, uint64_t hi) { return lo + rng() % (hi - lo + 1); };
  auto log = [&](const std::string& line) {
    const std::string with_nl = line + "\n";
    if (write(logfd, with_nl.data(), with_nl.size()) != static_cast<ssize_t>(with_nl.size())) {
      _exit(3);
    }
    ApplyLine(line, &state);
  };
  auto fail = [&](const std::string& what) {
    log("E " + what + " " + ErrnoName(errno));
    _exit(2);
  };
  auto write_file = [&](const std::string& path, const std::string& data, bool sync) {
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("open " + path);
    for (size_t off = 0; off < data.size();) {
      const size_t n = std::min<size_t>(data.size() - off, uniform(1, 256 * 1024));
      if (write(fd, data.data() + off, n) != static_cast<ssize_t>(n)) fail("write " + path);
      off += n;
    }
    if (sync && fsync(fd) != 0) fail("fsync " + path);
    if (close(fd) != 0) fail("close " + path);
  };
  auto sync_dir = [&](int dir) {
    const std::string path = mnt + "/d" + std::to_string(dir);
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) fail("fsync dir " + path);
    close(fd);
  };

  for (;;) {
    const int dir = static_cast<int>(uniform(0, kDirs - 1));
    const std::string name = FileName(dir, static_cast<int>(uniform(0, kFilesPerDir - 1)));
    const std::string path = mnt + "/" + name;
    const Expect::Kind kind = state[name].kind;
    const uint64_t content_seed = rng();
    const int data_kind = static_cast<int>(uniform(0, 3));
    const size_t size = uniform(0, 99) < 10 ? uniform(0, 3 << 20) : uniform(0, 300 * 1024);
    const std::string args =
        std::to_string(content_seed) + " " + std::to_string(size) + " " + std::to_string(data_kind);
    const uint64_t action = uniform(0, 99);

    if (action < 35) {  // write and fsync
      log("U " + name);
      write_file(path, Content(content_seed, size, data_kind), true);
      log("S " + name + " " + args);
    } else if (action < 60 && (kind == Expect::kExact || kind == Expect::kAbsent)) {
      // Atomic replace, the way careful applications save a file.
      const std::string tmp = DirName(dir) + "/tmp";
      log("U " + tmp);
      write_file(mnt + "/" + tmp, Content(content_seed, size, data_kind), true);
      log("S " + tmp + " " + args);
      log("A " + name + " " + args);
      log("U " + tmp);
      if (rename((mnt + "/" + tmp).c_str(), path.c_str()) != 0) fail("rename " + tmp);
      sync_dir(dir);
      log("S " + name + " " + args);
      log("G " + tmp);
    } else if (action < 75) {  // written, never synced
      log("U " + name);
      write_file(path, Content(content_seed, size, data_kind), false);
    } else if (action < 85 && kind == Expect::kExact) {  // patch in place and fsync
      const off_t off = static_cast<off_t>(uniform(0, state[name].content.size() + 100000));
      const size_t len = uniform(1, 200 * 1024);
      log("U " + name);
      int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("open " + name);
      const std::string patch = Content(content_seed, len, 0);
      if (pwrite(fd, patch.data(), len, off) != static_cast<ssize_t>(len)) fail("pwrite " + name);
      if (fdatasync(fd) != 0) fail("fdatasync " + name);
      close(fd);
      log("P " + name + " " + std::to_string(off) + " " + std::to_string(content_seed) + " " +
          std::to_string(len));
    } else if (kind != Expect::kAbsent) {  // unlink and make it durable
      log("U " + name);
      if (unlink(path.c_str()) != 0 && errno != ENOENT) fail("unlink " + name);
      sync_dir(dir);
      log("G " + name);
    }
  }
}

struct CrashParam {
  const char* name;
  long long default_iterations;
  std::vector<std::string> filesystem_config;
  std::vector<std::string> extra_config = {};
};

// Names the parameter in test names and messages.
void PrintTo(const CrashParam& p, std::ostream* os) { *os << p.name; }

class CrashTest : public MountFixture, public ::testing::WithParamInterface<CrashParam> {
 protected:
  CrashTest() {
    filesystem_config_ = GetParam().filesystem_config;
    extra_config_ = GetParam().extra_config;
  }

  std::string LogPath() const { return root() + "/durable.log"; }

  // Complete lines of the side log from byte `from` on.
  std::vector<std::string> ReadLog(size_t from) const {
    std::string text;
    ReadWholeFile(LogPath(), &text);
    std::vector<std::string> lines;
    size_t pos = from;
    for (;;) {
      const size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // a torn last line is ignored
      lines.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    return lines;
  }

  size_t LogBytes() const {
    struct stat st {};
    return stat(LogPath().c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  }

  // Checks every name against `state`, and the whole tree for consistency.
  void Verify(const State& state, const std::string& when) {
    for (const auto& [name, e] : state) {
      const std::string path = mnt() + "/" + name;
      struct stat st {};
      const bool exists = lstat(path.c_str(), &st) == 0;
      const int err = exists ? 0 : errno;
      if (!exists && err != ENOENT) {
        ADD_FAILURE() << when << ": lstat " << name << ": " << ErrnoName(err);
        continue;
      }
      std::string contents;
      if (exists) {
        if (!S_ISREG(st.st_mode)) {
          ADD_FAILURE() << when << ": " << name << " is not a regular file";
          continue;
        }
        if (!ReadWholeFile(path, &contents)) {
          ADD_FAILURE() << when << ": reading " << name << ": " << ErrnoName(errno)
                        << " (a listed file must be readable after recovery)";
          continue;
        }
        EXPECT_EQ(static_cast<size_t>(st.st_size), contents.size())
            << when << ": " << name << ": stat size and bytes read disagree";
      }
      switch (e.kind) {
        case Expect::kAbsent:
          EXPECT_FALSE(exists) << when << ": " << name << " was durably deleted but exists";
          break;
        case Expect::kExact:
          if (!exists) {
            ADD_FAILURE() << when << ": " << name << " was fsynced (" << e.content.size()
                          << " bytes) but is missing";
          } else if (contents != e.content) {
            size_t k = 0;
            while (k < contents.size() && k < e.content.size() && contents[k] == e.content[k]) ++k;
            ADD_FAILURE() << when << ": " << name << " was fsynced with " << e.content.size()
                          << " bytes but has " << contents.size() << " bytes, first difference at "
                          << k;
          }
          break;
        case Expect::kEither: {
          const bool is_new = exists && contents == e.content;
          const bool is_old = e.old_absent ? !exists : (exists && contents == e.old_content);
          EXPECT_TRUE(is_new || is_old)
              << when << ": " << name << " is neither the old nor the new file of an atomic "
              << "replace (" << (exists ? std::to_string(contents.size()) + " bytes" : "absent")
              << "; old " << (e.old_absent ? "absent" : std::to_string(e.old_content.size()))
              << ", new " << e.content.size() << ")";
          break;
        }
        case Expect::kUnknown:
          break;
      }
    }
    // Nothing outside the name pool, and everything listed is usable.
    std::set<std::string> allowed;
    for (int d = 0; d < kDirs; ++d) {
      allowed.insert(DirName(d));
      allowed.insert(DirName(d) + "/tmp");
      for (int f = 0; f < kFilesPerDir; ++f) allowed.insert(FileName(d, f));
    }
    std::vector<std::string> dirs = {""};
    while (!dirs.empty()) {
      const std::string rel = dirs.back();
      dirs.pop_back();
      DIR* dir = opendir((mnt() + (rel.empty() ? "" : "/" + rel)).c_str());
      if (dir == nullptr) {
        ADD_FAILURE() << when << ": opendir " << rel << ": " << ErrnoName(errno);
        continue;
      }
      errno = 0;
      while (dirent* de = readdir(dir)) {
        const std::string n = de->d_name;
        if (n == "." || n == "..") continue;
        const std::string child = rel.empty() ? n : rel + "/" + n;
        struct stat st {};
        if (lstat((mnt() + "/" + child).c_str(), &st) != 0) {
          ADD_FAILURE() << when << ": readdir lists " << child
                        << " but lstat fails: " << ErrnoName(errno);
          continue;
        }
        if (rel.empty() && allowed.count(child) == 0) continue;  // the fs's own root entries
        EXPECT_TRUE(allowed.count(child) == 1) << when << ": unexpected entry " << child;
        if (S_ISDIR(st.st_mode)) dirs.push_back(child);
      }
      EXPECT_EQ(errno, 0) << when << ": readdir " << rel << ": " << ErrnoName(errno);
      closedir(dir);
    }
  }

  // After verification, what the recovered filesystem holds becomes the new baseline.
  void Settle(State* state) {
    for (auto& [name, e] : *state) {
      if (e.kind == Expect::kExact || e.kind == Expect::kAbsent) continue;
      const std::string path = mnt() + "/" + name;
      std::string contents;
      if (ReadWholeFile(path, &contents)) {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(fsync(fd), 0) << name << ": " << ErrnoName(errno);
        close(fd);
        e = Expect{};
        e.kind = Expect::kExact;
        e.content = std::move(contents);
      } else {
        ASSERT_EQ(errno, ENOENT) << name;
        e = Expect{};
      }
    }
    for (int d = 0; d < kDirs; ++d) {
      int fd = open((mnt() + "/d" + std::to_string(d)).c_str(), O_RDONLY | O_DIRECTORY);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(fsync(fd), 0);
      close(fd);
    }
  }
};

TEST_P(CrashTest, FsyncedDataSurvivesKill9) {
  const long long iterations = EnvInt("STRATA_CRASH_ITERATIONS", GetParam().default_iterations);
  const uint64_t seed = static_cast<uint64_t>(EnvInt("STRATA_SEED", 20240601));
  std::cout << "crash test: " << iterations << " kills, seed " << seed
            << " (STRATA_CRASH_ITERATIONS / STRATA_SEED to change)\n";
  RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);

  for (int d = 0; d < kDirs; ++d) {
    const std::string dir = mnt() + "/d" + std::to_string(d);
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoName(errno);
  }
  {
    int fd = open(mnt().c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(fsync(fd), 0) << ErrnoName(errno);
    close(fd);
  }

  State state;
  long long total_lines = 0;
  for (long long it = 0; it < iterations; ++it) {
    const std::string when = "after kill " + std::to_string(it + 1);
    const size_t log_start = LogBytes();
    const uint64_t writer_seed = rng();
    pid_t writer = fork();
    ASSERT_GE(writer, 0);
    if (writer == 0) WriterMain(mnt(), LogPath(), state, writer_seed);

    // The random moment: after 1 to 120 more logged steps, plus up to 15 ms.
    const size_t wanted = 1 + rng() % 120;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    int writer_status = 0;
    bool writer_died = false;
    while (ReadLog(log_start).size() < wanted) {
      if (waitpid(writer, &writer_status, WNOHANG) == writer) {
        writer_died = true;
        break;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "the writer logged only " << ReadLog(log_start).size() << " steps in 60 s";
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (!writer_died) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 15000));
      writer_died = waitpid(writer, &writer_status, WNOHANG) == writer;
    }
    if (writer_died) {
      std::string errors;
      for (const std::string& l : ReadLog(log_start)) {
        if (l.rfind("E ", 0) == 0) errors += l + "\n";
      }
      FAIL() << "the writer failed before the kill (" << DescribeWaitStatus(writer_status) << "):\n"
             << errors;
    }

    ASSERT_NO_FATAL_FAILURE(KillDaemon9());
    kill(writer, SIGKILL);
    waitpid(writer, &writer_status, 0);

    const std::vector<std::string> lines = ReadLog(log_start);
    total_lines += static_cast<long long>(lines.size());
    for (const std::string& line : lines) {
      if (line.rfind("E ", 0) == 0) continue;  // failures caused by the kill itself
      const std::string err = ApplyLine(line, &state);
      ASSERT_EQ(err, "") << "side log";
    }

    ASSERT_NO_FATAL_FAILURE(Mount()) << when << ": the filesystem does not mount again";
    Verify(state, when);
    ASSERT_FALSE(HasFailure()) << "stopping after the first failed iteration (" << when << ")";
    ASSERT_NO_FATAL_FAILURE(Settle(&state));
  }
  RecordProperty("logged_steps", std::to_string(total_lines));
  size_t exact = 0;
  uint64_t bytes = 0;
  for (const auto& [name, e] : state) {
    if (e.kind == Expect::kExact) {
      ++exact;
      bytes += e.content.size();
    }
  }
  std::cout << "crash test: " << total_lines << " side-log lines over " << iterations << " kills; "
            << exact << " files (" << bytes << " bytes) checked at the end\n";

  ASSERT_NO_FATAL_FAILURE(Remount());
  Verify(state, "after the final clean remount");
  // The journal wrote the way this case asked for.
  const bool direct = GetParam().extra_config.empty();
  EXPECT_EQ(DaemonLog().find("appends bypass the page cache") != std::string::npos, direct)
      << DaemonLog();
}

INSTANTIATE_TEST_SUITE_P(
    Kill9, CrashTest,
    ::testing::Values(CrashParam{"DefaultConfig", 10, {}},
                      // Small segments: kills also land while segments fill up and roll over.
                      CrashParam{"SmallSegments", 5, {"segment_size = \"4MiB\""}},
                      // The journal through the page cache ([journal] direct_io = false), as
                      // on a hot tier without O_DIRECT.
                      CrashParam{"PageCacheJournal",
                                 5,
                                 {"segment_size = \"4MiB\""},
                                 {"[journal]", "direct_io = false"}}),
    [](const ::testing::TestParamInfo<CrashParam>& info) { return info.param.name; });

}  // namespace
}  // namespace strata::it
