// Small rewrites of stored chunks: journaled as patches over the chunk (only the written
// ranges), read back merged before and after the seal, across a reopen and a replay, capped
// per chunk, never over a chunk a truncate cut short, and checked like any record.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/coding.h"
#include "base/crc32c.h"
#include "fs/filesystem.h"
#include "meta/meta_store.h"
#include "tests/unit/fs/filesystem_fixture.h"

namespace strata::fs {
namespace {

class PatchTest : public FilesystemTest {
 protected:
  // The chunk rows and patch counts as stored, read with the filesystem closed; reopens it.
  meta::ChunkRow Chunk(uint64_t ino, uint64_t index) {
    fs_.reset();
    meta::ChunkRow c = ChunkOf(root_ + "/hot", ino, index);
    Reopen();
    return c;
  }
  std::vector<meta::ChunkRow> Patches(uint64_t ino) {
    fs_.reset();
    auto m = meta::MetaStore::Open(root_ + "/hot/meta.db", config_.chunk_size, false, true);
    EXPECT_TRUE(m.ok());
    auto p = (*m)->ListPatches(ino);
    EXPECT_TRUE(p.ok());
    m->reset();
    Reopen();
    return *p;
  }
  // Writes `bytes` at `at` through a handle of its own, into the model too.
  void WriteAt(uint64_t ino, uint64_t at, const std::string& bytes, std::string* model) {
    auto fh = fs_->Open(ino, O_RDWR);
    ASSERT_TRUE(fh.ok());
    ASSERT_TRUE(fs_->Write(ino, *fh, at, bytes).ok());
    ASSERT_TRUE(fs_->Release(ino, *fh).ok());
    if (model->size() < at + bytes.size()) model->resize(at + bytes.size(), '\0');
    model->replace(at, bytes.size(), bytes);
  }
  uint64_t cs() const { return config_.chunk_size; }
  // Flips a bit of a record's ciphertext (past the record header (20), chunk header (48) and
  // nonce (12)) and gives the record a matching checksum: damage only the seal can tell.
  // REQUIRES: the filesystem closed.
  void Damage(const meta::ChunkRow& r) {
    const auto at = static_cast<std::streamoff>(r.offset);
    std::fstream f(SegmentFile(root_ + "/hot", r.segment),
                   std::ios::in | std::ios::out | std::ios::binary);
    std::string record(20 + r.stored_len, '\0');
    f.seekg(at);
    f.read(record.data(), static_cast<std::streamsize>(record.size()));
    record[20 + 48 + 12 + 40] ^= 0x10;
    std::string crc;
    PutFixed32(&crc, crc32c::Mask(crc32c::Value(record.data() + 4, record.size() - 4)));
    record.replace(0, 4, crc);
    f.seekp(at);
    f.write(record.data(), static_cast<std::streamsize>(record.size()));
  }
};

TEST_F(PatchTest, SmallRewritesAreJournaledAsPatchesAndReadBackMerged) {
  std::string model = Random(4 * cs(), 1);
  uint64_t ino = CreateFile("series.dcm", model);
  const uint64_t base_version = Chunk(ino, 0).version;
  const uint64_t before = JournalBytes(root_ + "/hot");

  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  struct W {
    uint64_t at;
    size_t n;
  };
  // Chunk 0 twice, chunk 1 once, and a write across the end of chunk 1 into chunk 2.
  for (const W& w : {W{1000, 512}, W{5000, 7}, W{cs() + 5, 100}, W{2 * cs() - 150, 300}}) {
    std::string bytes = Random(w.n, static_cast<uint32_t>(w.at));
    ASSERT_TRUE(fs_->Write(ino, *fh, w.at, bytes).ok());
    model.replace(w.at, w.n, bytes);
  }
  // Before the seal: the written bytes come from the buffer, the rest from the stored chunk.
  EXPECT_EQ(ReadAll(ino), model);
  std::string piece(600, '\0');
  auto n = fs_->Read(ino, *fh, 900, piece.size(), piece.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(piece, model.substr(900, 600));
  ASSERT_TRUE(fs_->Fsync(ino, false).ok());
  const uint64_t journaled = JournalBytes(root_ + "/hot") - before;
  EXPECT_LT(journaled, cs()) << "three touched chunks must not be journaled whole";
  // What a kill -9 now leaves behind.
  const std::string crash = root_ + "/crash";
  sfs::copy(root_ + "/hot", crash, sfs::copy_options::recursive);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  EXPECT_EQ(ReadAll(ino), model);

  auto patches = Patches(ino);
  ASSERT_EQ(patches.size(), 3u);
  EXPECT_EQ(patches[0].index, 0u);
  EXPECT_EQ(patches[1].index, 1u);
  EXPECT_EQ(patches[2].index, 2u);
  const meta::ChunkRow c0 = Chunk(ino, 0);
  EXPECT_EQ(c0.version, base_version) << "the stored chunk stays as it was";
  EXPECT_EQ(c0.patches, 1u);
  EXPECT_EQ(Chunk(ino, 3).patches, 0u);
  EXPECT_EQ(ReadAll(ino), model);

  fs_.reset();
  sfs::remove(crash + "/lock");
  config_.hot_path = crash;
  Reopen();
  EXPECT_GT(fs_->replayed_records(), 0u);
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, PatchesAreCappedThenTheChunkIsWrittenWholeAgain) {
  std::string model = Random(cs(), 2);
  uint64_t ino = CreateFile("f", model);
  std::vector<uint32_t> counts;
  for (uint32_t round = 0; round < 10; round++) {
    WriteAt(ino, 97 * round, Random(64, round), &model);
    counts.push_back(Chunk(ino, 0).patches);
  }
  EXPECT_EQ(counts, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 8, 0, 1}));
  EXPECT_EQ(Patches(ino).size(), 1u) << "the whole version dropped the eight before it";
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, ARandomWriteThatReachesAChunksEndLeavesItBuffered) {
  // A sequential writer that fills a chunk seals it at its last byte; a random writer whose
  // write happens to end there goes on adding to the buffer: one patch, not one per such write.
  std::string model = Random(2 * cs(), 7);
  uint64_t ino = CreateFile("f", model);
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  for (const uint64_t at : {cs() - 100, uint64_t{1000}, cs() - 4096}) {
    std::string bytes = Random(100, static_cast<uint32_t>(at));
    ASSERT_TRUE(fs_->Write(ino, *fh, at, bytes).ok());
    model.replace(at, bytes.size(), bytes);
  }
  EXPECT_EQ(ReadAll(ino), model);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  auto patches = Patches(ino);
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].index, 0u);
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, RewritingMostOfAChunkWritesItWhole) {
  std::string model = Random(2 * cs(), 3);
  uint64_t ino = CreateFile("f", model);
  const uint64_t version = Chunk(ino, 0).version;
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  for (uint64_t at = 0; at < cs(); at += 2000) {  // 1,000 of every 2,000 bytes, and more
    std::string bytes = Random(1100, static_cast<uint32_t>(at));
    ASSERT_TRUE(fs_->Write(ino, *fh, at, bytes).ok());
    model.replace(at, bytes.size(), bytes);
  }
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  const meta::ChunkRow c = Chunk(ino, 0);
  EXPECT_NE(c.version, version);
  EXPECT_EQ(c.patches, 0u);
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, ManyScatteredWritesToOneChunkAreMergedBeforeTheSeal) {
  // More separate ranges than a lazy chunk keeps: it is read and made whole at the write.
  std::string model = Random(cs(), 4);
  uint64_t ino = CreateFile("f", model);
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  for (uint64_t at = 0; at + 3 < cs(); at += 100) {
    ASSERT_TRUE(fs_->Write(ino, *fh, at, "abc").ok());
    model.replace(at, 3, "abc");
  }
  EXPECT_EQ(ReadAll(ino), model);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  EXPECT_EQ(Chunk(ino, 0).patches, 0u) << "the chunk was sealed whole";
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, ATruncateIntoAPatchedChunkKeepsItsTailZeroWhenTheFileGrows) {
  std::string model = Random(2 * cs(), 5);
  uint64_t ino = CreateFile("f", model);
  WriteAt(ino, 9000, Random(100, 6), &model);
  ASSERT_EQ(Chunk(ino, 0).patches, 1u);
  SetAttrRequest t;
  t.size = 5000;
  ASSERT_TRUE(fs_->SetAttr(ino, t, Caller{}).ok());
  model.resize(5000);
  WriteAt(ino, 2 * cs(), "grown", &model);
  EXPECT_EQ(ReadAll(ino), model) << "the patch's bytes past the cut came back";
  // A small write into the cut chunk now rewrites it whole: no patch over a shortened chunk.
  WriteAt(ino, 100, "x", &model);
  EXPECT_EQ(Chunk(ino, 0).patches, 0u);
  EXPECT_EQ(ReadAll(ino), model);
  Reopen();
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, ATruncateOfAnUnsealedRewriteCutsItToo) {
  std::string model = Random(2 * cs(), 7);
  uint64_t ino = CreateFile("f", model);
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  ASSERT_TRUE(fs_->Write(ino, *fh, 9000, Random(100, 8)).ok());  // buffered, not yet sealed
  SetAttrRequest t;
  t.size = 5000;
  ASSERT_TRUE(fs_->SetAttr(ino, t, Caller{}).ok());
  model.resize(5000);
  ASSERT_TRUE(fs_->Write(ino, *fh, 12000, "after").ok());
  model.resize(12000, '\0');
  model += "after";
  EXPECT_EQ(ReadAll(ino), model);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  EXPECT_EQ(ReadAll(ino), model);
  Reopen();
  EXPECT_EQ(ReadAll(ino), model);
}

TEST_F(PatchTest, AFlippedBitInAPatchIsEioNotData) {
  std::string model = Random(cs(), 9);
  uint64_t ino = CreateFile("victim", model);
  WriteAt(ino, 3000, Random(500, 10), &model);
  CreateFile("tail", "keeps the damaged record away from the journal tail");
  auto patches = Patches(ino);
  ASSERT_EQ(patches.size(), 1u);
  fs_.reset();
  Damage(patches[0]);
  Reopen();
  auto fh = fs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  std::string buf(100, '\0');
  auto n = fs_->Read(ino, *fh, 10000, buf.size(), buf.data());
  ASSERT_FALSE(n.ok()) << "bytes outside the patch must not be served from a damaged chunk";
  EXPECT_TRUE(n.status().IsCorruption()) << n.status().ToString();
  EXPECT_EQ(n.status().ToErrno(), EIO);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
}

// A partial write to a chunk that cannot take a patch (here the file's last, partial chunk)
// reads it at the write: a damaged chunk fails the write, rather than a later seal losing it.
TEST_F(PatchTest, AWriteOverADamagedChunkThatCannotTakeAPatchFailsAtOnce) {
  std::string model = Random(cs() + 5000, 11);
  uint64_t ino = CreateFile("victim", model);
  CreateFile("tail", "keeps the damaged record away from the journal tail");
  const meta::ChunkRow c1 = Chunk(ino, 1);
  fs_.reset();
  Damage(c1);
  Reopen();
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  auto w = fs_->Write(ino, *fh, cs() + 100, "0123456789");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().ToErrno(), EIO);
  EXPECT_TRUE(fs_->Write(ino, *fh, 100, "chunk 0 takes it").ok());
  model.replace(100, 16, "chunk 0 takes it");
  EXPECT_TRUE(fs_->Release(ino, *fh).ok());
  std::string head(cs(), '\0');
  fh = fs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  auto n = fs_->Read(ino, *fh, 0, head.size(), head.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(head, model.substr(0, cs()));
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
}

}  // namespace
}  // namespace strata::fs
