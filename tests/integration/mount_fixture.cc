#include "tests/integration/mount_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

extern char** environ;

namespace strata::it {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Sleeps between two polls: short at first so a fast event is seen quickly, then capped so a
// slow one does not burn a core.
class Backoff {
 public:
  void Pause() {
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    delay_us_ = std::min(delay_us_ * 2, 20'000);
  }

 private:
  int delay_us_ = 200;
};

// Undoes the octal escapes (\040 for space, ...) that /proc/self/mountinfo uses.
std::string UnescapeMountinfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> ptrs;
  ptrs.reserve(argv.size() + 1);
  for (const std::string& a : argv) ptrs.push_back(const_cast<char*>(a.c_str()));
  ptrs.push_back(nullptr);
  return ptrs;
}

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

// This process's environment with the `NAME=value` entries of `extra` set (each replacing
// any NAME already there).
std::vector<std::string> EnvironmentWith(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& x : extra)
      if (std::string_view(x).substr(0, x.find('=')) == name) replaced = true;
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Spawns argv with stdin </dev/null and stdout+stderr appended to `log_path`, in this
// process's environment plus `extra_env` (see EnvironmentWith). Returns the pid, or -1 with
// errno set.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path,
            const std::vector<std::string>& extra_env = {}) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);  // no CLOEXEC: it is stdout
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> ptrs = ArgvPointers(argv);
  const std::vector<std::string> env = EnvironmentWith(extra_env);
  std::vector<char*> env_ptrs = ArgvPointers(env);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, ptrs[0], &actions, nullptr, ptrs.data(),
                        extra_env.empty() ? environ : env_ptrs.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

std::string TempParent() {
  const char* dir = std::getenv("STRATA_TEST_TMPDIR");
  return (dir != nullptr && *dir != '\0') ? dir : "/tmp";
}

bool KeepTmp() { return EnvInt("STRATA_KEEP_TMP", 0) != 0; }

std::string Quote(const std::string& s) {
  // TOML basic string; our paths never contain quotes or backslashes, but be safe.
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string StrataBinary() {
  const char* env = std::getenv("STRATA_BINARY");
  if (env != nullptr && *env != '\0') return env;
#ifdef STRATA_BINARY
  return STRATA_BINARY;
#else
  return "strata";
#endif
}

std::string DescribeWaitStatus(int status) {
  std::ostringstream os;
  if (status == -1) {
    os << "not run";
  } else if (WIFEXITED(status)) {
    os << "exited with status " << WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    os << "killed by signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status)) << ")"
       << (WCOREDUMP(status) ? ", core dumped" : "");
  } else {
    os << "wait status 0x" << std::hex << status;
  }
  return os.str();
}

bool CommandResult::Succeeded() const {
  return !timed_out && wait_status != -1 && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

int CommandResult::ExitCode() const {
  return (wait_status != -1 && WIFEXITED(wait_status)) ? WEXITSTATUS(wait_status) : -1;
}

std::string CommandResult::Describe() const {
  std::string s = timed_out ? "timed out, " : "";
  s += DescribeWaitStatus(wait_status);
  s += "; output:\n" + (output.empty() ? std::string("(none)") : Tail(output, 8192));
  return s;
}

CommandResult RunCommand(const std::vector<std::string>& argv, milliseconds timeout) {
  CommandResult result;
  char tmpl[] = "/tmp/strata-cmd-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) {
    result.output = std::string("mkstemp: ") + strerror(errno);
    return result;
  }
  close(fd);
  std::string log = tmpl;
  pid_t pid = Spawn(argv, log);
  if (pid < 0) {
    result.output = "cannot run " + JoinArgv(argv) + ": " + strerror(errno);
    unlink(log.c_str());
    return result;
  }
  int status = 0;
  if (WaitForExit(pid, &status, timeout)) {
    result.wait_status = status;
  } else {
    result.timed_out = true;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    result.wait_status = status;
  }
  ReadWholeFile(log, &result.output);
  unlink(log.c_str());
  return result;
}

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // Fields: id parent major:minor root mount-point options ...
    std::istringstream fields(line);
    std::string id, parent, dev, mount_root, mount_point;
    if (!(fields >> id >> parent >> dev >> mount_root >> mount_point)) continue;
    if (UnescapeMountinfo(mount_point) == path) return true;
  }
  return false;
}

bool WaitForExit(pid_t pid, int* status, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) {
      *status = -1;
      return true;  // not our child any more (already reaped): nothing to wait for
    }
    if (Clock::now() >= deadline) return false;
    backoff.Pause();
  }
}

bool ReadWholeFile(const std::string& path, std::string* out) {
  out->clear();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return true;
}

std::string CtLike(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  int v = 1000;
  for (size_t i = 0; i + 1 < n; i += 2) {
    v = std::clamp(v + static_cast<int>(rng() % 21) - 10, 0, 4095);
    s[i] = static_cast<char>(v & 0xff);
    s[i + 1] = static_cast<char>(v >> 8);
  }
  return s;
}

bool WriteWholeFile(const std::string& path, std::string_view data, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  if (fchmod(fd, mode) != 0) {
    close(fd);
    return false;
  }
  return close(fd) == 0;
}

std::string Tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return "[... " + std::to_string(text.size() - max_bytes) + " bytes omitted ...]\n" +
         text.substr(text.size() - max_bytes);
}

namespace {
int MakeWritable(const char* path, const struct stat* st, int type, struct FTW*) {
  if (type == FTW_D || type == FTW_DNR) chmod(path, (st->st_mode & 07777) | S_IRWXU);
  return 0;
}
int RemoveOne(const char* path, const struct stat*, int type, struct FTW*) {
  int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
  return (rc == 0 || errno == ENOENT) ? 0 : -1;
}
}  // namespace

bool RemoveTree(const std::string& path) {
  // FTW_MOUNT: never descend into a filesystem still mounted below `path`.
  nftw(path.c_str(), MakeWritable, 32, FTW_PHYS | FTW_MOUNT);
  return nftw(path.c_str(), RemoveOne, 32, FTW_PHYS | FTW_MOUNT | FTW_DEPTH) == 0;
}

long long EnvInt(const char* name, long long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 0);
  return (end != nullptr && *end == '\0') ? n : fallback;
}

// ---------------------------------------------------------------------------------------------

void MountFixture::SetUp() {
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "/dev/fuse is not usable here (" << strerror(errno)
                 << "); integration tests need FUSE";
  }
  const std::string bin = StrataBinary();
  ASSERT_EQ(access(bin.c_str(), X_OK), 0)
      << "strata binary " << bin << " is not executable: " << strerror(errno);

  std::string tmpl = TempParent() + "/strata-it-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl << ": " << strerror(errno);
  char* real = realpath(tmpl.c_str(), nullptr);
  ASSERT_NE(real, nullptr) << strerror(errno);
  root_ = real;
  free(real);
  mnt_ = root_ + "/mnt";
  hot_ = root_ + "/hot";
  native_ = root_ + "/native";
  config_ = root_ + "/strata.toml";
  key_ = root_ + "/test.key";
  for (const std::string* d : {&mnt_, &hot_, &native_}) {
    ASSERT_EQ(mkdir(d->c_str(), 0755), 0) << *d << ": " << strerror(errno);
  }
  unsigned char key[32];
  ASSERT_EQ(getrandom(key, sizeof key, 0), static_cast<ssize_t>(sizeof key));
  ASSERT_TRUE(
      WriteWholeFile(key_, std::string_view(reinterpret_cast<char*>(key), sizeof key), 0600));
  if (hot_tmpfs_bytes_ > 0) {
    const std::string opts = "size=" + std::to_string(hot_tmpfs_bytes_) + ",mode=0755";
    if (mount("strata-test-hot", hot_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
      GTEST_SKIP() << "cannot mount a tmpfs on " << hot_ << " (" << strerror(errno)
                   << "): this test needs root";
    hot_tmpfs_mounted_ = true;
  }
  WriteConfig();
  ASSERT_NO_FATAL_FAILURE(Mkfs());
  if (mount_in_setup_) {
    ASSERT_NO_FATAL_FAILURE(Mount());
  }
}

void MountFixture::WriteConfig() {
  std::ostringstream toml;
  toml << "# Written by the strata integration test fixture.\n"
       << "[filesystem]\n"
       << "name = " << Quote("it-" + root_.substr(root_.rfind('-') + 1)) << "\n";
  for (const std::string& line : filesystem_config_) toml << line << "\n";
  toml << "\n[keys]\nkey_file = " << Quote(key_) << "\n"
       << "\n[tiers.hot]\npath = " << Quote(hot_) << "\n";
  for (const std::string& line : hot_config_) toml << line << "\n";
  for (const std::string& line : extra_config_) toml << line << "\n";
  ASSERT_TRUE(WriteWholeFile(config_, toml.str(), 0644)) << config_;
}

void MountFixture::Mkfs() {
  CommandResult r = RunCommand({StrataBinary(), "mkfs", config_});
  ASSERT_TRUE(r.Succeeded()) << "strata mkfs " << config_ << ": " << r.Describe();
}

MountFixture::MountAttempt MountFixture::TryMount(milliseconds timeout) {
  MountAttempt attempt;
  if (daemon_pid_ > 0) {
    attempt.log = "TryMount: a daemon (pid " + std::to_string(daemon_pid_) + ") is still running";
    return attempt;
  }
  ++mount_count_;
  log_path_ = root_ + "/daemon-" + std::to_string(mount_count_) + ".log";
  std::vector<std::string> argv = {StrataBinary(), "mount", config_, mnt_, "--foreground"};
  argv.insert(argv.end(), mount_args_.begin(), mount_args_.end());
  if (!mount_options_.empty()) {
    std::string opts;
    for (const std::string& o : mount_options_) opts += (opts.empty() ? "" : ",") + o;
    argv.push_back("-o");
    argv.push_back(opts);
  }
  pid_t pid = Spawn(argv, log_path_, daemon_env_);
  if (pid < 0) {
    attempt.log = "cannot run " + JoinArgv(argv) + ": " + strerror(errno);
    return attempt;
  }
  daemon_pid_ = pid;

  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    if (IsMountPoint(mnt_)) {
      attempt.mounted = true;
      return attempt;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      daemon_pid_ = -1;
      attempt.exited = true;
      attempt.wait_status = status;
      attempt.log = DaemonLog();
      return attempt;
    }
    if (Clock::now() >= deadline) {
      attempt.log = DaemonLog();
      return attempt;  // still running, not mounted: the caller decides
    }
    backoff.Pause();
  }
}

void MountFixture::Mount() {
  const auto start = Clock::now();
  MountAttempt a = TryMount();
  if (!a.mounted && !a.exited && daemon_pid_ > 0) {
    kill(daemon_pid_, SIGKILL);
    int status = 0;
    waitpid(daemon_pid_, &status, 0);
    daemon_pid_ = -1;
    if (IsMountPoint(mnt_)) RunCommand({"fusermount3", "-uz", mnt_});
    FAIL() << "strata mount did not mount " << mnt_ << " within 20 s (killed it); log:\n"
           << Tail(a.log, 8192);
  }
  ASSERT_TRUE(a.mounted) << "strata mount " << (a.exited ? DescribeWaitStatus(a.wait_status) : "")
                         << " before " << mnt_ << " was mounted; log:\n"
                         << Tail(a.log, 8192);
  // The mount appears in mountinfo before the daemon has answered FUSE_INIT; this stat waits
  // for that answer and checks that we are looking at a different filesystem.
  struct stat mnt_st {};
  struct stat root_st {};
  ASSERT_EQ(stat(mnt_.c_str(), &mnt_st), 0) << "stat " << mnt_ << ": " << strerror(errno);
  ASSERT_EQ(stat(root_.c_str(), &root_st), 0);
  ASSERT_NE(mnt_st.st_dev, root_st.st_dev) << mnt_ << " is mounted but stat shows the host fs";
  ASSERT_TRUE(S_ISDIR(mnt_st.st_mode)) << "the root of the filesystem is not a directory";
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  RecordProperty("mount_ms_" + std::to_string(mount_count_), static_cast<int>(ms));
}

void MountFixture::Unmount() {
  ASSERT_GT(daemon_pid_, 0) << "Unmount: no daemon running";
  CommandResult r = RunCommand({"fusermount3", "-u", mnt_});
  ASSERT_TRUE(r.Succeeded()) << "fusermount3 -u " << mnt_ << ": " << r.Describe();
  int status = 0;
  const pid_t pid = daemon_pid_;
  if (!WaitForExit(pid, &status, std::chrono::seconds(30))) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    daemon_pid_ = -1;
    FAIL() << "strata daemon (pid " << pid << ") still running 30 s after fusermount3 -u; "
           << "killed it; log:\n"
           << Tail(DaemonLog(), 8192);
  }
  daemon_pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "strata daemon " << DescribeWaitStatus(status) << " after a clean unmount; log:\n"
      << Tail(DaemonLog(), 8192);
  ASSERT_FALSE(IsMountPoint(mnt_)) << mnt_ << " still mounted after fusermount3 -u";
}

void MountFixture::Remount() {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Mount());
}

void MountFixture::KillDaemon9() {
  ASSERT_GT(daemon_pid_, 0) << "KillDaemon9: no daemon running";
  const pid_t pid = daemon_pid_;
  ASSERT_EQ(kill(pid, SIGKILL), 0) << strerror(errno);
  int status = 0;
  bool exited = WaitForExit(pid, &status, std::chrono::seconds(30));
  daemon_pid_ = -1;
  ASSERT_TRUE(exited) << "daemon " << pid << " survived SIGKILL for 30 s";
  // The kernel keeps the dead mount ("Transport endpoint is not connected") until it is
  // detached; -z detaches it even while the writer child still holds files open in it.
  CommandResult r = RunCommand({"fusermount3", "-uz", mnt_});
  ASSERT_TRUE(r.Succeeded()) << "fusermount3 -uz " << mnt_ << ": " << r.Describe();
  ASSERT_FALSE(IsMountPoint(mnt_)) << mnt_ << " still mounted after fusermount3 -uz";
}

int MountFixture::SignalDaemonAndWait(int sig) {
  if (daemon_pid_ <= 0) return -1;
  const pid_t pid = daemon_pid_;
  if (kill(pid, sig) != 0) return -1;
  int status = 0;
  if (!WaitForExit(pid, &status, std::chrono::seconds(30))) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    status = -1;
  }
  daemon_pid_ = -1;
  return status;
}

int MountFixture::WaitForDaemonExit(milliseconds timeout) {
  if (daemon_pid_ <= 0) return -1;
  const pid_t pid = daemon_pid_;
  int status = 0;
  if (!WaitForExit(pid, &status, timeout)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    status = -1;
  }
  daemon_pid_ = -1;
  // The kernel keeps a dead FUSE mount until it is detached.
  if (IsMountPoint(mnt_)) RunCommand({"fusermount3", "-uz", mnt_});
  return status;
}

std::string MountFixture::DaemonLog() const {
  std::string text;
  if (!log_path_.empty()) ReadWholeFile(log_path_, &text);
  return text;
}

std::string MountFixture::AllDaemonLogs(size_t max_bytes_each) const {
  std::string out;
  for (int i = 1; i <= mount_count_; ++i) {
    std::string path = root_ + "/daemon-" + std::to_string(i) + ".log";
    std::string text;
    if (!ReadWholeFile(path, &text)) continue;
    out += "----- " + path + " -----\n" + (text.empty() ? "(empty)\n" : Tail(text, max_bytes_each));
    if (!out.empty() && out.back() != '\n') out += '\n';
  }
  return out;
}

void MountFixture::ForceCleanup() {
  if (daemon_pid_ > 0) {
    const pid_t pid = daemon_pid_;
    if (IsMountPoint(mnt_)) {
      CommandResult r = RunCommand({"fusermount3", "-u", mnt_});
      if (!r.Succeeded()) {
        ADD_FAILURE() << "TearDown: fusermount3 -u " << mnt_
                      << " failed (a file left open?): " << r.Describe()
                      << "\nforcing a lazy unmount";
        RunCommand({"fusermount3", "-uz", mnt_});
      }
    }
    int status = 0;
    if (!WaitForExit(pid, &status, std::chrono::seconds(30))) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "TearDown: strata daemon " << pid
                    << " still running 30 s after unmount; killed it";
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      ADD_FAILURE() << "TearDown: strata daemon " << DescribeWaitStatus(status)
                    << " at unmount; log:\n"
                    << Tail(DaemonLog(), 8192);
    }
    daemon_pid_ = -1;
  }
  if (!mnt_.empty() && IsMountPoint(mnt_)) RunCommand({"fusermount3", "-uz", mnt_});
}

void MountFixture::TearDown() {
  if (root_.empty()) return;  // SetUp skipped or failed before creating anything
  ForceCleanup();
  if (hot_tmpfs_mounted_) {
    // The daemon is gone; nothing else holds the tmpfs.
    if (umount2(hot_.c_str(), 0) != 0) {
      ADD_FAILURE() << "umount " << hot_ << ": " << strerror(errno) << " (detaching it)";
      umount2(hot_.c_str(), MNT_DETACH);
    }
    hot_tmpfs_mounted_ = false;
  }
  if (HasFailure()) {
    std::cerr << "strata daemon logs for " << root_ << ":\n" << AllDaemonLogs(16384);
  }
  if (IsMountPoint(mnt_)) {
    ADD_FAILURE() << mnt_ << " is still mounted; leaving " << root_ << " in place";
    return;
  }
  if (KeepTmp() || (HasFailure() && EnvInt("STRATA_KEEP_FAILED", 0) != 0)) {
    std::cerr << "keeping " << root_ << "\n";
    return;
  }
  EXPECT_TRUE(RemoveTree(root_)) << "cannot remove " << root_ << ": " << strerror(errno);
}

}  // namespace strata::it
