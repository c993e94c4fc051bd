// What a journal open finds after a crash, a power loss or damage: torn tails, direct-write
// padding, flipped bits, bad headers, missing segments (recovery.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "base/coding.h"
#include "base/crc32c.h"
#include "journal/format.h"
#include "journal/journal.h"
#include "tests/unit/journal/journal_fixture.h"
#include "tests/util/fault_env.h"

namespace strata::journal {
namespace {

TEST_F(JournalTest, TruncatedTailIsIgnored) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 60));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  const std::string path = SegPath(1);
  const std::string original = ReadRaw(path);
  const uint64_t last_off = recs.back().loc.offset;
  ASSERT_EQ(original.size(), last_off + kRecordHeaderSize + 60);
  for (uint64_t cut = last_off + 1; cut < original.size(); cut++) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    WriteRaw(path, original.substr(0, cut));
    ASSERT_TRUE(Open().ok());
    EXPECT_EQ(j_->LastLsn(), 4u);
    EXPECT_EQ(j_->DurableLsn(), 4u);
    EXPECT_EQ(fs::file_size(path), last_off);  // the torn record is gone from the file too
    for (int i = 0; i < 4; i++) ExpectReadable(recs[i]);
    Appended next = Append(100 + cut, 30);
    EXPECT_EQ(next.lsn, 5u);
    EXPECT_EQ(next.loc.offset, last_off);
    ASSERT_TRUE(j_->Sync(5).ok());
    ASSERT_TRUE(Open().ok());
    EXPECT_EQ(j_->LastLsn(), 5u);
    ExpectReadable(next);
    EXPECT_EQ(ReplayAll().size(), 5u);
    j_.reset();
  }
  // A cut exactly between records is a clean end.
  WriteRaw(path, original.substr(0, last_off));
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 4u);
}

TEST_F(JournalTest, TornTailOfZerosIsIgnored) {
  // What a filesystem may show after a crash: the file grew but the data blocks never made it.
  ASSERT_TRUE(Open().ok());
  for (int i = 0; i < 3; i++) Append(i, 500);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  const std::string path = SegPath(1);
  const auto size = fs::file_size(path);
  WriteRaw(path, ReadRaw(path) + std::string(8192, '\0'));
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 3u);
  EXPECT_EQ(fs::file_size(path), size);
}

// What a kill -9 leaves behind with direct writes: the active segment padded with zeros to a
// whole block. Recovery neither warns nor cuts (a cut would free the segment's preallocation):
// the next append writes over the padding, and a clean close ends the file at its last record.
TEST_F(JournalTest, DirectWritePaddingLeftByACrashIsSkippedAndWrittenOver) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(j_->direct_writes());
  std::vector<Appended> recs;
  for (int i = 0; i < 3; i++) recs.push_back(Append(i, 500));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  const std::string path = SegPath(1);
  const std::string crashed = ReadRaw(path);  // as a killed process leaves it
  const uint64_t end = recs.back().loc.offset + kRecordHeaderSize + 500;
  ASSERT_EQ(crashed.size() % File::kDirectBlock, 0u);
  ASSERT_GT(crashed.size(), end);
  j_.reset();
  EXPECT_EQ(fs::file_size(path), end) << "a clean close cuts the padding";
  WriteRaw(path, crashed);
  testing::internal::CaptureStderr();
  Status s = Open();
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(log.find("torn tail"), std::string::npos) << log;
  EXPECT_EQ(j_->LastLsn(), 3u);
  EXPECT_EQ(fs::file_size(path), crashed.size()) << "the padding is left for the next append";
  Appended next = Append(10, 700);
  EXPECT_EQ(next.loc.offset, end);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  EXPECT_EQ(fs::file_size(path), end + kRecordHeaderSize + 700);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(ReplayAll().size(), 4u);
  for (const auto& r : recs) ExpectReadable(r);
  ExpectReadable(next);
}

// A crash between a seal's direct write and the cut after it: the last segment ends with its
// segment-end record, then zeros to the block boundary. A read-only open replays it as it is;
// a writable one cuts the zeros off before it starts the next segment.
TEST_F(JournalTest, ASealCutShortByACrashIsFinishedAtOpen) {
  segment_size_ = 8192;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  while (j_->SegmentIds().size() < 2) recs.push_back(Append(recs.size(), 333));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  recs.pop_back();  // the record that started segment 2: lost with it in this crash
  const std::string sealed = SegPath(1);
  ASSERT_TRUE(fs::remove(SegPath(2)));
  const uint64_t exact = fs::file_size(sealed);
  ASSERT_NE(exact % File::kDirectBlock, 0u);
  WriteRaw(sealed,
           ReadRaw(sealed) + std::string(File::kDirectBlock - exact % File::kDirectBlock, '\0'));
  Options ro = Opts();
  ro.read_only = true;
  ASSERT_TRUE(Open(ro).ok());
  EXPECT_EQ(j_->LastLsn(), recs.size());
  EXPECT_EQ(ReplayAll().size(), recs.size());
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(fs::file_size(sealed), exact);
  EXPECT_EQ(j_->SegmentIds(), (std::vector<uint64_t>{1, 2}));
  Appended next = Append(999, 100);
  EXPECT_EQ(next.loc.segment, 2u);
  EXPECT_EQ(next.lsn, recs.size() + 1);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_TRUE(Open().ok());
  auto got = ReplayAll();
  ASSERT_EQ(got.size(), recs.size() + 1);
  for (size_t i = 0; i < recs.size(); i++) EXPECT_EQ(got[i].payload, recs[i].payload);
}

TEST_F(JournalTest, WithoutDirectWritesTheSegmentNeverHasPadding) {
  direct_writes_ = false;
  keep_written_ = 1 << 20;
  ASSERT_TRUE(Open().ok());
  EXPECT_FALSE(j_->direct_writes());
  Appended a = Append(1, 100);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  EXPECT_EQ(fs::file_size(SegPath(1)), a.loc.offset + kRecordHeaderSize + 100);
  EXPECT_EQ(j_->KeptBytes(), 0u) << "the page cache keeps them";
  // The next mount may turn them on: the file carries on either way.
  direct_writes_ = true;
  ASSERT_TRUE(Open().ok());
  EXPECT_TRUE(j_->direct_writes());
  Appended b = Append(2, 100);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  direct_writes_ = false;
  ASSERT_TRUE(Open().ok());
  Appended c = Append(3, 100);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  EXPECT_EQ(c.loc.offset, b.loc.offset + kRecordHeaderSize + 100);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(ReplayAll().size(), 3u);
  for (const auto& r : {a, b, c}) ExpectReadable(r);
}

TEST_F(JournalTest, FlippedBitIsCorruption) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();  // a clean close: the segment ends at its last record
  const std::string path = SegPath(1);
  const std::string original = ReadRaw(path);
  // Every bit of the middle record: its header and its payload.
  const uint64_t start = recs[2].loc.offset;
  for (uint64_t off = start; off < start + kRecordHeaderSize + 100; off += 3) {
    SCOPED_TRACE("flip at " + std::to_string(off));
    j_.reset();
    WriteRaw(path, original);
    ASSERT_TRUE(Open().ok());
    FlipBit(path, off, static_cast<int>(off % 8));

    std::string got;
    Status s = j_->Read(recs[2].loc, &got);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
    ExpectReadable(recs[1]);
    ExpectReadable(recs[3]);

    Status rs;
    auto replayed = ReplayAll(0, &rs);
    EXPECT_TRUE(rs.IsCorruption()) << rs.ToString();
    EXPECT_NE(rs.message().find(path), std::string::npos) << rs.message();
    ASSERT_LE(replayed.size(), 2u);  // records before the damage, never anything wrong
    for (size_t i = 0; i < replayed.size(); i++) EXPECT_EQ(replayed[i].payload, recs[i].payload);

    j_.reset();
    Status os = Open();
    EXPECT_TRUE(os.IsCorruption()) << os.ToString();
    EXPECT_NE(os.message().find(path), std::string::npos) << os.message();
    EXPECT_NE(os.message().find("offset " + std::to_string(start)), std::string::npos)
        << os.message();
  }
  // Open refused without touching the file: fsck gets to see it as it is.
  EXPECT_EQ(fs::file_size(path), original.size());
}

TEST_F(JournalTest, FlippedBitInSealedSegmentIsCorruption) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 60; i++) recs.push_back(Append(i, 200));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_GE(j_->SegmentIds().size(), 3u);
  j_.reset();
  const Appended& victim = recs[3];
  ASSERT_EQ(victim.loc.segment, 1u);
  FlipBit(SegPath(1), victim.loc.offset + kRecordHeaderSize + 10, 0);
  // Open scans only the last segment, so it does not notice; Read and Replay do.
  ASSERT_TRUE(Open().ok());
  std::string got;
  EXPECT_TRUE(j_->Read(victim.loc, &got).IsCorruption());
  Status s;
  auto replayed = ReplayAll(0, &s);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_EQ(replayed.size(), 3u);
  // Replays that start after the damaged segment are unaffected.
  uint64_t after = recs.back().lsn - 5;
  ASSERT_NE(recs[after].loc.segment, 1u);
  EXPECT_EQ(ReplayAll(after).size(), 5u);
}

TEST_F(JournalTest, FlippedBitInLastRecordIsATornTail) {
  // Without sync markers a damaged last record cannot be told from a torn write: it is
  // discarded with a warning, like RocksDB's kTolerateCorruptedTailRecords.
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  FlipBit(SegPath(1), recs[4].loc.offset + kRecordHeaderSize + 50, 3);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 4u);
}

TEST_F(JournalTest, WrongLsnIsCorruption) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  // Rewrite record 3 with LSN 7 and a valid checksum: structurally fine, out of sequence.
  const std::string path = SegPath(1);
  std::string data = ReadRaw(path);
  std::string rec;
  format::AppendRecord(&rec, format::kTypeData, 7, recs[2].payload);
  data.replace(recs[2].loc.offset, rec.size(), rec);
  WriteRaw(path, data);
  Status s = Open();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("LSN 7"), std::string::npos) << s.message();
}

TEST_F(JournalTest, WrongFsUuidIsRefused) {
  ASSERT_TRUE(Open().ok());
  Append(1, 10);
  j_.reset();
  Options o = Opts();
  o.fs_uuid[0] ^= 1;
  Status s = Open(o);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find(SegPath(1)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("belongs to filesystem"), std::string::npos) << s.message();
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 1u);
}

TEST_F(JournalTest, BadHeaderIsRefused) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  for (int i = 0; i < 40; i++) Append(i, 200);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_GE(j_->SegmentIds().size(), 2u);
  j_.reset();
  const std::string path = SegPath(1);  // a sealed, non-last segment
  const std::string original = ReadRaw(path);

  auto expect_refused = [&](const std::string& data, bool invalid_argument, const char* what) {
    SCOPED_TRACE(what);
    WriteRaw(path, data);
    Status s = Open();
    EXPECT_TRUE(invalid_argument ? s.IsInvalidArgument() : s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  };
  std::string d = original;
  d[0] = 'X';
  expect_refused(d, false, "magic");
  d = original;
  d[41] ^= 4;  // first LSN, without fixing the CRC
  expect_refused(d, false, "checksum");
  auto with_crc = [](std::string h) {
    EncodeFixed32(h.data() + 60, crc32c::Mask(crc32c::Value(h.data(), 60)));
    return h;
  };
  d = original;
  EncodeFixed32(d.data() + 8, 2);
  expect_refused(with_crc(d), true, "version");
  d = original;
  EncodeFixed64(d.data() + 32, 9);
  expect_refused(with_crc(d), false, "segment id");
  expect_refused(original.substr(0, 30), false, "short header in a non-last segment");

  WriteRaw(path, original);
  WriteRaw((fs::path(dir_) / "README").string(), "not a segment");
  ASSERT_TRUE(Open().ok());  // unrelated files are ignored
  EXPECT_EQ(j_->LastLsn(), 40u);
}

TEST_F(JournalTest, TornSegmentCreationIsRemoved) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 40; i++) recs.push_back(Append(i, 200));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  const uint64_t last = j_->ActiveSegment();
  ASSERT_GE(last, 3u);
  j_.reset();
  // The crash hit while `last` was being created: segment last-1 is sealed and complete.
  const std::string torn = SegPath(last);
  const std::string header = ReadRaw(torn).substr(0, kSegmentHeaderSize);
  uint64_t survivors = 0;
  for (const auto& a : recs) survivors += a.loc.segment < last ? 1 : 0;

  for (size_t keep : {size_t{0}, size_t{30}, size_t{64}, size_t{4096}}) {
    SCOPED_TRACE("header bytes kept: " + std::to_string(keep));
    std::string h = header.substr(0, std::min<size_t>(keep, kSegmentHeaderSize));
    if (keep >= 64) h[61] ^= 1;  // complete but its CRC never made it
    // 4096: written directly, as one block of header and zeros.
    if (keep == 4096) h.resize(File::kDirectBlock, '\0');
    WriteRaw(torn, h);
    ASSERT_TRUE(Open().ok());
    EXPECT_EQ(j_->LastLsn(), survivors);
    EXPECT_EQ(j_->ActiveSegment(), last);  // recreated, empty, with the right first LSN
    EXPECT_EQ(fs::file_size(torn), kSegmentHeaderSize);
    Appended a = Append(1000, 10);
    EXPECT_EQ(a.lsn, survivors + 1);
    EXPECT_EQ(a.loc.segment, last);
    ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
    ASSERT_TRUE(Open().ok());
    EXPECT_EQ(ReplayAll().size(), survivors + 1);
    j_.reset();
  }
  // The same with the file missing altogether (its directory entry was never synced).
  fs::remove(torn);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), survivors);
  EXPECT_EQ(j_->ActiveSegment(), last);
}

TEST_F(JournalTest, DamagedHeaderWithRecordsIsCorruption) {
  ASSERT_TRUE(Open().ok());
  Append(1, 100);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  FlipBit(SegPath(1), 20, 1);  // fs_uuid byte, CRC now wrong; the file holds a record
  Status s = Open();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

TEST_F(JournalTest, ReplayDetectsMissingSegments) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 60; i++) recs.push_back(Append(i, 200));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_GE(j_->SegmentIds().size(), 4u);
  j_.reset();
  fs::remove(SegPath(2));
  ASSERT_TRUE(Open().ok());
  Status s;
  auto got = ReplayAll(0, &s);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
  uint64_t in_seg1 = 0;
  for (const auto& a : recs) in_seg1 += a.loc.segment == 1 ? 1 : 0;
  EXPECT_EQ(got.size(), in_seg1);
  uint64_t after = recs.back().lsn - 3;  // in the last segment
  EXPECT_EQ(ReplayAll(after).size(), 3u);

  j_.reset();
  fs::remove(SegPath(1));  // the oldest segments moved away (e.g. archived)
  ASSERT_TRUE(Open().ok());
  ReplayAll(0, &s);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
}

TEST_F(JournalTest, TruncatedSealedSegmentIsCorruption) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  for (int i = 0; i < 40; i++) Append(i, 200);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  const std::string path = SegPath(1);
  for (uint64_t cut : {uint64_t{kRecordHeaderSize}, uint64_t{kRecordHeaderSize + 5}}) {
    std::string data = ReadRaw(path);
    WriteRaw(path, data.substr(0, data.size() - cut));
    ASSERT_TRUE(Open().ok());
    Status s;
    ReplayAll(0, &s);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    j_.reset();
  }
}

TEST_F(JournalTest, SyncedDataSurvivesPowerLoss) {
  segment_size_ = 8192;
  write_buffer_ = 300;  // unsynced records do reach the file before the power cut
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 10; i++) recs.push_back(Append(i, 250));
  ASSERT_TRUE(j_->Sync(10).ok());
  EXPECT_EQ(j_->DurableLsn(), 10u);
  for (int i = 10; i < 15; i++) recs.push_back(Append(i, 250));
  j_.reset();
  env_.DropUnsyncedData();
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 10u);
  for (int i = 0; i < 10; i++) ExpectReadable(recs[i]);
  EXPECT_EQ(ReplayAll().size(), 10u);

  // Sealing syncs the segment, so records in a sealed segment survive without a Sync.
  recs.resize(10);
  while (j_->ActiveSegment() < 3) recs.push_back(Append(recs.size(), 250));
  uint64_t sealed_upto = 0;
  for (const auto& a : recs) {
    if (a.loc.segment < 3) sealed_upto = a.lsn;
  }
  j_.reset();
  env_.DropUnsyncedData();
  ASSERT_TRUE(Open().ok());
  EXPECT_GE(j_->LastLsn(), sealed_upto);
  auto got = ReplayAll();
  ASSERT_EQ(got.size(), j_->LastLsn());
  for (size_t i = 0; i < got.size(); i++) EXPECT_EQ(got[i].payload, recs[i].payload);
}

}  // namespace

void JournalTest::RandomizedCrash(uint64_t seed) {
  segment_size_ = 8192;
  env_.SetBlockPadding(direct_writes_);  // a crash after direct writes leaves zeros to 4 KiB
  std::mt19937_64 rng(seed);
  std::vector<std::string> model(1);  // model[lsn]; model[0] unused
  uint64_t synced = 0;
  for (int iter = 0; iter < 50; iter++) {
    SCOPED_TRACE("iteration " + std::to_string(iter));
    write_buffer_ = rng() % 2 == 0 ? 0 : rng() % 4000;
    ASSERT_TRUE(Open().ok());
    const uint64_t last = j_->LastLsn();
    ASSERT_GE(last, synced);        // every synced record survived
    ASSERT_LT(last, model.size());  // and nothing appeared that was never appended
    model.resize(last + 1);         // records lost in the crash get new payloads
    std::vector<Record> got = ReplayAll();
    ASSERT_EQ(got.size(), last);
    for (uint64_t i = 0; i < got.size(); i++) {
      ASSERT_EQ(got[i].lsn, i + 1);
      ASSERT_EQ(got[i].payload, model[i + 1]) << "LSN " << i + 1;
    }
    synced = last;
    const int ops = 1 + static_cast<int>(rng() % 60);
    for (int k = 0; k < ops; k++) {
      if (rng() % 5 == 0) {
        ASSERT_TRUE(j_->Sync(j_->LastLsn()).ok());
        synced = j_->LastLsn();
      } else {
        std::string p = MakePayload(rng(), rng() % 3 == 0 ? rng() % 3000 : rng() % 200);
        uint64_t lsn;
        Location loc;
        ASSERT_TRUE(j_->Append(RecordType::kMeta, p, &lsn, &loc).ok());
        ASSERT_EQ(lsn, model.size());
        model.push_back(p);
      }
    }
    j_.reset();  // writes what is buffered, does not sync
    if (rng() % 2 == 0) {
      env_.DropUnsyncedData();
    } else {
      env_.DropRandomUnsyncedData(rng());  // torn writes
    }
  }
  ASSERT_TRUE(Open().ok());
  EXPECT_GE(j_->LastLsn(), synced);
}

namespace {

TEST_F(JournalTest, RandomizedCrash) {
  RandomizedCrash(20240601);
  EXPECT_TRUE(j_->direct_writes());
}

TEST_F(JournalTest, RandomizedCrashThroughThePageCache) {
  direct_writes_ = false;
  RandomizedCrash(20261124);
  EXPECT_FALSE(j_->direct_writes());
}

TEST_F(JournalTest, FaultEnvDropsUnsyncedData) {
  const std::string a = (fs::path(dir_) / "a").string();
  const std::string b = (fs::path(dir_) / "b").string();
  {
    auto f = env_.OpenFile(a, OpenMode::kCreate);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAndSync(0, "synced").ok());
    ASSERT_TRUE((*f)->Write(6, "-lost").ok());
    ASSERT_TRUE(env_.SyncDir(dir_).ok());
    auto g = env_.OpenFile(b, OpenMode::kCreate);  // its directory entry is never synced
    ASSERT_TRUE(g.ok());
    ASSERT_TRUE((*g)->WriteAndSync(0, "data").ok());
  }
  env_.DropUnsyncedData();
  EXPECT_EQ(ReadRaw(a), "synced");
  EXPECT_FALSE(fs::exists(b));
}

}  // namespace
}  // namespace strata::journal
