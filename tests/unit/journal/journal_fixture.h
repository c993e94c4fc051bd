// The fixture of the journal's unit tests: a journal on a temp directory through a FaultEnv,
// and helpers that read and damage its segment files. journal_test.cc tests appends, reads,
// rotation and errors; recovery_test.cc what an open finds after a crash or damage.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "journal/format.h"
#include "journal/journal.h"
#include "tests/util/fault_env.h"

namespace strata::journal {

namespace fs = std::filesystem;
using format::kRecordHeaderSize;
using format::kSegmentHeaderSize;

// Random-looking bytes (like the encrypted payloads the journal really carries).
inline std::string MakePayload(uint64_t seed, size_t len) {
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + len);
  std::string s(len, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

inline std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void WriteRaw(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline void FlipBit(const std::string& path, uint64_t offset, int bit) {
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

}  // namespace strata::journal
