#include "meta/meta_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "meta/chunk_row_cache.h"

namespace strata::meta {
namespace {

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-meta-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Open(true);
    Op root;
    root.kind = OpKind::kCreate;
    root.ino = 1;
    root.mode = S_IFDIR | 0755;
    root.ctime = 1;
    ASSERT_TRUE(Apply(root).ok());
  }
  void TearDown() override {
    m_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(bool create) {
    auto r = MetaStore::Open(dir_ + "/meta.db", 4096, create, false);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    m_ = std::move(r).value();
  }
  Status Apply(const Op& op) { return m_->Apply(op, ++lsn_); }
  Op Create(uint64_t ino, uint64_t parent, const std::string& name, uint32_t mode) {
    Op op;
    op.kind = OpKind::kCreate;
    op.ino = ino;
    op.parent = parent;
    op.name = name;
    op.mode = mode;
    op.ctime = 100;
    return op;
  }
  std::string dir_;
  std::unique_ptr<MetaStore> m_;
  uint64_t lsn_ = 0;
};

TEST_F(MetaStoreTest, OpEncodingRoundTrips) {
  Op op = Create(7, 1, "enc-name", S_IFREG | 0644);
  op.blob = std::string("\0\1\2", 3);
  op.version = 99;
  Op back;
  ASSERT_TRUE(DecodeOp(EncodeOp(op), &back).ok());
  EXPECT_EQ(back.ino, 7u);
  EXPECT_EQ(back.name, "enc-name");
  EXPECT_EQ(back.blob, op.blob);
  EXPECT_EQ(back.version, 99u);
}

TEST_F(MetaStoreTest, TruncatedOpIsCorruption) {
  std::string enc = EncodeOp(Create(7, 1, "n", S_IFREG));
  Op back;
  EXPECT_TRUE(DecodeOp(enc.substr(0, enc.size() - 1), &back).IsCorruption());
  EXPECT_TRUE(DecodeOp(enc + "x", &back).IsCorruption());
}

TEST_F(MetaStoreTest, CreateLinkUnlinkCountsLinks) {
  ASSERT_TRUE(Apply(Create(2, 1, "a", S_IFREG | 0644)).ok());
  Op link;
  link.kind = OpKind::kLink;
  link.ino = 2;
  link.parent = 1;
  link.name = "b";
  ASSERT_TRUE(Apply(link).ok());
  EXPECT_EQ((*m_->GetInode(2))->nlink, 2u);
  Op un;
  un.kind = OpKind::kUnlink;
  un.parent = 1;
  un.name = "a";
  ASSERT_TRUE(Apply(un).ok());
  EXPECT_EQ((*m_->GetInode(2))->nlink, 1u);
  EXPECT_FALSE(m_->LookupEntry(1, "a")->has_value());
  EXPECT_TRUE(m_->LookupEntry(1, "b")->has_value());
}

TEST_F(MetaStoreTest, LookupEntryInodeJoinsTheEntryAndItsInode) {
  ASSERT_TRUE(Apply(Create(2, 1, "a", S_IFREG | 0640)).ok());
  auto r = m_->LookupEntryInode(1, "a");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->entry.ino, 2u);
  EXPECT_EQ((*r)->entry.cookie, (*m_->LookupEntry(1, "a"))->cookie);
  ASSERT_TRUE((*r)->inode.has_value());
  auto direct = *m_->GetInode(2);
  EXPECT_EQ((*r)->inode->mode, direct->mode);
  EXPECT_EQ((*r)->inode->nlink, direct->nlink);
  EXPECT_EQ((*r)->inode->ctime, direct->ctime);
  EXPECT_FALSE(m_->LookupEntryInode(1, "b")->has_value());
  EXPECT_FALSE(m_->LookupEntryInode(2, "a")->has_value());

  // An entry whose inode row is gone comes back without an inode (damage, not absence).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/meta.db").c_str(), &db), SQLITE_OK);
  ASSERT_TRUE(m_->Commit().ok());
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM inodes WHERE ino = 2", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  r = m_->LookupEntryInode(1, "a");
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_FALSE((*r)->inode.has_value());
}

TEST_F(MetaStoreTest, DirectoryLinkCounts) {
  ASSERT_TRUE(Apply(Create(2, 1, "d", S_IFDIR | 0755)).ok());
  EXPECT_EQ((*m_->GetInode(1))->nlink, 3u);
  EXPECT_EQ((*m_->GetInode(2))->nlink, 2u);
  ASSERT_TRUE(Apply(Create(3, 1, "e", S_IFDIR | 0755)).ok());
  Op mv;
  mv.kind = OpKind::kRename;
  mv.parent = 1;
  mv.name = "e";
  mv.new_parent = 2;
  mv.new_name = "e";
  ASSERT_TRUE(Apply(mv).ok());
  EXPECT_EQ((*m_->GetInode(1))->nlink, 3u);
  EXPECT_EQ((*m_->GetInode(2))->nlink, 3u);
}

TEST_F(MetaStoreTest, RenameOverFileLeavesOrphan) {
  ASSERT_TRUE(Apply(Create(2, 1, "a", S_IFREG)).ok());
  ASSERT_TRUE(Apply(Create(3, 1, "b", S_IFREG)).ok());
  Op mv;
  mv.kind = OpKind::kRename;
  mv.parent = 1;
  mv.name = "a";
  mv.new_parent = 1;
  mv.new_name = "b";
  ASSERT_TRUE(Apply(mv).ok());
  EXPECT_EQ((*m_->LookupEntry(1, "b"))->ino, 2u);
  auto orphans = m_->Orphans();
  ASSERT_EQ(orphans->size(), 1u);
  EXPECT_EQ((*orphans)[0], 3u);
}

TEST_F(MetaStoreTest, ExchangeSwapsEntries) {
  ASSERT_TRUE(Apply(Create(2, 1, "a", S_IFREG)).ok());
  ASSERT_TRUE(Apply(Create(3, 1, "b", S_IFDIR | 0755)).ok());
  Op x;
  x.kind = OpKind::kRename;
  x.parent = 1;
  x.name = "a";
  x.new_parent = 1;
  x.new_name = "b";
  x.flags = 2;
  ASSERT_TRUE(Apply(x).ok());
  EXPECT_EQ((*m_->LookupEntry(1, "a"))->ino, 3u);
  EXPECT_EQ((*m_->LookupEntry(1, "b"))->ino, 2u);
}

TEST_F(MetaStoreTest, ChunksTruncateAndAccountStoredBytes) {
  ASSERT_TRUE(Apply(Create(2, 1, "f", S_IFREG)).ok());
  for (uint64_t i = 0; i < 4; i++) {
    Op c;
    c.kind = OpKind::kChunk;
    c.ino = 2;
    c.chunk_index = i;
    c.segment = 1;
    c.offset = 100 * i;
    c.stored_len = 100;
    c.logical_len = 4096;
    c.size = 4096 * (i + 1);
    ASSERT_TRUE(Apply(c).ok());
  }
  EXPECT_EQ((*m_->GetInode(2))->stored_bytes, 400u);
  Op t;
  t.kind = OpKind::kSetAttr;
  t.ino = 2;
  t.mask = kSetSize;
  t.size = 4096 + 10;
  ASSERT_TRUE(Apply(t).ok());
  EXPECT_EQ((*m_->GetInode(2))->stored_bytes, 200u);
  EXPECT_FALSE(m_->GetChunk(2, 2)->has_value());
  EXPECT_EQ((*m_->GetChunk(2, 1))->logical_len, 10u);
  EXPECT_EQ(m_->totals().stored_bytes, 200u);
}

Op StoredOp(OpKind kind, uint64_t index, uint64_t segment, uint64_t offset, uint32_t stored_len,
            uint64_t version) {
  Op c;
  c.kind = kind;
  c.ino = 2;
  c.chunk_index = index;
  c.segment = segment;
  c.offset = offset;
  c.stored_len = stored_len;
  c.logical_len = 4096;
  c.version = version;
  c.size = 4096 * (index + 1);
  return c;
}

// A patch lies over its chunk: counted on the chunk row, listed in order, accounted as stored
// bytes of its segment; moved by version; dropped with the chunk's next whole version, a
// truncate below it, and the inode.
TEST_F(MetaStoreTest, PatchesStackOnTheirChunkAndGoWithIt) {
  ASSERT_TRUE(Apply(Create(2, 1, "f", S_IFREG)).ok());
  EXPECT_TRUE(Apply(StoredOp(OpKind::kPatch, 0, 1, 0, 10, 5)).IsCorruption())
      << "a patch needs a stored chunk under it";
  for (uint64_t i = 0; i < 2; i++)
    ASSERT_TRUE(Apply(StoredOp(OpKind::kChunk, i, 1, 100 * i, 100, 10 + i)).ok());
  ASSERT_TRUE(Apply(StoredOp(OpKind::kPatch, 0, 1, 200, 10, 20)).ok());
  ASSERT_TRUE(Apply(StoredOp(OpKind::kPatch, 0, 2, 0, 20, 21)).ok());
  ASSERT_TRUE(Apply(StoredOp(OpKind::kPatch, 1, 2, 20, 30, 22)).ok());
  EXPECT_EQ((*m_->GetChunk(2, 0))->patches, 2u);
  EXPECT_EQ((*m_->GetChunk(2, 0))->version, 10u) << "the chunk row stays the base";
  auto p0 = *m_->ListPatches(2, 0);
  ASSERT_EQ(p0.size(), 2u);
  EXPECT_EQ(p0[0].version, 20u);
  EXPECT_EQ(p0[0].patches, 1u);
  EXPECT_EQ(p0[1].version, 21u);
  EXPECT_EQ(p0[1].segment, 2u);
  EXPECT_EQ(m_->ListPatches(2)->size(), 3u);
  EXPECT_EQ((*m_->GetInode(2))->stored_bytes, 260u);
  auto live = [&](uint64_t seg) {
    auto rows = m_->ListSegments();
    EXPECT_TRUE(rows.ok());
    for (const auto& r : *rows)
      if (r.id == seg) return r.live_bytes;
    return uint64_t{0};
  };
  EXPECT_EQ(live(1), 210u);
  EXPECT_EQ(live(2), 50u);

  // Moved by version: the second patch of chunk 0 goes to segment 7.
  Op mv;
  mv.kind = OpKind::kMoveChunks;
  mv.segment = 7;
  mv.size = 1000;
  mv.blob = EncodeMoveEntries({{2, 0, 21, 40, 20}});
  ASSERT_TRUE(Apply(mv).ok());
  EXPECT_EQ((*m_->ListPatches(2, 0))[1].segment, 7u);
  EXPECT_EQ((*m_->ListPatches(2, 0))[1].offset, 40u);
  EXPECT_EQ(live(2), 30u);
  EXPECT_EQ(live(7), 20u);

  // A whole new version of chunk 0 drops its patches.
  ASSERT_TRUE(Apply(StoredOp(OpKind::kChunk, 0, 3, 0, 100, 30)).ok());
  EXPECT_EQ((*m_->GetChunk(2, 0))->patches, 0u);
  EXPECT_TRUE(m_->ListPatches(2, 0)->empty());
  EXPECT_EQ(live(7), 0u);
  EXPECT_EQ((*m_->GetInode(2))->stored_bytes, 230u);

  // A truncate below chunk 1 drops it and its patch.
  Op t;
  t.kind = OpKind::kSetAttr;
  t.ino = 2;
  t.mask = kSetSize;
  t.size = 100;
  ASSERT_TRUE(Apply(t).ok());
  EXPECT_TRUE(m_->ListPatches(2)->empty());
  EXPECT_EQ((*m_->GetInode(2))->stored_bytes, 100u);
  EXPECT_EQ(m_->totals().stored_bytes, 100u);
}

// A database from before patches (schema 2) is upgraded by a read-write open and refused,
// with what to do, by a read-only one.
TEST_F(MetaStoreTest, SchemaTwoIsUpgradedReadWriteAndRefusedReadOnly) {
  ASSERT_TRUE(Apply(Create(2, 1, "f", S_IFREG)).ok());
  ASSERT_TRUE(Apply(StoredOp(OpKind::kChunk, 0, 1, 0, 100, 10)).ok());
  ASSERT_TRUE(m_->Commit().ok());
  m_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/meta.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE patches; ALTER TABLE chunks DROP COLUMN patches; "
                         "UPDATE meta SET value = 2 WHERE key = 'schema_version';",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto ro = MetaStore::Open(dir_ + "/meta.db", 4096, false, true);
  ASSERT_FALSE(ro.ok());
  EXPECT_NE(ro.status().message().find("schema version 2: mount it read-write once"),
            std::string::npos)
      << ro.status().ToString();
  Open(false);
  EXPECT_EQ((*m_->GetChunk(2, 0))->version, 10u);
  ASSERT_TRUE(Apply(StoredOp(OpKind::kPatch, 0, 1, 100, 10, 11)).ok());
  EXPECT_EQ((*m_->GetChunk(2, 0))->patches, 1u);
}

TEST_F(MetaStoreTest, CommitPersistsAppliedLsnAndRollbackForgets) {
  ASSERT_TRUE(Apply(Create(2, 1, "kept", S_IFREG)).ok());
  ASSERT_TRUE(m_->Commit().ok());
  uint64_t committed = lsn_;
  ASSERT_TRUE(Apply(Create(3, 1, "lost", S_IFREG)).ok());
  m_.reset();  // closing without commit drops the open transaction, as a crash would
  Open(false);
  EXPECT_EQ(m_->applied_lsn(), committed);
  EXPECT_TRUE(m_->LookupEntry(1, "kept")->has_value());
  EXPECT_FALSE(m_->LookupEntry(1, "lost")->has_value());
  EXPECT_EQ(m_->next_ino(), 3u);
}

// SQLite rolls an open transaction back by itself after some errors (an I/O error, a full disk,
// no memory), in whatever statement hit them, a read included. The store notices at its next
// change or commit: the rows it cached from that transaction go, its counters come back to the
// committed state, and every later change fails (the filesystem then asks for a remount).
TEST_F(MetaStoreTest, ATransactionSQLiteRolledBackByItselfFailsEveryLaterChange) {
  ASSERT_TRUE(Apply(Create(2, 1, "kept", S_IFREG)).ok());
  ASSERT_TRUE(m_->Commit().ok());
  const uint64_t committed = lsn_;
  ASSERT_TRUE(Apply(Create(3, 1, "lost", S_IFREG)).ok());
  ASSERT_TRUE(m_->GetInode(3).ok() && m_->GetInode(3)->has_value());  // cached now
  ASSERT_TRUE(m_->ExecForTesting("ROLLBACK").ok());
  Status s = Apply(Create(4, 1, "after", S_IFREG));
  EXPECT_EQ(s.code(), Status::Code::kAborted) << s.ToString();
  EXPECT_NE(s.message().find("rolled back"), std::string::npos) << s.ToString();
  EXPECT_FALSE(m_->GetInode(3)->has_value()) << "a row of the lost transaction is still cached";
  EXPECT_FALSE(m_->LookupEntry(1, "after")->has_value()) << "applied outside a transaction";
  EXPECT_EQ(m_->applied_lsn(), committed);
  EXPECT_EQ(m_->Commit().code(), Status::Code::kAborted);
  m_.reset();
  Open(false);
  EXPECT_EQ(m_->applied_lsn(), committed);
  EXPECT_TRUE(m_->LookupEntry(1, "kept")->has_value());
  EXPECT_FALSE(m_->LookupEntry(1, "lost")->has_value());
}

TEST_F(MetaStoreTest, UnlinkOfMissingEntryIsCorruption) {
  Op un;
  un.kind = OpKind::kUnlink;
  un.parent = 1;
  un.name = "nope";
  EXPECT_TRUE(Apply(un).IsCorruption());
}

TEST_F(MetaStoreTest, ListEntriesIsStableUnderInsertAndDelete) {
  for (uint64_t i = 0; i < 10; i++) {
    std::string name = "n";  // not "n" + to_string(i): GCC 12 -Wrestrict false positive at -O2
    name += std::to_string(i);
    ASSERT_TRUE(Apply(Create(10 + i, 1, name, S_IFREG)).ok());
  }
  auto first = m_->ListEntries(1, 0, 5);
  ASSERT_EQ(first->size(), 5u);
  Op un;
  un.kind = OpKind::kUnlink;
  un.parent = 1;
  un.name = "n1";
  ASSERT_TRUE(Apply(un).ok());
  ASSERT_TRUE(Apply(Create(30, 1, "late", S_IFREG)).ok());
  auto rest = m_->ListEntries(1, first->back().cookie, 100);
  ASSERT_EQ(rest->size(), 6u);  // n5..n9 and the new entry, none repeated
  EXPECT_EQ(rest->back().name, "late");
}

TEST(ChunkRowCacheTest, RemembersHolesAndForgetsByChunkAndByInode) {
  ChunkRowCache c(100);
  std::optional<ChunkRow> row;
  EXPECT_FALSE(c.Find(2, 0, &row));
  ChunkRow r;
  r.index = 0;
  r.version = 7;
  c.Put(2, 0, r);
  c.Put(2, 1, std::nullopt);  // a hole
  c.Put(3, 0, r);
  ASSERT_TRUE(c.Find(2, 0, &row));
  EXPECT_EQ(row->version, 7u);
  ASSERT_TRUE(c.Find(2, 1, &row));
  EXPECT_FALSE(row.has_value());
  c.Forget(2, 0);
  EXPECT_FALSE(c.Find(2, 0, &row));
  EXPECT_TRUE(c.Find(2, 1, &row));
  c.ForgetInode(2);
  EXPECT_FALSE(c.Find(2, 1, &row));
  EXPECT_TRUE(c.Find(3, 0, &row)) << "another inode's rows stay";
  c.Put(UINT64_MAX, 5, r);
  c.ForgetInode(UINT64_MAX);
  EXPECT_FALSE(c.Find(UINT64_MAX, 5, &row));
  c.Clear();
  EXPECT_EQ(c.size(), 0u);
}

// At most two generations: rows used since the last turn survive it, the others go.
TEST(ChunkRowCacheTest, StaysBoundedAndKeepsWhatIsUsed) {
  ChunkRowCache c(4);
  for (uint64_t i = 0; i < 1000; i++) {
    c.Put(1, i, std::nullopt);
    std::optional<ChunkRow> row;
    ASSERT_TRUE(c.Find(1, 0, &row)) << "row 0 is read after every insert: " << i;
    EXPECT_LE(c.size(), 8u);
  }
  std::optional<ChunkRow> row;
  EXPECT_FALSE(c.Find(1, 500, &row));
}

// The cached chunk map answers what the database does after every kind of change, committed
// or rolled back: GetChunk (cached) is compared with ListChunks (a query) after each step of
// a seeded random sequence of chunks, patches, moves, truncations, deletions and rollbacks.
TEST_F(MetaStoreTest, CachedChunkRowsMatchTheDatabaseAfterEveryChange) {
  std::mt19937_64 rng(42);
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  std::vector<bool> exists(4, false);
  uint64_t version = 100;
  auto expect_same = [&](int step) {
    for (uint64_t ino = 2; ino < 6; ino++) {
      auto listed = m_->ListChunks(ino);
      ASSERT_TRUE(listed.ok());
      for (uint64_t idx = 0; idx < 6; idx++) {
        auto got = m_->GetChunk(ino, idx);
        ASSERT_TRUE(got.ok());
        const ChunkRow* want = nullptr;
        for (const ChunkRow& r : *listed)
          if (r.index == idx) want = &r;
        ASSERT_EQ(got->has_value(), want != nullptr) << "step " << step << " " << ino << "/" << idx;
        if (want == nullptr) continue;
        EXPECT_EQ((*got)->segment, want->segment) << "step " << step;
        EXPECT_EQ((*got)->offset, want->offset) << "step " << step;
        EXPECT_EQ((*got)->stored_len, want->stored_len) << "step " << step;
        EXPECT_EQ((*got)->version, want->version) << "step " << step;
        EXPECT_EQ((*got)->logical_len, want->logical_len) << "step " << step;
        EXPECT_EQ((*got)->patches, want->patches) << "step " << step;
      }
    }
  };
  for (int step = 0; step < 2000; step++) {
    const uint64_t ino = 2 + pick(4), idx = pick(6);
    if (!exists[ino - 2]) {
      ASSERT_TRUE(Apply(Create(ino, 1, std::to_string(ino), S_IFREG)).ok());
      exists[ino - 2] = true;
    }
    Op op = StoredOp(OpKind::kChunk, idx, 1 + pick(3), pick(1000),
                     static_cast<uint32_t>(50 + pick(100)), ++version);
    op.ino = ino;
    switch (pick(8)) {
      case 0:
      case 1:
        ASSERT_TRUE(Apply(op).ok());
        break;
      case 2: {  // a patch, where there is a chunk to patch
        auto base = m_->GetChunk(ino, idx);
        ASSERT_TRUE(base.ok());
        if (!base->has_value()) break;
        op.kind = OpKind::kPatch;
        ASSERT_TRUE(Apply(op).ok());
        break;
      }
      case 3: {  // the chunk, or one of its patches, moved to a placement segment
        auto base = m_->GetChunk(ino, idx);
        ASSERT_TRUE(base.ok());
        if (!base->has_value()) break;
        ChunkRow moved = **base;
        if (moved.patches > 0 && pick(2) == 0) moved = (*m_->ListPatches(ino, idx)).back();
        Op mv;
        mv.kind = OpKind::kMoveChunks;
        mv.segment = (uint64_t{1} << 40) + step;
        mv.size = 1000;
        mv.blob = EncodeMoveEntries({{ino, idx, moved.version, pick(1000), moved.stored_len}});
        ASSERT_TRUE(Apply(mv).ok());
        break;
      }
      case 4: {
        Op t;
        t.kind = OpKind::kSetAttr;
        t.ino = ino;
        t.mask = kSetSize;
        t.size = pick(6 * 4096);
        ASSERT_TRUE(Apply(t).ok());
        break;
      }
      case 5: {  // unlinked and deleted
        Op un;
        un.kind = OpKind::kUnlink;
        un.parent = 1;
        un.name = std::to_string(ino);
        ASSERT_TRUE(Apply(un).ok());
        Op del;
        del.kind = OpKind::kDeleteInode;
        del.ino = ino;
        ASSERT_TRUE(Apply(del).ok());
        exists[ino - 2] = false;
        break;
      }
      case 6:
        ASSERT_TRUE(m_->Commit().ok());
        break;
      case 7: {  // rolled back: the inodes created since the last commit are gone again
        m_->Rollback();
        for (uint64_t i = 2; i < 6; i++) exists[i - 2] = m_->GetInode(i)->has_value();
        break;
      }
    }
    expect_same(step);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(m_->cached_chunk_rows(), 0u) << "the rows read are kept";
}

// GetInode and HasXattrs answer from memory once they know an inode; every change to an inode
// row or its xattrs, a rollback included, must be seen at once. Each step compares them with
// statements that never use those answers (the lookup join, the xattr listing).
TEST_F(MetaStoreTest, CachedInodeRowsAndXattrPresenceMatchTheDatabaseAfterEveryChange) {
  std::mt19937_64 rng(7);
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  constexpr uint64_t kFirst = 2, kInodes = 5;
  std::vector<bool> exists(kInodes, false), linked(kInodes, false);
  auto LinkName = [](uint64_t ino) {  // not "l" + to_string: GCC 12's -Wrestrict false positive
    std::string n = "l";
    n += std::to_string(ino);
    return n;
  };
  uint64_t version = 100;
  int64_t now = 1000;
  auto expect_same = [&](int step) {
    for (uint64_t ino = kFirst; ino < kFirst + kInodes; ino++) {
      auto cached = m_->GetInode(ino);
      ASSERT_TRUE(cached.ok());
      auto joined = m_->LookupEntryInode(1, std::to_string(ino));
      ASSERT_TRUE(joined.ok());
      ASSERT_EQ(cached->has_value(), joined->has_value()) << "step " << step << " inode " << ino;
      auto has = m_->HasXattrs(ino);
      auto listed = m_->ListXattrs(ino);
      ASSERT_TRUE(has.ok() && listed.ok());
      EXPECT_EQ(*has, !listed->empty()) << "step " << step << " inode " << ino;
      if (!cached->has_value()) continue;
      ASSERT_TRUE((*joined)->inode.has_value());
      const InodeRow &got = **cached, &want = *(*joined)->inode;
      EXPECT_EQ(got.mode, want.mode) << "step " << step;
      EXPECT_EQ(got.nlink, want.nlink) << "step " << step;
      EXPECT_EQ(got.size, want.size) << "step " << step;
      EXPECT_EQ(got.mtime, want.mtime) << "step " << step;
      EXPECT_EQ(got.ctime, want.ctime) << "step " << step;
      EXPECT_EQ(got.stored_bytes, want.stored_bytes) << "step " << step;
    }
  };
  for (int step = 0; step < 3000; step++) {
    const uint64_t ino = kFirst + pick(kInodes), i = ino - kFirst;
    now++;
    if (!exists[i]) {
      Op c = Create(ino, 1, std::to_string(ino), pick(4) == 0 ? S_IFDIR | 0755 : S_IFREG | 0644);
      c.ctime = now;
      ASSERT_TRUE(Apply(c).ok());
      exists[i] = true;
      linked[i] = false;
    }
    auto row = m_->GetInode(ino);
    ASSERT_TRUE(row.ok() && row->has_value());
    const bool dir = S_ISDIR((*row)->mode);
    Op op;
    op.ino = ino;
    op.ctime = now;
    switch (pick(10)) {
      case 0:  // a second name, or its removal (files only)
        if (dir) break;
        op.kind = linked[i] ? OpKind::kUnlink : OpKind::kLink;
        op.parent = 1;
        op.name = LinkName(ino);
        ASSERT_TRUE(Apply(op).ok());
        linked[i] = !linked[i];
        break;
      case 1:
        op.kind = OpKind::kSetAttr;
        op.mask = kSetMode | kSetMtime | kSetCtime | (dir ? 0u : uint32_t{kSetSize});
        op.mode = static_cast<uint32_t>(pick(0777));
        op.mtime = now - 500;
        op.size = pick(3 * 4096);
        ASSERT_TRUE(Apply(op).ok());
        break;
      case 2:
        op.kind = OpKind::kSetXattr;
        op.name = pick(2) ? "x0" : "x1";
        op.blob = "v";
        ASSERT_TRUE(Apply(op).ok());
        break;
      case 3:
        op.kind = OpKind::kRemoveXattr;
        op.name = pick(2) ? "x0" : "x1";
        ASSERT_TRUE(Apply(op).ok());
        break;
      case 4: {  // data: size, mtime and stored bytes change
        if (dir) break;
        Op c = StoredOp(OpKind::kChunk, pick(3), 1, pick(1000),
                        static_cast<uint32_t>(50 + pick(100)), ++version);
        c.ino = ino;
        c.mtime = now;
        ASSERT_TRUE(Apply(c).ok());
        break;
      }
      case 5: {  // an entry made in the directory and removed: its times (and nlink)
        if (!dir) break;
        Op c = Create(100 + ino, ino, "sub", pick(2) ? S_IFDIR | 0755 : S_IFREG | 0644);
        c.ctime = now;
        ASSERT_TRUE(Apply(c).ok());
        Op un;
        un.kind = OpKind::kUnlink;
        un.parent = ino;
        un.name = "sub";
        un.ctime = now;
        ASSERT_TRUE(Apply(un).ok());
        Op del;
        del.kind = OpKind::kDeleteInode;
        del.ino = 100 + ino;
        ASSERT_TRUE(Apply(del).ok());
        break;
      }
      case 6: {  // every name gone, then the inode
        if (linked[i]) break;
        op.kind = OpKind::kUnlink;
        op.parent = 1;
        op.name = std::to_string(ino);
        ASSERT_TRUE(Apply(op).ok());
        Op del;
        del.kind = OpKind::kDeleteInode;
        del.ino = ino;
        ASSERT_TRUE(Apply(del).ok());
        exists[i] = false;
        break;
      }
      case 7:
        ASSERT_TRUE(m_->Commit().ok());
        break;
      case 8: {  // rolled back: whatever changed since the last commit is undone
        m_->Rollback();
        for (uint64_t j = 0; j < kInodes; j++) {
          exists[j] = m_->LookupEntryInode(1, std::to_string(kFirst + j))->has_value();
          linked[j] = m_->LookupEntryInode(1, LinkName(kFirst + j))->has_value();
        }
        break;
      }
      default:
        break;  // only read
    }
    expect_same(step);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace strata::meta
