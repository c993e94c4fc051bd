#include "journal/journal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "journal/format.h"
#include "tests/unit/journal/journal_fixture.h"
#include "tests/util/fault_env.h"

namespace strata::journal {
namespace {

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

}  // namespace
}  // namespace strata::journal
