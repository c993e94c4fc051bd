// Tiering to S3 on a real mount, end to end, against the real S3 server (single-node Ceph RGW)
// that the CTest fixture S3 starts (tests/s3, scripts/s3-server.sh, docs/s3.md) and describes
// in the file named by STRATA_S3_ENV. Without it every case is skipped with the reason.
//
// The filesystem is driven only through what an administrator uses: the mount, POSIX calls,
// `strata migrate` (through the running daemon) with --dry-run, --status and --json, and
// kill -9 (named kill points, STRATA_KILL_AT, in the daemon's environment). The bucket is
// looked at from outside, as any S3 client sees it, through the S3 tier's client
// (tiering/s3_tier.h): listing objects, scanning them for plaintext, damaging one.
//
// Every test has its own key prefix in the shared bucket. The tests that stop "the S3 server"
// stop a radosgw of their own (`s3-server.sh stop-rgw DIR rgw-NAME`) in front of the shared
// cluster, so the other S3 tests running beside them (ctest -j) keep theirs.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/tiering_s3_fixture.h"

namespace strata::it {
namespace {

// 1. The whole path through the daemon: dry run, the pass, the status, every file back
// byte for byte (ranged reads too, from a cold cache), and nothing in plain text on S3.
TEST_F(TieringS3It, MigrateThroughTheDaemonThenReadEverythingBack) {
  // Markers in names and contents, as a DICOM file carries the patient's name in both.
  const std::string kNameMarker = "PATIENT-ZEBRA-4711";
  const std::string kContentMarker = "CONTENT-MARKER-Q9X7-MUST-NOT-BE-STORED";
  Files files;
  for (int st = 0; st < 2; ++st) {
    for (int i = 0; i < 6; ++i) {
      // Four DICOM-sized instances and two of ~1.5 MiB (25 chunks) per study.
      const size_t n = i < 4 ? 512 * 1024 + 77 * i : 1536 * 1024 + 4099 * i;
      std::string data = CtLike(n, static_cast<uint32_t>(st * 10 + i));
      for (size_t at : {size_t{0}, n / 3, n - kContentMarker.size()})
        data.replace(at, kContentMarker.size(), kContentMarker);
      files.push_back({"studies/" + kNameMarker + "-st" + std::to_string(st) + "/ser1/img" +
                           std::to_string(i) + ".dcm",
                       std::move(data)});
    }
  }
  for (const auto& [p, d] : files) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const Files recent = {{"recent-" + kNameMarker + ".dcm", CtLike(100000, 99)}};
  ASSERT_NO_FATAL_FAILURE(WriteFile(recent[0].first, recent[0].second));

  CommandResult dry = Strata({"migrate", config_path(), "--dry-run", "--json"});
  ASSERT_TRUE(dry.Succeeded()) << dry.Describe();
  EXPECT_CONTAINS(dry.output, "\"dry_run\":true");
  EXPECT_CONTAINS(dry.output, "{\"rule\":\"old-studies\",\"to\":\"cloud\",\"files\":12,");
  EXPECT_EQ(JsonNumber(dry.output, "files_moved"), 0u) << dry.output;
  EXPECT_TRUE(Objects().empty()) << "a dry run stored objects";

  const auto start = Clock::now();
  std::string out = Migrate();
  const double migrate_s = SecondsSince(start);
  EXPECT_CONTAINS(out, "moved 12 files");
  RecordProperty("migrate_ms", static_cast<int>(migrate_s * 1000));

  // The status shows the S3 tier's usage, and the bucket holds exactly that.
  const std::string status = StatusJson();
  TierUsage u = ParseTierUsage(status, "cloud");
  ASSERT_TRUE(u.found) << status;
  EXPECT_CONTAINS(status, "\"name\":\"cloud\",\"kind\":\"s3\"");
  EXPECT_GE(u.segments, 1u);
  EXPECT_GT(u.live_bytes, 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());

  // Promise 1: no name and no content in plain text in any object.
  const std::string ct_sample = files[0].second.substr(4096, 64);
  for (const auto& obj : Objects()) {
    const std::string bytes = GetObject(obj);
    ASSERT_EQ(bytes.size(), obj.size) << obj.key;
    for (const std::string& needle :
         {kNameMarker, kContentMarker, std::string("img0.dcm"), std::string("ser1"), ct_sample})
      EXPECT_EQ(bytes.find(needle), std::string::npos)
          << obj.key << " holds a plaintext " << (needle == ct_sample ? "pixel run" : needle);
  }

  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(files));
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(recent));

  // Cold caches: the reads go to S3. First a ranged read in the middle of a 13-chunk file,
  // across two chunk boundaries, before anything else touched that file.
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  const auto& [big_path, big] = files[5];
  ASSERT_GT(big.size(), 1400 * 1024u);
  {
    const off_t off = 5 * kChunk + 12345;
    const size_t len = 2 * kChunk + 777;
    int fd = ::open((mnt() + "/" + big_path).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::string buf(len, '\0');
    ssize_t n = ::pread(fd, buf.data(), len, off);
    const int err = errno;
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(len)) << strerror(err);
    EXPECT_TRUE(buf == big.substr(off, len)) << "ranged read at " << off << " differs";
  }
  const std::string after = StatusJson();
  EXPECT_GE(JsonNumber(after, "cold_fetches").value_or(0), 1u)
      << "the ranged read did not fetch from S3:\n"
      << after;
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(files));
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(recent));
}

// 2. kill -9 at every step of the migration protocol, against S3: every file reads back
// identical after the crash, the next pass completes, and no object leaks.
class TieringS3CrashIt : public TieringS3It, public ::testing::WithParamInterface<const char*> {};

TEST_P(TieringS3CrashIt, KillNineAtStepThenRecover) {
  const std::string step = GetParam();
  // A segment on S3 that a truncate then empties: the killed pass moves the new files and
  // then deletes that segment (the migrate.deleted step); earlier steps never get there.
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/gone/old.dcm", CtLike(200000, 1)));
  Migrate();
  ASSERT_EQ(Objects().size(), 1u);
  ASSERT_EQ(::truncate((mnt() + "/studies/gone/old.dcm").c_str(), 0), 0) << strerror(errno);

  const Files cold = {{"studies/a/1.dcm", CtLike(150000, 2)},
                      {"studies/a/2.dcm", CtLike(400000, 3)},
                      {"studies/b/3.dcm", CtLike(700000, 4)}};
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  Files all = cold;
  all.push_back({"recent.dcm", CtLike(90000, 5)});
  ASSERT_NO_FATAL_FAILURE(WriteFile(all.back().first, all.back().second));
  all.push_back({"studies/gone/old.dcm", ""});

  ASSERT_NO_FATAL_FAILURE(Unmount());
  daemon_env_ = {"STRATA_KILL_AT=" + step};
  ASSERT_NO_FATAL_FAILURE(Mount());
  CommandResult killed = Strata({"migrate", config_path()});
  EXPECT_FALSE(killed.Succeeded()) << "the pass survived " << step << ": " << killed.Describe();
  const int status = WaitForDaemonExit(std::chrono::seconds(30));
  ASSERT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the daemon did not die at " << step << ": " << DescribeWaitStatus(status) << "\n"
      << Tail(DaemonLog(), 4096);
  // What the crash left in the bucket: the emptied segment until its delete, the new one from
  // its upload on (an orphan until the next pass rolls it back, or live once moved).
  const std::map<std::string, size_t> objects_after_crash = {
      {"migrate.intent", 1},   {"migrate.built", 1}, {"migrate.uploaded", 2},
      {"migrate.verified", 2}, {"migrate.moved", 2}, {"migrate.deleted", 1}};
  EXPECT_EQ(Objects().size(), objects_after_crash.at(step));

  daemon_env_.clear();
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));

  CommandResult again = Strata({"migrate", config_path(), "--json"});
  ASSERT_TRUE(again.Succeeded()) << again.Describe();
  EXPECT_CONTAINS(again.output, "\"errors\":[]");
  // Everything the policy selects is on S3 now ...
  CommandResult dry = Strata({"migrate", config_path(), "--dry-run", "--json"});
  ASSERT_TRUE(dry.Succeeded()) << dry.Describe();
  EXPECT_CONTAINS(dry.output, "{\"rule\":\"old-studies\",\"to\":\"cloud\",\"files\":0,");
  // ... in one live segment: the emptied one is gone, an interrupted upload was rolled back.
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());
  EXPECT_EQ(Objects().size(), 1u);

  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));
}

INSTANTIATE_TEST_SUITE_P(Steps, TieringS3CrashIt,
                         ::testing::Values("migrate.intent", "migrate.built", "migrate.uploaded",
                                           "migrate.verified", "migrate.moved", "migrate.deleted"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(n.find('.') + 1);
                         });

// 5. A damaged object: one flipped byte in a record's payload is EIO for that file (never
// wrong data), caught by the record CRC, or by the AEAD tag when the CRC was fixed up too;
// the other files read fine.
TEST_F(TieringS3It, CorruptedObjectIsEioNeverWrongData) {
  const Files crc_victim = {{"studies/v1/crc.dcm", CtLike(4 * kChunk + 1000, 41)}};
  const Files aead_victim = {{"studies/v2/aead.dcm", CtLike(4 * kChunk + 2000, 42)}};
  const Files others = {{"studies/o/1.dcm", CtLike(300000, 43)},
                        {"studies/o/2.dcm", CtLike(500000, 44)},
                        {"hot.dcm", CtLike(100000, 45)}};
  for (const Files* f : {&crc_victim, &aead_victim, &others})
    for (const auto& [p, d] : *f) ASSERT_NO_FATAL_FAILURE(WriteFile(p, d));
  // One pass per victim, so that each victim has an object of its own.
  std::string crc_key, aead_key;
  const std::pair<const Files*, std::string*> victims[] = {{&crc_victim, &crc_key},
                                                           {&aead_victim, &aead_key}};
  for (const auto& [victim, key] : victims) {
    const std::set<std::string> before = ObjectKeys();
    ASSERT_NO_FATAL_FAILURE(Age((*victim)[0].first));
    EXPECT_CONTAINS(Migrate(), "moved 1 files");
    for (const std::string& k : ObjectKeys())
      if (!before.count(k)) *key = k;
    ASSERT_FALSE(key->empty()) << "no new object for " << (*victim)[0].first;
  }
  for (const auto& [p, d] : others)
    if (p.starts_with("studies/")) {
      ASSERT_NO_FATAL_FAILURE(Age(p));
    }
  EXPECT_CONTAINS(Migrate(), "moved 2 files");
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // Flip one byte in the middle of the payload of the second data record (the victim's chunk
  // 1); with fix_crc, also rewrite the record's CRC so that only the AEAD tag can tell.
  auto damage = [&](const std::string& key, bool fix_crc) {
    uint64_t size = 0;
    for (const auto& o : Objects())
      if (o.key == key) size = o.size;
    ASSERT_GT(size, kSegmentHeaderBytes) << key;
    std::string bytes = GetObject({key, size});
    size_t off = kSegmentHeaderBytes;
    int data_records = 0;
    while (off + kRecordHeaderBytes <= bytes.size()) {
      const uint32_t len = Le32(bytes, off + 4);
      ASSERT_LE(off + kRecordHeaderBytes + len, bytes.size()) << key << ": bad record at " << off;
      if (static_cast<uint8_t>(bytes[off + 8]) == kDataRecord && ++data_records == 2) {
        ASSERT_GT(len, 0u);
        bytes[off + kRecordHeaderBytes + len / 2] ^= 0x01;
        if (fix_crc)
          PutLe32(&bytes, off, MaskedCrc32c(std::string_view(bytes).substr(off + 4, 16 + len)));
        Status s = bucket_->Put(key, bytes);
        ASSERT_TRUE(s.ok()) << s.ToString();
        return;
      }
      off += kRecordHeaderBytes + len;
    }
    FAIL() << key << " has " << data_records << " data records, expected at least 2";
  };
  ASSERT_NO_FATAL_FAILURE(damage(crc_key, false));
  ASSERT_NO_FATAL_FAILURE(damage(aead_key, true));
  ASSERT_NO_FATAL_FAILURE(ClearReadCache());
  ASSERT_NO_FATAL_FAILURE(Mount());

  for (const Files* victim : {&crc_victim, &aead_victim}) {
    const auto& [rel, data] = (*victim)[0];
    int fd = ::open((mnt() + "/" + rel).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    int eio_chunks = 0;
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const size_t want = std::min(kChunk, data.size() - off);
      std::string buf(want, '\0');
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
      if (n < 0) {
        EXPECT_EQ(errno, EIO) << rel << " at " << off << ": " << strerror(errno);
        ++eio_chunks;
        continue;
      }
      EXPECT_EQ(static_cast<size_t>(n), want) << rel << " at " << off;
      EXPECT_TRUE(buf.substr(0, n) == data.substr(off, n)) << rel << ": wrong data at " << off;
    }
    ::close(fd);
    EXPECT_GE(eio_chunks, 1) << rel << " read back although its object is damaged";
    std::string got;
    EXPECT_FALSE(ReadWholeFile(mnt() + "/" + rel, &got)) << rel;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(others));
  // Each failed check is logged as an alert: the record CRC caught the first victim, the
  // AEAD tag the second.
  const std::string log = DaemonLog();
  EXPECT_CONTAINS(log, "ALERT");
  EXPECT_CONTAINS(log, "checksum mismatch");
  EXPECT_CONTAINS(log, "AEAD tag mismatch");
}

}  // namespace
}  // namespace strata::it
