// Tiering on a real mount, driven through the CLI an administrator uses: `strata migrate`
// (through the running daemon), its --dry-run and --status, reads of migrated files through
// the mount (byte-identical, after a remount too), and nothing plaintext on the tier.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

namespace sfs = std::filesystem;

class TieringIt : public MountFixture {
 protected:
  TieringIt() { mount_in_setup_ = false; }
  void SetUp() override {
    MountFixture::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    archive_ = root() + "/archive";
    policy_ = root() + "/policy.toml";
    ASSERT_EQ(::mkdir(archive_.c_str(), 0700), 0);
    ASSERT_TRUE(WriteWholeFile(policy_,
                               "[[rule]]\nname = \"old-studies\"\nmatch = \"studies/**\"\n"
                               "older_than = \"180d\"\nto = \"archive\"\n",
                               0644));
    extra_config_ = {"[tiers.archive]", "kind = \"directory\"",       "path = \"" + archive_ + "\"",
                     "[policy]",        "file = \"" + policy_ + "\"", "interval = \"off\""};
    WriteConfig();
    ASSERT_NO_FATAL_FAILURE(Mount());
  }
  void WriteOld(const std::string& rel, const std::string& data) {
    std::string p = mnt() + "/" + rel;
    sfs::create_directories(sfs::path(p).parent_path());
    ASSERT_TRUE(WriteWholeFile(p, data, 0644)) << p;
    timespec t[2];
    t[0].tv_sec = t[1].tv_sec = ::time(nullptr) - 200 * 86400;
    t[0].tv_nsec = t[1].tv_nsec = 0;
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, 0), 0) << p;
  }
  CommandResult Strata(std::vector<std::string> args) {
    args.insert(args.begin(), StrataBinary());
    return RunCommand(args, std::chrono::seconds(120));
  }
  std::string archive_, policy_;
};

TEST_F(TieringIt, MigrateThroughTheDaemonThenReadEverythingBack) {
  std::vector<std::pair<std::string, std::string>> files;
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i < 4; ++i)
      files.push_back({"studies/st" + std::to_string(s) + "/ser1/img" + std::to_string(i) + ".dcm",
                       CtLike(512 * 1024 + 77 * i, static_cast<uint32_t>(s * 10 + i))});
  for (const auto& [p, d] : files) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  ASSERT_TRUE(WriteWholeFile(mnt() + "/recent.dcm", CtLike(100000, 99), 0644));

  CommandResult dry = Strata({"migrate", config_path(), "--dry-run"});
  ASSERT_TRUE(dry.Succeeded()) << dry.Describe();
  EXPECT_NE(dry.output.find("old-studies"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find(" 12 "), std::string::npos) << dry.output;
  EXPECT_TRUE(sfs::is_empty(archive_));

  CommandResult run = Strata({"migrate", config_path()});
  ASSERT_TRUE(run.Succeeded()) << run.Describe();
  EXPECT_NE(run.output.find("moved 12 files"), std::string::npos) << run.output;

  CommandResult st = Strata({"migrate", config_path(), "--status", "--json"});
  ASSERT_TRUE(st.Succeeded()) << st.Describe();
  EXPECT_NE(st.output.find("\"name\":\"archive\",\"kind\":\"directory\",\"segments\":1"),
            std::string::npos)
      << st.output;

  // No plaintext name or content on the tier.
  for (auto& e : sfs::recursive_directory_iterator(archive_)) {
    if (!e.is_regular_file()) continue;
    std::string bytes;
    ASSERT_TRUE(ReadWholeFile(e.path(), &bytes));
    EXPECT_EQ(bytes.find("img0.dcm"), std::string::npos);
    EXPECT_EQ(bytes.find(files[0].second.substr(4096, 64)), std::string::npos);
  }

  ASSERT_NO_FATAL_FAILURE(Remount());  // cold caches: reads go to the tier
  for (const auto& [p, d] : files) {
    std::string got;
    ASSERT_TRUE(ReadWholeFile(mnt() + "/" + p, &got)) << p;
    EXPECT_TRUE(got == d) << p << " differs after migration";
  }
  // Unmounted, the same command opens the filesystem itself.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CommandResult offline = Strata({"migrate", config_path(), "--status"});
  ASSERT_TRUE(offline.Succeeded()) << offline.Describe();
  EXPECT_NE(offline.output.find("archive"), std::string::npos) << offline.output;
  ASSERT_NO_FATAL_FAILURE(Mount());
}

TEST_F(TieringIt, ColdReadFailsWithEioWhenTheTierIsGoneAndHotReadsGoOn) {
  std::string cold = CtLike(300000, 5), hot = CtLike(200000, 6);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/a/cold.dcm", cold));
  ASSERT_TRUE(WriteWholeFile(mnt() + "/hot.dcm", hot, 0644));
  ASSERT_TRUE(Strata({"migrate", config_path()}).Succeeded());
  ASSERT_NO_FATAL_FAILURE(Remount());
  sfs::rename(archive_, archive_ + ".away");
  int fd = ::open((mnt() + "/studies/a/cold.dcm").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[4096];
  EXPECT_EQ(::read(fd, buf, sizeof buf), -1);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  std::string got;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/hot.dcm", &got));
  EXPECT_TRUE(got == hot);
  sfs::rename(archive_ + ".away", archive_);
  ASSERT_TRUE(ReadWholeFile(mnt() + "/studies/a/cold.dcm", &got));
  EXPECT_TRUE(got == cold);
}

// A prior study pulled for comparison comes back to the hot tier by itself, and the access
// time a read leaves keeps it there at the next pass.
TEST_F(TieringIt, RecallOnReadThroughTheMount) {
  ASSERT_TRUE(WriteWholeFile(policy_,
                             "[[rule]]\nname = \"unread\"\nmatch = \"studies/**\"\n"
                             "not_accessed_for = \"90d\"\nto = \"archive\"\n"
                             "recall_on_read = true\n",
                             0644));
  std::string prior = CtLike(400000, 7), other = CtLike(300000, 8);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/p1/prior.dcm", prior));  // atime 200 days back too
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/p2/other.dcm", other));
  CommandResult run = Strata({"migrate", config_path()});
  ASSERT_TRUE(run.Succeeded()) << run.Describe();
  EXPECT_NE(run.output.find("moved 2 files"), std::string::npos) << run.output;
  ASSERT_NO_FATAL_FAILURE(Remount());

  std::string got;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/studies/p1/prior.dcm", &got));
  EXPECT_TRUE(got == prior);
  // Poll the daemon until the recall is done.
  std::string status;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    CommandResult st = Strata({"migrate", config_path(), "--status", "--json"});
    ASSERT_TRUE(st.Succeeded()) << st.Describe();
    status = st.output;
    if (status.find("\"files_recalled\":1") != std::string::npos) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << status;
  }
  // Only the other study is left on the archive.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  sfs::remove_all(hot() + "/cache");
  sfs::rename(archive_, archive_ + ".away");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_TRUE(ReadWholeFile(mnt() + "/studies/p1/prior.dcm", &got));
  EXPECT_TRUE(got == prior);
  EXPECT_FALSE(ReadWholeFile(mnt() + "/studies/p2/other.dcm", &got));
  sfs::rename(archive_ + ".away", archive_);
  // Just read, the prior stays hot at the next pass; its atime is no longer 200 days old.
  CommandResult again = Strata({"migrate", config_path(), "--dry-run", "--json"});
  ASSERT_TRUE(again.Succeeded()) << again.Describe();
  EXPECT_NE(again.output.find("\"rule\":\"unread\",\"to\":\"archive\",\"files\":0,"),
            std::string::npos)
      << again.output;
  struct stat st {};
  ASSERT_EQ(::stat((mnt() + "/studies/p1/prior.dcm").c_str(), &st), 0);
  EXPECT_GT(st.st_atim.tv_sec, ::time(nullptr) - 3600);
}

}  // namespace
}  // namespace strata::it
