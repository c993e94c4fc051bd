#include "tests/unit/tiering/tier_suite.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "base/env.h"

namespace strata::tiering::test {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::vector<std::string> Keys(const std::vector<ObjectInfo>& v) {
  std::vector<std::string> out;
  for (const auto& o : v) out.push_back(o.key);
  return out;
}

}  // namespace

void TierTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info->name();  // "Case/param": keep it one path component
  std::replace(name.begin(), name.end(), '/', '_');
  scratch_ = ::testing::TempDir() + "tier-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::random_device{}()) + "-" + name;
  std::filesystem::create_directories(scratch_);
  auto t = GetParam().make(scratch_);
  if (t.status().code() == Status::Code::kNotSupported) GTEST_SKIP() << t.status().ToString();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  tier_ = std::move(t).value();
}

void TierTest::TearDown() {
  if (tier_ != nullptr) {
    std::vector<ObjectInfo> all;
    if (tier_->List("", &all).ok())
      for (const auto& o : all) tier_->Delete(o.key).IgnoreError();
  }
  tier_.reset();
  std::error_code ec;
  std::filesystem::remove_all(scratch_, ec);
}

TEST_P(TierTest, PutThenGetWholeAndRanges) {
  std::string data = RandomBytes(300000, 1);
  ASSERT_TRUE(tier_->Put("seg/a", data).ok());
  std::string out;
  ASSERT_TRUE(tier_->Get("seg/a", 0, data.size(), &out).ok());
  EXPECT_EQ(out, data);
  ASSERT_TRUE(tier_->Get("seg/a", 12345, 4096, &out).ok());
  EXPECT_EQ(out, data.substr(12345, 4096));
  ASSERT_TRUE(tier_->Get("seg/a", data.size() - 1, 1, &out).ok());
  EXPECT_EQ(out, data.substr(data.size() - 1));
  auto size = tier_->Size("seg/a");
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, data.size());
}

TEST_P(TierTest, RangePastTheEndIsCorruption) {
  ASSERT_TRUE(tier_->Put("k", std::string(1000, 'x')).ok());
  std::string out;
  Status s = tier_->Get("k", 900, 200, &out);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

TEST_P(TierTest, MissingObjectIsNotFound) {
  std::string out;
  Status s = tier_->Get("nope", 0, 10, &out);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find("nope"), std::string::npos) << s.ToString();
  EXPECT_TRUE(tier_->Size("nope").status().IsNotFound());
}

TEST_P(TierTest, PutReplacesTheWholeObject) {
  ASSERT_TRUE(tier_->Put("k", std::string(5000, 'a')).ok());
  ASSERT_TRUE(tier_->Put("k", std::string(100, 'b')).ok());
  std::string out;
  ASSERT_TRUE(tier_->Get("k", 0, 100, &out).ok());
  EXPECT_EQ(out, std::string(100, 'b'));
  EXPECT_EQ(*tier_->Size("k"), 100u);
}

TEST_P(TierTest, EmptyObject) {
  ASSERT_TRUE(tier_->Put("empty", "").ok());
  EXPECT_EQ(*tier_->Size("empty"), 0u);
}

TEST_P(TierTest, DeleteIsIdempotent) {
  ASSERT_TRUE(tier_->Put("x/y", "data").ok());
  ASSERT_TRUE(tier_->Delete("x/y").ok());
  EXPECT_TRUE(tier_->Size("x/y").status().IsNotFound());
  EXPECT_TRUE(tier_->Delete("x/y").ok());
  EXPECT_TRUE(tier_->Delete("never-existed").ok());
}

TEST_P(TierTest, ListByPrefixInKeyOrder) {
  for (std::string k : {"seg/02", "seg/01", "segx", "other/1", "seg/10/deep"})
    ASSERT_TRUE(tier_->Put(k, k).ok()) << k;
  std::vector<ObjectInfo> v;
  ASSERT_TRUE(tier_->List("seg/", &v).ok());
  EXPECT_EQ(Keys(v), (std::vector<std::string>{"seg/01", "seg/02", "seg/10/deep"}));
  EXPECT_EQ(v[0].size, 6u);
  ASSERT_TRUE(tier_->List("", &v).ok());
  EXPECT_EQ(v.size(), 5u);
  ASSERT_TRUE(tier_->List("zzz", &v).ok());
  EXPECT_TRUE(v.empty());
}

TEST_P(TierTest, PutFileCopiesALocalFile) {
  std::string data = RandomBytes(3 << 20, 2);
  std::string local = scratch_ + "/local.seg";
  ASSERT_TRUE(WriteFileAtomically(Env::Default(), local, data).ok());
  ASSERT_TRUE(tier_->PutFile("seg/big", local).ok());
  EXPECT_EQ(*tier_->Size("seg/big"), data.size());
  std::string out;
  ASSERT_TRUE(tier_->Get("seg/big", (1 << 20) - 7, 1 << 20, &out).ok());
  EXPECT_EQ(out, data.substr((1 << 20) - 7, 1 << 20));
}

TEST_P(TierTest, PutFileOfAMissingLocalFileFails) {
  Status s = tier_->PutFile("k", scratch_ + "/does-not-exist");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(tier_->Size("k").status().IsNotFound());
}

TEST_P(TierTest, ConcurrentRangedGets) {
  std::string data = RandomBytes(1 << 20, 3);
  ASSERT_TRUE(tier_->Put("shared", data).ok());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::string out;
      for (int i = 0; i < 20; ++i) {
        uint64_t off = static_cast<uint64_t>((t * 20 + i) * 4099) % (data.size() - 8192);
        if (!tier_->Get("shared", off, 8192, &out).ok() || out != data.substr(off, 8192)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace strata::tiering::test
