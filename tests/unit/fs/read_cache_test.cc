// The read cache of cold ranges: a record is served from the entry that covers it, entries
// survive a reopen, damaged or short entries are dropped, and the capacity holds.
#include "fs/read_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace strata::fs {
namespace {

namespace sfs = std::filesystem;

class ReadCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-rc-XXXXXX";
    root_ = mkdtemp(tmpl);
    for (int i = 0; i < 3000; i++) range_.push_back(static_cast<char>('a' + i % 26));
  }
  void TearDown() override { sfs::remove_all(root_); }
  std::unique_ptr<ReadCache> Open(uint64_t capacity) {
    auto c = std::make_unique<ReadCache>(Env::Default(), root_ + "/cache", capacity);
    EXPECT_TRUE(c->Open().ok());
    return c;
  }
  size_t Files() const {
    size_t n = 0;
    for (const auto& e : sfs::directory_iterator(root_ + "/cache")) n += e.is_regular_file();
    return n;
  }

  std::string root_;
  std::string range_;
};

TEST_F(ReadCacheTest, RecordsAreServedFromTheRangeThatCoversThem) {
  auto c = Open(1 << 20);
  c->Put(7, 1000, range_);  // bytes [1000, 4000) of segment 7
  EXPECT_EQ(Files(), 1u);
  EXPECT_EQ(c->bytes(), range_.size());
  EXPECT_EQ(*c->Get(7, 1000, 100), range_.substr(0, 100));
  EXPECT_EQ(*c->Get(7, 2500, 1500), range_.substr(1500));
  EXPECT_FALSE(c->Get(7, 2500, 1501));        // runs past the end
  EXPECT_FALSE(c->Get(7, 999, 10));           // starts before it
  EXPECT_FALSE(c->Get(8, 1000, 10));          // another segment
  c->Put(7, 2000, range_.substr(1000, 500));  // already covered: nothing written
  EXPECT_EQ(Files(), 1u);
  EXPECT_EQ(c->hits(), 2u);
  EXPECT_EQ(c->misses(), 3u);

  c = Open(1 << 20);  // reopened: the index comes back from the directory
  EXPECT_EQ(c->bytes(), range_.size());
  EXPECT_EQ(*c->Get(7, 3990, 10), range_.substr(2990));
}

TEST_F(ReadCacheTest, OverlappingRangesAndDrop) {
  auto c = Open(1 << 20);
  c->Put(1, 0, range_.substr(0, 2000));
  c->Put(1, 1000, range_.substr(1000, 2000));  // overlaps the first: [1000, 3000)
  EXPECT_EQ(*c->Get(1, 500, 1000), range_.substr(500, 1000));
  EXPECT_EQ(*c->Get(1, 1500, 1400), range_.substr(1500, 1400));
  c->Drop(1, 1500);  // damaged: every entry holding byte 1500 goes
  EXPECT_FALSE(c->Get(1, 1500, 1));
  EXPECT_EQ(c->bytes(), 0u);
  EXPECT_EQ(Files(), 0u);
}

// A record that runs past a cached block is fetched with the block and its file's tail: the
// longer range replaces the block. Entries of single records (readahead 0, or an older cache)
// in front of a record do not hide the block that covers it.
TEST_F(ReadCacheTest, LongerRangeReplacesAShorterOneAndSmallEntriesHideNothing) {
  auto c = Open(1 << 20);
  c->Put(1, 0, range_.substr(0, 1000));
  EXPECT_FALSE(c->Get(1, 900, 300));
  c->Put(1, 0, range_.substr(0, 2000));
  EXPECT_EQ(*c->Get(1, 900, 300), range_.substr(900, 300));
  EXPECT_EQ(Files(), 1u);
  EXPECT_EQ(c->bytes(), 2000u);
  c->Put(1, 0, range_.substr(0, 1500));  // shorter: kept out
  EXPECT_EQ(c->bytes(), 2000u);

  for (uint64_t at = 0; at < 1000; at += 100) c->Put(2, at, range_.substr(at, 100));
  c->Put(2, 0, range_);  // the block, over the first record's entry
  EXPECT_EQ(*c->Get(2, 1500, 100), range_.substr(1500, 100));
  EXPECT_EQ(*c->Get(2, 950, 50), range_.substr(950, 50));
  c = Open(1 << 20);  // and after a reopen
  EXPECT_EQ(*c->Get(2, 2900, 100), range_.substr(2900, 100));
}

TEST_F(ReadCacheTest, ShortEntryIsDroppedAndCapacityHolds) {
  auto c = Open(20000);
  c->Put(2, 0, range_);
  sfs::resize_file(root_ + "/cache/0000000000000002-0000000000000000", 100);
  EXPECT_FALSE(c->Get(2, 0, 3000));  // the file lost bytes: a miss, and the entry is gone
  EXPECT_EQ(c->bytes(), 0u);
  for (uint64_t s = 0; s < 10; s++) c->Put(s, 0, range_);
  EXPECT_LE(c->bytes(), 20000u);
  EXPECT_EQ(Files() * range_.size(), c->bytes());
  EXPECT_TRUE(c->Get(9, 0, 10));   // the newest stay
  EXPECT_FALSE(c->Get(0, 0, 10));  // the oldest went
  std::ofstream(root_ + "/cache/0000000000000009-0000000000000000.123.tmp") << "half";
  c = Open(20000);  // an interrupted put's temp file is removed at open
  EXPECT_EQ(Files() * range_.size(), c->bytes());
}

}  // namespace
}  // namespace strata::fs
