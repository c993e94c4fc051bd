#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/env.h"
#include "base/status.h"

namespace strata {
namespace {

TEST(StatusTest, CodesMapToErrno) {
  EXPECT_EQ(Status::OK().ToErrno(), 0);
  EXPECT_EQ(Status::NotFound("x").ToErrno(), ENOENT);
  EXPECT_EQ(Status::Corruption("x").ToErrno(), EIO);
  EXPECT_EQ(Status::Posix(ENOTEMPTY).ToErrno(), ENOTEMPTY);
  EXPECT_EQ(Status::IOError("write f", ENOSPC).ToErrno(), ENOSPC);
  EXPECT_TRUE(Status::IOError("t", ETIMEDOUT).retryable());
  EXPECT_FALSE(Status::Corruption("t").retryable());
}

TEST(StatusTest, ContextAndMessage) {
  Status s = Status::IOError("write /a/b", ENOSPC).WithContext("segment 7");
  EXPECT_NE(s.ToString().find("segment 7: write /a/b"), std::string::npos);
  EXPECT_NE(s.ToString().find("No space"), std::string::npos);
  Result<int> r = Status::InvalidArgument("bad");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  Result<int> v = 5;
  EXPECT_EQ(*v, 5);
}

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 and the common check value.
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xe3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c::Value(zeros.data(), zeros.size()), 0x8a9136aau);
  std::string ff(32, '\xff');
  EXPECT_EQ(crc32c::Value(ff.data(), ff.size()), 0x62a8ab43u);
  EXPECT_EQ(crc32c::Extend(crc32c::Value("1234", 4), "56789", 5), 0xe3069283u);
  uint32_t c = crc32c::Value("abc", 3);
  EXPECT_EQ(crc32c::Unmask(crc32c::Mask(c)), c);
  EXPECT_NE(crc32c::Mask(c), c);
}

TEST(CodingTest, RoundTripAndTruncation) {
  std::string s;
  PutFixed32(&s, 0xdeadbeef);
  PutFixed64(&s, 0x0123456789abcdefull);
  PutBytes(&s, "name");
  Decoder d(s);
  uint32_t a;
  uint64_t b;
  std::string c;
  ASSERT_TRUE(d.GetU32(&a) && d.GetU64(&b) && d.GetBytes(&c));
  EXPECT_TRUE(d.done());
  EXPECT_EQ(a, 0xdeadbeefu);
  EXPECT_EQ(b, 0x0123456789abcdefull);
  EXPECT_EQ(c, "name");
  Decoder t(std::string_view(s).substr(0, s.size() - 1));
  EXPECT_TRUE(t.GetU32(&a) && t.GetU64(&b));
  EXPECT_FALSE(t.GetBytes(&c));
  EXPECT_FALSE(t.ok());
}

TEST(EnvTest, AtomicWriteLockAndDurableAppend) {
  char tmpl[] = "/tmp/strata-env-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Env* env = Env::Default();
  std::string p = dir + "/f";
  ASSERT_TRUE(WriteFileAtomically(env, p, "one").ok());
  ASSERT_TRUE(WriteFileAtomically(env, p, "two").ok());
  EXPECT_EQ(*ReadWholeFile(env, p), "two");
  EXPECT_FALSE(*env->FileExists(p + ".tmp"));

  auto f = env->OpenFile(dir + "/seg", OpenMode::kCreateExclusive);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteAndSync(0, "hello ").ok());
  ASSERT_TRUE((*f)->WriteAndSync(6, "world").ok());
  EXPECT_EQ(*(*f)->Size(), 11u);
  EXPECT_EQ(*ReadWholeFile(env, dir + "/seg"), "hello world");
  EXPECT_EQ(env->OpenFile(dir + "/seg", OpenMode::kCreateExclusive).status().ToErrno(), EEXIST);
  EXPECT_TRUE(env->OpenFile(dir + "/missing", OpenMode::kReadOnly).status().IsNotFound());

  auto lock = env->LockFile(dir + "/lock");
  ASSERT_TRUE(lock.ok());
  EXPECT_TRUE(env->LockFile(dir + "/lock").status().IsBusy());
  lock.value().reset();
  EXPECT_TRUE(env->LockFile(dir + "/lock").ok());
  std::filesystem::remove_all(dir);
}

// Direct writes against a model of the file: every byte below the logical end is what was
// written, whatever mix of appends (short, block-crossing, longer than one staging buffer),
// rewrites inside the file, truncates and syncs; past the end there are only zeros, and at
// most to the next block boundary. A second File (no cached last block) carries on. Every
// WriteAndSync completes an fdatasync, with io_uring and without it (seccomp, or
// kernel.io_uring_disabled, leaves a thread no ring).
void DirectWritesAgainstAModel(bool io_uring) {
  SetIoUringForTesting(io_uring);
  char tmpl[] = "/tmp/strata-env-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/seg";
  Env* env = Env::Default();
  constexpr uint64_t kBlock = File::kDirectBlock;
  std::mt19937_64 rng(20261124);
  std::string model;
  auto check = [&](File* f, const std::string& when) {
    auto size = f->Size();
    ASSERT_TRUE(size.ok());
    ASSERT_GE(*size, model.size()) << when;
    ASSERT_LE(*size, (model.size() + kBlock - 1) / kBlock * kBlock) << when;
    std::string got(*size, 'x');
    size_t n = 0;
    ASSERT_TRUE(f->Read(0, got.size(), got.data(), &n).ok());
    ASSERT_EQ(n, got.size()) << when;
    ASSERT_TRUE(got.compare(0, model.size(), model) == 0) << when << ": content differs";
    ASSERT_EQ(got.find_first_not_of('\0', model.size()), std::string::npos)
        << when << ": padding is not zeros";
  };
  auto bytes = [&](size_t len) {
    std::string b(len, '\0');
    for (auto& c : b) c = static_cast<char>(rng() % 255 + 1);
    return b;
  };
  for (int round = 0; round < 2; round++) {
    auto opened =
        env->OpenFile(path, round == 0 ? OpenMode::kCreateExclusive : OpenMode::kReadWrite);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    std::unique_ptr<File> f = std::move(opened).value();
    ASSERT_TRUE(f->EnableDirectWrites()) << "the test directory's filesystem has O_DIRECT";
    for (int step = 0; step < 300; step++) {
      const std::string when = "round " + std::to_string(round) + " step " + std::to_string(step);
      const uint64_t pick = rng() % 100;
      if (pick < 60 || model.empty()) {  // append; one in 30 longer than the 8 MiB stage
        const size_t len = step % 30 == 7 ? (9u << 20) + rng() % 5000 : 1 + rng() % 20000;
        std::string b = bytes(len);
        const bool sync = rng() % 4 == 0;
        const uint64_t syncs = DataSyncsForTesting();
        Status s = sync ? f->WriteAndSync(model.size(), b) : f->Write(model.size(), b);
        ASSERT_TRUE(s.ok()) << when << ": " << s.ToString();
        if (sync) {
          ASSERT_GT(DataSyncsForTesting(), syncs) << when << ": WriteAndSync did not sync";
        }
        model += b;
      } else if (pick < 85) {  // rewrite inside the file, maybe past its end
        const uint64_t off = rng() % model.size();
        std::string b = bytes(1 + rng() % 9000);
        ASSERT_TRUE(f->Write(off, b).ok()) << when;
        if (off + b.size() > model.size()) model.resize(off + b.size());
        model.replace(off, b.size(), b);
      } else if (pick < 95) {
        const uint64_t to = rng() % (model.size() + 1);
        ASSERT_TRUE(f->Truncate(to).ok()) << when;
        model.resize(to);
      } else {
        ASSERT_TRUE(f->Sync().ok()) << when;
      }
      ASSERT_NO_FATAL_FAILURE(check(f.get(), when));
    }
  }
  std::filesystem::remove_all(dir);
  SetIoUringForTesting(true);
}

TEST(EnvTest, DirectWritesKeepEveryByteAndPadOnlyToTheBlockBoundary) {
  DirectWritesAgainstAModel(/*io_uring=*/true);
}

TEST(EnvTest, DirectWritesWithoutIoUringStillSyncEveryWriteAndSync) {
  DirectWritesAgainstAModel(/*io_uring=*/false);
}

}  // namespace
}  // namespace strata
