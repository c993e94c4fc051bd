// The filesystem model without a mount: namespace and data semantics, persistence across
// reopen, recovery of an unclean stop, integrity failures, and refusals that change nothing.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "meta/meta_store.h"
#include "meta/ops.h"
#include "tests/unit/fs/filesystem_fixture.h"
#include "tests/util/fault_env.h"

namespace strata::fs {
namespace {

TEST_F(FilesystemTest, WriteReadBackAfterReopen) {
  std::string data = Random(100000, 1) + std::string(70000, 'z');
  uint64_t ino = CreateFile("study.dcm", data);
  EXPECT_EQ(ReadAll(ino), data);
  Reopen();
  auto a = fs_->Lookup(kRootIno, "study.dcm");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, data.size());
  EXPECT_GT(a->blocks, 0u);
  EXPECT_EQ(ReadAll(a->ino), data);
}

TEST_F(FilesystemTest, SixteenBitImageDataRoundTripsThroughBytePlanes) {
  // Smooth 16-bit samples with a little noise, odd total length: chunks are stored as two byte
  // planes, compressed (the noisy plane at a fast setting up to level 2, at the configured
  // level above), and must read back exactly.
  std::mt19937 rng(9);
  std::string data;
  for (int i = 0; i < 40001; i++) {
    uint16_t v = static_cast<uint16_t>(1200 + 300 * ((i / 97) % 5) + rng() % 7);
    data.push_back(static_cast<char>(v & 0xff));
    data.push_back(static_cast<char>(v >> 8));
  }
  data.pop_back();
  for (int level : {1, 5}) {
    SCOPED_TRACE(level);
    config_.compression_level = level;
    Reopen();
    uint64_t ino = CreateFile("ct-" + std::to_string(level) + ".dcm", data);
    EXPECT_EQ(ReadAll(ino), data);
    Reopen();
    EXPECT_EQ(ReadAll(ino), data);
    EXPECT_LT(fs_->GetAttr(ino)->blocks * 512, data.size() / 2);
  }
}

// Small writes scattered over many chunks of a file (a 4 KiB random writer) are buffered up
// to the dirty limit: fsync journals each touched chunk once, not once per write. With a
// dirty limit of a few chunks the same writes still read back exactly.
TEST_F(FilesystemTest, ScatteredWritesAreBufferedUpToTheDirtyLimit) {
  for (uint64_t limit : {uint64_t{256} << 20, uint64_t{4} * config_.chunk_size}) {
    SCOPED_TRACE(limit);
    config_.dirty_limit_bytes = limit;
    Reopen();
    const std::string name = "scattered-" + std::to_string(limit);
    const size_t chunks = 200, cs = config_.chunk_size;
    std::string model = Random(chunks * cs, 11);
    uint64_t ino = CreateFile(name, model);
    const uint64_t before = JournalBytes(root_ + "/hot");
    auto fh = fs_->Open(ino, O_RDWR);
    ASSERT_TRUE(fh.ok());
    std::mt19937 rng(12);
    for (int round = 0; round < 5; round++) {
      for (size_t c = 0; c < chunks; c++) {
        size_t at = c * cs + rng() % (cs - 512);
        std::string bytes = Random(512, static_cast<uint32_t>(rng()));
        model.replace(at, bytes.size(), bytes);
        ASSERT_TRUE(fs_->Write(ino, *fh, at, bytes).ok());
      }
    }
    ASSERT_TRUE(fs_->Fsync(ino, false).ok());
    const uint64_t journaled = JournalBytes(root_ + "/hot") - before;
    if (limit > chunks * cs) {
      EXPECT_LT(journaled, chunks * cs * 3 / 2) << "more than one record per touched chunk";
    }
    ASSERT_TRUE(fs_->Release(ino, *fh).ok());
    EXPECT_EQ(ReadAll(ino), model);
    Reopen();
    EXPECT_EQ(ReadAll(ino), model);
  }
}

TEST_F(FilesystemTest, MtimeSetWhileOpenSurvivesClose) {
  // cp -p: write, futimens(old time), close. Buffered data must not bring the write time back.
  auto c = fs_->Create(kRootIno, "copy", 0644, O_RDWR, Caller{});
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(fs_->Write(c->first.ino, c->second, 0, Random(40000, 6)).ok());
  SetAttrRequest t;
  t.mtime = int64_t{1000000000} * 946684800;  // 2000-01-01
  ASSERT_TRUE(fs_->SetAttr(c->first.ino, t, Caller{}).ok());
  EXPECT_EQ(fs_->GetAttr(c->first.ino)->mtime, *t.mtime);
  ASSERT_TRUE(fs_->Release(c->first.ino, c->second).ok());
  EXPECT_EQ(fs_->GetAttr(c->first.ino)->mtime, *t.mtime);
  Reopen();
  EXPECT_EQ(fs_->GetAttr(c->first.ino)->mtime, *t.mtime);
}

TEST_F(FilesystemTest, SparseAndTruncate) {
  auto c = fs_->Create(kRootIno, "sparse", 0644, O_RDWR, Caller{});
  ASSERT_TRUE(c.ok());
  uint64_t ino = c->first.ino, fh = c->second;
  uint64_t far = (5ull << 30) + 123;  // past 4 GiB
  ASSERT_TRUE(fs_->Write(ino, fh, far, "tail").ok());
  std::string buf(10, 'x');
  auto n = fs_->Read(ino, fh, 1000, 10, buf.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf, std::string(10, '\0'));
  SetAttrRequest t;
  t.size = 10;
  ASSERT_TRUE(fs_->SetAttr(ino, t, Caller{}).ok());
  ASSERT_TRUE(fs_->Release(ino, fh).ok());
  Reopen();
  EXPECT_EQ(fs_->GetAttr(ino)->size, 10u);
}

TEST_F(FilesystemTest, TruncateThenGrowReadsZeros) {
  uint64_t ino = CreateFile("f", std::string(40000, 'a'));
  SetAttrRequest t;
  t.size = 20000;
  ASSERT_TRUE(fs_->SetAttr(ino, t, Caller{}).ok());
  t.size = 40000;
  ASSERT_TRUE(fs_->SetAttr(ino, t, Caller{}).ok());
  std::string expect = std::string(20000, 'a') + std::string(20000, '\0');
  EXPECT_EQ(ReadAll(ino), expect);
  Reopen();
  EXPECT_EQ(ReadAll(ino), expect);
}

TEST_F(FilesystemTest, NamespaceOperations) {
  auto d = fs_->Mkdir(kRootIno, "dir", 0755, Caller{});
  ASSERT_TRUE(d.ok());
  uint64_t f = CreateFile("a", "hello", d->ino);
  ASSERT_TRUE(fs_->Link(f, kRootIno, "hard").ok());
  EXPECT_EQ(fs_->GetAttr(f)->nlink, 2u);
  ASSERT_TRUE(fs_->Symlink(kRootIno, "sym", "dir/a", Caller{}).ok());
  EXPECT_EQ(fs_->Rmdir(kRootIno, "dir").ToErrno(), ENOTEMPTY);
  EXPECT_EQ(fs_->Unlink(kRootIno, "dir").ToErrno(), EISDIR);
  EXPECT_EQ(fs_->Rename(kRootIno, "hard", d->ino, "a", RENAME_NOREPLACE).ToErrno(), EEXIST);
  ASSERT_TRUE(fs_->Rename(d->ino, "a", kRootIno, "moved", 0).ok());
  Reopen();
  auto sym = fs_->Lookup(kRootIno, "sym");
  ASSERT_TRUE(sym.ok());
  EXPECT_EQ(*fs_->Readlink(sym->ino), "dir/a");
  auto moved = fs_->Lookup(kRootIno, "moved");
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(ReadAll(moved->ino), "hello");
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->ReadDir(kRootIno, 0,
                           [&](const DirEntry& e) {
                             names.push_back(e.name);
                             return true;
                           })
                  .ok());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "dir", "hard", "moved", "sym"}));
  ASSERT_TRUE(fs_->Rmdir(kRootIno, "dir").ok());
}

TEST_F(FilesystemTest, LookupReportsWhatIsMissing) {
  uint64_t f = CreateFile("file", "x");
  auto d = fs_->Mkdir(kRootIno, "dir", 0755, Caller{});
  ASSERT_TRUE(d.ok());
  auto a = fs_->Lookup(kRootIno, "file");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->ino, f);
  EXPECT_EQ(a->size, 1u);
  EXPECT_TRUE(S_ISREG(a->mode));
  EXPECT_EQ(fs_->Lookup(kRootIno, "none").status().ToErrno(), ENOENT);
  EXPECT_EQ(fs_->Lookup(d->ino, "none").status().ToErrno(), ENOENT);
  EXPECT_EQ(fs_->Lookup(f, "x").status().ToErrno(), ENOTDIR);
  EXPECT_EQ(fs_->Lookup(999999, "x").status().ToErrno(), ENOENT);
  EXPECT_EQ(fs_->Lookup(kRootIno, std::string(256, 'n')).status().ToErrno(), ENAMETOOLONG);
}

TEST_F(FilesystemTest, UnlinkedWhileOpenStaysReadableUntilRelease) {
  uint64_t ino = CreateFile("tmp", "still here");
  auto fh = fs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  ASSERT_TRUE(fs_->Unlink(kRootIno, "tmp").ok());
  std::string buf(10, '\0');
  ASSERT_TRUE(fs_->Read(ino, *fh, 0, 10, buf.data()).ok());
  EXPECT_EQ(buf, "still here");
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  EXPECT_EQ(fs_->GetAttr(ino).status().ToErrno(), ENOENT);
}

TEST_F(FilesystemTest, Xattrs) {
  uint64_t ino = CreateFile("x", "");
  ASSERT_TRUE(fs_->SetXattr(ino, "user.modality", "CT", 0).ok());
  EXPECT_EQ(fs_->SetXattr(ino, "user.modality", "MR", XATTR_CREATE).ToErrno(), EEXIST);
  EXPECT_EQ(fs_->SetXattr(ino, "user.other", "MR", XATTR_REPLACE).ToErrno(), ENODATA);
  EXPECT_EQ(fs_->GetXattr(ino, "user.none").status().ToErrno(), ENODATA);
  Reopen();
  EXPECT_EQ(*fs_->GetXattr(ino, "user.modality"), "CT");
  EXPECT_EQ(*fs_->ListXattr(ino), std::vector<std::string>{"user.modality"});
  ASSERT_TRUE(fs_->RemoveXattr(ino, "user.modality").ok());
  EXPECT_TRUE(fs_->ListXattr(ino)->empty());
}

// The kernel asks an open file for security.capability before each write; the answer "none"
// is remembered while it is open, and forgotten when the capability is set.
TEST_F(FilesystemTest, AnOpenFileRemembersItHasNoCapabilityUntilOneIsSet) {
  uint64_t ino = CreateFile("tool", "#!/bin/sh\n");
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  const std::string cap = "security.capability";
  EXPECT_EQ(fs_->GetXattr(ino, cap).status().ToErrno(), ENODATA);
  EXPECT_EQ(fs_->GetXattr(ino, cap).status().ToErrno(), ENODATA);
  const std::string value("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00", 12);
  ASSERT_TRUE(fs_->SetXattr(ino, cap, value, 0).ok());
  auto got = fs_->GetXattr(ino, cap);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, value);
  ASSERT_TRUE(fs_->RemoveXattr(ino, cap).ok());
  EXPECT_EQ(fs_->GetXattr(ino, cap).status().ToErrno(), ENODATA);
  ASSERT_TRUE(fs_->SetXattr(ino, cap, value, 0).ok());
  EXPECT_EQ(*fs_->GetXattr(ino, cap), value);
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
  EXPECT_EQ(*fs_->GetXattr(ino, cap), value);
}

TEST_F(FilesystemTest, UncleanStopIsRecoveredByReplay) {
  // Copy the hot tier while the filesystem is open: what a kill -9 leaves behind.
  uint64_t ino = CreateFile("before", Random(50000, 2));
  ASSERT_TRUE(fs_->Fsync(ino, false).ok());
  std::string crash = root_ + "/crash";
  sfs::copy(root_ + "/hot", crash, sfs::copy_options::recursive);
  fs_.reset();
  sfs::remove(crash + "/lock");
  config_.hot_path = crash;
  Reopen();
  EXPECT_GT(fs_->replayed_records(), 0u);
  auto a = fs_->Lookup(kRootIno, "before");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(ReadAll(a->ino), Random(50000, 2));
}

TEST_F(FilesystemTest, FlippedBitInChunkIsEioNotData) {
  uint64_t ino = CreateFile("victim", Random(16384, 3));
  fs_.reset();
  ASSERT_NO_FATAL_FAILURE(FlipCiphertextBit(root_ + "/hot", ChunkOf(root_ + "/hot", ino, 0), 0x04));
  Reopen();  // the damaged record is not the journal's tail, so mount still succeeds
  auto fh = fs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  std::string buf(16384, '\0');
  auto n = fs_->Read(ino, *fh, 0, buf.size(), buf.data());
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().ToErrno(), EIO);
  EXPECT_TRUE(n.status().IsCorruption());
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());
}

// A started filesystem decodes a multi-chunk read's chunks on its read helpers too (the FUSE
// path, ReadAsync): several threads reading 8-chunk files at once get every byte, and a damaged
// chunk in the middle of one fails that read with EIO (whichever thread decoded it) while the
// others still succeed. Reads beyond one per core go through the hot readers' queue.
TEST_F(FilesystemTest, MultiChunkReadsDecodedInParallelAreExactAndDamageIsEio) {
  std::vector<uint64_t> inos;
  for (uint32_t i = 0; i < 4; i++) {
    std::string name = "f";  // not "f" + to_string(i): GCC 12 -Wrestrict false positive at -O2
    name += std::to_string(i);
    inos.push_back(CreateFile(name, Random(8 * 16384, 40 + i)));
  }
  // Fills the journal's first segment: the damaged record then lies in a sealed one, which
  // the journal's recovery scan at open does not read.
  CreateFile("tail", Random(1 << 20, 39));
  fs_.reset();
  ASSERT_NO_FATAL_FAILURE(
      FlipCiphertextBit(root_ + "/hot", ChunkOf(root_ + "/hot", inos[3], 5), 0x10));
  Reopen();
  ASSERT_TRUE(fs_->Start().ok());
  std::vector<std::thread> readers;
  std::atomic<int> exact{0}, eio{0}, other{0};
  for (int t = 0; t < 4; t++)
    readers.emplace_back([&, t] {
      for (int round = 0; round < 20; round++) {
        const size_t k = static_cast<size_t>(t + round) % inos.size();
        auto fh = fs_->Open(inos[k], O_RDONLY);
        std::string buf(8 * 16384, '\0');
        Result<size_t> n = fh.ok() ? Status::IOError("no reply") : fh.status();
        if (fh.ok()) {
          std::promise<void> answered;
          fs_->ReadAsync(inos[k], *fh, 0, buf.size(),
                         [&](const Status& st, const char* data, size_t got) {
                           if (st.ok()) {
                             std::memcpy(buf.data(), data, got);
                             n = got;
                           } else {
                             n = st;
                           }
                           answered.set_value();
                         });
          answered.get_future().wait();
          fs_->Release(inos[k], *fh).IgnoreError();
        }
        if (k == 3) {
          (n.ok() ? other : n.status().ToErrno() == EIO ? eio : other)++;
        } else {
          (n.ok() && *n == buf.size() && buf == Random(8 * 16384, 40 + static_cast<uint32_t>(k))
               ? exact
               : other)++;
        }
      }
    });
  for (auto& r : readers) r.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(exact.load() + eio.load(), 80);
  EXPECT_EQ(eio.load(), 20);
}

// ReadAsync answers a read whose bytes are in memory (here: the decoded-chunk cache) on the
// calling thread before it returns. One with records to decode goes, once as many reads as the
// FUSE workers may decode are decoding (0 here), to the hot readers, which answer it later on
// their own thread: exactly, or EIO for a damaged chunk. Its records were hinted first.
TEST_F(FilesystemTest, AsyncReadsAnswerFromMemoryAtOnceAndQueueDecoding) {
  const std::string good = Random(8 * 16384, 50), bad = Random(8 * 16384, 51);
  const uint64_t ino = CreateFile("good", good);
  const uint64_t damaged = CreateFile("bad", bad);
  CreateFile("tail", Random(1 << 20, 52));  // the damaged record then lies in a sealed segment
  fs_.reset();
  ASSERT_NO_FATAL_FAILURE(
      FlipCiphertextBit(root_ + "/hot", ChunkOf(root_ + "/hot", damaged, 2), 0x10));
  const meta::ChunkRow first = ChunkOf(root_ + "/hot", ino, 0);
  test::FaultEnv env;  // records the hints
  auto opened = Filesystem::Open(config_, &env);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  fs_ = std::move(opened).value();
  ASSERT_TRUE(fs_->Start().ok());
  fs_->SetHotInlineForTesting(0);

  struct Answer {
    Status status;
    std::string data;
    std::thread::id thread;
    bool before_return = false;
  };
  auto read = [&](uint64_t file) {
    auto fh = fs_->Open(file, O_RDONLY);
    EXPECT_TRUE(fh.ok());
    Answer a;
    std::promise<void> answered;
    std::atomic<bool> returned{false};
    fs_->ReadAsync(file, *fh, 0, good.size(), [&](const Status& st, const char* data, size_t n) {
      a.status = st;
      if (st.ok()) a.data.assign(data, n);
      a.thread = std::this_thread::get_id();
      a.before_return = !returned;
      answered.set_value();
    });
    returned = true;
    answered.get_future().wait();
    EXPECT_TRUE(fs_->Release(file, *fh).ok());
    return a;
  };
  Answer decoded = read(ino);
  ASSERT_TRUE(decoded.status.ok()) << decoded.status.ToString();
  EXPECT_TRUE(decoded.data == good);
  EXPECT_NE(decoded.thread, std::this_thread::get_id()) << "decoded on the FUSE worker";
  char seg[32];
  std::snprintf(seg, sizeof seg, "/%016llx.seg", static_cast<unsigned long long>(first.segment));
  bool hinted = false;
  for (const auto& h : env.hints())
    hinted = hinted ||
             (h.path.ends_with(seg) && h.offset <= first.offset && first.offset < h.offset + h.n);
  EXPECT_TRUE(hinted) << "no hint covers chunk 0's record";
  Answer cached = read(ino);
  ASSERT_TRUE(cached.status.ok()) << cached.status.ToString();
  EXPECT_TRUE(cached.data == good);
  EXPECT_EQ(cached.thread, std::this_thread::get_id());
  EXPECT_TRUE(cached.before_return);
  Answer failed = read(damaged);
  EXPECT_EQ(failed.status.ToErrno(), EIO) << failed.status.ToString();
  EXPECT_NE(failed.thread, std::this_thread::get_id());
  fs_.reset();  // before the Env it uses
}

// An unmount with reads still queued to the hot readers answers every one of them, exactly,
// before it tears anything down.
TEST_F(FilesystemTest, ShutdownAnswersEveryQueuedRead) {
  std::vector<std::string> contents;
  std::vector<uint64_t> inos;
  for (uint32_t i = 0; i < 8; i++) {
    contents.push_back(Random(8 * 16384, 60 + i));
    inos.push_back(CreateFile("f" + std::to_string(i), contents.back()));
  }
  Reopen();
  ASSERT_TRUE(fs_->Start().ok());
  fs_->SetHotInlineForTesting(0);
  std::atomic<int> exact{0}, wrong{0};
  for (size_t k = 0; k < inos.size(); k++) {
    auto fh = fs_->Open(inos[k], O_RDONLY);
    ASSERT_TRUE(fh.ok());
    fs_->ReadAsync(inos[k], *fh, 0, contents[k].size(),
                   [&, k](const Status& st, const char* data, size_t n) {
                     (st.ok() && std::string_view(data, n) == contents[k] ? exact : wrong)++;
                   });
  }
  ASSERT_TRUE(fs_->Shutdown().ok());
  EXPECT_EQ(exact.load(), static_cast<int>(inos.size()));
  EXPECT_EQ(wrong.load(), 0);
}

// The journal's fdatasync fails under the background commit: nothing is committed (the database
// never runs ahead of the journal), writes fail from then on, and reads still return what was
// written, not the last committed state (a rollback used to serve that, with no error). A
// remount replays what reached the journal.
TEST_F(FilesystemTest, AFailedJournalSyncStopsWritesButReadsStayCurrent) {
  uint64_t ino = CreateFile("f", std::string(20000, 'o'));  // committed at the clean close below
  fs_.reset();
  test::FaultEnv fault;
  config_.commit_interval_ms = 10;
  auto opened = Filesystem::Open(config_, &fault);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  fs_ = std::move(opened).value();
  ASSERT_TRUE(fs_->Start().ok());
  auto fh = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(fh.ok());
  ASSERT_TRUE(fs_->Write(ino, *fh, 0, std::string(20000, 'n')).ok());
  ASSERT_TRUE(fs_->Release(ino, *fh).ok());  // sealed into the journal, not yet synced
  fault.SetFailSync(true);
  // The committer meets the failure within a few of its 10 ms rounds; until then a create works.
  bool refused = false;
  for (int i = 0; i < 2000 && !refused; i++) {
    refused = !fs_->Mkdir(kRootIno, "probe" + std::to_string(i), 0755, Caller{}).ok();
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(refused) << "writes still accepted after the journal failed to sync";
  EXPECT_EQ(ReadAll(ino), std::string(20000, 'n'));
  fs_.reset();
  fault.SetFailSync(false);
  Reopen();
  EXPECT_EQ(ReadAll(ino), std::string(20000, 'n'));
}

TEST_F(FilesystemTest, SwappedChunkIsEioNotData) {
  // Two chunks of equal stored size; point A's map entry at B's record (CRC-valid bytes,
  // wrong identity): the read must fail, not return B's data.
  uint64_t a = CreateFile("a", Random(16384, 4));
  uint64_t b = CreateFile("b", Random(16384, 5));
  CreateFile("tail", "keeps the damaged-looking records away from the journal tail");
  fs_.reset();
  meta::ChunkRow cb = ChunkOf(root_ + "/hot", b, 0);
  {
    auto m = meta::MetaStore::Open(root_ + "/hot/meta.db", 16 * 1024, false, false);
    ASSERT_TRUE(m.ok());
    meta::Op op;
    op.kind = meta::OpKind::kChunk;
    op.ino = a;
    op.chunk_index = 0;
    op.segment = cb.segment;
    op.offset = cb.offset;
    op.stored_len = cb.stored_len;
    op.logical_len = cb.logical_len;
    op.version = cb.version;
    op.size = 16384;
    ASSERT_TRUE((*m)->Apply(op, (*m)->applied_lsn()).ok());
    ASSERT_TRUE((*m)->Commit().ok());
  }
  Reopen();
  auto fh = fs_->Open(a, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  std::string buf(16384, '\0');
  auto n = fs_->Read(a, *fh, 0, buf.size(), buf.data());
  ASSERT_FALSE(n.ok());
  EXPECT_TRUE(n.status().IsCorruption()) << n.status().ToString();
  ASSERT_TRUE(fs_->Release(a, *fh).ok());
}

TEST_F(FilesystemTest, WrongKeyIsRefusedAndChangesNothing) {
  fs_.reset();
  auto before = sfs::last_write_time(root_ + "/hot/superblock");
  WriteKey(root_ + "/wrong", 'w');
  Config c = config_;
  c.key_file = root_ + "/wrong";
  auto r = Filesystem::Open(c, Env::Default());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not unlock"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(sfs::last_write_time(root_ + "/hot/superblock"), before);
}

TEST_F(FilesystemTest, SecondOpenIsBusy) {
  auto r = Filesystem::Open(config_, Env::Default());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsBusy()) << r.status().ToString();
}

TEST_F(FilesystemTest, MkfsRefusesExistingOrNonEmpty) {
  EXPECT_TRUE(Filesystem::Mkfs(config_, Env::Default()).IsInvalidArgument());
  Config c = config_;
  c.hot_path = root_ + "/missing";
  EXPECT_TRUE(Filesystem::Mkfs(c, Env::Default()).IsInvalidArgument());
}

TEST_F(FilesystemTest, NoPlaintextNamesOrContentInHotTier) {
  const std::string marker = "PATIENT-MARKER-93751";
  uint64_t ino = CreateFile(marker + ".dcm", marker + std::string(30000, 'q') + marker);
  ASSERT_TRUE(fs_->SetXattr(ino, "user." + marker, marker, 0).ok());
  ASSERT_TRUE(fs_->Symlink(kRootIno, "link", marker, Caller{}).ok());
  fs_.reset();
  for (auto& e : sfs::recursive_directory_iterator(root_ + "/hot")) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(all.find(marker), std::string::npos) << e.path();
  }
}

// Chunk buffers go back for reuse after a read or a seal (fs/chunk_memory.h): whatever a
// buffer held before never shows through in a chunk decoded, merged or written into it later.
TEST_F(FilesystemTest, ReusedChunkBuffersNeverShowEarlierBytes) {
  const uint64_t cs = config_.chunk_size;
  config_.chunk_cache_bytes = 2 * cs;  // smaller than a shard's chunk: every buffer comes back
  Reopen();
  std::string full_a(4 * cs, 'A'), noise = Random(4 * cs, 11);
  const uint64_t a = CreateFile("a", full_a), r = CreateFile("r", noise);
  ASSERT_EQ(ReadAll(a), full_a);
  ASSERT_EQ(ReadAll(r), noise);

  // A write into a hole inside the file: nothing stored to read, nothing past the size to cut.
  auto sp = fs_->Create(kRootIno, "sparse", 0644, O_RDWR, Caller{});
  ASSERT_TRUE(sp.ok());
  ASSERT_TRUE(fs_->Write(sp->first.ino, sp->second, 3 * cs + 10, "end").ok());
  ASSERT_TRUE(fs_->Write(sp->first.ino, sp->second, cs + 100, "mid").ok());
  std::string sparse(3 * cs + 13, '\0');
  sparse.replace(3 * cs + 10, 3, "end");
  sparse.replace(cs + 100, 3, "mid");
  EXPECT_EQ(ReadAll(sp->first.ino), sparse);
  ASSERT_TRUE(fs_->Release(sp->first.ino, sp->second).ok());
  EXPECT_EQ(ReadAll(sp->first.ino), sparse);

  // Shorter chunks, compressed and raw, decoded into buffers that held 'A' or noise.
  std::string short_b(cs * 3 / 4, 'b'), short_raw = Random(cs * 2 / 3, 12);
  const uint64_t b = CreateFile("b", short_b), raw = CreateFile("raw", short_raw);
  EXPECT_EQ(ReadAll(b), short_b);
  EXPECT_EQ(ReadAll(raw), short_raw);
  EXPECT_EQ(ReadAll(a), full_a);
  EXPECT_EQ(ReadAll(r), noise);

  // 16-bit samples (stored as two byte planes, joined on decode) shorter than a chunk, and a
  // whole chunk cut short by a truncate (its record still holds the whole chunk).
  std::string samples;
  for (uint64_t i = 0; i < cs * 5 / 16; i++) {
    const uint16_t v = static_cast<uint16_t>(1024 + (i * 2654435761u >> 7) % 64);
    samples.push_back(static_cast<char>(v & 0xff));
    samples.push_back(static_cast<char>(v >> 8));
  }
  const uint64_t sm = CreateFile("samples", samples);
  EXPECT_EQ(ReadAll(sm), samples);
  const uint64_t cut = CreateFile("cut", noise.substr(0, cs));
  SetAttrRequest t;
  t.size = cs / 3;
  ASSERT_TRUE(fs_->SetAttr(cut, t, Caller{}).ok());
  t.size = cs;  // grown again: the cut-off part reads as zeros
  ASSERT_TRUE(fs_->SetAttr(cut, t, Caller{}).ok());
  const std::string cut_back = noise.substr(0, cs / 3) + std::string(cs - cs / 3, '\0');
  EXPECT_EQ(ReadAll(cut), cut_back);
  EXPECT_EQ(ReadAll(a), full_a);
  EXPECT_EQ(ReadAll(sm), samples);

  // A write buffer taken for a few bytes past the end: the rest of it reads as zeros, before
  // and after the seal.
  auto c = fs_->Create(kRootIno, "holes", 0644, O_RDWR, Caller{});
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(fs_->Write(c->first.ino, c->second, 1000, "tail").ok());
  const std::string holes = std::string(1000, '\0') + "tail";
  EXPECT_EQ(ReadAll(c->first.ino), holes);
  ASSERT_TRUE(fs_->Release(c->first.ino, c->second).ok());
  EXPECT_EQ(ReadAll(c->first.ino), holes);

  // A patched chunk, merged into a reused buffer.
  auto fh = fs_->Open(a, O_RDWR);
  ASSERT_TRUE(fh.ok());
  ASSERT_TRUE(fs_->Write(a, *fh, 50, "patch").ok());
  ASSERT_TRUE(fs_->Release(a, *fh).ok());
  full_a.replace(50, 5, "patch");
  EXPECT_EQ(ReadAll(a), full_a);
  EXPECT_EQ(ReadAll(raw), short_raw);
  Reopen();
  EXPECT_EQ(ReadAll(a), full_a);
  EXPECT_EQ(ReadAll(c->first.ino), holes);
  EXPECT_EQ(ReadAll(sp->first.ino), sparse);
  EXPECT_EQ(ReadAll(b), short_b);
  EXPECT_EQ(ReadAll(raw), short_raw);
  EXPECT_EQ(ReadAll(sm), samples);
  EXPECT_EQ(ReadAll(cut), cut_back);
}

}  // namespace
}  // namespace strata::fs
