// The S3 tiering tests' fixture and helpers (tiering_s3_test.cc: the whole path, kill -9 at each
// migration step, a damaged object; tiering_s3_outage_test.cc: the server down or hung).
// A mount with an S3 tier "cloud" on the real S3 server of the CTest fixture S3, its own key
// prefix in the shared bucket, and optionally a radosgw of its own to stop and freeze.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/util/s3_test_server.h"
#include "tiering/s3_tier.h"

namespace strata::it {

namespace sfs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Files = std::vector<std::pair<std::string, std::string>>;  // path in the mount, contents

constexpr size_t kChunk = 64 * 1024;  // the default chunk size
constexpr int kExitFailed = 2;        // `strata` exit status for "ran, but failed"

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A pread of the first chunk of `path` on its own thread, timed: a cold read that may wait on
// a tier that is down or hung while the test reads something else.
class ColdRead {
 public:
  explicit ColdRead(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY)) {
    if (fd_ < 0) return;
    thread_ = std::thread([this] {
      std::string buf(kChunk, '\0');
      const auto t0 = Clock::now();
      n = ::pread(fd_, buf.data(), buf.size(), 0);
      err = errno;
      seconds = SecondsSince(t0);
      if (n > 0) bytes.assign(buf, 0, static_cast<size_t>(n));
      done = true;
    });
  }
  ~ColdRead() { Join(); }
  bool opened() const { return fd_ >= 0; }
  void Join() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::atomic<bool> done{false};
  // Read after Join.
  ssize_t n = 0;
  int err = 0;
  double seconds = 0;
  std::string bytes;  // what the read returned

 private:
  int fd_;
  std::thread thread_;
};

// The test server (tests/util/s3_test_server.h).
inline const test::S3TestServer& Server() { return test::S3Server(); }

// Letters, digits, '.', '-' and '_' only (for key prefixes and radosgw names).
inline std::string Sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  return s;
}

inline std::string RandomHex() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

// --- the segment format, to damage one record precisely (docs/formats/journal.md) -----------

constexpr size_t kSegmentHeaderBytes = 64;
constexpr size_t kRecordHeaderBytes = 20;  // crc u32, length u32, type u8, reserved[3], LSN u64
constexpr uint8_t kDataRecord = 1;

inline uint32_t Le32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[off + i]);
  return v;
}

inline void PutLe32(std::string* s, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// The masked CRC-32C of a record (docs/formats/journal.md, section 1).
inline uint32_t MaskedCrc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFF;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  c = ~c;
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

// --- what `strata migrate --json` and `--status --json` print --------------------------------

struct TierUsage {
  bool found = false;
  uint64_t segments = 0, live_bytes = 0, object_bytes = 0;
};

inline TierUsage ParseTierUsage(const std::string& json, const std::string& tier) {
  std::smatch m;
  std::regex re("\\{\"name\":\"" + tier +
                "\",\"kind\":\"[a-z0-9]+\",\"segments\":([0-9]+),\"live_bytes\":([0-9]+),"
                "\"object_bytes\":([0-9]+)\\}");
  TierUsage u;
  if (!std::regex_search(json, m, re)) return u;
  u.found = true;
  u.segments = std::stoull(m[1]);
  u.live_bytes = std::stoull(m[2]);
  u.object_bytes = std::stoull(m[3]);
  return u;
}

// The first `"name":123` in a JSON text.
inline std::optional<uint64_t> JsonNumber(const std::string& json, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + name + "\":([0-9]+)"))) return std::nullopt;
  return std::stoull(m[1]);
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "lacks \"" << (needle) << "\":\n"                         \
      << (haystack)

// ---------------------------------------------------------------------------------------------

// A filesystem with an S3 tier "cloud" (its own key prefix in the test bucket) and a policy
// that sends studies/** older than 180 days there; no background passes (interval "off"), so
// every pass is one the test runs.
class TieringS3It : public MountFixture {
 protected:
  TieringS3It() { mount_in_setup_ = false; }

  void SetUp() override {
    if (!Server().why_not.empty()) GTEST_SKIP() << Server().why_not;
    MountFixture::SetUp();  // mkfs; the tier and the policy are added below
    if (HasFatalFailure() || IsSkipped()) return;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    prefix_ = "it/" + Sanitize(std::string(info->test_suite_name()) + "." + info->name()) + "-" +
              std::to_string(::getpid()) + "-" + RandomHex() + "/";

    // The bucket as any S3 client sees it, through the main radosgw.
    tiering::S3Options o;
    o.name = "outside";
    o.endpoint = Server()["STRATA_S3_ENDPOINT"];
    o.region = Server()["STRATA_S3_REGION"];
    o.bucket = Server()["STRATA_S3_BUCKET"];
    o.credentials = {Server()["STRATA_S3_ACCESS_KEY"], Server()["STRATA_S3_SECRET_KEY"]};
    o.prefix = prefix_;
    auto t = tiering::OpenS3Tier(o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    bucket_ = std::move(t).value();

    endpoint_ = Server()["STRATA_S3_ENDPOINT"];
    if (own_rgw_) {
      rgw_ = "rgw-it-" + std::to_string(::getpid()) + "-" + RandomHex().substr(0, 8);
      ASSERT_TRUE(RgwScript("start-rgw"));
      rgw_running_ = true;
      endpoint_ =
          test::ReadEnvFile(Server()["STRATA_S3_DIR"] + "/" + rgw_ + ".env")["STRATA_S3_ENDPOINT"];
      ASSERT_FALSE(endpoint_.empty()) << "start-rgw " << rgw_ << " wrote no endpoint";
    }

    credentials_ = root() + "/s3.credentials";
    ASSERT_TRUE(WriteWholeFile(credentials_,
                               "# written by tiering_s3_test\n[strata-it]\naws_access_key_id = " +
                                   Server()["STRATA_S3_ACCESS_KEY"] + "\naws_secret_access_key = " +
                                   Server()["STRATA_S3_SECRET_KEY"] + "\n",
                               0600));
    policy_ = root() + "/policy.toml";
    ASSERT_TRUE(WriteWholeFile(policy_,
                               "[[rule]]\nname = \"old-studies\"\nmatch = \"studies/**\"\n"
                               "older_than = \"180d\"\nto = \"cloud\"\n",
                               0644));
    extra_config_ = {"[tiers.cloud]",
                     "kind = \"s3\"",
                     "endpoint = \"" + endpoint_ + "\"",
                     "region = \"" + Server()["STRATA_S3_REGION"] + "\"",
                     "bucket = \"" + Server()["STRATA_S3_BUCKET"] + "\"",
                     "prefix = \"" + prefix_ + "\"",
                     "credentials_file = \"" + credentials_ + "\"",
                     "profile = \"strata-it\""};
    const std::pair<const char*, const std::string*> tier_options[] = {
        {"connect_timeout", &connect_timeout_},
        {"request_timeout", &request_timeout_},
        {"read_timeout", &read_timeout_},
        {"readahead", &readahead_}};
    for (const auto& [key, value] : tier_options)
      if (!value->empty()) extra_config_.push_back(std::string(key) + " = \"" + *value + "\"");
    extra_config_.insert(extra_config_.end(),
                         {"[policy]", "file = \"" + policy_ + "\"", "interval = \"off\""});
    WriteConfig();
    ASSERT_NO_FATAL_FAILURE(Mount());
  }

  void TearDown() override {
    if (rgw_frozen_) SignalOwnRgw(SIGCONT);  // lets the daemon's requests end before unmount
    MountFixture::TearDown();  // unmounts first: the daemon may still talk to the tier
    if (rgw_running_) RgwScript("stop-rgw");
    // The fixture's stop deletes the whole cluster; until then keep the bucket tidy.
    if (bucket_ != nullptr && EnvInt("STRATA_KEEP_TMP", 0) == 0) {
      std::vector<tiering::ObjectInfo> all;
      if (bucket_->List("", &all).ok())
        for (const auto& obj : all) bucket_->Delete(obj.key).IgnoreError();
    }
  }

  // `s3-server.sh CMD DIR rgw-NAME` on this test's own radosgw.
  bool RgwScript(const std::string& cmd) {
    CommandResult r = RunCommand(
        {"bash", Server()["STRATA_S3_SERVER_SCRIPT"], cmd, Server()["STRATA_S3_DIR"], rgw_},
        std::chrono::seconds(120));
    EXPECT_TRUE(r.Succeeded()) << "s3-server.sh " << cmd << " " << rgw_ << ": " << r.Describe();
    if (r.Succeeded()) rgw_running_ = cmd == "start-rgw";
    return r.Succeeded();
  }

  // SIGSTOP / SIGCONT to this test's own radosgw: a server that accepts connections and
  // requests but never answers (a hung front end), then one that answers again.
  bool SignalOwnRgw(int sig) {
    const std::string pid_file = Server()["STRATA_S3_DIR"] + "/run/" + rgw_ + ".pid";
    std::string text;
    if (!ReadWholeFile(pid_file, &text)) return false;
    const pid_t pid = static_cast<pid_t>(std::atol(text.c_str()));
    std::error_code ec;
    const sfs::path exe = sfs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
    if (pid <= 0 || ec || exe.filename() != "radosgw") return false;  // not (still) ours
    return ::kill(pid, sig) == 0;
  }

  CommandResult Strata(std::vector<std::string> args) {
    args.insert(args.begin(), StrataBinary());
    return RunCommand(args, std::chrono::seconds(120));
  }

  // A pass through the daemon that must succeed; returns its output.
  std::string Migrate(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"migrate", config_path()};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Strata(args);
    EXPECT_TRUE(r.Succeeded()) << "strata migrate: " << r.Describe();
    return r.output;
  }

  std::string StatusJson() {
    CommandResult r = Strata({"migrate", config_path(), "--status", "--json"});
    EXPECT_TRUE(r.Succeeded()) << "strata migrate --status: " << r.Describe();
    return r.output;
  }

  void WriteFile(const std::string& rel, const std::string& data) {
    std::string p = mnt() + "/" + rel;
    sfs::create_directories(sfs::path(p).parent_path());
    ASSERT_TRUE(WriteWholeFile(p, data, 0644)) << p << ": " << strerror(errno);
  }

  // Sets the mtime 200 days back: the policy's "older than 180d" selects the file.
  void Age(const std::string& rel) {
    std::string p = mnt() + "/" + rel;
    timespec t[2];
    t[0].tv_sec = t[1].tv_sec = ::time(nullptr) - 200 * 86400;
    t[0].tv_nsec = t[1].tv_nsec = 0;
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, 0), 0) << p << ": " << strerror(errno);
  }

  void WriteOld(const std::string& rel, const std::string& data) {
    ASSERT_NO_FATAL_FAILURE(WriteFile(rel, data));
    ASSERT_NO_FATAL_FAILURE(Age(rel));
  }

  // Every object under this test's prefix, keys relative to it.
  std::vector<tiering::ObjectInfo> Objects() {
    std::vector<tiering::ObjectInfo> all;
    Status s = bucket_->List("", &all);
    EXPECT_TRUE(s.ok()) << "listing " << prefix_ << ": " << s.ToString();
    return all;
  }

  std::set<std::string> ObjectKeys() {
    std::set<std::string> keys;
    for (const auto& o : Objects()) keys.insert(o.key);
    return keys;
  }

  std::string GetObject(const tiering::ObjectInfo& obj) {
    std::string bytes;
    Status s = bucket_->Get(obj.key, 0, obj.size, &bytes);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return bytes;
  }

  void ExpectReadsBack(const Files& files) {
    for (const auto& [rel, data] : files) {
      std::string got;
      ASSERT_TRUE(ReadWholeFile(mnt() + "/" + rel, &got)) << rel << ": " << strerror(errno);
      EXPECT_TRUE(got == data) << rel << " differs: " << got.size() << " bytes read, "
                               << data.size() << " written";
    }
  }

  // The read cache of cold records lives on the hot tier (docs/tiering.md); emptied while
  // unmounted, every cold read of the next mount goes to S3.
  void ClearReadCache() {
    ASSERT_FALSE(mounted());
    const std::string cache = hot() + "/cache";
    if (!sfs::exists(cache)) return;
    for (const auto& e : sfs::directory_iterator(cache)) sfs::remove_all(e.path());
  }

  void RemountCold() {
    ASSERT_NO_FATAL_FAILURE(Unmount());
    ASSERT_NO_FATAL_FAILURE(ClearReadCache());
    ASSERT_NO_FATAL_FAILURE(Mount());
  }

  // What an administrator checks for leaks: the bucket holds exactly the segments the
  // filesystem records on the tier (same count, same bytes), each named as a placement
  // segment, and no staging file is left on the hot tier.
  void ExpectBucketMatchesStatus() {
    TierUsage u = ParseTierUsage(StatusJson(), "cloud");
    ASSERT_TRUE(u.found) << "no s3 tier 'cloud' in the status";
    std::vector<tiering::ObjectInfo> objects = Objects();
    uint64_t bytes = 0;
    std::string keys;
    const std::regex segment_key("[0-9a-f]{32}/[0-9a-f]{3}/[0-9a-f]{16}\\.seg");
    for (const auto& o : objects) {
      bytes += o.size;
      keys += "  " + o.key + " (" + std::to_string(o.size) + " bytes)\n";
      EXPECT_TRUE(std::regex_match(o.key, segment_key)) << "not a placement segment: " << o.key;
    }
    EXPECT_EQ(objects.size(), u.segments) << "objects under " << prefix_ << ":\n" << keys;
    EXPECT_EQ(bytes, u.object_bytes) << keys;
    const std::string staging = hot() + "/staging";
    EXPECT_TRUE(!sfs::exists(staging) || sfs::is_empty(staging)) << staging << " is not empty";
  }

  // --- set by subclasses in their constructor ---
  bool own_rgw_ = false;  // the tier talks to a radosgw of this test's own
  std::string connect_timeout_, request_timeout_, read_timeout_;  // empty: the defaults
  std::string readahead_;                                         // empty: the default

  std::string prefix_, endpoint_, credentials_, policy_, rgw_;
  bool rgw_running_ = false, rgw_frozen_ = false;
  std::unique_ptr<tiering::Tier> bucket_;
};

}  // namespace strata::it
