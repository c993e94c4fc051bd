#include "fs/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

namespace strata::fs {
namespace {

const char* kMinimal = R"(
[filesystem]
name = "pacs"
[keys]
key_file = "/etc/strata/pacs.key"
[tiers.hot]
path = "/var/lib/strata/pacs/hot"
)";

TEST(ConfigTest, MinimalConfigUsesDefaults) {
  auto c = ParseConfig(kMinimal, "pacs.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "pacs");
  EXPECT_EQ(c->hot_path, "/var/lib/strata/pacs/hot");
  EXPECT_EQ(c->chunk_size, 64u * 1024);
  EXPECT_EQ(c->compression_level, 1);
}

TEST(ConfigTest, HotTierReserve) {
  EXPECT_FALSE(ParseConfig(kMinimal, "x.toml")->hot_reserve_bytes.has_value())
      << "unset: the mount computes it from the disk";
  auto c = ParseConfig(std::string(kMinimal) + "reserve = \"2GiB\"\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hot_reserve_bytes, uint64_t{2} << 30);
  c = ParseConfig(std::string(kMinimal) + "reserve = \"lots\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("x.toml:8"), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("reserve"), std::string::npos) << c.status().ToString();
}

TEST(ConfigTest, SizesAndDurations) {
  std::string t = std::string(kMinimal) +
                  "[cache]\nchunk_cache = \"64MiB\"\ndirty_expire = \"30s\"\n"
                  "[journal]\ncommit_interval = \"250ms\"\n";
  auto c = ParseConfig(t, "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->chunk_cache_bytes, 64u << 20);
  EXPECT_EQ(c->commit_interval_ms, 250);
  EXPECT_EQ(c->dirty_expire_ms, 30000);
  EXPECT_EQ(ParseConfig(kMinimal, "x.toml")->dirty_expire_ms, 5000);
  for (const char* bad : {"\"5ms\"", "\"2m\"", "5", "\"soon\""}) {
    c = ParseConfig(std::string(kMinimal) + "[cache]\ndirty_expire = " + bad + "\n", "x.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("x.toml:9"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("dirty_expire"), std::string::npos);
  }
}

TEST(ConfigTest, JournalDirectIo) {
  EXPECT_TRUE(ParseConfig(kMinimal, "x.toml")->journal_direct_io);
  auto c = ParseConfig(std::string(kMinimal) + "[journal]\ndirect_io = false\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->journal_direct_io);
  for (const char* bad : {"\"no\"", "0"}) {
    c = ParseConfig(std::string(kMinimal) + "[journal]\ndirect_io = " + bad + "\n", "x.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("x.toml:9"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("direct_io must be true or false"), std::string::npos)
        << c.status().message();
  }
}

TEST(ConfigTest, CompactionThreshold) {
  auto c = ParseConfig(kMinimal, "x.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->compact_below_pct, 50);
  // A [policy] table without a file: passes only compact and free segments.
  c = ParseConfig(std::string(kMinimal) + "[policy]\ninterval = \"6h\"\ncompact_below = \"30%\"\n",
                  "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->compact_below_pct, 30);
  EXPECT_TRUE(c->policy_file.empty());
  EXPECT_EQ(c->policy_interval_ms, 6 * 3600 * 1000);
  c = ParseConfig(std::string(kMinimal) + "[policy]\ncompact_below = \"0%\"\n", "x.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->compact_below_pct, 0);
  for (const char* bad : {"\"95%\"", "\"50\"", "0.5", "\"-1%\"", "\"%\"", "\"5 %\""}) {
    c = ParseConfig(std::string(kMinimal) + "[policy]\ncompact_below = " + bad + "\n", "x.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("x.toml:9"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("compact_below"), std::string::npos);
  }
}

TEST(ConfigTest, TierReadahead) {
  const std::string tier = "[tiers.archive]\nkind = \"directory\"\npath = \"/srv/a\"\n";
  auto c = ParseConfig(std::string(kMinimal) + tier, "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->FindTier("archive")->readahead_bytes, 1u << 20);
  c = ParseConfig(std::string(kMinimal) + tier + "readahead = \"4MiB\"\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->FindTier("archive")->readahead_bytes, 4u << 20);
  c = ParseConfig(std::string(kMinimal) + tier + "readahead = 0\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->FindTier("archive")->readahead_bytes, 0u);
  for (const char* bad : {"\"65MiB\"", "\"lots\"", "-1"}) {
    c = ParseConfig(std::string(kMinimal) + tier + "readahead = " + bad + "\n", "x.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("x.toml:11"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("readahead"), std::string::npos) << c.status().message();
  }
}

TEST(ConfigTest, TierConcurrentFetches) {
  const std::string dir = "[tiers.archive]\nkind = \"directory\"\npath = \"/srv/a\"\n";
  const std::string s3 =
      "[tiers.cloud]\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\n";
  auto c = ParseConfig(std::string(kMinimal) + dir + s3, "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->FindTier("archive")->concurrent_fetches, 32);
  EXPECT_EQ(c->FindTier("cloud")->concurrent_fetches, 32);
  c = ParseConfig(std::string(kMinimal) + dir + "concurrent_fetches = 2\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->FindTier("archive")->concurrent_fetches, 2);
  for (const char* bad : {"0", "257", "\"8\"", "1.5"}) {
    c = ParseConfig(std::string(kMinimal) + dir + "concurrent_fetches = " + bad + "\n", "x.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("x.toml:11"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("concurrent_fetches"), std::string::npos);
  }
}

// The annotated default configuration, as scripts/demo.sh fills it in.
TEST(ConfigTest, DemoConfigParses) {
  std::string f = __FILE__;
  const std::string path = f.substr(0, f.rfind("/tests/unit/fs/")) + "/packaging/demo.toml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t at; (at = text.find("@DEMO_DIR@")) != std::string::npos;)
    text.replace(at, 10, "/srv/demo");
  auto c = ParseConfig(text, path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_NE(c->FindTier("cold"), nullptr);
  EXPECT_EQ(c->FindTier("cold")->kind, "directory");
  EXPECT_EQ(c->policy_file, "/srv/demo/policy.toml");
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  auto c = ParseConfig(
      "[filesystem]\nname = \"pacs\"\ncompresion_level = 3\n[keys]\nkey_file = \"/k\"\n"
      "[tiers.hot]\npath = \"/h\"\n",
      "pacs.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
  EXPECT_NE(c.status().message().find("pacs.toml:3"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("compresion_level"), std::string::npos);
}

TEST(ConfigTest, BadValuesAreRefused) {
  const char* bad[] = {
      "[filesystem]\nname = \"p\"\nchunk_size = \"100KiB\"\n[keys]\nkey_file=\"/k\"\n"
      "[tiers.hot]\npath=\"/h\"\n",
      "[filesystem]\nname = \"p\"\ncompression_level = 42\n[keys]\nkey_file=\"/k\"\n"
      "[tiers.hot]\npath=\"/h\"\n",
      "[filesystem]\nname = \"p q\"\n[keys]\nkey_file=\"/k\"\n[tiers.hot]\npath=\"/h\"\n",
      "[filesystem]\nname = \"p\"\n[keys]\nkey_file=\"/k\"\n[tiers.hot]\npath=\"relative\"\n",
      "[filesystem]\nname = \"p\"\n[tiers.hot]\npath=\"/h\"\n",
      "[filesystem]\nname = 3\n[keys]\nkey_file=\"/k\"\n[tiers.hot]\npath=\"/h\"\n",
      "[filesystem\nname = \"p\"\n",
  };
  for (const char* t : bad) {
    auto c = ParseConfig(t, "bad.toml");
    EXPECT_FALSE(c.ok()) << t;
    if (!c.ok()) {
      EXPECT_NE(c.status().message().find("bad.toml"), std::string::npos);
    }
  }
}

TEST(ConfigTest, ParseSize) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("128KiB"), 131072u);
  EXPECT_EQ(*ParseSize("1GiB"), 1u << 30);
  EXPECT_FALSE(ParseSize("12 parsecs").ok());
  EXPECT_FALSE(ParseSize("").ok());
  EXPECT_EQ(*ParseDurationMs("90d"), 90ll * 86400 * 1000);
  EXPECT_FALSE(ParseDurationMs("5 fortnights").ok());
}

}  // namespace
}  // namespace strata::fs
