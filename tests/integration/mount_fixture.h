// MountFixture: a fresh strata filesystem, mounted for real, for each integration test.
//
// Every test gets its own temporary directory (mkdtemp under $STRATA_TEST_TMPDIR, default
// /tmp) laid out as
//
//   <root>/test.key      32 random bytes, mode 0600
//   <root>/strata.toml   the filesystem's config
//   <root>/hot/          the hot tier
//   <root>/mnt/          the mount point
//   <root>/native/       a directory on the host filesystem, for differential tests
//   <root>/daemon-N.log  stdout+stderr of the N-th `strata mount --foreground`
//
// The fixture drives only the public CLI (`strata mkfs`, `strata mount`, `fusermount3`), so it
// tests what an administrator would run. It waits for a mount by polling
// /proc/self/mountinfo against a deadline, never by sleeping a fixed time. TearDown always
// unmounts, reaps the daemon by PID and removes the directory (kept when STRATA_KEEP_TMP=1).
//
// Environment knobs:
//   STRATA_BINARY       run this strata binary instead of the one CMake built.
//   STRATA_TEST_TMPDIR  parent of the per-test directories (default /tmp).
//   STRATA_KEEP_TMP=1   keep the per-test directory after the test.
//   STRATA_KEEP_FAILED=1  keep it only when the test failed.
//
// Helpers that can fail use gtest ASSERTs: call them as ASSERT_NO_FATAL_FAILURE(Remount()).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace strata::it {

// The strata CLI under test: $STRATA_BINARY if set, else the path CMake compiled in.
std::string StrataBinary();

// "exited with status 1", "killed by signal 9 (Killed)", ...
std::string DescribeWaitStatus(int status);

struct CommandResult {
  int wait_status = -1;  // as returned by waitpid; -1 if the command could not be run
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved

  bool Succeeded() const;
  int ExitCode() const;  // -1 unless the command exited normally
  std::string Describe() const;
};

// Runs argv (argv[0] searched in PATH when it has no '/') with stdin from /dev/null, waits at
// most `timeout` (then kills it with SIGKILL) and returns its exit status and output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// True if `path` (absolute, canonical) is a mount point in this mount namespace.
bool IsMountPoint(const std::string& path);

// Polls waitpid(pid, WNOHANG) until the child exits or `timeout` passes. Returns true and
// sets *status when it exited.
bool WaitForExit(pid_t pid, int* status, std::chrono::milliseconds timeout);

// Whole-file helpers on the host filesystem. They return false / empty on error.
bool ReadWholeFile(const std::string& path, std::string* out);
bool WriteWholeFile(const std::string& path, std::string_view data, mode_t mode);
// n bytes of 16-bit little-endian samples, smooth like CT pixel data (zstd shrinks them ~4x);
// the same seed gives the same bytes.
std::string CtLike(size_t n, uint32_t seed);
std::string Tail(const std::string& text, size_t max_bytes);

// Removes a directory tree without crossing into other mounts. Returns false on error.
bool RemoveTree(const std::string& path);

// Environment integer, or `fallback` when unset or unparsable.
long long EnvInt(const char* name, long long fallback);

class MountFixture : public ::testing::Test {
 protected:
  MountFixture() = default;
  ~MountFixture() override = default;

  void SetUp() override;
  void TearDown() override;

  // --- What subclasses may set in their constructor, before SetUp runs. ---
  // Passed as `-o a,b,c` to every mount.
  std::vector<std::string> mount_options_;
  // Extra arguments of every `strata mount` from now on (e.g. --null-data); tests may change
  // it between mounts.
  std::vector<std::string> mount_args_;
  // Extra `key = value` lines for the config's [filesystem] table.
  std::vector<std::string> filesystem_config_;
  // Extra `key = value` lines for the config's [tiers.hot] table.
  std::vector<std::string> hot_config_;
  // When set, SetUp mounts a tmpfs of this many bytes on the hot tier's directory before mkfs
  // (a small disk, for full-disk tests; skipped where tmpfs cannot be mounted), and TearDown
  // unmounts it once the daemon is gone.
  uint64_t hot_tmpfs_bytes_ = 0;
  // Extra lines appended after the [tiers.hot] table (more tiers, [policy], [cache], ...).
  std::vector<std::string> extra_config_;
  // Whether SetUp mounts (mkfs always runs).
  bool mount_in_setup_ = true;
  // `NAME=value` entries set in the environment of every `strata mount` started from now on
  // (replacing the test's own value of NAME), e.g. STRATA_KILL_AT=migrate.built. Tests may
  // change it between mounts; `strata` commands run by RunCommand do not get it.
  std::vector<std::string> daemon_env_;

  // --- Lifecycle. Each ASSERTs on failure. ---
  void Mkfs();
  void Mount();
  // `fusermount3 -u`, then waits for the daemon and asserts it exited with status 0.
  void Unmount();
  void Remount();
  // SIGKILL to the daemon, reap it, then `fusermount3 -uz` the dead mount.
  void KillDaemon9();
  // Sends `sig` to the daemon and waits up to 30 s for it to exit. Returns its wait status,
  // or -1 if it did not exit (it is then killed). The mount is left as the daemon left it.
  int SignalDaemonAndWait(int sig);
  // Waits up to `timeout` for the daemon to exit by itself (a kill point, a crash), reaps it
  // and detaches the dead mount it left (`fusermount3 -uz`). Returns its wait status, or -1
  // if it was still running at the deadline (it is then killed with SIGKILL first).
  int WaitForDaemonExit(std::chrono::milliseconds timeout);

  // Starts `strata mount ... --foreground` and waits until the mount appears or the daemon
  // exits. Does not assert; Mount() does.
  struct MountAttempt {
    bool mounted = false;
    bool exited = false;
    int wait_status = 0;  // valid when exited
    std::string log;
  };
  MountAttempt TryMount(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  bool mounted() const { return daemon_pid_ > 0 && IsMountPoint(mnt_); }
  pid_t daemon_pid() const { return daemon_pid_; }
  const std::string& root() const { return root_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& hot() const { return hot_; }
  const std::string& native() const { return native_; }
  const std::string& config_path() const { return config_; }
  const std::string& key_path() const { return key_; }
  // stdout+stderr of the current (or last) daemon.
  std::string DaemonLog() const;
  // Every daemon log of this test, each prefixed with its name (for failure reports).
  std::string AllDaemonLogs(size_t max_bytes_each) const;

  // Writes the config file from the members above (SetUp does this; tests that change
  // filesystem_config_ later may call it again).
  void WriteConfig();

 private:
  // Brings the mount down however it can (used by TearDown); reports unexpected states.
  void ForceCleanup();

  std::string root_, mnt_, hot_, native_, config_, key_;
  pid_t daemon_pid_ = -1;
  bool hot_tmpfs_mounted_ = false;
  int mount_count_ = 0;
  std::string log_path_;
};

}  // namespace strata::it
