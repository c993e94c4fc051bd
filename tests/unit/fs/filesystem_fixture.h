// The fixture of the filesystem model's unit tests: a filesystem on a temp directory, opened
// without a mount, and helpers that look at what it stored.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "fs/filesystem.h"
#include "meta/meta_store.h"

namespace strata::fs {

namespace sfs = std::filesystem;

class FilesystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-fs-XXXXXX";
    root_ = mkdtemp(tmpl);
    sfs::create_directories(root_ + "/hot");
    WriteKey(root_ + "/key", 'k');
    config_.source = root_ + "/test.toml";
    config_.name = "test";
    config_.key_file = root_ + "/key";
    config_.hot_path = root_ + "/hot";
    config_.chunk_size = 16 * 1024;
    config_.segment_size = 1 << 20;
    ASSERT_TRUE(Filesystem::Mkfs(config_, Env::Default()).ok());
    Reopen();
  }
  void TearDown() override {
    fs_.reset();
    sfs::remove_all(root_);
  }
  static void WriteKey(const std::string& path, char fill) {
    std::ofstream(path) << std::string(32, fill);
    ::chmod(path.c_str(), 0600);
  }
  void Reopen() {
    fs_.reset();
    auto r = Filesystem::Open(config_, Env::Default());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    fs_ = std::move(r).value();
  }
  uint64_t CreateFile(const std::string& name, const std::string& content,
                      uint64_t parent = kRootIno) {
    auto c = fs_->Create(parent, name, 0644, O_RDWR, Caller{});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    auto w = fs_->Write(c->first.ino, c->second, 0, content);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_TRUE(fs_->Release(c->first.ino, c->second).ok());
    return c->first.ino;
  }
  std::string ReadAll(uint64_t ino) {
    auto fh = fs_->Open(ino, O_RDONLY);
    EXPECT_TRUE(fh.ok());
    auto a = fs_->GetAttr(ino);
    std::string buf(a->size, '\0');
    auto n = fs_->Read(ino, *fh, 0, buf.size(), buf.data());
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_TRUE(fs_->Release(ino, *fh).ok());
    buf.resize(n.ok() ? *n : 0);
    return buf;
  }
  std::string Random(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }

  std::string root_;
  Config config_;
  std::unique_ptr<Filesystem> fs_;
};

inline uint64_t JournalBytes(const std::string& hot) {
  uint64_t n = 0;
  for (const auto& e : sfs::directory_iterator(hot + "/journal"))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

// Where the chunk map says inode `ino`'s chunk `index` lives.
inline meta::ChunkRow ChunkOf(const std::string& hot, uint64_t ino, uint64_t index) {
  auto m = meta::MetaStore::Open(hot + "/meta.db", 16 * 1024, false, true);
  EXPECT_TRUE(m.ok());
  auto c = (*m)->GetChunk(ino, index);
  EXPECT_TRUE(c.ok() && c->has_value());
  return **c;
}

inline std::string SegmentFile(const std::string& hot, uint64_t id) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.seg", static_cast<unsigned long long>(id));
  return hot + "/journal/" + name;
}

// Flips `mask` in a byte of the ciphertext of the chunk record `c` (past the record header (20),
// the chunk header (48) and the nonce (12)), with the filesystem closed.
inline void FlipCiphertextBit(const std::string& hot, const meta::ChunkRow& c, char mask) {
  std::fstream f(SegmentFile(hot, c.segment), std::ios::in | std::ios::out | std::ios::binary);
  const auto at = static_cast<std::streamoff>(c.offset + 20 + 48 + 12 + 100);
  f.seekg(at);
  char b;
  f.read(&b, 1);
  b = static_cast<char>(b ^ mask);
  f.seekp(at);
  f.write(&b, 1);
  ASSERT_TRUE(f.good()) << "cannot flip a bit in " << SegmentFile(hot, c.segment);
}

}  // namespace strata::fs
