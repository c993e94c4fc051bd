// Tiering to S3 when the server is down or hangs, on a real mount (fixture: tiering_s3_fixture.h).
// Each test stops or freezes (SIGSTOP) a radosgw of its own in front of the shared cluster:
// a pass with the server down frees nothing and completes later; a cold read fails with EIO
// at the tier's read_timeout while hot reads go on; many hung cold reads hold up neither hot
// reads nor another tier's reads, and all complete once the server answers again.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/tiering_s3_fixture.h"

namespace strata::it {
namespace {

// A tier on a radosgw of the test's own, with short timeouts (a server that is down is
// noticed in about a second), and small segments so that a pass writes several.
class TieringS3OutageIt : public TieringS3It {
 protected:
  TieringS3OutageIt() {
    own_rgw_ = true;
    filesystem_config_ = {"segment_size = \"1MiB\""};
    connect_timeout_ = "1s";
    request_timeout_ = "2s";
    read_timeout_ = "2s";
  }
};

// 3. The S3 server is down when a pass runs: the pass reports it and frees nothing; once the
// server is back, the next pass rolls the interrupted upload back and completes.
TEST_F(TieringS3OutageIt, ServerDownDuringMigrationFreesNothingThenCompletes) {
  Files files;
  for (int i = 0; i < 8; ++i)
    files.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                     CtLike(300000 + 1000 * i, static_cast<uint32_t>(20 + i))});
  for (const auto& [p, d] : files) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  Files all = files;
  all.push_back({"recent.dcm", CtLike(90000, 30)});
  ASSERT_NO_FATAL_FAILURE(WriteFile(all.back().first, all.back().second));

  ASSERT_TRUE(RgwScript("stop-rgw"));
  const auto start = Clock::now();
  CommandResult failed = Strata({"migrate", config_path()});
  const double failed_s = SecondsSince(start);
  EXPECT_EQ(failed.ExitCode(), kExitFailed) << failed.Describe();
  EXPECT_CONTAINS(failed.output, "error: ");
  EXPECT_CONTAINS(failed.output, "tier cloud (" + endpoint_);  // which tier, which server
  EXPECT_LT(failed_s, 20.0) << "a refused connection should fail within a few seconds";
  RecordProperty("failed_pass_ms", static_cast<int>(failed_s * 1000));
  std::printf("[ metrics  ] pass with S3 down failed after %.2f s:\n%s", failed_s,
              failed.output.c_str());
  const std::string status = StatusJson();
  EXPECT_CONTAINS(status, "\"last_pass_result\":\"incomplete: ");
  EXPECT_TRUE(Objects().empty()) << "an object reached S3 while its server was down";
  // Nothing was freed: every file reads back, from the hot tier.
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));

  ASSERT_TRUE(RgwScript("start-rgw"));
  std::string out = Migrate({"--json"});
  EXPECT_EQ(JsonNumber(out, "files_moved"), files.size()) << out;
  EXPECT_EQ(JsonNumber(out, "segments_rolled_back"), 1u) << out;
  EXPECT_CONTAINS(out, "\"errors\":[]");
  EXPECT_GE(JsonNumber(out, "segments_written").value_or(0), 2u) << out;
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));
}

// 4. Reads while the S3 server is down: a cold read fails with EIO within about the tier's
// read_timeout, a hot read at the same time is served, and once the server is back the cold
// file reads back identical.
TEST_F(TieringS3OutageIt, ColdReadIsEioWhileTheServerIsDownAndHotReadsGoOn) {
  const std::string cold = CtLike(600000, 7), hot = CtLike(300000, 8);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/a/cold.dcm", cold));
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved 1 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(RgwScript("stop-rgw"));

  const std::string cold_path = mnt() + "/studies/a/cold.dcm";
  ColdRead cold_read(cold_path);  // the open is metadata only: it works with S3 down
  ASSERT_TRUE(cold_read.opened()) << strerror(errno);
  // Meanwhile a file on the hot tier, never read in this mount (so the daemon serves it).
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool hot_before_cold = !cold_read.done.load();
  cold_read.Join();
  const ssize_t cold_n = cold_read.n;
  const int cold_errno = cold_read.err;
  const double cold_s = cold_read.seconds;
  EXPECT_TRUE(hot_ok && got == hot) << "hot read during the outage failed or differs";
  EXPECT_LT(hot_s, 2.0);
  EXPECT_EQ(cold_n, -1) << "a cold read with S3 down returned data";
  EXPECT_EQ(cold_errno, EIO) << strerror(cold_errno);
  EXPECT_LT(cold_s, 2.0 + 2.0) << "read_timeout is 2s";
  RecordProperty("cold_eio_ms", static_cast<int>(cold_s * 1000));
  RecordProperty("hot_read_ms", static_cast<int>(hot_s * 1000));
  std::printf("[ metrics  ] cold read EIO after %.2f s; hot read %.3f s (%s the cold one ended)\n",
              cold_s, hot_s, hot_before_cold ? "before" : "after");
  EXPECT_FALSE(ReadWholeFile(cold_path, &got)) << "the whole cold file read with S3 down";
  EXPECT_CONTAINS(DaemonLog(), "cloud");  // the log names the tier that failed

  ASSERT_TRUE(RgwScript("start-rgw"));
  ASSERT_TRUE(ReadWholeFile(cold_path, &got)) << strerror(errno);
  EXPECT_TRUE(got == cold) << "the cold file differs once S3 is back";
}

// 4b. A server that hangs instead of refusing: a cold read gives up at the tier's
// read_timeout with EIO, and a hot read while it waits is served at once (cold reads wait
// on their own threads, never on the workers that serve hot reads).
TEST_F(TieringS3OutageIt, ColdReadGivesUpAtReadTimeoutWhenTheServerHangs) {
  const std::string cold = CtLike(600000, 9), hot = CtLike(300000, 10);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/a/cold.dcm", cold));
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved 1 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  const std::string cold_path = mnt() + "/studies/a/cold.dcm";
  ColdRead cold_read(cold_path);
  ASSERT_TRUE(cold_read.opened()) << strerror(errno);
  // Once the daemon has sent the GET (the status counts it), the cold read is waiting.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (JsonNumber(StatusJson(), "cold_fetches").value_or(0) == 0 && !cold_read.done &&
         Clock::now() < deadline) {
  }
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool cold_still_waiting = !cold_read.done.load();
  cold_read.Join();
  const ssize_t cold_n = cold_read.n;
  const int cold_errno = cold_read.err;
  const double cold_s = cold_read.seconds;
  EXPECT_TRUE(hot_ok && got == hot) << "hot read while S3 hangs failed or differs";
  EXPECT_TRUE(cold_still_waiting) << "the hot read waited for the cold one (" << hot_s << " s)";
  EXPECT_EQ(cold_n, -1) << "a cold read from a hung server returned data";
  EXPECT_EQ(cold_errno, EIO) << strerror(cold_errno);
  EXPECT_GE(cold_s, 1.5) << "gave up before read_timeout (2s)";
  // One read(2) of an uncached page can be two FUSE reads (the kernel retries a failed
  // readahead with a synchronous read); the second joins the hung fetch and gives up at the
  // same deadline, so the whole read(2) takes one read_timeout.
  EXPECT_LT(cold_s, 2.0 + 1.5) << "read_timeout is 2s";
  std::printf("[ metrics  ] hung S3: cold read EIO after %.2f s; hot read meanwhile %.3f s\n",
              cold_s, hot_s);

  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  // The fetch of the outage may still be retrying; a read either fails with EIO or returns the
  // right bytes, and succeeds once the server answers again.
  bool ok = false;
  const auto back = Clock::now() + std::chrono::seconds(30);
  while (!ok && Clock::now() < back) {
    ok = ReadWholeFile(cold_path, &got);
    if (!ok) {
      ASSERT_EQ(errno, EIO) << strerror(errno);
    }
  }
  ASSERT_TRUE(ok) << "the cold file does not read 30 s after S3 answers again";
  EXPECT_TRUE(got == cold) << "the cold file differs once S3 answers again";
}

// 4c. Many cold reads hung at once (more than the kernel's default of 12 outstanding
// readahead requests per mount): a hot read is still served while every one of them waits,
// and each completes with the right bytes once the server answers again. Each cold file is
// its own fetch (no readahead), so the status shows when all are waiting; the timeouts are
// long enough that none gives up meanwhile (cold_readers, 32 by default, serves them all).
class TieringS3ManyHungReadsIt : public TieringS3OutageIt {
 protected:
  TieringS3ManyHungReadsIt() {
    readahead_ = "0";
    request_timeout_ = "30s";
    read_timeout_ = "30s";
  }

  // Starts a ColdRead of the first chunk of each file.
  void StartColdReads(const Files& files) {
    for (const auto& [p, d] : files) {
      reads_.push_back(std::make_unique<ColdRead>(mnt() + "/" + p));
      ASSERT_TRUE(reads_.back()->opened()) << p << ": " << strerror(errno);
    }
  }
  bool AnyColdReadDone() const {
    for (const auto& r : reads_)
      if (r->done) return true;
    return false;
  }
  // Polls the status until the daemon has started a fetch for every cold read, one of them
  // ended, or 20 s passed; returns the fetches it counted.
  uint64_t WaitForColdFetches() {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    uint64_t fetches = 0;
    while ((fetches = JsonNumber(StatusJson(), "cold_fetches").value_or(0)) < reads_.size() &&
           !AnyColdReadDone() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // between status requests
    return fetches;
  }
  // Once the server answers again: every read returned the file's first bytes.
  void ExpectColdReadsReturn(const Files& files) {
    for (auto& r : reads_) r->Join();
    for (size_t i = 0; i < reads_.size(); ++i) {
      const std::string& want = files[i].second;
      ASSERT_EQ(reads_[i]->n, static_cast<ssize_t>(std::min(want.size(), kChunk)))
          << files[i].first << ": " << strerror(reads_[i]->err);
      EXPECT_TRUE(reads_[i]->bytes == want.substr(0, reads_[i]->bytes.size()))
          << files[i].first << " differs once S3 answers again";
    }
  }

  std::vector<std::unique_ptr<ColdRead>> reads_;
};

TEST_F(TieringS3ManyHungReadsIt, HotReadsAreServedWhileManyColdReadsHang) {
  constexpr int kCold = 24;
  Files cold;
  for (int i = 0; i < kCold; ++i)
    cold.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                    CtLike(150000, static_cast<uint32_t>(40 + i))});
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const std::string hot = CtLike(300000, 11);
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved " + std::to_string(kCold) + " files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  ASSERT_NO_FATAL_FAILURE(StartColdReads(cold));
  ASSERT_EQ(WaitForColdFetches(), static_cast<uint64_t>(kCold))
      << "not every cold read reached the tier (the kernel's max_background holds the rest)";
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool all_waiting = !AnyColdReadDone();
  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  ASSERT_NO_FATAL_FAILURE(ExpectColdReadsReturn(cold));
  EXPECT_TRUE(hot_ok && got == hot) << "hot read while S3 hangs failed or differs";
  EXPECT_TRUE(all_waiting) << "the hot read waited for cold ones (" << hot_s << " s)";
  std::printf("[ metrics  ] hot read with %d cold reads hung: %.3f s\n", kCold, hot_s);
}

// 4d. Each tier fetches on threads of its own: with the S3 tier's fetches all hung (its
// concurrent_fetches set to 2, four reads waiting), a file on a directory tier still reads.
TEST_F(TieringS3ManyHungReadsIt, AHungTierDoesNotHoldUpAnotherTiersReads) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  const std::string archive = root() + "/archive";
  ASSERT_TRUE(sfs::create_directories(archive));
  auto policy = std::find(extra_config_.begin(), extra_config_.end(), "[policy]");
  ASSERT_NE(policy, extra_config_.end());
  extra_config_.insert(policy, {"concurrent_fetches = 2", "[tiers.archive]", "kind = \"directory\"",
                                "path = \"" + archive + "\""});
  WriteConfig();
  ASSERT_TRUE(WriteWholeFile(policy_,
                             "[[rule]]\nname = \"old-archive\"\nmatch = \"archive/**\"\n"
                             "older_than = \"180d\"\nto = \"archive\"\n"
                             "[[rule]]\nname = \"old-studies\"\nmatch = \"studies/**\"\n"
                             "older_than = \"180d\"\nto = \"cloud\"\n",
                             0644));
  ASSERT_NO_FATAL_FAILURE(Mount());

  Files cold;
  for (int i = 0; i < 4; ++i)
    cold.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                    CtLike(150000, static_cast<uint32_t>(70 + i))});
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const std::string on_dir = CtLike(200000, 80);
  ASSERT_NO_FATAL_FAILURE(WriteOld("archive/a.dcm", on_dir));
  EXPECT_CONTAINS(Migrate(), "moved 5 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  ASSERT_NO_FATAL_FAILURE(StartColdReads(cold));
  ASSERT_EQ(WaitForColdFetches(), cold.size()) << "not every cold S3 read reached the daemon";
  std::string got;
  const bool dir_ok = ReadWholeFile(mnt() + "/archive/a.dcm", &got);
  const bool all_waiting = !AnyColdReadDone();
  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  ASSERT_NO_FATAL_FAILURE(ExpectColdReadsReturn(cold));
  EXPECT_TRUE(dir_ok && got == on_dir) << "the directory tier's file did not read while S3 hung";
  EXPECT_TRUE(all_waiting) << "the directory read waited for S3";
}

}  // namespace
}  // namespace strata::it
