// The CLI contract as an administrator meets it: mkfs refuses to overwrite, mount works in the
// background and in the foreground, SIGTERM/SIGINT unmount cleanly, ro is read-only, and bad
// input (wrong key, missing key, missing hot tier, a second mount of the same filesystem) is
// refused with a message instead of being mounted or losing data.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fs_ops.h"
#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

// PIDs of processes whose command line mentions `needle` (a config path).
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* de = readdir(proc)) {
    char* end = nullptr;
    const long pid = strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == getpid()) continue;
    std::string cmdline;
    if (!ReadWholeFile("/proc/" + std::string(de->d_name) + "/cmdline", &cmdline)) continue;
    if (cmdline.find(needle) != std::string::npos) pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return pids;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int delay_us = 200;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    delay_us = std::min(delay_us * 2, 20000);
  }
  return true;
}

class LifecycleTest : public MountFixture {
 protected:
  void WriteProbe() {
    ASSERT_TRUE(WriteWholeFile(mnt() + "/probe", probe_, 0644)) << ErrnoName(errno);
  }
  void ExpectProbe(const char* when) {
    std::string back;
    ASSERT_TRUE(ReadWholeFile(mnt() + "/probe", &back)) << when << ": " << ErrnoName(errno);
    EXPECT_TRUE(back == probe_) << when << ": the probe file changed";
  }
  // A mount that must be refused: if it came up (or hung), clean it away, fail and return
  // nothing; else the attempt (its log and exit status) for the caller's checks.
  std::optional<MountAttempt> ExpectMountRefused(const std::string& what) {
    MountAttempt a = TryMount();
    if (a.mounted || !a.exited) {
      if (a.mounted) RunCommand({"fusermount3", "-u", mnt()});
      SignalDaemonAndWait(SIGKILL);
      if (IsMountPoint(mnt())) RunCommand({"fusermount3", "-uz", mnt()});
      ADD_FAILURE() << what << (a.mounted ? " mounted" : " neither mounted nor exited in 20 s")
                    << "; it must refuse. Log:\n"
                    << Tail(a.log, 4096);
      return std::nullopt;
    }
    return a;
  }

  const std::string probe_ = MakeData(1, 300 * 1024, DataKind::kMixed);
};

TEST_F(LifecycleTest, MkfsRefusesAnExistingFilesystem) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  CommandResult r = RunCommand({StrataBinary(), "mkfs", config_path()});
  EXPECT_EQ(r.ExitCode(), 1) << "mkfs over a mounted filesystem: " << r.Describe();
  EXPECT_FALSE(r.output.empty()) << "mkfs must say why it refused";
  ASSERT_NO_FATAL_FAILURE(Unmount());
  r = RunCommand({StrataBinary(), "mkfs", config_path()});
  EXPECT_EQ(r.ExitCode(), 1) << "mkfs over an existing filesystem: " << r.Describe();
  EXPECT_FALSE(r.output.empty()) << "mkfs must say why it refused";
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after the refused mkfs");
}

TEST_F(LifecycleTest, SigtermUnmountsCleanly) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());  // not fsynced: the clean shutdown must flush it
  const int status = SignalDaemonAndWait(SIGTERM);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "after SIGTERM the daemon " << DescribeWaitStatus(status) << "; log:\n"
      << Tail(DaemonLog(), 4096);
  EXPECT_FALSE(IsMountPoint(mnt())) << "SIGTERM must unmount";
  if (IsMountPoint(mnt())) RunCommand({"fusermount3", "-uz", mnt()});
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after SIGTERM and remount");
}

TEST_F(LifecycleTest, SigintUnmountsCleanly) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  const int status = SignalDaemonAndWait(SIGINT);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "after SIGINT the daemon " << DescribeWaitStatus(status);
  EXPECT_FALSE(IsMountPoint(mnt())) << "SIGINT must unmount";
  if (IsMountPoint(mnt())) RunCommand({"fusermount3", "-uz", mnt()});
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after SIGINT and remount");
}

// The kernel's readahead window on the mount (sysfs), or "" when it cannot be read.
std::string ReadaheadKiB(const std::string& mountpoint) {
  struct stat st;
  std::string v;
  if (::stat(mountpoint.c_str(), &st) != 0) return v;
  ReadWholeFile("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                    std::to_string(minor(st.st_dev)) + "/read_ahead_kb",
                &v);
  while (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

// A sequential reader needs several READs in flight: the mount raises the kernel's 128 KiB
// readahead window to 512 KiB (max_readahead).
TEST_F(LifecycleTest, MountRaisesTheReadaheadWindow) {
  EXPECT_TRUE(WaitUntil([&] { return ReadaheadKiB(mnt()) == "512"; }, std::chrono::seconds(10)))
      << "read_ahead_kb: " << ReadaheadKiB(mnt());
}

TEST_F(LifecycleTest, BackgroundMountIsReadyWhenTheCommandReturns) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // Given with a trailing slash, as people type it.
  CommandResult r =
      RunCommand({StrataBinary(), "mount", config_path(), mnt() + "/"}, std::chrono::seconds(30));
  ASSERT_TRUE(r.Succeeded()) << "strata mount (background): " << r.Describe();
  EXPECT_TRUE(IsMountPoint(mnt())) << "the mount must be in place when `strata mount` returns";
  ExpectProbe("through the background mount");
  EXPECT_TRUE(WaitUntil([&] { return ReadaheadKiB(mnt()) == "512"; }, std::chrono::seconds(10)))
      << "read_ahead_kb of the background mount: " << ReadaheadKiB(mnt());
  ASSERT_TRUE(WriteWholeFile(mnt() + "/background", "written in the background mount", 0644));

  r = RunCommand({"fusermount3", "-u", mnt()});
  ASSERT_TRUE(r.Succeeded()) << r.Describe();
  // The background daemon must go away by itself once unmounted.
  EXPECT_TRUE(WaitUntil([&] { return ProcessesMentioning(config_path()).empty(); },
                        std::chrono::seconds(30)))
      << "a strata process for " << config_path() << " is still running after fusermount3 -u";
  for (pid_t pid : ProcessesMentioning(config_path())) kill(pid, SIGKILL);

  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after the background mount");
  std::string back;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/background", &back));
  EXPECT_EQ(back, "written in the background mount");
}

TEST_F(LifecycleTest, ReadOnlyMount) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  mount_options_ = {"ro"};
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("on a read-only mount");
  errno = 0;
  EXPECT_LT(open((mnt() + "/probe").c_str(), O_WRONLY | O_CLOEXEC), 0);
  EXPECT_EQ(ErrnoName(errno), "EROFS");
  errno = 0;
  EXPECT_NE(mkdir((mnt() + "/d").c_str(), 0755), 0);
  EXPECT_EQ(ErrnoName(errno), "EROFS");
  errno = 0;
  EXPECT_NE(unlink((mnt() + "/probe").c_str()), 0);
  EXPECT_EQ(ErrnoName(errno), "EROFS");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  mount_options_.clear();
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after the read-only mount");
}

// The benchmarks' FUSE ceiling (`--null-data`): on a filesystem without data, names and sizes
// are kept and contents are not, and the daemon says so in its log; on one that holds data it
// is refused, and nothing changes.
TEST_F(LifecycleTest, NullDataMountKeepsSizesDiscardsContentsAndNeedsAnEmptyFilesystem) {
  ASSERT_NO_FATAL_FAILURE(Unmount());  // freshly made: no file data yet
  mount_args_ = {"--null-data"};
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_NE(DaemonLog().find("file contents written now are discarded"), std::string::npos)
      << DaemonLog();
  const std::string written(300000, 'x'), zeros(300000, '\0');
  ASSERT_TRUE(WriteWholeFile(mnt() + "/bench.dat", written, 0644));
  // (Read back on this mount, the kernel's page cache still holds what was written.)
  ASSERT_NO_FATAL_FAILURE(Unmount());
  mount_args_.clear();
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat st {};
  std::string back;
  ASSERT_EQ(stat((mnt() + "/bench.dat").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_size, 300000);
  ASSERT_TRUE(ReadWholeFile(mnt() + "/bench.dat", &back));
  EXPECT_TRUE(back == zeros) << "the contents written with null data came back";

  ASSERT_NO_FATAL_FAILURE(WriteProbe());  // real data now
  ASSERT_NO_FATAL_FAILURE(Unmount());
  mount_args_ = {"--null-data"};
  auto a = ExpectMountRefused("--null-data over a filesystem holding data");
  if (!a) return;
  EXPECT_NE(a->wait_status, 0);
  EXPECT_NE(a->log.find("holds no file data"), std::string::npos) << a->log;
  mount_args_.clear();
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("after a refused null-data mount");
}

// chunk_size is fixed at mkfs. A filesystem made with a chunk size other than today's
// default (an older default) mounts with its own, silently when the config does not name one,
// with a warning naming both when the config asks for another; its files read back either way.
TEST_F(LifecycleTest, ChunkSizeComesFromTheSuperblock) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::filesystem::remove_all(hot());
  ASSERT_TRUE(std::filesystem::create_directory(hot()));
  filesystem_config_ = {"chunk_size = \"128KiB\""};
  ASSERT_NO_FATAL_FAILURE(WriteConfig());
  ASSERT_NO_FATAL_FAILURE(Mkfs());
  filesystem_config_.clear();  // the default (64 KiB) from now on
  ASSERT_NO_FATAL_FAILURE(WriteConfig());
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectProbe("remounted without a chunk_size");
  EXPECT_EQ(DaemonLog().find("chunk_size"), std::string::npos) << DaemonLog();
  ASSERT_NO_FATAL_FAILURE(Unmount());
  filesystem_config_ = {"chunk_size = \"64KiB\""};
  ASSERT_NO_FATAL_FAILURE(WriteConfig());
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("mounted with another chunk_size in the config");
  EXPECT_NE(DaemonLog().find("chunk_size is 65536 but this filesystem was made with 131072"),
            std::string::npos)
      << DaemonLog();
  // dirty_limit is checked against the superblock's chunks: 256 KiB is 4 chunks of the
  // config's 64 KiB but 2 of this filesystem's. Refused, naming the key, and nothing changes.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string superblock;
  ASSERT_TRUE(ReadWholeFile(hot() + "/superblock", &superblock));
  extra_config_ = {"[cache]", "dirty_limit = \"256KiB\""};
  ASSERT_NO_FATAL_FAILURE(WriteConfig());
  auto a = ExpectMountRefused("a dirty_limit of 2 chunks");
  if (!a) return;
  EXPECT_NE(a->log.find("dirty_limit (262144 bytes) must hold at least 4 chunks"),
            std::string::npos)
      << a->log;
  std::string after;
  ASSERT_TRUE(ReadWholeFile(hot() + "/superblock", &after));
  EXPECT_TRUE(after == superblock) << "a refused mount changed the superblock";
  extra_config_.clear();
  ASSERT_NO_FATAL_FAILURE(WriteConfig());
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("with the default dirty_limit again");
}

TEST_F(LifecycleTest, WrongKeyIsRefused) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string good_key;
  ASSERT_TRUE(ReadWholeFile(key_path(), &good_key));
  std::string bad_key(32, '\0');
  ASSERT_EQ(getrandom(bad_key.data(), bad_key.size(), 0), 32);
  ASSERT_TRUE(WriteWholeFile(key_path(), bad_key, 0600));

  auto a = ExpectMountRefused("strata mount with the wrong key");
  if (!a) return;
  EXPECT_NE(a->wait_status, 0) << "the daemon exited with status 0 after refusing";
  EXPECT_FALSE(a->log.empty()) << "the refusal must say why";

  ASSERT_TRUE(WriteWholeFile(key_path(), good_key, 0600));
  ASSERT_NO_FATAL_FAILURE(Mount());
  ExpectProbe("with the right key again");
}

TEST_F(LifecycleTest, MissingKeyFileIsReportedByPath) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  const std::string moved = key_path() + ".away";
  ASSERT_EQ(rename(key_path().c_str(), moved.c_str()), 0);
  CommandResult r =
      RunCommand({StrataBinary(), "mount", config_path(), mnt()}, std::chrono::seconds(30));
  const bool mounted = IsMountPoint(mnt());
  if (mounted) RunCommand({"fusermount3", "-u", mnt()});
  ASSERT_EQ(rename(moved.c_str(), key_path().c_str()), 0);
  EXPECT_FALSE(mounted) << "mounted without its key file";
  EXPECT_NE(r.ExitCode(), 0) << r.Describe();
  EXPECT_NE(r.output.find(key_path()), std::string::npos)
      << "the error should name the missing key file; got:\n"
      << r.output;
}

TEST_F(LifecycleTest, MkfsWithMissingHotTierIsReportedByPath) {
  const std::string missing = root() + "/no-such-hot-dir";
  const std::string config = root() + "/bad.toml";
  ASSERT_TRUE(WriteWholeFile(config,
                             "[filesystem]\nname = \"bad\"\n[keys]\nkey_file = \"" + key_path() +
                                 "\"\n[tiers.hot]\npath = \"" + missing + "\"\n",
                             0644));
  CommandResult r = RunCommand({StrataBinary(), "mkfs", config});
  EXPECT_NE(r.ExitCode(), 0) << r.Describe();
  EXPECT_NE(r.output.find(missing), std::string::npos)
      << "the error should name the missing hot tier; got:\n"
      << r.output;
  struct stat st {};
  EXPECT_NE(stat(missing.c_str(), &st), 0) << "mkfs must not create the hot tier directory";
}

TEST_F(LifecycleTest, MountOnMissingMountpointFails) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CommandResult r = RunCommand({StrataBinary(), "mount", config_path(), root() + "/nowhere"},
                               std::chrono::seconds(30));
  EXPECT_NE(r.ExitCode(), 0) << r.Describe();
  EXPECT_FALSE(r.output.empty()) << "the error must say what is wrong";
  EXPECT_FALSE(IsMountPoint(root() + "/nowhere"));
  EXPECT_TRUE(WaitUntil([&] { return ProcessesMentioning(config_path()).empty(); },
                        std::chrono::seconds(30)));
  ASSERT_NO_FATAL_FAILURE(Mount());
}

TEST_F(LifecycleTest, SecondMountOfTheSameFilesystemIsRefused) {
  ASSERT_NO_FATAL_FAILURE(WriteProbe());
  const std::string second = root() + "/mnt2";
  ASSERT_EQ(mkdir(second.c_str(), 0755), 0);
  // Background mode, so a wrongly successful mount returns instead of blocking.
  CommandResult r =
      RunCommand({StrataBinary(), "mount", config_path(), second}, std::chrono::seconds(30));
  const bool mounted = IsMountPoint(second);
  if (mounted) RunCommand({"fusermount3", "-u", second});
  EXPECT_FALSE(mounted) << "two daemons must never serve the same hot tier";
  EXPECT_NE(r.ExitCode(), 0) << r.Describe();
  EXPECT_FALSE(r.output.empty()) << "the refusal must say why";
  ExpectProbe("after the refused second mount");
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectProbe("after remount");
}

}  // namespace
}  // namespace strata::it
