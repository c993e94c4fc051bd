// The generic Tier suite on the in-memory tier and the directory tier, plus what only a
// directory tier does (temp files, a share that goes away).
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

#include "base/env.h"
#include "tests/unit/tiering/tier_suite.h"
#include "tests/util/fault_env.h"
#include "tests/util/memory_tier.h"
#include "tiering/directory_tier.h"

namespace strata::tiering::test {
namespace {

Result<std::unique_ptr<Tier>> MakeDirectory(const std::string& scratch) {
  std::filesystem::create_directories(scratch + "/tier");
  return OpenDirectoryTier(Env::Default(), {"archive", scratch + "/tier"});
}

INSTANTIATE_TEST_SUITE_P(Memory, TierTest,
                         ::testing::Values(TierFactory{
                             "memory",
                             [](const std::string&) -> Result<std::unique_ptr<Tier>> {
                               return std::unique_ptr<Tier>(new strata::test::MemoryTier("mem"));
                             }}),
                         [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Directory, TierTest,
                         ::testing::Values(TierFactory{"directory", MakeDirectory}),
                         [](const auto& info) { return info.param.name; });

class DirectoryTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "dirtier-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/tier");
    tier_ = std::move(OpenDirectoryTier(Env::Default(), {"archive", dir_ + "/tier"})).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::unique_ptr<Tier> tier_;
};

TEST_F(DirectoryTierTest, RelativeRootIsRefused) {
  auto t = OpenDirectoryTier(Env::Default(), {"archive", "srv/archive"});
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().IsInvalidArgument());
  EXPECT_NE(t.status().message().find("srv/archive"), std::string::npos);
}

TEST_F(DirectoryTierTest, AMissingRootIsAnOutageNotALostObject) {
  ASSERT_TRUE(tier_->Put("seg/1", "abc").ok());
  std::filesystem::rename(dir_ + "/tier", dir_ + "/unmounted");
  std::string out;
  Status s = tier_->Get("seg/1", 0, 3, &out);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("is the share mounted"), std::string::npos) << s.ToString();
  // Nothing is written into the bare mount point either.
  std::filesystem::create_directories(dir_ + "/elsewhere");
  s = tier_->Put("seg/2", "abc");
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tier"));
  std::filesystem::rename(dir_ + "/unmounted", dir_ + "/tier");
  EXPECT_TRUE(tier_->Get("seg/1", 0, 3, &out).ok());
}

TEST_F(DirectoryTierTest, BadKeysAreRefused) {
  for (std::string k : {"", "/abs", "a/../b", "a//b", "dir/", "x.strata-tmp"})
    EXPECT_TRUE(tier_->Put(k, "x").IsInvalidArgument()) << k;
}

// A put that a crash cut short leaves a temp file; the rollback deletes the key (which may not
// exist yet), and the temp files of that key go with it: no space leaks on a tier.
TEST_F(DirectoryTierTest, DeletingAKeyRemovesTheTempFilesOfItsInterruptedPuts) {
  ASSERT_TRUE(tier_->Put("seg/kept", "other").ok());
  auto touch = [&](const std::string& name) {
    std::FILE* f = std::fopen((dir_ + "/tier/seg/" + name).c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("partial", f);
    std::fclose(f);
  };
  touch("a.1-1.strata-tmp");
  touch("a.2-7.strata-tmp");
  touch("kept.3-1.strata-tmp");
  touch("a.x.4-1.strata-tmp");               // a put of key seg/a.x, not of seg/a
  EXPECT_TRUE(tier_->Delete("seg/a").ok());  // never uploaded: only its temp files
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tier/seg/a.1-1.strata-tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tier/seg/a.2-7.strata-tmp"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/tier/seg/kept.3-1.strata-tmp"));  // another key's
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/tier/seg/a.x.4-1.strata-tmp"));
  std::string out;
  EXPECT_TRUE(tier_->Get("seg/kept", 0, 5, &out).ok());
  EXPECT_TRUE(tier_->Delete("seg/kept").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tier/seg/kept.3-1.strata-tmp"));
  EXPECT_TRUE(tier_->Delete("seg/never").ok());  // nothing at all: still fine
}

// A put is durable with the directories it made for its key: after a power loss that drops
// unsynced data and directory entries, the object is there.
TEST_F(DirectoryTierTest, APutSurvivesAPowerLossWithTheDirectoriesItMade) {
  strata::test::FaultEnv fault;
  auto t = OpenDirectoryTier(&fault, {"archive", dir_ + "/tier"});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE((*t)->Put("fs-uuid/00a/10000000005.seg", "segment bytes").ok());
  fault.DropUnsyncedData();
  std::string out;
  Status s = (*t)->Get("fs-uuid/00a/10000000005.seg", 0, 13, &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out, "segment bytes");
}

TEST_F(DirectoryTierTest, NoTempFilesAreLeftOrListed) {
  ASSERT_TRUE(tier_->Put("seg/a", "hello").ok());
  // A temp file left by a crash mid-put is not an object.
  {
    std::FILE* f = std::fopen((dir_ + "/tier/seg/a.1-1.strata-tmp").c_str(), "w");
    std::fputs("partial", f);
    std::fclose(f);
  }
  std::vector<ObjectInfo> v;
  ASSERT_TRUE(tier_->List("", &v).ok());
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].key, "seg/a");
  int files = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir_ + "/tier"))
    if (e.is_regular_file()) ++files;
  EXPECT_EQ(files, 2);  // the object and the planted temp file, nothing else
}

}  // namespace
}  // namespace strata::tiering::test
