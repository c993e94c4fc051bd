// S3Tier: the generic Tier suite and what only an S3 tier does, against a real S3 server (a
// single-node Ceph RGW) that the CTest fixture S3 starts (tests/s3, scripts/s3-server.sh) and
// describes in the file named by STRATA_S3_ENV. Without it the server tests are skipped; the
// tests that need no server (options, credentials files, URLs, a dead endpoint) always run.
#include "tiering/s3_tier.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "tests/unit/tiering/tier_suite.h"
#include "tests/util/s3_test_server.h"

namespace strata::tiering {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << (haystack) << "\n  lacks: " << (needle)
#define EXPECT_LACKS(haystack, needle) \
  EXPECT_EQ(std::string(haystack).find(needle), std::string::npos) << (haystack)

// The test server (tests/util/s3_test_server.h).
const strata::test::S3TestServer& Server() { return strata::test::S3Server(); }

#define REQUIRE_SERVER() \
  if (!Server().why_not.empty()) GTEST_SKIP() << Server().why_not

S3Options ServerOptions(const std::string& prefix) {
  const strata::test::S3TestServer& s = Server();
  S3Options o;
  o.name = "archive-s3";
  o.endpoint = s["STRATA_S3_ENDPOINT"];
  o.region = s["STRATA_S3_REGION"];
  o.bucket = s["STRATA_S3_BUCKET"];
  o.credentials = {s["STRATA_S3_ACCESS_KEY"], s["STRATA_S3_SECRET_KEY"]};
  o.prefix = prefix;
  return o;
}

// A prefix that no other test, in this process or another, uses.
std::string UniquePrefix(const std::string& what) {
  static std::atomic<int> n{0};
  return what + "-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()) +
         "-" + std::to_string(n++) + "/";
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// The response headers of a signed HEAD, made with curl directly (what the tier cannot show).
std::string HeadHeaders(const S3Options& o, const std::string& key) {
  std::string headers;
  CURL* h = curl_easy_init();
  std::string url = S3ObjectUrl(o, key);
  std::string sigv4 = "aws:amz:" + o.region + ":s3";
  curl_slist* list = curl_slist_append(
      nullptr,
      "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(h, CURLOPT_USERNAME, o.credentials.access_key.c_str());
  curl_easy_setopt(h, CURLOPT_PASSWORD, o.credentials.secret_key.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(
      h, CURLOPT_HEADERFUNCTION, +[](char* p, size_t s, size_t n, void* out) {
        static_cast<std::string*>(out)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(list);
  curl_easy_cleanup(h);
  return rc == CURLE_OK ? headers : std::string("curl: ") + curl_easy_strerror(rc);
}

// A TCP port on 127.0.0.1 that nothing listens on.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// ---------------------------------------------------------------------------------------------
// The generic suite, each test in a prefix of its own inside the shared test bucket.

Result<std::unique_ptr<Tier>> MakeSuiteTier(const std::string& scratch) {
  // tier_suite.cc skips a test whose factory reports NotSupported.
  if (!Server().why_not.empty()) return Status::NotSupported(Server().why_not);
  return OpenS3Tier(
      ServerOptions("suite/" + std::filesystem::path(scratch).filename().string() + "/"));
}

}  // namespace

namespace test {
INSTANTIATE_TEST_SUITE_P(S3, TierTest, ::testing::Values(TierFactory{"s3", MakeSuiteTier}),
                         [](const auto& info) { return info.param.name; });
}  // namespace test

namespace {

// ---------------------------------------------------------------------------------------------
// Against the server.

class S3TierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SERVER();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    options_ = ServerOptions(UniquePrefix(info->name()));
    scratch_ = ::testing::TempDir() + "s3tier-" + options_.prefix;
    std::filesystem::create_directories(scratch_);
    auto t = OpenS3Tier(options_);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tier_ = std::move(t).value();
  }

  void TearDown() override {
    std::vector<ObjectInfo> all;
    if (tier_ != nullptr && tier_->List("", &all).ok()) {
      std::atomic<size_t> next{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
          for (size_t i; (i = next++) < all.size();) tier_->Delete(all[i].key).IgnoreError();
        });
      for (auto& th : threads) th.join();
    }
    if (!scratch_.empty()) std::filesystem::remove_all(scratch_);
  }

  std::string WriteLocal(const std::string& name, const std::string& data) {
    std::string path = scratch_ + name;
    EXPECT_TRUE(WriteFileAtomically(Env::Default(), path, data).ok());
    return path;
  }

  S3Options options_;
  std::string scratch_;
  std::unique_ptr<Tier> tier_;
};

TEST_F(S3TierTest, MultipartPutFileThenRangesAcrossPartBoundaries) {
  // 40 MiB > the 32 MiB threshold: parts of 16, 16 and 8 MiB.
  const uint64_t kPart = options_.part_size;
  const std::string data = RandomBytes(40 << 20, 7);
  const std::string local = WriteLocal("big.seg", data);
  auto start = Clock::now();
  Status s = tier_->PutFile("seg/big", local);
  double put_s = SecondsSince(start);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto size = tier_->Size("seg/big");
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, data.size());

  std::string out;
  struct Range {
    uint64_t offset, length;
  };
  for (Range r : {Range{kPart - 100, 200}, Range{kPart - 1, 2}, Range{2 * kPart - 4096, 8192},
                  Range{0, 1}, Range{data.size() - 3, 3}, Range{kPart, kPart}}) {
    ASSERT_TRUE(tier_->Get("seg/big", r.offset, r.length, &out).ok()) << r.offset;
    EXPECT_TRUE(out == data.substr(r.offset, r.length)) << "range at " << r.offset;
  }
  start = Clock::now();
  ASSERT_TRUE(tier_->Get("seg/big", 0, data.size(), &out).ok());
  double get_s = SecondsSince(start);
  EXPECT_TRUE(out == data);
  std::printf("[ metrics  ] multipart PUT 40 MiB: %.2f s (%.0f MiB/s); GET: %.2f s (%.0f MiB/s)\n",
              put_s, 40 / put_s, get_s, 40 / get_s);

  std::vector<ObjectInfo> listed;
  ASSERT_TRUE(tier_->List("seg/", &listed).ok());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "seg/big");
  EXPECT_EQ(listed[0].size, data.size());
}

TEST_F(S3TierTest, SinglePutFileOfALargeSegment) {
  const std::string data = RandomBytes(24 << 20, 8);  // below the threshold: one streamed PUT
  const std::string local = WriteLocal("one.seg", data);
  auto start = Clock::now();
  ASSERT_TRUE(tier_->PutFile("seg/one", local).ok());
  double put_s = SecondsSince(start);
  std::string out;
  ASSERT_TRUE(tier_->Get("seg/one", 0, data.size(), &out).ok());
  EXPECT_TRUE(out == data);
  std::printf("[ metrics  ] single PUT 24 MiB: %.2f s (%.0f MiB/s)\n", put_s, 24 / put_s);
}

TEST_F(S3TierTest, SmallPartsAndAnExactMultipleOfThePartSize) {
  S3Options o = options_;
  o.multipart_threshold = 6 << 20;
  o.part_size = 5 << 20;
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  const std::string data = RandomBytes(10 << 20, 9);  // exactly two parts
  ASSERT_TRUE((*t)->PutFile("two-parts", WriteLocal("two.seg", data)).ok());
  std::string out;
  ASSERT_TRUE((*t)->Get("two-parts", (5 << 20) - 10, 20, &out).ok());
  EXPECT_TRUE(out == data.substr((5 << 20) - 10, 20));
  EXPECT_EQ(*(*t)->Size("two-parts"), data.size());
}

TEST_F(S3TierTest, WrongSecretIsRefusedWithoutQuotingIt) {
  S3Options o = options_;
  o.credentials.secret_key = "wrong-Secret-4f9a2c";
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  std::string out;
  for (Status s : {(*t)->Put("k", "data"), (*t)->Get("k", 0, 1, &out), (*t)->Size("k").status(),
                   (*t)->Delete("k")}) {
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_CONTAINS(s.message(), "credentials");
    EXPECT_CONTAINS(s.message(), "archive-s3");
    EXPECT_LACKS(s.ToString(), o.credentials.secret_key);
    EXPECT_LACKS(s.ToString(), o.credentials.access_key);
    EXPECT_FALSE(s.retryable());
  }
  std::vector<ObjectInfo> v;
  Status s = (*t)->List("", &v);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();

  o.credentials.access_key = "NOSUCHACCESSKEY";
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  s = (*t)->Put("k", "data");
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "credentials were refused");
  EXPECT_LACKS(s.ToString(), "NOSUCHACCESSKEY");
}

TEST_F(S3TierTest, UnknownBucketIsAConfigurationErrorNotAMissingObject) {
  S3Options o = options_;
  o.bucket = "strata-no-such-bucket";
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  std::string out;
  std::vector<ObjectInfo> v;
  for (Status s : {(*t)->Put("k", "data"), (*t)->Get("k", 0, 1, &out), (*t)->Size("k").status(),
                   (*t)->Delete("k"), (*t)->List("", &v)}) {
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_CONTAINS(s.message(), "bucket 'strata-no-such-bucket' does not exist");
  }
}

TEST_F(S3TierTest, StorageClassIsSetOnPutAndMultipart) {
  const std::string cls = Server()["STRATA_S3_STORAGE_CLASS"];
  ASSERT_FALSE(cls.empty());
  S3Options o = options_;
  o.storage_class = cls;
  o.multipart_threshold = 6 << 20;
  o.part_size = 5 << 20;
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Put("cold/small", "cold bytes").ok());
  const std::string data = RandomBytes(7 << 20, 10);
  ASSERT_TRUE((*t)->PutFile("cold/multi", WriteLocal("multi.seg", data)).ok());
  std::string out;
  ASSERT_TRUE((*t)->Get("cold/multi", 0, data.size(), &out).ok());
  EXPECT_TRUE(out == data);
  for (std::string key : {"cold/small", "cold/multi"}) {
    std::string headers = HeadHeaders(o, key);
    for (char& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string want = "x-amz-storage-class: " + cls;
    for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_CONTAINS(headers, want) << key;
  }
  // The default class: radosgw reports no header for STANDARD.
  ASSERT_TRUE(tier_->Put("standard", "x").ok());
  EXPECT_LACKS(HeadHeaders(options_, "standard"), cls);
  // A class the server does not know is a configuration error that says so.
  o.storage_class = "NO_SUCH_CLASS";
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  Status s = (*t)->Put("cold/nope", "x");
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "storage_class 'NO_SUCH_CLASS'");
}

TEST_F(S3TierTest, VirtualHostStyle) {
  // The test server's radosgw has `rgw dns name = localhost`, and curl resolves
  // strata-test.localhost to 127.0.0.1 by itself (RFC 6761), so no DNS is needed.
  S3Options o = options_;
  o.path_style = false;
  o.endpoint.replace(o.endpoint.find("127.0.0.1"), 9, "localhost");
  EXPECT_EQ(S3ObjectUrl(o, "a/b"),
            "http://" + o.bucket + ".localhost:" + o.endpoint.substr(o.endpoint.rfind(':') + 1) +
                "/" + o.prefix + "a/b");
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE((*t)->Put("vhost/a", "virtual").ok());
  std::string out;
  ASSERT_TRUE((*t)->Get("vhost/a", 1, 3, &out).ok());
  EXPECT_EQ(out, "irt");
  std::vector<ObjectInfo> v;
  ASSERT_TRUE((*t)->List("vhost/", &v).ok());
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].key, "vhost/a");
  // The same object through the path-style tier.
  ASSERT_TRUE(tier_->Get("vhost/a", 0, 7, &out).ok());
  EXPECT_EQ(out, "virtual");
}

TEST_F(S3TierTest, TlsWithAPrivateCa) {
  // The fixture's radosgw also serves https, with a certificate from a throwaway CA for
  // 127.0.0.1, localhost and strata-test.localhost.
  const std::string tls = Server()["STRATA_S3_TLS_ENDPOINT"];
  const std::string ca = Server()["STRATA_S3_CA_FILE"];
  if (tls.empty()) GTEST_SKIP() << "the test server has no TLS endpoint (no openssl binary)";
  const std::string port = tls.substr(tls.rfind(':') + 1);
  S3Options o = options_;
  o.endpoint = tls;
  o.ca_file = ca;
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  Status s = (*t)->Put("tls/a", "over tls");
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string out;
  ASSERT_TRUE((*t)->Get("tls/a", 5, 3, &out).ok());
  EXPECT_EQ(out, "tls");

  o.path_style = false;
  o.endpoint = "https://localhost:" + port;
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  s = (*t)->Get("tls/a", 0, 4, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  o.path_style = true;

  // Without the CA the server is not trusted: a configuration problem, not an outage.
  o.endpoint = tls;
  o.ca_file = "";
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  s = (*t)->Get("tls/a", 0, 4, &out);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_FALSE(s.retryable());
  EXPECT_CONTAINS(s.message(), "not trusted");
  EXPECT_CONTAINS(s.message(), "ca_file");

  // A host name the certificate does not carry (curl resolves *.localhost to 127.0.0.1).
  o.endpoint = "https://other.localhost:" + port;
  o.ca_file = ca;
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  s = (*t)->Get("tls/a", 0, 4, &out);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "not trusted");

  // verify_tls = false (tests only) accepts any certificate.
  o.endpoint = tls;
  o.ca_file = "";
  o.verify_tls = false;
  t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  s = (*t)->Get("tls/a", 0, 4, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(S3TierTest, KeysThatNeedEncoding) {
  const std::vector<std::string> keys = {"dir/a b+c=d&e", "dir/100%~x,y;z", "dir/ä€", "dir/<x>'\""};
  for (const auto& k : keys) {
    Status s = tier_->Put(k, k);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::string out;
    ASSERT_TRUE(tier_->Get(k, 0, k.size(), &out).ok()) << k;
    EXPECT_EQ(out, k);
  }
  std::vector<ObjectInfo> v;
  ASSERT_TRUE(tier_->List("dir/", &v).ok());
  std::vector<std::string> listed;
  for (const auto& o : v) listed.push_back(o.key);
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(listed, sorted);
  // A prefix that needs encoding in the query string (signed as sent, see s3_tier.cc).
  ASSERT_TRUE(tier_->List("dir/a b+c=d&", &v).ok());
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].key, keys[0]);
}

TEST_F(S3TierTest, BadKeysAreRefusedLikeTheDirectoryTier) {
  for (std::string k : {"", "/abs", "a/../b", "a//b", "dir/", "./x"})
    EXPECT_TRUE(tier_->Put(k, "x").IsInvalidArgument()) << k;
}

TEST_F(S3TierTest, ZeroLengthGet) {
  ASSERT_TRUE(tier_->Put("k", "abc").ok());
  std::string out = "junk";
  EXPECT_TRUE(tier_->Get("k", 3, 0, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(tier_->Get("k", 4, 0, &out).IsCorruption());
  EXPECT_TRUE(tier_->Get("missing", 0, 0, &out).IsNotFound());
}

TEST_F(S3TierTest, ListingsLongerThanOnePage) {
  // ListObjectsV2 returns 1000 keys per page: 1003 objects need a continuation token.
  constexpr int kObjects = 1003;
  auto start = Clock::now();
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 8; ++w) {
    threads.emplace_back([&, w] {
      for (int i = w; i < kObjects; i += 8) {
        char key[32];
        std::snprintf(key, sizeof(key), "many/%05d", i);
        if (!tier_->Put(key, "x").ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failed.load(), 0);
  std::printf("[ metrics  ] %d small PUTs from 8 threads: %.2f s\n", kObjects, SecondsSince(start));
  std::vector<ObjectInfo> v;
  start = Clock::now();
  ASSERT_TRUE(tier_->List("many/", &v).ok());
  std::printf("[ metrics  ] LIST of %d: %.2f s\n", kObjects, SecondsSince(start));
  ASSERT_EQ(v.size(), static_cast<size_t>(kObjects));
  for (int i = 0; i < kObjects; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "many/%05d", i);
    ASSERT_EQ(v[i].key, key);
  }
}

TEST_F(S3TierTest, ThirtyTwoConcurrentReaders) {
  const std::string data = RandomBytes(8 << 20, 11);
  ASSERT_TRUE(tier_->Put("shared", data).ok());
  constexpr int kThreads = 32, kReads = 16;
  constexpr uint64_t kLen = 256 << 10;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string out;
      for (int i = 0; i < kReads; ++i) {
        uint64_t off = rng() % (data.size() - kLen);
        Status s = tier_->Get("shared", off, kLen, &out);
        if (!s.ok() || out != data.substr(off, kLen)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  double secs = SecondsSince(start);
  EXPECT_EQ(bad.load(), 0);
  std::printf("[ metrics  ] %d readers x %d GETs of 256 KiB: %.2f s (%.0f GET/s, %.0f MiB/s)\n",
              kThreads, kReads, secs, kThreads * kReads / secs, kThreads * kReads / 4.0 / secs);
}

// A radosgw of this test's own in front of the shared cluster, stopped and started again: the
// tier reports Unavailable while it is down and works again, on the same object, once it is
// back. Other tests (ctest -j) keep using the main radosgw.
class S3RestartTest : public S3TierTest {
 protected:
  void SetUp() override {
    S3TierTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    script_ = Server()["STRATA_S3_SERVER_SCRIPT"];
    dir_ = Server()["STRATA_S3_DIR"];
    ASSERT_FALSE(script_.empty() || dir_.empty()) << "old env file: restart the fixture";
    rgw_ = "rgw-test-" + std::to_string(::getpid());
    ASSERT_EQ(Script("start-rgw"), 0);
    started_ = true;
  }
  void TearDown() override {
    if (started_) {
      EXPECT_EQ(Script("stop-rgw"), 0);
    }
    S3TierTest::TearDown();
  }
  int Script(const std::string& cmd) {
    return std::system(("bash '" + script_ + "' " + cmd + " '" + dir_ + "' " + rgw_).c_str());
  }
  std::string Endpoint() const {
    return strata::test::ReadEnvFile(dir_ + "/" + rgw_ + ".env")["STRATA_S3_ENDPOINT"];
  }

  std::string script_, dir_, rgw_;
  bool started_ = false;
};

TEST_F(S3RestartTest, StoppedServerIsUnavailableThenRecovers) {
  S3Options o = options_;
  o.endpoint = Endpoint();
  ASSERT_FALSE(o.endpoint.empty());
  o.connect_timeout_ms = 1000;
  o.request_timeout_ms = 2000;
  o.max_attempts = 3;
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  Tier& tier = **t;
  ASSERT_TRUE(tier.Put("seg/1", "before the outage").ok());

  auto start = Clock::now();
  ASSERT_EQ(Script("stop-rgw"), 0);
  double stop_s = SecondsSince(start);
  std::string out;
  start = Clock::now();
  Status s = tier.Get("seg/1", 0, 6, &out);
  double fail_s = SecondsSince(start);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_TRUE(s.retryable());
  EXPECT_CONTAINS(s.message(), "tier archive-s3 (" + o.endpoint);
  EXPECT_CONTAINS(s.message(), "GET seg/1");
  EXPECT_CONTAINS(s.message(), "after 3 attempts");
  EXPECT_LT(fail_s, 3 * (o.connect_timeout_ms + 500) / 1000.0);
  s = tier.Put("seg/2", "during the outage");
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();

  start = Clock::now();
  ASSERT_EQ(Script("start-rgw"), 0);
  double start_s = SecondsSince(start);
  // radosgw answers before its first authenticated request is served (it loads the user and
  // the bucket from the cluster then), which can outlast the 3 attempts of 2 s on a loaded
  // machine: the same client is polled for recovery, for up to a minute.
  start = Clock::now();
  do {
    s = tier.Get("seg/1", 0, 6, &out);
  } while (!s.ok() && s.retryable() && SecondsSince(start) < 60);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out, "before");
  EXPECT_TRUE(tier.Put("seg/2", "after the outage").ok());
  std::printf("[ metrics  ] stop-rgw %.2f s, Unavailable after %.2f s, start-rgw %.2f s\n", stop_s,
              fail_s, start_s);
}

// ---------------------------------------------------------------------------------------------
// Without a server.

TEST(S3TierOfflineTest, RefusedConnectionsAreRetriedThenUnavailable) {
  S3Options o;
  o.name = "archive-s3";
  o.endpoint = "http://127.0.0.1:" + std::to_string(ClosedPort());
  o.bucket = "b";
  o.credentials = {"AKID", "not-a-real-secret"};
  o.connect_timeout_ms = 500;
  o.request_timeout_ms = 500;
  o.max_attempts = 4;
  auto t = OpenS3Tier(o);  // the server need not be up to open a tier
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::string out;
  auto start = Clock::now();
  Status s = (*t)->Get("seg/7", 0, 10, &out);
  double secs = SecondsSince(start);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_TRUE(s.retryable());
  EXPECT_EQ(s.message(), "tier archive-s3 (" + o.endpoint +
                             " bucket b): GET seg/7: cannot connect: Connection refused after 4 "
                             "attempts");
  // Three backoffs of 50-100, 100-200 and 200-400 ms, and no more than that.
  EXPECT_GE(secs, 0.35);
  EXPECT_LT(secs, 2.0);
  EXPECT_TRUE((*t)->Put("k", "v").IsUnavailable());
  EXPECT_TRUE((*t)->Size("k").status().IsUnavailable());
  std::vector<ObjectInfo> v;
  EXPECT_TRUE((*t)->List("", &v).IsUnavailable());
}

TEST(S3TierOfflineTest, ServerThatNeverAnswersTimesOut) {
  // A socket that listens but never accepts: the kernel completes the connection, the request
  // is sent, and no answer ever comes.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 64), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  S3Options o;
  o.name = "archive-s3";
  o.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  o.bucket = "b";
  o.credentials = {"AKID", "not-a-real-secret"};
  o.request_timeout_ms = 300;
  o.max_attempts = 3;
  auto t = OpenS3Tier(o);
  ASSERT_TRUE(t.ok());
  std::string out;
  auto start = Clock::now();
  Status s = (*t)->Get("seg/1", 0, 10, &out);
  double secs = SecondsSince(start);
  ::close(fd);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "timed out");
  EXPECT_CONTAINS(s.message(), "after 3 attempts");
  EXPECT_GE(secs, 0.9);  // three attempts of 300 ms
  EXPECT_LT(secs, 2.5);  // plus two backoffs of at most 100 and 200 ms
}

TEST(S3TierOfflineTest, OptionsAreCheckedAndNamed) {
  S3Options good;
  good.name = "archive-s3";
  good.endpoint = "https://s3.example.org";
  good.bucket = "pacs";
  good.credentials = {"AKIDEXAMPLE", "very-secret-value"};
  ASSERT_TRUE(OpenS3Tier(good).ok());

  struct Case {
    std::function<void(S3Options&)> change;
    std::string option;
  };
  const std::vector<Case> cases = {
      {[](S3Options& o) { o.endpoint = "s3.example.org"; }, "endpoint"},
      {[](S3Options& o) { o.endpoint = "ftp://s3.example.org"; }, "endpoint"},
      {[](S3Options& o) { o.endpoint = "https://s3.example.org/path"; }, "endpoint"},
      {[](S3Options& o) { o.endpoint = "https://user@s3.example.org"; }, "endpoint"},
      {[](S3Options& o) { o.region = ""; }, "region"},
      {[](S3Options& o) { o.region = "us:east"; }, "region"},
      {[](S3Options& o) { o.bucket = ""; }, "bucket"},
      {[](S3Options& o) { o.bucket = "a/b"; }, "bucket"},
      {[](S3Options& o) { o.prefix = "/abs"; }, "prefix"},
      {[](S3Options& o) { o.storage_class = "glacier"; }, "storage_class"},
      {[](S3Options& o) { o.credentials.access_key = ""; }, "credentials"},
      {[](S3Options& o) { o.credentials.secret_key = ""; }, "credentials"},
      {[](S3Options& o) { o.credentials.secret_key = "very-secret-value\n"; }, "credentials"},
      {[](S3Options& o) { o.ca_file = "/nonexistent/ca.pem"; }, "ca_file"},
      {[](S3Options& o) { o.connect_timeout_ms = 0; }, "connect_timeout_ms"},
      {[](S3Options& o) { o.request_timeout_ms = -1; }, "request_timeout_ms"},
      {[](S3Options& o) { o.max_attempts = 0; }, "max_attempts"},
      {[](S3Options& o) { o.part_size = 1 << 20; }, "part_size"},
      {[](S3Options& o) { o.multipart_threshold = 0; }, "multipart_threshold"},
      {[](S3Options& o) {
         o.path_style = false;
         o.bucket = "Pacs_Archive";
       },
       "bucket"},
      {[](S3Options& o) {
         o.path_style = false;
         o.endpoint = "http://10.0.0.1:7480";
       },
       "path_style"},
  };
  for (const Case& c : cases) {
    S3Options o = good;
    c.change(o);
    auto t = OpenS3Tier(o);
    ASSERT_FALSE(t.ok()) << c.option;
    EXPECT_TRUE(t.status().IsInvalidArgument()) << t.status().ToString();
    EXPECT_CONTAINS(t.status().message(), "S3 tier archive-s3: " + c.option);
    EXPECT_LACKS(t.status().message(), "very-secret-value");
  }
  S3Options nameless = good;
  nameless.name = "";
  EXPECT_TRUE(OpenS3Tier(nameless).status().IsInvalidArgument());
}

TEST(S3TierOfflineTest, ObjectUrls) {
  S3Options o;
  o.endpoint = "https://s3.example.org/";
  o.bucket = "pacs-archive";
  o.prefix = "site a/";
  EXPECT_EQ(S3ObjectUrl(o, "seg/0001+x"),
            "https://s3.example.org/pacs-archive/site%20a/seg/0001%2Bx");
  o.path_style = false;
  EXPECT_EQ(S3ObjectUrl(o, "seg/0001+x"),
            "https://pacs-archive.s3.example.org/site%20a/seg/0001%2Bx");
  o.endpoint = "http://rgw.hospital.internal:7480";
  o.prefix = "";
  EXPECT_EQ(S3ObjectUrl(o, "a~b_c-d.e/ä"),
            "http://pacs-archive.rgw.hospital.internal:7480/a~b_c-d.e/%C3%A4");
  o.path_style = true;
  EXPECT_EQ(S3ObjectUrl(o, "k"), "http://rgw.hospital.internal:7480/pacs-archive/k");
}

class CredentialsFileTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = ::testing::TempDir() + "s3creds-" + std::to_string(::getpid()); }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text) {
    std::ofstream(path_) << text;
    ::chmod(path_.c_str(), 0600);
  }
  std::string path_;
};

TEST_F(CredentialsFileTest, ReadsTheNamedProfile) {
  Write(
      "# strata's S3 credentials\n"
      "[default]\n"
      "aws_access_key_id = AKIDDEFAULT\n"
      "aws_secret_access_key=secret/default+1\n"
      "\n"
      "; another one, as ~/.aws/config names it\r\n"
      "[profile archive]\r\n"
      "  AWS_ACCESS_KEY_ID   =  AKIDARCHIVE  \r\n"
      "aws_secret_access_key = secret=archive\r\n"
      "region = eu-central-1\r\n");
  auto c = LoadS3CredentialsFile(path_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key, "AKIDDEFAULT");
  EXPECT_EQ(c->secret_key, "secret/default+1");
  c = LoadS3CredentialsFile(path_, "archive");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key, "AKIDARCHIVE");
  EXPECT_EQ(c->secret_key, "secret=archive");
}

TEST_F(CredentialsFileTest, ErrorsNameFileAndLineButNeverAValue) {
  Write("[default]\naws_access_key_id = AKID\n\n[other]\naws_secret_access_key = s\n");
  auto c = LoadS3CredentialsFile(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
  EXPECT_EQ(c.status().message(), path_ + ":1: profile [default] has no aws_secret_access_key");

  c = LoadS3CredentialsFile(path_, "archive");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), path_ + ": no [archive] profile");

  Write("[default]\naws_access_key_id = AKID\naws_secret_access_key hunter2-secret\n");
  c = LoadS3CredentialsFile(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_CONTAINS(c.status().message(), path_ + ":3: expected 'name = value'");
  EXPECT_LACKS(c.status().message(), "hunter2");

  Write("aws_access_key_id = AKID\n");
  EXPECT_CONTAINS(LoadS3CredentialsFile(path_).status().message(), path_ + ":1: setting before");

  Write("[default\n");
  EXPECT_CONTAINS(LoadS3CredentialsFile(path_).status().message(), path_ + ":1:");

  EXPECT_TRUE(LoadS3CredentialsFile(path_ + ".missing").status().IsNotFound());
}

TEST(S3CredentialsTest, FromTheEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
  auto c = S3CredentialsFromEnvironment();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key, "AKIDENV");
  EXPECT_EQ(c->secret_key, "env-secret");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  c = S3CredentialsFromEnvironment();
  EXPECT_TRUE(c.status().IsNotFound());
  EXPECT_CONTAINS(c.status().message(), "AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_ACCESS_KEY_ID");
}

}  // namespace
}  // namespace strata::tiering
