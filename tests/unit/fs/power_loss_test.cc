// Simulated power loss of the whole filesystem model, many times with random cut points:
// a fault-injecting Env drops every byte not covered by a completed sync (optionally keeping a
// torn prefix), and sometimes the metadata database is rolled back to an earlier crash-consistent
// snapshot (SQLite in synchronous=NORMAL may lose its last commits). After each cut the
// filesystem must open, and every file whose fsync returned must have exactly its content.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "fs/filesystem.h"
#include "tests/util/fault_env.h"

namespace strata::fs {
namespace {

namespace sfs = std::filesystem;

class PowerLossTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-pl-XXXXXX";
    root_ = mkdtemp(tmpl);
    sfs::create_directories(root_ + "/hot");
    std::ofstream(root_ + "/key") << std::string(32, 'p');
    ::chmod((root_ + "/key").c_str(), 0600);
    config_.source = "power-loss";
    config_.name = "pl";
    config_.key_file = root_ + "/key";
    config_.hot_path = root_ + "/hot";
    config_.chunk_size = 8192;
    config_.segment_size = 256 * 1024;  // many segment rotations
    config_.commit_interval_ms = 20;
    config_.dirty_expire_ms = 20;  // the committer also seals data, under the cuts
    ASSERT_TRUE(Filesystem::Mkfs(config_, Env::Default()).ok());
  }
  void TearDown() override { sfs::remove_all(root_); }

  std::string Content(std::mt19937& rng) {
    size_t n = rng() % 40000;
    std::string s(n, '\0');
    char base = static_cast<char>('a' + rng() % 26);
    for (size_t i = 0; i < n; i++) s[i] = (rng() % 4 == 0) ? static_cast<char>(rng()) : base;
    return s;
  }

  std::string root_;
  Config config_;
};

TEST_P(PowerLossTest, FsyncedFilesSurviveEveryCut) {
  std::mt19937 rng(GetParam());
  std::map<std::string, std::string> durable;  // name -> content whose fsync returned
  const std::string db = root_ + "/hot/meta.db";
  for (int round = 0; round <= 12; round++) {
    test::FaultEnv env;
    auto opened = Filesystem::Open(config_, &env);
    ASSERT_TRUE(opened.ok()) << "round " << round << ": " << opened.status().ToString();
    std::unique_ptr<Filesystem> fs = std::move(opened).value();
    ASSERT_TRUE(fs->Start().ok());

    // Verify what the previous cut left.
    for (const auto& [name, content] : durable) {
      auto a = fs->Lookup(kRootIno, name);
      ASSERT_TRUE(a.ok()) << "round " << round << ": fsynced file " << name << " lost";
      auto fh = fs->Open(a->ino, O_RDONLY);
      ASSERT_TRUE(fh.ok());
      std::string buf(a->size, '\0');
      auto n = fs->Read(a->ino, *fh, 0, buf.size(), buf.data());
      ASSERT_TRUE(n.ok()) << n.status().ToString();
      EXPECT_EQ(buf, content) << "round " << round << ": " << name;
      ASSERT_TRUE(fs->Release(a->ino, *fh).ok());
    }
    ASSERT_TRUE(fs->ReadDir(kRootIno, 0, [&](const DirEntry& e) {
                    if (e.name != "." && e.name != "..") {
                      EXPECT_TRUE(fs->GetAttr(e.ino).ok()) << "dangling entry " << e.name;
                    }
                    return true;
                  }).ok());
    if (round == 12) break;  // the last cut is only verified

    // A snapshot of the database as a crash now would leave it (used for some cuts).
    bool old_db = rng() % 3 == 0;
    std::string snap = root_ + "/snap";
    sfs::remove_all(snap);
    if (old_db) {
      sfs::create_directories(snap);
      for (const char* suffix : {"", "-wal"})
        if (sfs::exists(db + suffix)) sfs::copy_file(db + suffix, snap + "/meta.db" + suffix);
    }

    int ops = 5 + static_cast<int>(rng() % 20);
    for (int i = 0; i < ops; i++) {
      std::string name = "f" + std::to_string(rng() % 15);
      int kind = static_cast<int>(rng() % 12);
      if (kind < 6) {
        std::string content = Content(rng);
        auto c = fs->Create(kRootIno, name, 0644, O_RDWR | O_TRUNC, Caller{});
        ASSERT_TRUE(c.ok()) << c.status().ToString();
        ASSERT_TRUE(fs->Write(c->first.ino, c->second, 0, content).ok());
        bool sync = rng() % 2 == 0;
        if (sync) {
          ASSERT_TRUE(fs->Fsync(c->first.ino, false).ok());
          durable[name] = content;
        } else {
          durable.erase(name);  // its old content may or may not survive: no promise
        }
        ASSERT_TRUE(fs->Release(c->first.ino, c->second).ok());
        fs->Forget(c->first.ino, 1);
      } else if (kind < 8) {
        Status s = fs->Unlink(kRootIno, name);
        if (s.ok()) durable.erase(name);
      } else if (kind < 10) {
        // A small rewrite in place (journaled as a patch over a stored chunk).
        auto a = fs->Lookup(kRootIno, name);
        if (!a.ok() || a->size == 0) continue;
        auto fh = fs->Open(a->ino, O_RDWR);
        ASSERT_TRUE(fh.ok());
        const uint64_t at = rng() % a->size;
        std::string bytes(1 + rng() % 2000, static_cast<char>('A' + rng() % 26));
        ASSERT_TRUE(fs->Write(a->ino, *fh, at, bytes).ok());
        bool sync = rng() % 2 == 0;
        if (sync && durable.count(name)) {
          ASSERT_TRUE(fs->Fsync(a->ino, false).ok());
          std::string& content = durable[name];
          if (content.size() < at + bytes.size()) content.resize(at + bytes.size(), '\0');
          content.replace(at, bytes.size(), bytes);
        } else {
          durable.erase(name);  // old, new, or some chunks of each: no promise
        }
        ASSERT_TRUE(fs->Release(a->ino, *fh).ok());
        fs->Forget(a->ino, 1);
      } else {
        std::string to = "f" + std::to_string(rng() % 15);
        Status s = fs->Rename(kRootIno, name, kRootIno, to, 0);
        if (s.ok() && name != to) {
          durable.erase(name);
          durable.erase(to);
        }
      }
    }
    // The cut: nothing more reaches the disk, then unsynced bytes vanish.
    env.SetFailWrites(true);
    env.SetFailSync(true);
    fs.reset();
    // Half the cuts leave what direct writes leave: the last journal block padded with zeros.
    env.SetBlockPadding(round % 2 == 1, ".seg");
    if (rng() % 2 == 0) {
      env.DropUnsyncedData();
    } else {
      env.DropRandomUnsyncedData(rng());
    }
    if (old_db) {
      for (const char* suffix : {"", "-wal", "-shm"}) sfs::remove(db + suffix);
      for (const char* suffix : {"", "-wal"})
        if (sfs::exists(snap + "/meta.db" + suffix))
          sfs::copy_file(snap + "/meta.db" + suffix, db + suffix);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, PowerLossTest, ::testing::Values(1u, 2u, 3u, 4u, 5u, 6u));

}  // namespace
}  // namespace strata::fs
