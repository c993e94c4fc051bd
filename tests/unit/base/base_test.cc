#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

}  // namespace
}  // namespace strata
