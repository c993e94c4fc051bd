// The tiering engine without a mount: policy-driven migration to a directory tier, reads of
// migrated files, the read cache, recall, a tier that goes away, a corrupted object, and a
// kill -9 (in a forked child) at every step of the migration protocol.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "base/kill_point.h"
#include "fs/filesystem.h"
#include "meta/meta_store.h"
#include "tests/util/fault_env.h"

namespace strata::fs {
namespace {

// prefix + i. Not `"f" + std::to_string(i)`: GCC 12 warns of an overlapping memcpy there at -O2
// (-Wrestrict, a false positive) in the release build.
std::string Numbered(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

namespace sfs = std::filesystem;
constexpr int64_t kDay = 86400ll * 1000000000;

class TieringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-tier-XXXXXX";
    root_ = mkdtemp(tmpl);
    sfs::create_directories(root_ + "/hot");
    sfs::create_directories(root_ + "/archive");
    std::ofstream(root_ + "/key") << std::string(32, 'k');
    ::chmod((root_ + "/key").c_str(), 0600);
    config_.source = root_ + "/test.toml";
    config_.name = "test";
    config_.key_file = root_ + "/key";
    config_.hot_path = root_ + "/hot";
    config_.chunk_size = 16 * 1024;
    config_.segment_size = 1 << 20;
    TierConfig t;
    t.name = "archive";
    t.kind = "directory";
    t.path = root_ + "/archive";
    t.read_timeout_ms = 2000;
    config_.tiers.push_back(t);
    config_.policy_file = root_ + "/policy.toml";
    WritePolicy(
        "[[rule]]\nname = \"old-studies\"\nmatch = \"studies/**\"\nolder_than = \"180d\"\n"
        "to = \"archive\"\n");
    ASSERT_TRUE(Filesystem::Mkfs(config_, Env::Default()).ok());
    Reopen();
  }
  void TearDown() override {
    fs_.reset();
    sfs::remove_all(root_);
  }
  void WritePolicy(const std::string& text) { std::ofstream(config_.policy_file) << text; }
  void Reopen() {
    fs_.reset();
    OpenOptions o;
    o.background_tiering = false;
    auto r = Filesystem::Open(config_, Env::Default(), o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    fs_ = std::move(r).value();
  }
  uint64_t Mkdir(uint64_t parent, const std::string& name) {
    auto a = fs_->Mkdir(parent, name, 0755, Caller{});
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a->ino;
  }
  uint64_t CreateFile(uint64_t parent, const std::string& name, const std::string& content,
                      int64_t mtime = 0) {
    auto c = fs_->Create(parent, name, 0644, O_RDWR, Caller{});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(fs_->Write(c->first.ino, c->second, 0, content).ok());
    EXPECT_TRUE(fs_->Release(c->first.ino, c->second).ok());
    if (mtime != 0) {
      SetAttrRequest req;
      req.mtime = mtime;
      EXPECT_TRUE(fs_->SetAttr(c->first.ino, req, Caller{}).ok());
    }
    return c->first.ino;
  }
  Result<std::string> ReadAll(uint64_t ino) {
    ASSIGN_OR_RETURN(uint64_t fh, fs_->Open(ino, O_RDONLY));
    ASSIGN_OR_RETURN(Attr a, fs_->GetAttr(ino));
    std::string buf(a.size, '\0');
    auto n = fs_->Read(ino, fh, 0, buf.size(), buf.data());
    fs_->Release(ino, fh).IgnoreError();
    if (!n.ok()) return n.status();
    buf.resize(*n);
    return buf;
  }
  static std::string Random(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 7 + 'a');  // compressible, not constant
    return s;
  }
  std::vector<std::string> TierFiles() {
    std::vector<std::string> out;
    if (!sfs::exists(root_ + "/archive")) return out;
    for (auto& e : sfs::recursive_directory_iterator(root_ + "/archive"))
      if (e.is_regular_file()) out.push_back(e.path());
    return out;
  }
  // Builds studies/s1/{a,b} (old), studies/new (recent), other/c (old).
  void Populate() {
    int64_t old = Env::Default()->NowNanos() - 200 * kDay;
    uint64_t studies = Mkdir(kRootIno, "studies");
    uint64_t s1 = Mkdir(studies, "s1");
    uint64_t other = Mkdir(kRootIno, "other");
    a_ = CreateFile(s1, "a", a_data_ = Random(50000, 1), old);
    b_ = CreateFile(s1, "b", b_data_ = Random(3000, 2), old);
    new_ = CreateFile(studies, "new", Random(20000, 3));
    c_ = CreateFile(other, "c", c_data_ = Random(40000, 4), old);
  }
  // Closes the filesystem, then runs a pass in a forked child with STRATA_KILL_AT=point and
  // asserts that the child died by SIGKILL there (kill -9 at that step).
  void MigrateKilledAt(const char* point) {
    fs_.reset();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv("STRATA_KILL_AT", point, 1);
      OpenOptions o;
      o.background_tiering = false;
      auto f = Filesystem::Open(config_, Env::Default(), o);
      if (!f.ok()) ::_exit(3);
      (void)(*f)->Migrate({});
      ::_exit(4);  // the kill point was not reached
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    ASSERT_EQ(WTERMSIG(status), SIGKILL);
  }
  MigrateReport MustMigrate(MigrateOptions o = {}) {
    auto r = fs_->Migrate(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : MigrateReport{};
  }

  std::string root_;
  Config config_;
  std::unique_ptr<Filesystem> fs_;
  uint64_t a_ = 0, b_ = 0, c_ = 0, new_ = 0;
  std::string a_data_, b_data_, c_data_;
};

TEST_F(TieringTest, OldStudiesMoveAndReadBackIdentical) {
  Populate();
  MigrateReport r = MustMigrate();
  EXPECT_EQ(r.files_scanned, 4u);
  ASSERT_EQ(r.rules.size(), 1u);
  EXPECT_EQ(r.rules[0].files, 2u);
  EXPECT_EQ(r.files_moved, 2u);
  EXPECT_EQ(r.segments_written, 1u);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(TierFiles().size(), 1u);
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  EXPECT_EQ(*ReadAll(c_), c_data_);
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  TieringStatus st = fs_->GetTieringStatus();
  ASSERT_EQ(st.tiers.size(), 2u);
  EXPECT_EQ(st.tiers[1].name, "archive");
  EXPECT_EQ(st.tiers[1].segments, 1u);
  EXPECT_GT(st.tiers[1].live_bytes, 0u);
  // A second pass finds nothing left to move.
  r = MustMigrate();
  EXPECT_EQ(r.files_moved, 0u);
  EXPECT_EQ(r.rules[0].files, 0u);
}

TEST_F(TieringTest, PatchesMoveWithTheirChunksAndReadBackIdentical) {
  Populate();
  // A small rewrite of an old study (journaled as a patch over its chunk), then its old mtime
  // again, so the rule still selects it.
  {
    auto fh = fs_->Open(a_, O_RDWR);
    ASSERT_TRUE(fh.ok());
    ASSERT_TRUE(fs_->Write(a_, *fh, 20000, "corrected tag").ok());
    ASSERT_TRUE(fs_->Release(a_, *fh).ok());
    a_data_.replace(20000, 13, "corrected tag");
    SetAttrRequest req;
    req.mtime = Env::Default()->NowNanos() - 200 * kDay;
    ASSERT_TRUE(fs_->SetAttr(a_, req, Caller{}).ok());
  }
  MigrateReport r = MustMigrate();
  EXPECT_EQ(r.files_moved, 2u);
  EXPECT_TRUE(r.errors.empty());
  fs_.reset();
  {
    auto m = meta::MetaStore::Open(root_ + "/hot/meta.db", config_.chunk_size, false, true);
    ASSERT_TRUE(m.ok());
    auto patches = (*m)->ListPatches(a_);
    ASSERT_TRUE(patches.ok());
    ASSERT_EQ(patches->size(), 1u);
    auto chunk = (*m)->GetChunk(a_, 1);
    ASSERT_TRUE(chunk.ok() && chunk->has_value());
    EXPECT_EQ((*patches)[0].segment, (*chunk)->segment) << "the patch stayed behind";
    EXPECT_GE((*patches)[0].segment, uint64_t{1} << 40) << "not in a placement segment";
  }
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  // And back: a recall moves the patch too.
  ASSERT_TRUE(fs_->MoveFile(a_, "hot").ok());
  EXPECT_EQ(*ReadAll(a_), a_data_);
}

// A rewrite buffered over a hot chunk that a migration then moves to a tier that goes down:
// the seal does not wait on the tier or fail, and the rewrite is kept as a patch.
TEST_F(TieringTest, ARewriteWhoseChunkMovedToATierThatIsDownIsKept) {
  Populate();
  auto fh = fs_->Open(a_, O_RDWR);
  ASSERT_TRUE(fh.ok());
  const std::string big(9000, 'R');  // more than half a chunk: it would be resealed whole
  ASSERT_TRUE(fs_->Write(a_, *fh, config_.chunk_size, big).ok());
  a_data_.replace(config_.chunk_size, big.size(), big);
  ASSERT_TRUE(fs_->MoveFile(a_, "archive").ok());
  sfs::rename(root_ + "/archive", root_ + "/archive.away");
  Status released = fs_->Release(a_, *fh);
  EXPECT_TRUE(released.ok()) << released.ToString();
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
  EXPECT_EQ(*ReadAll(a_), a_data_);
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
}

TEST_F(TieringTest, DryRunCountsAndChangesNothing) {
  Populate();
  MigrateOptions o;
  o.dry_run = true;
  MigrateReport r = MustMigrate(o);
  EXPECT_EQ(r.rules[0].files, 2u);
  EXPECT_GT(r.rules[0].bytes, 0u);
  EXPECT_EQ(r.files_moved, 0u);
  EXPECT_TRUE(TierFiles().empty());
  EXPECT_NE(ToJson(r).find("\"old-studies\""), std::string::npos);
}

TEST_F(TieringTest, AgesUseTheInjectedClock) {
  uint64_t studies = Mkdir(kRootIno, "studies");
  uint64_t f = CreateFile(studies, "fresh", Random(10000, 9));
  EXPECT_EQ(MustMigrate().files_moved, 0u);
  MigrateOptions o;
  o.now_ns = Env::Default()->NowNanos() + 181 * kDay;
  EXPECT_EQ(MustMigrate(o).files_moved, 1u);
  EXPECT_EQ(*ReadAll(f), Random(10000, 9));
}

TEST_F(TieringTest, NothingPlaintextOnTheTier) {
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::string marker = "PATIENT-MARKER-1234567890";
  std::string content;
  while (content.size() < 100000) content += marker;
  CreateFile(studies, "PATIENT-NAME-MARKER", content, Env::Default()->NowNanos() - 200 * kDay);
  ASSERT_EQ(MustMigrate().files_moved, 1u);
  for (const auto& p : TierFiles()) {
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(bytes.find("MARKER"), std::string::npos) << p;
  }
}

TEST_F(TieringTest, CorruptedObjectIsReportedNeverReturned) {
  Populate();
  ASSERT_EQ(MustMigrate().files_moved, 2u);
  auto files = TierFiles();
  ASSERT_EQ(files.size(), 1u);
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    char c;
    f.seekg(200);
    f.get(c);
    f.seekp(200);
    f.put(static_cast<char>(c ^ 0x01));
  }
  Reopen();  // empties the decoded-chunk cache; nothing was read into the read cache
  auto r = ReadAll(a_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_EQ(r.status().ToErrno(), EIO);
  EXPECT_EQ(*ReadAll(c_), c_data_);  // hot data unaffected
}

TEST_F(TieringTest, ReadCacheServesSecondRead) {
  Populate();
  MustMigrate();
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  uint64_t fetches = fs_->GetTieringStatus().cold_fetches;
  EXPECT_GE(fetches, 1u);
  EXPECT_GT(fs_->GetTieringStatus().read_cache_bytes, 0u);
  size_t entries = 0;  // one cache file per fetched range, not one per record
  for (const auto& e : sfs::directory_iterator(root_ + "/hot/cache"))
    entries += e.is_regular_file();
  EXPECT_EQ(entries, fetches);
  Reopen();  // decoded chunks are gone; the read cache on the hot tier stays
  sfs::rename(root_ + "/archive", root_ + "/archive.away");
  EXPECT_EQ(*ReadAll(a_), a_data_);  // served from the read cache without the tier
  EXPECT_EQ(fs_->GetTieringStatus().cold_fetches, 0u);
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
}

// A cold read fetches the readahead-sized block of the segment holding the record it needs:
// the neighbouring file of the same series comes in with it, in one fetch, whichever of the
// two is read first (b follows a in the segment). With readahead 0 each file is a fetch.
TEST_F(TieringTest, ReadaheadBringsTheNeighbouringFilesOfASeriesInTheSameFetch) {
  Populate();
  MustMigrate();
  for (uint64_t readahead : {uint64_t{1} << 20, uint64_t{0}}) {
    for (bool b_first : {false, true}) {
      SCOPED_TRACE(testing::Message() << "readahead " << readahead << " b first " << b_first);
      config_.tiers[0].readahead_bytes = readahead;
      sfs::remove_all(root_ + "/hot/cache");
      Reopen();
      EXPECT_EQ(*ReadAll(b_first ? b_ : a_), b_first ? b_data_ : a_data_);
      EXPECT_EQ(fs_->GetTieringStatus().cold_fetches, 1u);
      EXPECT_EQ(*ReadAll(b_first ? a_ : b_), b_first ? a_data_ : b_data_);
      EXPECT_EQ(fs_->GetTieringStatus().cold_fetches, readahead > 0 ? 1u : 2u);
    }
  }
}

TEST_F(TieringTest, TierDownFailsColdReadsOnlyAndMigrationResumes) {
  Populate();
  sfs::rename(root_ + "/archive", root_ + "/archive.away");
  MigrateReport r = MustMigrate();
  EXPECT_FALSE(r.errors.empty());
  EXPECT_EQ(r.files_moved, 0u);
  EXPECT_EQ(*ReadAll(a_), a_data_);  // still hot, still readable
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
  r = MustMigrate();
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.files_moved, 2u);
  EXPECT_EQ(TierFiles().size(), 1u);  // the aborted upload left nothing behind
  Reopen();
  sfs::rename(root_ + "/archive", root_ + "/archive.away");
  auto cold = ReadAll(a_);
  ASSERT_FALSE(cold.ok());
  EXPECT_EQ(cold.status().ToErrno(), EIO);
  EXPECT_NE(cold.status().ToString().find("archive"), std::string::npos);
  EXPECT_EQ(*ReadAll(c_), c_data_);
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
  EXPECT_EQ(*ReadAll(a_), a_data_);
}

TEST_F(TieringTest, FilesOpenForWritingWaitForALaterPass) {
  Populate();
  auto writer = fs_->Open(a_, O_WRONLY);
  auto reader = fs_->Open(b_, O_RDONLY);
  ASSERT_TRUE(writer.ok() && reader.ok());
  MigrateReport r = MustMigrate();
  EXPECT_EQ(r.rules[0].files, 2u);  // both match the rule ...
  EXPECT_EQ(r.files_busy, 1u);      // ... the one being written stays hot
  EXPECT_EQ(r.files_moved, 1u);
  EXPECT_NE(ToText(r).find("left 1 files open for writing"), std::string::npos);
  EXPECT_NE(ToJson(r).find("\"files_busy\":1"), std::string::npos);
  ASSERT_TRUE(fs_->Release(a_, *writer).ok());
  r = MustMigrate();  // closed: it moves now
  EXPECT_EQ(r.files_busy, 0u);
  EXPECT_EQ(r.files_moved, 1u);
  ASSERT_TRUE(fs_->Release(b_, *reader).ok());
  EXPECT_EQ(MustMigrate().files_moved, 0u);
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
}

// The journal's fdatasync fails at step 5, after the move record was written: the commit fails,
// but the record may be durable and a replay points the files at the uploaded segment. The
// segment must stay (it used to be deleted as a rollback, and the files read EIO after the
// remount); the next pass, after the replay, finds it in use and keeps it.
TEST_F(TieringTest, AMoveWhoseCommitFailedKeepsItsSegment) {
#ifndef STRATA_KILL_POINTS
  GTEST_SKIP() << "needs the kill points (dev and asan-ubsan presets)";
#endif
  Populate();
  fs_.reset();
  test::FaultEnv fault;
  OpenOptions o;
  o.background_tiering = false;
  auto opened = Filesystem::Open(config_, &fault, o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  fs_ = std::move(opened).value();
  SetKillPointHook([&](const char* name) {
    if (std::string(name) == "migrate.verified") fault.SetFailSync(true);
  });
  auto r = fs_->Migrate({});
  SetKillPointHook(nullptr);
  EXPECT_TRUE(!r.ok() || !r->errors.empty()) << "the pass reported no failure";
  EXPECT_EQ(TierFiles().size(), 1u) << "the uploaded segment was deleted";
  fs_.reset();
  fault.SetFailSync(false);
  Reopen();  // replays the move record
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  MigrateReport again = MustMigrate();
  EXPECT_TRUE(again.errors.empty());
  EXPECT_EQ(again.segments_rolled_back, 0u);
  EXPECT_EQ(TierFiles().size(), 1u);
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  EXPECT_EQ(*ReadAll(c_), c_data_);
}

TEST_F(TieringTest, WritesToAMigratedFileGoHot) {
  Populate();
  MustMigrate();
  auto fh = fs_->Open(a_, O_RDWR);
  ASSERT_TRUE(fh.ok());
  std::string patch(5000, 'Z');
  ASSERT_TRUE(fs_->Write(a_, *fh, 20000, patch).ok());
  ASSERT_TRUE(fs_->Release(a_, *fh).ok());
  a_data_.replace(20000, patch.size(), patch);
  EXPECT_EQ(*ReadAll(a_), a_data_);
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
}

TEST_F(TieringTest, RecallBringsAFileBackAndEmptiedSegmentsAreDeleted) {
  Populate();
  MustMigrate();
  ASSERT_TRUE(fs_->MoveFile(a_, "hot").ok());
  ASSERT_TRUE(fs_->MoveFile(b_, "hot").ok());
  EXPECT_EQ(*ReadAll(a_), a_data_);
  // The archive segment holds nothing live now; the next pass removes it. The policy would
  // move the files again, so make it select nothing.
  WritePolicy("");
  MigrateReport r = MustMigrate();
  EXPECT_EQ(r.segments_deleted, 1u);
  EXPECT_TRUE(TierFiles().empty());
  Reopen();
  sfs::rename(root_ + "/archive", root_ + "/archive.away");  // recalled data needs no tier
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
}

TEST_F(TieringTest, BadPolicyIsRefusedWithFileAndLine) {
  WritePolicy("[[rule]]\nname = \"x\"\nmatch = \"a/**\"\nolder_then = \"1d\"\nto = \"archive\"\n");
  auto r = fs_->Migrate({});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("policy.toml:4"), std::string::npos) << r.status().ToString();
  WritePolicy("[[rule]]\nname = \"x\"\nto = \"nowhere\"\n");
  r = fs_->Migrate({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nowhere"), std::string::npos);
}

// One rule per kind of condition, each in its own directory with one file it selects and one
// it does not; ages come from the injected clock (60 days ahead), never from waiting.
TEST_F(TieringTest, EveryKindOfRuleSelectsWhatItSays) {
  WritePolicy(R"(
[[rule]]
name = "by-size"
match = "size/**"
min_size = "100KiB"
to = "archive"
[[rule]]
name = "by-xattr"
match = "xattr/**"
xattr = { "user.modality" = "CT" }
to = "archive"
[[rule]]
name = "by-created"
match = "created/**"
created_older_than = "30d"
to = "archive"
[[rule]]
name = "by-access"
match = "access/**"
not_accessed_for = "30d"
to = "archive"
[[rule]]
name = "by-mtime"
match = "mtime/**"
older_than = "30d"
to = "archive"
)");
  const int64_t now = Env::Default()->NowNanos();
  const int64_t later = now + 60 * kDay;  // the clock the pass runs at
  std::map<std::string, uint64_t> dirs;
  for (const char* d : {"size", "xattr", "created", "access", "mtime"})
    dirs[d] = Mkdir(kRootIno, d);
  CreateFile(dirs["size"], "big", Random(150000, 1));
  CreateFile(dirs["size"], "small", Random(50000, 2));
  uint64_t ct = CreateFile(dirs["xattr"], "ct", Random(1000, 3));
  uint64_t mr = CreateFile(dirs["xattr"], "mr", Random(1000, 4));
  ASSERT_TRUE(fs_->SetXattr(ct, "user.modality", "CT", 0).ok());
  ASSERT_TRUE(fs_->SetXattr(mr, "user.modality", "MR", 0).ok());
  // Birth time cannot be set: both are born 60 days before `later`, and the rule selects
  // both, although one's mtime is `later` (by mtime it would be brand new).
  CreateFile(dirs["created"], "old", Random(1000, 5));
  CreateFile(dirs["created"], "touched", Random(1000, 6), later);
  uint64_t unread = CreateFile(dirs["access"], "unread", Random(1000, 7));
  uint64_t read = CreateFile(dirs["access"], "read", Random(1000, 8));
  SetAttrRequest req;
  req.atime = later - 2 * kDay;  // read two days before the pass
  ASSERT_TRUE(fs_->SetAttr(read, req, Caller{}).ok());
  req.atime = now - kDay;
  ASSERT_TRUE(fs_->SetAttr(unread, req, Caller{}).ok());
  CreateFile(dirs["mtime"], "old", Random(1000, 9), now - kDay);
  CreateFile(dirs["mtime"], "new", Random(1000, 10), later - kDay);

  MigrateOptions o;
  o.now_ns = later;
  MigrateReport r = MustMigrate(o);
  ASSERT_EQ(r.rules.size(), 5u);
  const uint64_t want[] = {1, 1, 2, 1, 1};
  for (size_t i = 0; i < 5; i++) EXPECT_EQ(r.rules[i].files, want[i]) << r.rules[i].rule;
  EXPECT_EQ(r.files_moved, 6u);
  EXPECT_TRUE(r.errors.empty());
  // At the real clock nothing is old enough for the age rules.
  WritePolicy("[[rule]]\nname = \"c\"\ncreated_older_than = \"30d\"\nto = \"archive\"\n");
  MigrateOptions dry;
  dry.dry_run = true;
  EXPECT_EQ(MustMigrate(dry).rules[0].files, 0u);
}

// Unmounting while `strata migrate` runs a pass through the daemon: Shutdown stops the pass
// at its next file and waits for it before closing the journal and the database.
TEST_F(TieringTest, ShutdownStopsAPassInFlightAndWaitsForIt) {
  int64_t old = Env::Default()->NowNanos() - 200 * kDay;
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 200; i++) {
    std::string d = Random(3000, static_cast<uint32_t>(600 + i));
    files.emplace_back(CreateFile(studies, Numbered("f", i), d, old), d);
  }
  std::atomic<bool> started{false}, shutting_down{false}, pass_returned{false};
  Result<MigrateReport> report = Status::Aborted("not run");
  MigrateOptions o;
  o.progress = [&](const MigrateProgress&) {
    started = true;
    while (!shutting_down.load()) std::this_thread::yield();  // hold the pass until then
  };
  std::thread pass([&] {
    report = fs_->Migrate(o);
    pass_returned = true;
  });
  while (!started.load()) std::this_thread::yield();
  shutting_down = true;
  Status s = fs_->Shutdown();
  EXPECT_TRUE(pass_returned.load()) << "Shutdown returned while the pass was still running";
  pass.join();
  EXPECT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(fs_->Migrate({}).status().code(), Status::Code::kAborted);  // none after Shutdown
  Reopen();
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  MigrateReport rest = MustMigrate();
  EXPECT_EQ(rest.files_moved + report->files_moved, 200u);
}

TEST_F(TieringTest, ReadsKeepAtimeRelatime) {
  uint64_t ino = CreateFile(kRootIno, "f", "contents");
  Attr before = *fs_->GetAttr(ino);
  ASSERT_LE(before.atime, before.mtime);  // never read: a read moves it
  ASSERT_EQ(*ReadAll(ino), "contents");
  Attr after = *fs_->GetAttr(ino);
  EXPECT_GT(after.atime, before.mtime);
  EXPECT_EQ(after.ctime, before.ctime);  // atime is not a change
  // Read again at once: newer than mtime and less than a day old, so it stays.
  ASSERT_EQ(*ReadAll(ino), "contents");
  EXPECT_EQ(fs_->GetAttr(ino)->atime, after.atime);
  // A day-old atime moves on the next read.
  SetAttrRequest req;
  req.atime = Env::Default()->NowNanos() - 2 * kDay;
  ASSERT_TRUE(fs_->SetAttr(ino, req, Caller{}).ok());
  const int64_t old_atime = fs_->GetAttr(ino)->atime;
  ASSERT_EQ(*ReadAll(ino), "contents");
  EXPECT_GT(fs_->GetAttr(ino)->atime, old_atime + kDay);
  const int64_t kept = fs_->GetAttr(ino)->atime;
  Reopen();
  EXPECT_EQ(fs_->GetAttr(ino)->atime, kept);
}

TEST_F(TieringTest, RecallOnReadBringsBackFilesNotReadForLong) {
  WritePolicy(
      "[[rule]]\nname = \"unread\"\nmatch = \"studies/**\"\nnot_accessed_for = \"90d\"\n"
      "to = \"archive\"\nrecall_on_read = true\n");
  Populate();
  const int64_t now = Env::Default()->NowNanos();
  for (uint64_t ino : {a_, b_, new_}) {
    SetAttrRequest req;
    req.atime = now - 200 * kDay;
    ASSERT_TRUE(fs_->SetAttr(ino, req, Caller{}).ok());
  }
  MigrateReport r = MustMigrate();
  ASSERT_EQ(r.files_moved, 3u);  // a, b and new: none read for 200 days
  // b was read 10 days ago (a utime, as a backup tool restoring atimes would do).
  SetAttrRequest req;
  req.atime = now - 10 * kDay;
  ASSERT_TRUE(fs_->SetAttr(b_, req, Caller{}).ok());

  // A mounted filesystem: the recall thread runs (passes stay manual).
  config_.policy_interval_ms = 0;
  fs_.reset();
  OpenOptions o;
  o.background_tiering = true;
  auto f = Filesystem::Open(config_, Env::Default(), o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  fs_ = std::move(f).value();
  ASSERT_TRUE(fs_->Start().ok());
  // The paths the kernel would have looked up.
  uint64_t studies = fs_->Lookup(kRootIno, "studies")->ino;
  uint64_t s1 = fs_->Lookup(studies, "s1")->ino;
  ASSERT_EQ(fs_->Lookup(s1, "b")->ino, b_);
  ASSERT_EQ(fs_->Lookup(s1, "a")->ino, a_);

  EXPECT_EQ(*ReadAll(b_), b_data_);  // read 10 days ago: the rule does not select it now
  EXPECT_EQ(*ReadAll(a_), a_data_);  // not read for 200 days: recalled
  // Candidates are decided in read order, so once a is recalled b has been decided.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (fs_->GetTieringStatus().files_recalled < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  ASSERT_EQ(fs_->GetTieringStatus().files_recalled, 1u);
  // a reads with the archive gone; b still needs it.
  sfs::rename(root_ + "/archive", root_ + "/archive.away");
  fs_->Shutdown().IgnoreError();
  fs_.reset();
  sfs::remove_all(root_ + "/hot/cache");  // b's records were cached by its read
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_FALSE(ReadAll(b_).ok());
  sfs::rename(root_ + "/archive.away", root_ + "/archive");
  // Just read, a is not selected again by the next pass.
  r = MustMigrate();
  EXPECT_EQ(r.files_moved, 0u);
}

// Segment files in a directory (the journal's, or a tier's), recursively.
size_t CountSegments(const std::string& dir) {
  size_t n = 0;
  if (!sfs::exists(dir)) return 0;
  for (auto& e : sfs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".seg") n++;
  return n;
}

// Bytes zstd cannot shrink, so a few files fill a 1 MiB journal segment.
std::string Incompressible(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// What a full hot tier asks for: the segments deletes emptied are freed, and nothing else is
// done (no scan, no move), however much the policy would move.
TEST_F(TieringTest, AReclaimOnlyPassFreesWhatDeletesEmptiedAndMovesNothing) {
  for (int i = 0; i < 8; i++)
    CreateFile(kRootIno, Numbered("tmp", i), Incompressible(250000, static_cast<uint32_t>(i)));
  for (int i = 0; i < 8; i++) ASSERT_TRUE(fs_->Unlink(kRootIno, Numbered("tmp", i)).ok());
  int64_t old = Env::Default()->NowNanos() - 200 * kDay;
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 4; i++) {
    std::string d = Incompressible(250000, static_cast<uint32_t>(50 + i));
    files.emplace_back(CreateFile(studies, Numbered("f", i), d, old), d);
  }
  MigrateOptions o;
  o.reclaim_only = true;
  MigrateReport r = MustMigrate(o);
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.files_scanned, 0u);
  EXPECT_EQ(r.files_moved, 0u) << "the old studies stay for the scheduled pass";
  EXPECT_GE(r.journal_segments_freed, 1u) << "2 MB of deleted files in 1 MiB segments";
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  Reopen();
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  EXPECT_EQ(MustMigrate().files_moved, 4u);
}

TEST_F(TieringTest, MigratedDataFreesItsJournalSegments) {
  int64_t old = Env::Default()->NowNanos() - 200 * kDay;
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 12; i++) {
    std::string d = Incompressible(250000, static_cast<uint32_t>(i));
    files.emplace_back(CreateFile(studies, Numbered("f", i), d, old), d);
  }
  const std::string journal = root_ + "/hot/journal";
  const size_t before = CountSegments(journal);
  ASSERT_GE(before, 3u);  // 3 MB in 1 MiB segments
  MigrateReport r = MustMigrate();
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.files_moved, 12u);
  EXPECT_EQ(r.journal_segments_freed, before - 1);  // every sealed one: the active one stays
  EXPECT_EQ(CountSegments(journal), 1u);
  EXPECT_GE(r.bytes_freed, (before - 1) * config_.segment_size);
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  Reopen();  // recovery needs none of the removed segments
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  // The next pass finds nothing left to free, and new writes go on in the journal.
  r = MustMigrate();
  EXPECT_EQ(r.journal_segments_freed, 0u);
  uint64_t late = CreateFile(kRootIno, "late", "written after the reclaim");
  Reopen();
  EXPECT_EQ(*ReadAll(late), "written after the reclaim");

  // The freed journal is covered by a snapshot of the database: a lost meta.db is rebuilt
  // from the newest snapshot and the journal after it (DESIGN.md promise 5).
  std::vector<sfs::path> snaps;
  for (auto& e : sfs::directory_iterator(root_ + "/hot/snapshots")) snaps.push_back(e.path());
  ASSERT_EQ(snaps.size(), 1u);
  fs_.reset();
  for (const char* f : {"/hot/meta.db", "/hot/meta.db-wal", "/hot/meta.db-shm"})
    sfs::remove(root_ + f);
  sfs::copy_file(snaps[0], root_ + "/hot/meta.db");
  Reopen();
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  EXPECT_EQ(*ReadAll(late), "written after the reclaim");
}

TEST_F(TieringTest, PartlyDeadJournalSegmentsAreCompactedIntoHotSegments) {
  WritePolicy("");  // no rule: the pass only compacts and frees
  std::vector<std::pair<uint64_t, std::string>> keep;
  for (int i = 0; i < 12; i++) {
    std::string d = Incompressible(250000, static_cast<uint32_t>(100 + i));
    uint64_t ino = CreateFile(kRootIno, Numbered("f", i), d);
    if (i % 4 == 0) keep.emplace_back(ino, d);
  }
  for (int i = 0; i < 12; i++)
    if (i % 4 != 0) {
      ASSERT_TRUE(fs_->Unlink(kRootIno, Numbered("f", i)).ok());
    }
  const std::string journal = root_ + "/hot/journal";
  const size_t before = CountSegments(journal);
  MigrateOptions dry;
  dry.dry_run = true;
  MigrateReport d = MustMigrate(dry);
  EXPECT_GE(d.segments_compacted, 1u);
  EXPECT_EQ(CountSegments(journal), before);

  MigrateReport r = MustMigrate();
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.files_moved, 0u);  // compaction moves no file to another tier
  EXPECT_GE(r.segments_compacted, 1u);
  EXPECT_GT(r.bytes_compacted, 0u);
  EXPECT_EQ(CountSegments(journal), 1u);
  EXPECT_GE(CountSegments(root_ + "/hot/segments"), 1u);
  EXPECT_TRUE(TierFiles().empty());
  for (const auto& [ino, data] : keep) EXPECT_EQ(*ReadAll(ino), data);
  Reopen();
  for (const auto& [ino, data] : keep) EXPECT_EQ(*ReadAll(ino), data);
}

TEST_F(TieringTest, PartlyDeadColdSegmentsAreCompactedOnTheirTier) {
  int64_t old = Env::Default()->NowNanos() - 200 * kDay;
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::vector<std::pair<uint64_t, std::string>> keep;
  for (int i = 0; i < 8; i++) {
    std::string d = Random(60000, static_cast<uint32_t>(200 + i));
    uint64_t ino = CreateFile(studies, Numbered("f", i), d, old);
    if (i % 4 == 0) keep.emplace_back(ino, d);
  }
  MustMigrate();
  ASSERT_EQ(TierFiles().size(), 1u);
  const std::string first = TierFiles().front();
  const uint64_t first_size = sfs::file_size(first);
  for (int i = 0; i < 8; i++)
    if (i % 4 != 0) {
      ASSERT_TRUE(fs_->Unlink(studies, Numbered("f", i)).ok());
    }
  MigrateReport r = MustMigrate();
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.segments_compacted, 1u);
  EXPECT_EQ(r.segments_written, 1u);
  EXPECT_EQ(r.segments_deleted, 1u);
  ASSERT_EQ(TierFiles().size(), 1u);
  EXPECT_NE(TierFiles().front(), first);
  EXPECT_LT(sfs::file_size(TierFiles().front()), first_size / 2);
  for (const auto& [ino, data] : keep) EXPECT_EQ(*ReadAll(ino), data);
  Reopen();
  for (const auto& [ino, data] : keep) EXPECT_EQ(*ReadAll(ino), data);
}

TEST_F(TieringTest, CompactionOffLeavesPartlyDeadSegments) {
  config_.compact_below_pct = 0;
  Reopen();
  WritePolicy("");
  for (int i = 0; i < 8; i++)
    CreateFile(kRootIno, Numbered("f", i), Incompressible(250000, static_cast<uint32_t>(i)));
  for (int i = 1; i < 8; i++) ASSERT_TRUE(fs_->Unlink(kRootIno, Numbered("f", i)).ok());
  MigrateReport r = MustMigrate();
  EXPECT_EQ(r.segments_compacted, 0u);
  EXPECT_EQ(CountSegments(root_ + "/hot/segments"), 0u);
}

// Readers never see an error while passes move their chunks and free the segments they were
// reading from a moment before.
// A disk that is slow to open segment files for reading: it widens the window between a
// read's lookup of a chunk and its read of the segment, where a pass may free the segment.
class SlowOpenEnv final : public Env {
 public:
  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    if (slow.load() && mode == OpenMode::kReadOnly && path.ends_with(".seg"))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return base_->OpenFile(path, mode);
  }
  Status SyncDir(const std::string& d) override { return base_->SyncDir(d); }
  Status RenameFile(const std::string& f, const std::string& t) override {
    return base_->RenameFile(f, t);
  }
  Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  Status CreateDir(const std::string& p, int mode) override { return base_->CreateDir(p, mode); }
  Result<bool> FileExists(const std::string& p) override { return base_->FileExists(p); }
  Result<std::vector<std::string>> ListDir(const std::string& p) override {
    return base_->ListDir(p);
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& p) override {
    return base_->LockFile(p);
  }
  int64_t NowNanos() override { return base_->NowNanos(); }
  std::atomic<bool> slow{false};

 private:
  Env* const base_ = Env::Default();
};

TEST_F(TieringTest, ReadsRacingCompactionAndReclaimNeverFail) {
  config_.chunk_cache_bytes = 0;  // every read goes to the segments
  SlowOpenEnv env;
  fs_.reset();
  OpenOptions oo;
  oo.background_tiering = false;
  auto opened = Filesystem::Open(config_, &env, oo);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  fs_ = std::move(opened).value();
  WritePolicy("");
  // Kept files between filler that is deleted: their journal segments fall below the
  // threshold, so the first pass compacts them and frees the journal segments.
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 8; i++) {
    std::string d = Incompressible(60000, static_cast<uint32_t>(300 + i));
    files.emplace_back(CreateFile(kRootIno, "keep" + std::to_string(i), d), d);
    CreateFile(kRootIno, "fill" + std::to_string(i),
               Incompressible(200000, static_cast<uint32_t>(400 + i)));
  }
  for (int i = 0; i < 8; i++) ASSERT_TRUE(fs_->Unlink(kRootIno, "fill" + std::to_string(i)).ok());
  env.slow = true;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; t++) {
    readers.emplace_back([&, t] {
      while (!stop.load()) {
        for (size_t i = t; i < files.size(); i += 4) {
          auto r = ReadAll(files[i].first);
          if (!r.ok() || *r != files[i].second) bad++;
          reads++;
        }
      }
    });
  }
  MigrateReport r = MustMigrate();
  EXPECT_GE(r.journal_segments_freed, 1u);
  // Then each round moves the files to the archive and back, and the pass after each move
  // deletes the segments they left.
  for (int round = 0; round < 4; round++) {
    const char* to = round % 2 == 0 ? "archive" : "hot";
    for (const auto& [ino, d] : files) ASSERT_TRUE(fs_->MoveFile(ino, to).ok());
    r = MustMigrate();
    EXPECT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_GE(r.segments_deleted, 1u);
  }
  stop = true;
  for (auto& t : readers) t.join();
  env.slow = false;
  EXPECT_EQ(bad.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0);
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  fs_.reset();  // before env goes
}

// kill -9 at each step of the protocol (in a forked child), then reopen: every file reads back
// identical, and the next pass completes without leaking objects on the tier.
class TieringCrashTest : public TieringTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(TieringCrashTest, KillAtStepThenRecover) {
  Populate();
  ASSERT_NO_FATAL_FAILURE(MigrateKilledAt(GetParam()));
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
  EXPECT_EQ(*ReadAll(c_), c_data_);
  MigrateReport r = MustMigrate();
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(TierFiles().size(), 1u);
  EXPECT_TRUE(sfs::is_empty(root_ + "/hot/staging"));
  TieringStatus st = fs_->GetTieringStatus();
  EXPECT_EQ(st.tiers[1].segments, 1u);
  Reopen();
  EXPECT_EQ(*ReadAll(a_), a_data_);
  EXPECT_EQ(*ReadAll(b_), b_data_);
}

// kill -9 while a pass frees journal segments: after the checkpoint, and after the files
// are removed but before their rows are. Recovery needs none of them; the next pass finishes.
class ReclaimCrashTest : public TieringTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ReclaimCrashTest, KillWhileFreeingJournalSegments) {
  int64_t old = Env::Default()->NowNanos() - 200 * kDay;
  uint64_t studies = Mkdir(kRootIno, "studies");
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 10; i++) {
    std::string d = Incompressible(250000, static_cast<uint32_t>(500 + i));
    files.emplace_back(CreateFile(studies, Numbered("f", i), d, old), d);
  }
  uint64_t hot = CreateFile(kRootIno, "hot", "stays hot");
  ASSERT_NO_FATAL_FAILURE(MigrateKilledAt(GetParam()));
  Reopen();
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  EXPECT_EQ(*ReadAll(hot), "stays hot");
  MigrateReport r = MustMigrate();
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(CountSegments(root_ + "/hot/journal"), 1u);
  TieringStatus st = fs_->GetTieringStatus();
  ASSERT_EQ(st.tiers[0].name, "hot");
  EXPECT_EQ(st.tiers[0].segments, 1u);  // the rows of freed segments are gone too
  Reopen();
  for (const auto& [ino, d] : files) EXPECT_EQ(*ReadAll(ino), d);
  EXPECT_EQ(*ReadAll(hot), "stays hot");
}

INSTANTIATE_TEST_SUITE_P(Steps, ReclaimCrashTest,
                         ::testing::Values("reclaim.checkpointed", "reclaim.snapshot",
                                           "reclaim.removed"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(n.find('.') + 1);
                         });

INSTANTIATE_TEST_SUITE_P(Steps, TieringCrashTest,
                         ::testing::Values("migrate.intent", "migrate.built", "migrate.uploaded",
                                           "migrate.verified", "migrate.moved"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(n.find('.') + 1);
                         });

}  // namespace
}  // namespace strata::fs
