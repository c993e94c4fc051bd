#include "journal/journal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "base/coding.h"
#include "base/crc32c.h"
#include "journal/format.h"
#include "tests/util/fault_env.h"

namespace strata::journal {
namespace {

namespace fs = std::filesystem;
using format::kRecordHeaderSize;
using format::kSegmentHeaderSize;

// Random-looking bytes (like the encrypted payloads the journal really carries).
std::string MakePayload(uint64_t seed, size_t len) {
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + len);
  std::string s(len, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteRaw(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void FlipBit(const std::string& path, uint64_t offset, int bit) {
  std::string data = ReadRaw(path);
  ASSERT_LT(offset, data.size());
  data[offset] = static_cast<char>(data[offset] ^ (1 << bit));
  WriteRaw(path, data);
}

struct Appended {
  uint64_t lsn;
  Location loc;
  std::string payload;
  RecordType type;
};

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("strata_journal_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (size_t i = 0; i < uuid_.size(); i++) uuid_[i] = static_cast<unsigned char>(0xa0 + i);
  }

  void TearDown() override {
    j_.reset();
    fs::remove_all(dir_);
  }

  Options Opts() const {
    Options o;
    o.env = const_cast<test::FaultEnv*>(&env_);
    o.dir = dir_;
    o.fs_uuid = uuid_;
    o.segment_size = segment_size_;
    o.write_buffer = write_buffer_;
    o.direct_writes = direct_writes_;
    o.keep_written = keep_written_;
    return o;
  }

  Status Open(const Options& o) {
    j_.reset();
    auto r = Journal::Open(o);
    if (!r.ok()) return r.status();
    j_ = std::move(r).value();
    return Status::OK();
  }
  Status Open() { return Open(Opts()); }

  Appended Append(uint64_t seed, size_t len, RecordType type = RecordType::kData) {
    Appended a{0, {}, MakePayload(seed, len), type};
    Status s = j_->Append(type, a.payload, &a.lsn, &a.loc);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return a;
  }

  std::vector<Record> ReplayAll(uint64_t after = 0, Status* status = nullptr) {
    std::vector<Record> out;
    Status s = j_->Replay(after, [&](const Record& r) {
      out.push_back(r);
      return Status::OK();
    });
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return out;
  }

  void ExpectReadable(const Appended& a) {
    std::string got;
    Status s = j_->Read(a.loc, &got);
    ASSERT_TRUE(s.ok()) << "LSN " << a.lsn << ": " << s.ToString();
    EXPECT_EQ(got, a.payload) << "LSN " << a.lsn;
  }

  std::string SegPath(uint64_t id) const {
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.seg", static_cast<unsigned long long>(id));
    return (fs::path(dir_) / name).string();
  }

  test::FaultEnv env_;
  std::string dir_;
  std::array<unsigned char, 16> uuid_{};
  uint64_t segment_size_ = 1 << 20;
  size_t write_buffer_ = 64 << 10;
  bool direct_writes_ = true;
  uint64_t keep_written_ = 0;

  void RandomizedCrash(uint64_t seed);
  std::unique_ptr<Journal> j_;
};

TEST_F(JournalTest, EmptyJournal) {
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 0u);
  EXPECT_EQ(j_->DurableLsn(), 0u);
  EXPECT_EQ(j_->SegmentIds(), std::vector<uint64_t>{1});
  EXPECT_EQ(j_->ActiveSegment(), 1u);
  EXPECT_EQ(j_->SegmentPath(1), SegPath(1));
  EXPECT_EQ(fs::file_size(SegPath(1)), kSegmentHeaderSize);
  EXPECT_TRUE(ReplayAll().empty());
  EXPECT_TRUE(j_->Sync(0).ok());
  EXPECT_TRUE(j_->Sync(UINT64_MAX).ok());
  EXPECT_TRUE(j_->error().ok());
}

TEST_F(JournalTest, AppendAndReadBack) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  const size_t sizes[] = {0, 1, 19, 20, 100, 4096, 70000};
  for (int i = 0; i < 70; i++) {
    RecordType t = static_cast<RecordType>(1 + i % 3);
    recs.push_back(Append(i, sizes[i % 7], t));
  }
  for (const auto& a : recs) ExpectReadable(a);
  ASSERT_TRUE(j_->Sync(j_->LastLsn()).ok());
  for (const auto& a : recs) ExpectReadable(a);
  auto replayed = ReplayAll();
  ASSERT_EQ(replayed.size(), recs.size());
  for (size_t i = 0; i < recs.size(); i++) {
    EXPECT_EQ(replayed[i].lsn, recs[i].lsn);
    EXPECT_EQ(replayed[i].type, recs[i].type);
    EXPECT_EQ(replayed[i].payload, recs[i].payload);
    EXPECT_EQ(replayed[i].loc.segment, recs[i].loc.segment);
    EXPECT_EQ(replayed[i].loc.offset, recs[i].loc.offset);
    EXPECT_EQ(replayed[i].loc.length, recs[i].loc.length);
  }
}

TEST_F(JournalTest, LsnsAreDense) {
  ASSERT_TRUE(Open().ok());
  for (uint64_t i = 1; i <= 100; i++) {
    Appended a = Append(i, i);
    EXPECT_EQ(a.lsn, i);
    EXPECT_EQ(a.loc.length, i);
    EXPECT_EQ(j_->LastLsn(), i);
  }
  EXPECT_EQ(j_->DurableLsn(), 0u);
  ASSERT_TRUE(j_->Sync(50).ok());
  EXPECT_GE(j_->DurableLsn(), 50u);
  ASSERT_TRUE(j_->Sync(j_->LastLsn()).ok());
  EXPECT_EQ(j_->DurableLsn(), 100u);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(Append(1, 1).lsn, 101u);
}

TEST_F(JournalTest, AppendRejectsBadRecords) {
  segment_size_ = 4096;
  ASSERT_TRUE(Open().ok());
  uint64_t lsn = 0;
  Location loc;
  EXPECT_TRUE(j_->Append(RecordType::kSegmentEnd, "x", &lsn, &loc).IsInvalidArgument());
  EXPECT_TRUE(j_->Append(static_cast<RecordType>(9), "x", &lsn, &loc).IsInvalidArgument());
  const size_t max = 4096 - kSegmentHeaderSize - 2 * kRecordHeaderSize;
  EXPECT_TRUE(
      j_->Append(RecordType::kData, std::string(max + 1, 'x'), &lsn, &loc).IsInvalidArgument());
  EXPECT_EQ(j_->LastLsn(), 0u);
  // The largest record fills a segment exactly, with room for its kSegmentEnd.
  Appended a = Append(1, max);
  Appended b = Append(2, max);
  EXPECT_EQ(a.loc.segment, 1u);
  EXPECT_EQ(b.loc.segment, 2u);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  EXPECT_EQ(fs::file_size(SegPath(1)), 4096u);
  ExpectReadable(a);
  ExpectReadable(b);
  EXPECT_TRUE(Journal::Open(Options{}).status().IsInvalidArgument());
  Options small = Opts();
  small.segment_size = 1000;
  j_.reset();
  EXPECT_TRUE(Journal::Open(small).status().IsInvalidArgument());
}

TEST_F(JournalTest, ReopenKeepsEverything) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 50; i++) recs.push_back(Append(i, 10 + i * 37));
  ASSERT_TRUE(j_->Sync(25).ok());
  // The rest is only written by the destructor (no power loss here, so it stays).
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 50u);
  EXPECT_EQ(j_->DurableLsn(), 50u);
  for (const auto& a : recs) ExpectReadable(a);
  auto replayed = ReplayAll();
  ASSERT_EQ(replayed.size(), 50u);
  for (size_t i = 0; i < recs.size(); i++) EXPECT_EQ(replayed[i].payload, recs[i].payload);
  recs.push_back(Append(99, 99));
  EXPECT_EQ(recs.back().lsn, 51u);
  ASSERT_TRUE(Open().ok());
  for (const auto& a : recs) ExpectReadable(a);
}

TEST_F(JournalTest, SecondWriterIsBusy) {
  ASSERT_TRUE(Open().ok());
  auto second = Journal::Open(Opts());
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
  Options ro = Opts();
  ro.read_only = true;
  EXPECT_TRUE(Journal::Open(ro).ok());  // readers (fsck) take no lock
}

TEST_F(JournalTest, ReplayOrderAndAfterLsn) {
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 50; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(30).ok());  // part on disk, part in memory
  for (uint64_t after : {0, 1, 20, 30, 49, 50, 51, 1000}) {
    auto got = ReplayAll(after);
    size_t want = after >= 50 ? 0 : 50 - after;
    ASSERT_EQ(got.size(), want) << "after " << after;
    for (size_t i = 0; i < got.size(); i++) {
      EXPECT_EQ(got[i].lsn, after + 1 + i);
      EXPECT_EQ(got[i].payload, recs[after + i].payload);
    }
  }
  // fn's error stops the replay and comes back unchanged.
  int calls = 0;
  Status s = j_->Replay(0, [&](const Record& r) {
    if (++calls == 10) return Status::Busy("stop here");
    return Status::OK();
  });
  EXPECT_TRUE(s.IsBusy());
  EXPECT_EQ(s.message(), "stop here");
  EXPECT_EQ(calls, 10);
}

TEST_F(JournalTest, SegmentRotationAndReplayAcrossSegments) {
  segment_size_ = 4096;
  write_buffer_ = 1000;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 300; i++) {
    recs.push_back(
        Append(i, i % 11 == 0 ? 0 : 50 + (i * 7) % 400, static_cast<RecordType>(1 + i % 3)));
  }
  auto ids = j_->SegmentIds();
  ASSERT_GT(ids.size(), 10u);
  for (size_t i = 0; i < ids.size(); i++) EXPECT_EQ(ids[i], i + 1);
  EXPECT_EQ(j_->ActiveSegment(), ids.back());
  EXPECT_EQ(recs.back().loc.segment, ids.back());
  for (const auto& a : recs) ExpectReadable(a);
  // Replays that start in every segment, while part of the journal is in memory.
  for (uint64_t after = 0; after < 300; after += 13) {
    auto got = ReplayAll(after);
    ASSERT_EQ(got.size(), 300 - after);
    for (size_t i = 0; i < got.size(); i++) {
      ASSERT_EQ(got[i].lsn, after + 1 + i);
      ASSERT_EQ(got[i].payload, recs[after + i].payload);
      ASSERT_EQ(got[i].loc.segment, recs[after + i].loc.segment);
    }
  }
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  // Every sealed segment fits in segment_size, ends with an empty kSegmentEnd that repeats the
  // segment's last LSN, and the next segment's header starts at the following LSN.
  for (size_t i = 0; i + 1 < ids.size(); i++) {
    std::string seg = ReadRaw(SegPath(ids[i]));
    ASSERT_LE(seg.size(), 4096u);
    const char* end = seg.data() + seg.size() - kRecordHeaderSize;
    format::RecordHeader h;
    ASSERT_TRUE(format::DecodeRecordHeader(end, &h));
    EXPECT_EQ(h.type, format::kTypeSegmentEnd);
    EXPECT_EQ(h.length, 0u);
    std::string next = ReadRaw(SegPath(ids[i + 1]));
    format::SegmentHeader nh;
    std::string why;
    ASSERT_EQ(format::DecodeSegmentHeader(next, &nh, &why), format::HeaderProblem::kNone);
    EXPECT_EQ(nh.first_lsn, h.lsn + 1);
    EXPECT_EQ(nh.segment_id, ids[i + 1]);
  }
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 300u);
  EXPECT_EQ(j_->SegmentIds(), ids);
  for (const auto& a : recs) ExpectReadable(a);
  auto all = ReplayAll();
  ASSERT_EQ(all.size(), 300u);
  for (size_t i = 0; i < all.size(); i++) EXPECT_EQ(all[i].type, recs[i].type);
}

TEST_F(JournalTest, RemoveSegmentsFreesOnlyWhatIsSafe) {
  segment_size_ = 4096;
  write_buffer_ = 1000;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 120; i++) recs.push_back(Append(i, 200));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  auto ids = j_->SegmentIds();
  ASSERT_GE(ids.size(), 6u);
  const uint64_t active = j_->ActiveSegment();
  // The last LSN of segments 2 and 3: one before segment 4's first record.
  uint64_t last_of_3 = 0;
  for (const auto& a : recs)
    if (a.loc.segment == 3) last_of_3 = a.lsn;
  ASSERT_GT(last_of_3, 0u);

  // Refused, and nothing removed: the active segment.
  EXPECT_TRUE(j_->RemoveSegments({2, active}, UINT64_MAX, nullptr).IsInvalidArgument());
  EXPECT_EQ(j_->SegmentIds(), ids);
  // Segment 3 holds an LSN past max_lsn: it stays.
  std::vector<uint64_t> removed;
  ASSERT_TRUE(j_->RemoveSegments({2, 3}, last_of_3 - 1, &removed).ok());
  EXPECT_EQ(removed, (std::vector<uint64_t>{2}));
  EXPECT_TRUE(fs::exists(SegPath(3)));
  ASSERT_TRUE(j_->RemoveSegments({2, 3, 999}, last_of_3, &removed).ok());
  EXPECT_EQ(removed, (std::vector<uint64_t>{2, 3}));
  EXPECT_FALSE(fs::exists(SegPath(2)));
  EXPECT_FALSE(fs::exists(SegPath(3)));
  for (const auto& a : recs) {
    if (a.loc.segment == 2 || a.loc.segment == 3) {
      std::string got;
      EXPECT_FALSE(j_->Read(a.loc, &got).ok());
    } else {
      ExpectReadable(a);
    }
  }
  // Replays after the removed range work; one that would cross the gap says so.
  auto tail = ReplayAll(last_of_3);
  ASSERT_EQ(tail.size(), 120 - last_of_3);
  EXPECT_EQ(tail.front().lsn, last_of_3 + 1);
  Status crossing;
  ReplayAll(0, &crossing);
  EXPECT_FALSE(crossing.ok());

  // Reopen with the gap: recovery and appends carry on.
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), 120u);
  Appended more = Append(999, 100);
  EXPECT_EQ(more.lsn, 121u);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_TRUE(Open().ok());
  ExpectReadable(more);
  EXPECT_EQ(ReplayAll(last_of_3).size(), 121 - last_of_3);
}

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

// With keep_written the newest records are read from memory (what the page cache did for a
// journal written through it), within the budget: with every segment zeroed on disk the
// newest records still read back and the oldest are Corruption. A removed segment's records
// leave memory with it.
TEST_F(JournalTest, TheNewestWrittenRecordsAreReadFromMemoryWithinTheBudget) {
  keep_written_ = 64 << 10;
  segment_size_ = 64 << 10;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 100; i++) {
    recs.push_back(Append(i, 2000));
    if (i % 5 == 4) {
      ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());  // a group commit: a small chunk
    }
  }
  EXPECT_LE(j_->KeptBytes(), uint64_t{64} << 10);
  EXPECT_GE(j_->KeptBytes(), uint64_t{40} << 10) << "small chunks are kept at their size";
  const std::vector<uint64_t> ids = j_->SegmentIds();
  ASSERT_GE(ids.size(), 3u);
  for (uint64_t id : ids) {
    std::string raw = ReadRaw(SegPath(id));
    std::fill(raw.begin() + kSegmentHeaderSize, raw.end(), '\0');
    WriteRaw(SegPath(id), raw);
  }
  for (int i = 80; i < 100; i++) ExpectReadable(recs[i]);
  std::string got;
  EXPECT_TRUE(j_->Read(recs[0].loc, &got).IsCorruption()) << "the oldest come from the disk";
  Status rs;
  ReplayAll(0, &rs);
  EXPECT_TRUE(rs.IsCorruption()) << "Replay reads the disk: " << rs.ToString();

  // The newest record of a sealed segment that is still kept, then its segment removed.
  const Appended* sealed = nullptr;
  for (const auto& a : recs)
    if (a.loc.segment < j_->ActiveSegment()) sealed = &a;
  ASSERT_NE(sealed, nullptr);
  ASSERT_TRUE(j_->Read(sealed->loc, &got).ok()) << "kept: the budget reaches back that far";
  const uint64_t kept = j_->KeptBytes();
  std::vector<uint64_t> removed;
  ASSERT_TRUE(j_->RemoveSegments({sealed->loc.segment}, j_->LastLsn(), &removed).ok());
  ASSERT_EQ(removed, (std::vector<uint64_t>{sealed->loc.segment}));
  EXPECT_LT(j_->KeptBytes(), kept);
  EXPECT_FALSE(j_->Read(sealed->loc, &got).ok()) << "a removed segment's record from memory";
}

// WillRead: a hint per run of nearby records on disk, one segment at a time; records in
// memory (the open write buffer, kept chunks) and locations that name no record get none.
TEST_F(JournalTest, WillReadHintsEachRunOfRecordsOnDiskOnce) {
  segment_size_ = 256 << 10;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 200; i++) recs.push_back(Append(i, 2000));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  const Appended buffered = Append(1000, 2000);  // not written yet: in the write buffer
  ASSERT_EQ(recs[0].loc.segment, 1u);
  ASSERT_EQ(recs[60].loc.segment, 1u);
  ASSERT_GT(recs[60].loc.offset, recs[3].loc.offset + (64 << 10)) << "too near to be joined";
  ASSERT_EQ(recs[150].loc.segment, 2u);
  auto end = [](const Appended& a) { return a.loc.offset + kRecordHeaderSize + a.loc.length; };

  j_->WillRead({recs[150].loc, recs[3].loc, buffered.loc, recs[0].loc, recs[60].loc, recs[1].loc,
                Location{0, 4096, 10}, Location{999, 4096, 10}, Location{1, 0, 10},
                Location{1, UINT64_MAX - 10, 100}});
  const auto hints = env_.hints();
  ASSERT_EQ(hints.size(), 3u);
  EXPECT_EQ(hints[0].path, SegPath(1));
  EXPECT_EQ(hints[0].offset, recs[0].loc.offset);
  EXPECT_EQ(hints[0].n, end(recs[3]) - recs[0].loc.offset) << "records 0, 1 and 3 as one";
  EXPECT_EQ(hints[1].path, SegPath(1));
  EXPECT_EQ(hints[1].offset, recs[60].loc.offset);
  EXPECT_EQ(hints[1].n, end(recs[60]) - recs[60].loc.offset);
  EXPECT_EQ(hints[2].path, SegPath(2));
  EXPECT_EQ(hints[2].offset, recs[150].loc.offset);
  EXPECT_EQ(hints[2].n, end(recs[150]) - recs[150].loc.offset);
  for (const Appended& a : {recs[0], recs[3], recs[60], recs[150], buffered}) ExpectReadable(a);

  // A removed segment is not reopened for a hint.
  ASSERT_TRUE(j_->RemoveSegments({1}, recs[149].lsn, nullptr).ok());
  j_->WillRead({recs[0].loc});
  EXPECT_EQ(env_.hints().size(), 3u);

  // Kept chunks are memory too.
  keep_written_ = 1 << 20;
  ASSERT_TRUE(Open().ok());
  const Appended kept = Append(2000, 2000);
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  ASSERT_GT(j_->KeptBytes(), 0u);
  const size_t before = env_.hints().size();
  j_->WillRead({kept.loc});
  EXPECT_EQ(env_.hints().size(), before);
  ExpectReadable(kept);
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

TEST_F(JournalTest, ReadOnlyOpen) {
  Options ro = Opts();
  ro.read_only = true;
  EXPECT_TRUE(Journal::Open(ro).status().IsNotFound());
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  j_.reset();
  const std::string path = SegPath(1);
  const auto torn_size = fs::file_size(path) - 7;
  fs::resize_file(path, torn_size);
  ASSERT_TRUE(Open(ro).ok());
  EXPECT_EQ(j_->LastLsn(), 4u);
  EXPECT_EQ(j_->DurableLsn(), 4u);
  EXPECT_EQ(fs::file_size(path), torn_size);  // nothing written, torn tail left for fsck
  EXPECT_EQ(ReplayAll().size(), 4u);
  ExpectReadable(recs[0]);
  uint64_t lsn;
  Location loc;
  EXPECT_EQ(j_->Append(RecordType::kData, "x", &lsn, &loc).code(), Status::Code::kNotSupported);
  EXPECT_TRUE(j_->Sync(UINT64_MAX).ok());  // nothing to do
}

TEST_F(JournalTest, ReadUnsyncedRecordFromBuffer) {
  write_buffer_ = 1 << 20;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 10; i++) recs.push_back(Append(i, 1000));
  EXPECT_EQ(fs::file_size(SegPath(1)), kSegmentHeaderSize);  // nothing has reached the file
  for (const auto& a : recs) ExpectReadable(a);
  EXPECT_EQ(ReplayAll().size(), 10u);
  // A bogus location is never served from memory by accident.
  std::string got;
  Location bad = recs[3].loc;
  bad.length += 1;
  EXPECT_TRUE(j_->Read(bad, &got).IsCorruption());
  bad = recs[3].loc;
  bad.offset += 1;
  EXPECT_TRUE(j_->Read(bad, &got).IsCorruption());
  bad.segment = 7;
  EXPECT_TRUE(j_->Read(bad, &got).IsInvalidArgument());
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

TEST_F(JournalTest, FailedSyncIsSticky) {
  ASSERT_TRUE(Open().ok());
  Appended a = Append(1, 100);
  ASSERT_TRUE(j_->Sync(1).ok());
  Appended b = Append(2, 100);
  env_.SetFailSync(true);
  Status s = j_->Sync(2);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_EQ(s.ToErrno(), EIO);
  EXPECT_EQ(j_->DurableLsn(), 1u);
  env_.ClearFaults();  // never retried, even when the disk "recovers"
  EXPECT_TRUE(j_->error().IsIOError());
  uint64_t lsn;
  Location loc;
  Status as = j_->Append(RecordType::kData, "x", &lsn, &loc);
  EXPECT_EQ(as.code(), Status::Code::kAborted);
  EXPECT_NE(as.message().find("journal is in a failed state after"), std::string::npos);
  EXPECT_NE(as.message().find("remount to recover"), std::string::npos);
  EXPECT_NE(as.message().find("fdatasync"), std::string::npos) << as.message();
  EXPECT_EQ(j_->Sync(2).code(), Status::Code::kAborted);
  ExpectReadable(a);  // reads keep working
  ExpectReadable(b);
  ASSERT_TRUE(Open().ok());  // remount
  EXPECT_GE(j_->LastLsn(), 1u);
  Appended c = Append(3, 10);
  EXPECT_EQ(c.lsn, j_->LastLsn());
  EXPECT_TRUE(j_->Sync(c.lsn).ok());
}

TEST_F(JournalTest, FailedWriteIsSticky) {
  write_buffer_ = 0;  // every append writes
  ASSERT_TRUE(Open().ok());
  Append(1, 100);
  env_.SetFailWrites(true);
  uint64_t lsn;
  Location loc;
  Status s = j_->Append(RecordType::kData, "abc", &lsn, &loc);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  env_.ClearFaults();
  EXPECT_EQ(j_->Append(RecordType::kData, "abc", &lsn, &loc).code(), Status::Code::kAborted);
  EXPECT_EQ(j_->Sync(UINT64_MAX).code(), Status::Code::kAborted);
}

TEST_F(JournalTest, NoSpaceIsSticky) {
  segment_size_ = 8192;
  write_buffer_ = 0;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  for (int i = 0; i < 5; i++) recs.push_back(Append(i, 100));
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  env_.SetNoSpaceAfter(1000);
  Status s;
  int appended = 0;
  for (int i = 0; i < 100 && s.ok(); i++) {
    uint64_t lsn;
    Location loc;
    std::string p = MakePayload(100 + i, 100);
    s = j_->Append(RecordType::kData, p, &lsn, &loc);
    if (s.ok()) recs.push_back({lsn, loc, p, RecordType::kData});
    appended++;
  }
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_EQ(s.ToErrno(), ENOSPC);
  EXPECT_GT(appended, 5);
  uint64_t lsn;
  Location loc;
  EXPECT_EQ(j_->Append(RecordType::kData, "x", &lsn, &loc).code(), Status::Code::kAborted);
  EXPECT_EQ(j_->Sync(UINT64_MAX).code(), Status::Code::kAborted);
  env_.ClearFaults();
  // Remount: the half-written record is a torn tail; everything written before is intact.
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), recs.size());
  for (const auto& a : recs) ExpectReadable(a);
  EXPECT_EQ(Append(1, 10).lsn, recs.size() + 1);
  EXPECT_TRUE(j_->Sync(UINT64_MAX).ok());
}

TEST_F(JournalTest, NoSpaceWhileCreatingSegmentIsSticky) {
  segment_size_ = 4096;
  write_buffer_ = 0;
  ASSERT_TRUE(Open().ok());
  std::vector<Appended> recs;
  while (j_->ActiveSegment() == 1) recs.push_back(Append(recs.size(), 300));
  // Allow just the seal: the next segment's header cannot be written.
  uint64_t lsn;
  Location loc;
  while (true) {
    uint64_t used = recs.back().loc.offset + kRecordHeaderSize + 300;
    if (used + kRecordHeaderSize + 300 + kRecordHeaderSize > 4096) break;
    recs.push_back(Append(recs.size(), 300));
  }
  env_.SetNoSpaceAfter(kRecordHeaderSize);  // the kSegmentEnd record fits, the header not
  std::string p = MakePayload(999, 300);
  Status s = j_->Append(RecordType::kData, p, &lsn, &loc);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_EQ(j_->Append(RecordType::kData, "x", &lsn, &loc).code(), Status::Code::kAborted);
  env_.ClearFaults();
  j_.reset();
  env_.DropUnsyncedData();
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(j_->LastLsn(), recs.size());
  for (const auto& a : recs) ExpectReadable(a);
}

TEST_F(JournalTest, ConcurrentAppendersAndSyncers) {
  segment_size_ = 256 << 10;
  write_buffer_ = 16 << 10;
  keep_written_ = 64 << 10;  // reads hit kept chunks, pending ones and the disk
  ASSERT_TRUE(Open().ok());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  const uint64_t syncs_before = env_.sync_count();
  std::atomic<uint64_t> sync_calls{0};
  std::atomic<bool> done{false};
  std::mutex mu;
  std::vector<Appended> all;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; i++) {
        uint64_t seed = uint64_t(t) * 100000 + i;
        Appended a{0, {}, MakePayload(seed, 100 + (seed * 37) % 3000), RecordType::kData};
        Status s = j_->Append(a.type, a.payload, &a.lsn, &a.loc);
        ASSERT_TRUE(s.ok()) << s.ToString();
        std::string got;
        ASSERT_TRUE(j_->Read(a.loc, &got).ok());  // immediately readable
        ASSERT_EQ(got, a.payload);
        if (i % 2 == 0) {
          sync_calls++;
          ASSERT_TRUE(j_->Sync(a.lsn).ok());
          ASSERT_GE(j_->DurableLsn(), a.lsn);
        }
        std::lock_guard<std::mutex> l(mu);
        all.push_back(std::move(a));
      }
    });
  }
  // A reader and a replayer running alongside.
  std::thread reader([&] {
    std::mt19937 rng(1);
    while (!done) {
      Appended a;
      {
        std::lock_guard<std::mutex> l(mu);
        if (all.empty()) continue;
        a = all[rng() % all.size()];
      }
      std::string got;
      Status s = j_->Read(a.loc, &got);
      ASSERT_TRUE(s.ok()) << s.ToString();
      ASSERT_EQ(got, a.payload);
      uint64_t prev = 0;
      s = j_->Replay(j_->LastLsn() > 50 ? j_->LastLsn() - 50 : 0, [&](const Record& r) {
        if (prev != 0 && r.lsn != prev + 1) return Status::Corruption("gap");
        prev = r.lsn;
        return Status::OK();
      });
      ASSERT_TRUE(s.ok()) << s.ToString();
      // Every segment below ActiveSegment() is complete on disk (safe to ship or upload).
      uint64_t active = j_->ActiveSegment();
      if (active > 1) {
        std::string seg = ReadRaw(SegPath(active - 1));
        ASSERT_GE(seg.size(), kSegmentHeaderSize + kRecordHeaderSize);
        format::RecordHeader h;
        ASSERT_TRUE(format::DecodeRecordHeader(seg.data() + seg.size() - kRecordHeaderSize, &h));
        ASSERT_EQ(h.type, format::kTypeSegmentEnd) << "segment " << active - 1;
        auto ids = j_->SegmentIds();
        ASSERT_GE(ids.back(), active);
        ASSERT_TRUE(fs::exists(SegPath(ids.back())));
      }
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  reader.join();

  ASSERT_EQ(all.size(), size_t{kThreads * kPerThread});
  const uint64_t fdatasyncs = env_.sync_count() - syncs_before;
  EXPECT_LT(fdatasyncs, sync_calls.load()) << "no group commit happened";
  std::printf("  %llu Sync calls, %llu fdatasyncs, %zu segments\n",
              static_cast<unsigned long long>(sync_calls.load()),
              static_cast<unsigned long long>(fdatasyncs), j_->SegmentIds().size());
  std::set<uint64_t> lsns;
  for (const auto& a : all) lsns.insert(a.lsn);
  ASSERT_EQ(lsns.size(), all.size());
  EXPECT_EQ(*lsns.begin(), 1u);
  EXPECT_EQ(*lsns.rbegin(), all.size());
  ASSERT_TRUE(j_->Sync(UINT64_MAX).ok());
  for (const auto& a : all) ExpectReadable(a);
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.lsn < y.lsn; });
  ASSERT_TRUE(Open().ok());
  auto replayed = ReplayAll();
  ASSERT_EQ(replayed.size(), all.size());
  for (size_t i = 0; i < all.size(); i++) EXPECT_EQ(replayed[i].payload, all[i].payload);
}

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
