// Tiering to S3 on a real mount, end to end, against the real S3 server (single-node Ceph RGW)
// that the CTest fixture S3 starts (tests/s3, scripts/s3-server.sh, docs/s3.md) and describes
// in the file named by STRATA_S3_ENV. Without it every case is skipped with the reason.
//
// The filesystem is driven only through what an administrator uses: the mount, POSIX calls,
// `strata migrate` (through the running daemon) with --dry-run, --status and --json, and
// kill -9 (named kill points, STRATA_KILL_AT, in the daemon's environment). The bucket is
// looked at from outside, as any S3 client sees it, through the S3 tier's client
// (tiering/s3_tier.h): listing objects, scanning them for plaintext, damaging one.
//
// Every test has its own key prefix in the shared bucket. The tests that stop "the S3 server"
// stop a radosgw of their own (`s3-server.sh stop-rgw DIR rgw-NAME`) in front of the shared
// cluster, so the other S3 tests running beside them (ctest -j) keep theirs.
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
namespace {

namespace sfs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Files = std::vector<std::pair<std::string, std::string>>;  // path in the mount, contents

constexpr size_t kChunk = 128 * 1024;  // the default chunk size
constexpr int kExitFailed = 2;         // `strata` exit status for "ran, but failed"

double SecondsSince(Clock::time_point start) {
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
const test::S3TestServer& Server() { return test::S3Server(); }

// Letters, digits, '.', '-' and '_' only (for key prefixes and radosgw names).
std::string Sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  return s;
}

std::string RandomHex() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

// --- the segment format, to damage one record precisely (docs/formats/journal.md) -----------

constexpr size_t kSegmentHeaderBytes = 64;
constexpr size_t kRecordHeaderBytes = 20;  // crc u32, length u32, type u8, reserved[3], LSN u64
constexpr uint8_t kDataRecord = 1;

uint32_t Le32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[off + i]);
  return v;
}

void PutLe32(std::string* s, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// The masked CRC-32C of a record (docs/formats/journal.md, section 1).
uint32_t MaskedCrc32c(std::string_view data) {
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

TierUsage ParseTierUsage(const std::string& json, const std::string& tier) {
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
std::optional<uint64_t> JsonNumber(const std::string& json, const std::string& name) {
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

// 1. The whole path through the daemon: dry run, the pass, the status, every file back
// byte for byte (ranged reads too, from a cold cache), and nothing in plain text on S3.
TEST_F(TieringS3It, MigrateThroughTheDaemonThenReadEverythingBack) {
  // Markers in names and contents, as a DICOM file carries the patient's name in both.
  const std::string kNameMarker = "PATIENT-ZEBRA-4711";
  const std::string kContentMarker = "CONTENT-MARKER-Q9X7-MUST-NOT-BE-STORED";
  Files files;
  for (int st = 0; st < 2; ++st) {
    for (int i = 0; i < 6; ++i) {
      // Four DICOM-sized instances and two of ~1.5 MiB (13 chunks) per study.
      const size_t n = i < 4 ? 512 * 1024 + 77 * i : 1536 * 1024 + 4099 * i;
      std::string data = CtLike(n, static_cast<uint32_t>(st * 10 + i));
      for (size_t at : {size_t{0}, n / 3, n - kContentMarker.size()})
        data.replace(at, kContentMarker.size(), kContentMarker);
      files.push_back({"studies/" + kNameMarker + "-st" + std::to_string(st) + "/ser1/img" +
                           std::to_string(i) + ".dcm",
                       std::move(data)});
    }
  }
  for (const auto& [p, d] : files) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const Files recent = {{"recent-" + kNameMarker + ".dcm", CtLike(100000, 99)}};
  ASSERT_NO_FATAL_FAILURE(WriteFile(recent[0].first, recent[0].second));

  CommandResult dry = Strata({"migrate", config_path(), "--dry-run", "--json"});
  ASSERT_TRUE(dry.Succeeded()) << dry.Describe();
  EXPECT_CONTAINS(dry.output, "\"dry_run\":true");
  EXPECT_CONTAINS(dry.output, "{\"rule\":\"old-studies\",\"to\":\"cloud\",\"files\":12,");
  EXPECT_EQ(JsonNumber(dry.output, "files_moved"), 0u) << dry.output;
  EXPECT_TRUE(Objects().empty()) << "a dry run stored objects";

  const auto start = Clock::now();
  std::string out = Migrate();
  const double migrate_s = SecondsSince(start);
  EXPECT_CONTAINS(out, "moved 12 files");
  RecordProperty("migrate_ms", static_cast<int>(migrate_s * 1000));

  // The status shows the S3 tier's usage, and the bucket holds exactly that.
  const std::string status = StatusJson();
  TierUsage u = ParseTierUsage(status, "cloud");
  ASSERT_TRUE(u.found) << status;
  EXPECT_CONTAINS(status, "\"name\":\"cloud\",\"kind\":\"s3\"");
  EXPECT_GE(u.segments, 1u);
  EXPECT_GT(u.live_bytes, 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());

  // Promise 1: no name and no content in plain text in any object.
  const std::string ct_sample = files[0].second.substr(4096, 64);
  for (const auto& obj : Objects()) {
    const std::string bytes = GetObject(obj);
    ASSERT_EQ(bytes.size(), obj.size) << obj.key;
    for (const std::string& needle :
         {kNameMarker, kContentMarker, std::string("img0.dcm"), std::string("ser1"), ct_sample})
      EXPECT_EQ(bytes.find(needle), std::string::npos)
          << obj.key << " holds a plaintext " << (needle == ct_sample ? "pixel run" : needle);
  }

  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(files));
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(recent));

  // Cold caches: the reads go to S3. First a ranged read in the middle of a 13-chunk file,
  // across two chunk boundaries, before anything else touched that file.
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  const auto& [big_path, big] = files[5];
  ASSERT_GT(big.size(), 1400 * 1024u);
  {
    const off_t off = 5 * kChunk + 12345;
    const size_t len = 2 * kChunk + 777;
    int fd = ::open((mnt() + "/" + big_path).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::string buf(len, '\0');
    ssize_t n = ::pread(fd, buf.data(), len, off);
    const int err = errno;
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(len)) << strerror(err);
    EXPECT_TRUE(buf == big.substr(off, len)) << "ranged read at " << off << " differs";
  }
  const std::string after = StatusJson();
  EXPECT_GE(JsonNumber(after, "cold_fetches").value_or(0), 1u)
      << "the ranged read did not fetch from S3:\n"
      << after;
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(files));
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(recent));
}

// 2. kill -9 at every step of the migration protocol, against S3: every file reads back
// identical after the crash, the next pass completes, and no object leaks.
class TieringS3CrashIt : public TieringS3It, public ::testing::WithParamInterface<const char*> {};

TEST_P(TieringS3CrashIt, KillNineAtStepThenRecover) {
  const std::string step = GetParam();
  // A segment on S3 that a truncate then empties: the killed pass moves the new files and
  // then deletes that segment (the migrate.deleted step); earlier steps never get there.
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/gone/old.dcm", CtLike(200000, 1)));
  Migrate();
  ASSERT_EQ(Objects().size(), 1u);
  ASSERT_EQ(::truncate((mnt() + "/studies/gone/old.dcm").c_str(), 0), 0) << strerror(errno);

  const Files cold = {{"studies/a/1.dcm", CtLike(150000, 2)},
                      {"studies/a/2.dcm", CtLike(400000, 3)},
                      {"studies/b/3.dcm", CtLike(700000, 4)}};
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  Files all = cold;
  all.push_back({"recent.dcm", CtLike(90000, 5)});
  ASSERT_NO_FATAL_FAILURE(WriteFile(all.back().first, all.back().second));
  all.push_back({"studies/gone/old.dcm", ""});

  ASSERT_NO_FATAL_FAILURE(Unmount());
  daemon_env_ = {"STRATA_KILL_AT=" + step};
  ASSERT_NO_FATAL_FAILURE(Mount());
  CommandResult killed = Strata({"migrate", config_path()});
  EXPECT_FALSE(killed.Succeeded()) << "the pass survived " << step << ": " << killed.Describe();
  const int status = WaitForDaemonExit(std::chrono::seconds(30));
  ASSERT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the daemon did not die at " << step << ": " << DescribeWaitStatus(status) << "\n"
      << Tail(DaemonLog(), 4096);
  // What the crash left in the bucket: the emptied segment until its delete, the new one from
  // its upload on (an orphan until the next pass rolls it back, or live once moved).
  const std::map<std::string, size_t> objects_after_crash = {
      {"migrate.intent", 1},   {"migrate.built", 1}, {"migrate.uploaded", 2},
      {"migrate.verified", 2}, {"migrate.moved", 2}, {"migrate.deleted", 1}};
  EXPECT_EQ(Objects().size(), objects_after_crash.at(step));

  daemon_env_.clear();
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));

  CommandResult again = Strata({"migrate", config_path(), "--json"});
  ASSERT_TRUE(again.Succeeded()) << again.Describe();
  EXPECT_CONTAINS(again.output, "\"errors\":[]");
  // Everything the policy selects is on S3 now ...
  CommandResult dry = Strata({"migrate", config_path(), "--dry-run", "--json"});
  ASSERT_TRUE(dry.Succeeded()) << dry.Describe();
  EXPECT_CONTAINS(dry.output, "{\"rule\":\"old-studies\",\"to\":\"cloud\",\"files\":0,");
  // ... in one live segment: the emptied one is gone, an interrupted upload was rolled back.
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());
  EXPECT_EQ(Objects().size(), 1u);

  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));
}

INSTANTIATE_TEST_SUITE_P(Steps, TieringS3CrashIt,
                         ::testing::Values("migrate.intent", "migrate.built", "migrate.uploaded",
                                           "migrate.verified", "migrate.moved", "migrate.deleted"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(n.find('.') + 1);
                         });

// A tier on a radosgw of the test's own, with short timeouts (a server that is down is
// noticed in about a second), and small segments so that a pass writes several.
class TieringS3OutageIt : public TieringS3It {
 protected:
  TieringS3OutageIt() {
    own_rgw_ = true;
    filesystem_config_ = {"segment_size = \"1MiB\""};
    connect_timeout_ = "1s";
    request_timeout_ = "2s";
    read_timeout_ = "2s";
  }
};

// 3. The S3 server is down when a pass runs: the pass reports it and frees nothing; once the
// server is back, the next pass rolls the interrupted upload back and completes.
TEST_F(TieringS3OutageIt, ServerDownDuringMigrationFreesNothingThenCompletes) {
  Files files;
  for (int i = 0; i < 8; ++i)
    files.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                     CtLike(300000 + 1000 * i, static_cast<uint32_t>(20 + i))});
  for (const auto& [p, d] : files) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  Files all = files;
  all.push_back({"recent.dcm", CtLike(90000, 30)});
  ASSERT_NO_FATAL_FAILURE(WriteFile(all.back().first, all.back().second));

  ASSERT_TRUE(RgwScript("stop-rgw"));
  const auto start = Clock::now();
  CommandResult failed = Strata({"migrate", config_path()});
  const double failed_s = SecondsSince(start);
  EXPECT_EQ(failed.ExitCode(), kExitFailed) << failed.Describe();
  EXPECT_CONTAINS(failed.output, "error: ");
  EXPECT_CONTAINS(failed.output, "tier cloud (" + endpoint_);  // which tier, which server
  EXPECT_LT(failed_s, 20.0) << "a refused connection should fail within a few seconds";
  RecordProperty("failed_pass_ms", static_cast<int>(failed_s * 1000));
  std::printf("[ metrics  ] pass with S3 down failed after %.2f s:\n%s", failed_s,
              failed.output.c_str());
  const std::string status = StatusJson();
  EXPECT_CONTAINS(status, "\"last_pass_result\":\"incomplete: ");
  EXPECT_TRUE(Objects().empty()) << "an object reached S3 while its server was down";
  // Nothing was freed: every file reads back, from the hot tier.
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));

  ASSERT_TRUE(RgwScript("start-rgw"));
  std::string out = Migrate({"--json"});
  EXPECT_EQ(JsonNumber(out, "files_moved"), files.size()) << out;
  EXPECT_EQ(JsonNumber(out, "segments_rolled_back"), 1u) << out;
  EXPECT_CONTAINS(out, "\"errors\":[]");
  EXPECT_GE(JsonNumber(out, "segments_written").value_or(0), 2u) << out;
  ASSERT_NO_FATAL_FAILURE(ExpectBucketMatchesStatus());
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(all));
}

// 4. Reads while the S3 server is down: a cold read fails with EIO within about the tier's
// read_timeout, a hot read at the same time is served, and once the server is back the cold
// file reads back identical.
TEST_F(TieringS3OutageIt, ColdReadIsEioWhileTheServerIsDownAndHotReadsGoOn) {
  const std::string cold = CtLike(600000, 7), hot = CtLike(300000, 8);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/a/cold.dcm", cold));
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved 1 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(RgwScript("stop-rgw"));

  const std::string cold_path = mnt() + "/studies/a/cold.dcm";
  ColdRead cold_read(cold_path);  // the open is metadata only: it works with S3 down
  ASSERT_TRUE(cold_read.opened()) << strerror(errno);
  // Meanwhile a file on the hot tier, never read in this mount (so the daemon serves it).
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool hot_before_cold = !cold_read.done.load();
  cold_read.Join();
  const ssize_t cold_n = cold_read.n;
  const int cold_errno = cold_read.err;
  const double cold_s = cold_read.seconds;
  EXPECT_TRUE(hot_ok && got == hot) << "hot read during the outage failed or differs";
  EXPECT_LT(hot_s, 2.0);
  EXPECT_EQ(cold_n, -1) << "a cold read with S3 down returned data";
  EXPECT_EQ(cold_errno, EIO) << strerror(cold_errno);
  EXPECT_LT(cold_s, 2.0 + 2.0) << "read_timeout is 2s";
  RecordProperty("cold_eio_ms", static_cast<int>(cold_s * 1000));
  RecordProperty("hot_read_ms", static_cast<int>(hot_s * 1000));
  std::printf("[ metrics  ] cold read EIO after %.2f s; hot read %.3f s (%s the cold one ended)\n",
              cold_s, hot_s, hot_before_cold ? "before" : "after");
  EXPECT_FALSE(ReadWholeFile(cold_path, &got)) << "the whole cold file read with S3 down";
  EXPECT_CONTAINS(DaemonLog(), "cloud");  // the log names the tier that failed

  ASSERT_TRUE(RgwScript("start-rgw"));
  ASSERT_TRUE(ReadWholeFile(cold_path, &got)) << strerror(errno);
  EXPECT_TRUE(got == cold) << "the cold file differs once S3 is back";
}

// 4b. A server that hangs instead of refusing: a cold read gives up at the tier's
// read_timeout with EIO, and a hot read while it waits is served at once (cold reads wait
// on their own threads, never on the workers that serve hot reads).
TEST_F(TieringS3OutageIt, ColdReadGivesUpAtReadTimeoutWhenTheServerHangs) {
  const std::string cold = CtLike(600000, 9), hot = CtLike(300000, 10);
  ASSERT_NO_FATAL_FAILURE(WriteOld("studies/a/cold.dcm", cold));
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved 1 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  const std::string cold_path = mnt() + "/studies/a/cold.dcm";
  ColdRead cold_read(cold_path);
  ASSERT_TRUE(cold_read.opened()) << strerror(errno);
  // Once the daemon has sent the GET (the status counts it), the cold read is waiting.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (JsonNumber(StatusJson(), "cold_fetches").value_or(0) == 0 && !cold_read.done &&
         Clock::now() < deadline) {
  }
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool cold_still_waiting = !cold_read.done.load();
  cold_read.Join();
  const ssize_t cold_n = cold_read.n;
  const int cold_errno = cold_read.err;
  const double cold_s = cold_read.seconds;
  EXPECT_TRUE(hot_ok && got == hot) << "hot read while S3 hangs failed or differs";
  EXPECT_TRUE(cold_still_waiting) << "the hot read waited for the cold one (" << hot_s << " s)";
  EXPECT_EQ(cold_n, -1) << "a cold read from a hung server returned data";
  EXPECT_EQ(cold_errno, EIO) << strerror(cold_errno);
  EXPECT_GE(cold_s, 1.5) << "gave up before read_timeout (2s)";
  // One read(2) of an uncached page can be two FUSE reads (the kernel retries a failed
  // readahead with a synchronous read); the second joins the hung fetch and gives up at the
  // same deadline, so the whole read(2) takes one read_timeout.
  EXPECT_LT(cold_s, 2.0 + 1.5) << "read_timeout is 2s";
  std::printf("[ metrics  ] hung S3: cold read EIO after %.2f s; hot read meanwhile %.3f s\n",
              cold_s, hot_s);

  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  // The fetch of the outage may still be retrying; a read either fails with EIO or returns the
  // right bytes, and succeeds once the server answers again.
  bool ok = false;
  const auto back = Clock::now() + std::chrono::seconds(30);
  while (!ok && Clock::now() < back) {
    ok = ReadWholeFile(cold_path, &got);
    if (!ok) {
      ASSERT_EQ(errno, EIO) << strerror(errno);
    }
  }
  ASSERT_TRUE(ok) << "the cold file does not read 30 s after S3 answers again";
  EXPECT_TRUE(got == cold) << "the cold file differs once S3 answers again";
}

// 4c. Many cold reads hung at once (more than the kernel's default of 12 outstanding
// readahead requests per mount): a hot read is still served while every one of them waits,
// and each completes with the right bytes once the server answers again. Each cold file is
// its own fetch (no readahead), so the status shows when all are waiting; the timeouts are
// long enough that none gives up meanwhile (cold_readers, 32 by default, serves them all).
class TieringS3ManyHungReadsIt : public TieringS3OutageIt {
 protected:
  TieringS3ManyHungReadsIt() {
    readahead_ = "0";
    request_timeout_ = "30s";
    read_timeout_ = "30s";
  }
};

TEST_F(TieringS3ManyHungReadsIt, HotReadsAreServedWhileManyColdReadsHang) {
  constexpr int kCold = 24;
  Files cold;
  for (int i = 0; i < kCold; ++i)
    cold.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                    CtLike(150000, static_cast<uint32_t>(40 + i))});
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const std::string hot = CtLike(300000, 11);
  ASSERT_NO_FATAL_FAILURE(WriteFile("hot.dcm", hot));
  EXPECT_CONTAINS(Migrate(), "moved " + std::to_string(kCold) + " files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  std::vector<std::unique_ptr<ColdRead>> reads;
  for (const auto& [p, d] : cold) {
    reads.push_back(std::make_unique<ColdRead>(mnt() + "/" + p));
    ASSERT_TRUE(reads.back()->opened()) << p << ": " << strerror(errno);
  }
  auto any_done = [&] {
    for (const auto& r : reads)
      if (r->done) return true;
    return false;
  };
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  uint64_t fetches = 0;
  while ((fetches = JsonNumber(StatusJson(), "cold_fetches").value_or(0)) < kCold && !any_done() &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // between status requests
  ASSERT_EQ(fetches, static_cast<uint64_t>(kCold))
      << "not every cold read reached the tier (the kernel's max_background holds the rest)";
  const auto t0 = Clock::now();
  std::string got;
  const bool hot_ok = ReadWholeFile(mnt() + "/hot.dcm", &got);
  const double hot_s = SecondsSince(t0);
  const bool all_waiting = !any_done();
  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  for (auto& r : reads) r->Join();
  EXPECT_TRUE(hot_ok && got == hot) << "hot read while S3 hangs failed or differs";
  EXPECT_TRUE(all_waiting) << "the hot read waited for cold ones (" << hot_s << " s)";
  for (size_t i = 0; i < reads.size(); ++i) {
    const std::string& want = cold[i].second;
    ASSERT_EQ(reads[i]->n, static_cast<ssize_t>(std::min(want.size(), kChunk)))
        << cold[i].first << ": " << strerror(reads[i]->err);
    EXPECT_TRUE(reads[i]->bytes == want.substr(0, reads[i]->bytes.size()))
        << cold[i].first << " differs once S3 answers again";
  }
  std::printf("[ metrics  ] hot read with %d cold reads hung: %.3f s\n", kCold, hot_s);
}

// 4d. Each tier fetches on threads of its own: with the S3 tier's fetches all hung (its
// concurrent_fetches set to 2, four reads waiting), a file on a directory tier still reads.
TEST_F(TieringS3ManyHungReadsIt, AHungTierDoesNotHoldUpAnotherTiersReads) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  const std::string archive = root() + "/archive";
  ASSERT_TRUE(sfs::create_directories(archive));
  auto policy = std::find(extra_config_.begin(), extra_config_.end(), "[policy]");
  ASSERT_NE(policy, extra_config_.end());
  extra_config_.insert(policy, {"concurrent_fetches = 2", "[tiers.archive]", "kind = \"directory\"",
                                "path = \"" + archive + "\""});
  WriteConfig();
  ASSERT_TRUE(WriteWholeFile(policy_,
                             "[[rule]]\nname = \"old-archive\"\nmatch = \"archive/**\"\n"
                             "older_than = \"180d\"\nto = \"archive\"\n"
                             "[[rule]]\nname = \"old-studies\"\nmatch = \"studies/**\"\n"
                             "older_than = \"180d\"\nto = \"cloud\"\n",
                             0644));
  ASSERT_NO_FATAL_FAILURE(Mount());

  Files cold;
  for (int i = 0; i < 4; ++i)
    cold.push_back({"studies/s/img" + std::to_string(i) + ".dcm",
                    CtLike(150000, static_cast<uint32_t>(70 + i))});
  for (const auto& [p, d] : cold) ASSERT_NO_FATAL_FAILURE(WriteOld(p, d));
  const std::string on_dir = CtLike(200000, 80);
  ASSERT_NO_FATAL_FAILURE(WriteOld("archive/a.dcm", on_dir));
  EXPECT_CONTAINS(Migrate(), "moved 5 files");
  ASSERT_NO_FATAL_FAILURE(RemountCold());
  ASSERT_TRUE(SignalOwnRgw(SIGSTOP)) << "cannot freeze radosgw " << rgw_;
  rgw_frozen_ = true;

  std::vector<std::unique_ptr<ColdRead>> reads;
  for (const auto& [p, d] : cold) {
    reads.push_back(std::make_unique<ColdRead>(mnt() + "/" + p));
    ASSERT_TRUE(reads.back()->opened()) << p << ": " << strerror(errno);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  uint64_t fetches = 0;
  while ((fetches = JsonNumber(StatusJson(), "cold_fetches").value_or(0)) < cold.size() &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // between status requests
  ASSERT_EQ(fetches, cold.size()) << "not every cold S3 read reached the daemon";
  std::string got;
  const bool dir_ok = ReadWholeFile(mnt() + "/archive/a.dcm", &got);
  bool all_waiting = true;
  for (const auto& r : reads) all_waiting = all_waiting && !r->done;
  ASSERT_TRUE(SignalOwnRgw(SIGCONT));
  rgw_frozen_ = false;
  for (auto& r : reads) r->Join();
  EXPECT_TRUE(dir_ok && got == on_dir) << "the directory tier's file did not read while S3 hung";
  EXPECT_TRUE(all_waiting) << "the directory read waited for S3";
  for (size_t i = 0; i < reads.size(); ++i)
    EXPECT_TRUE(reads[i]->n > 0 && reads[i]->bytes == cold[i].second.substr(0, kChunk))
        << cold[i].first << ": " << strerror(reads[i]->err);
}

// 5. A damaged object: one flipped byte in a record's payload is EIO for that file (never
// wrong data), caught by the record CRC, or by the AEAD tag when the CRC was fixed up too;
// the other files read fine.
TEST_F(TieringS3It, CorruptedObjectIsEioNeverWrongData) {
  const Files crc_victim = {{"studies/v1/crc.dcm", CtLike(4 * kChunk + 1000, 41)}};
  const Files aead_victim = {{"studies/v2/aead.dcm", CtLike(4 * kChunk + 2000, 42)}};
  const Files others = {{"studies/o/1.dcm", CtLike(300000, 43)},
                        {"studies/o/2.dcm", CtLike(500000, 44)},
                        {"hot.dcm", CtLike(100000, 45)}};
  for (const Files* f : {&crc_victim, &aead_victim, &others})
    for (const auto& [p, d] : *f) ASSERT_NO_FATAL_FAILURE(WriteFile(p, d));
  // One pass per victim, so that each victim has an object of its own.
  std::string crc_key, aead_key;
  const std::pair<const Files*, std::string*> victims[] = {{&crc_victim, &crc_key},
                                                           {&aead_victim, &aead_key}};
  for (const auto& [victim, key] : victims) {
    const std::set<std::string> before = ObjectKeys();
    ASSERT_NO_FATAL_FAILURE(Age((*victim)[0].first));
    EXPECT_CONTAINS(Migrate(), "moved 1 files");
    for (const std::string& k : ObjectKeys())
      if (!before.count(k)) *key = k;
    ASSERT_FALSE(key->empty()) << "no new object for " << (*victim)[0].first;
  }
  for (const auto& [p, d] : others)
    if (p.starts_with("studies/")) {
      ASSERT_NO_FATAL_FAILURE(Age(p));
    }
  EXPECT_CONTAINS(Migrate(), "moved 2 files");
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // Flip one byte in the middle of the payload of the second data record (the victim's chunk
  // 1); with fix_crc, also rewrite the record's CRC so that only the AEAD tag can tell.
  auto damage = [&](const std::string& key, bool fix_crc) {
    uint64_t size = 0;
    for (const auto& o : Objects())
      if (o.key == key) size = o.size;
    ASSERT_GT(size, kSegmentHeaderBytes) << key;
    std::string bytes = GetObject({key, size});
    size_t off = kSegmentHeaderBytes;
    int data_records = 0;
    while (off + kRecordHeaderBytes <= bytes.size()) {
      const uint32_t len = Le32(bytes, off + 4);
      ASSERT_LE(off + kRecordHeaderBytes + len, bytes.size()) << key << ": bad record at " << off;
      if (static_cast<uint8_t>(bytes[off + 8]) == kDataRecord && ++data_records == 2) {
        ASSERT_GT(len, 0u);
        bytes[off + kRecordHeaderBytes + len / 2] ^= 0x01;
        if (fix_crc)
          PutLe32(&bytes, off, MaskedCrc32c(std::string_view(bytes).substr(off + 4, 16 + len)));
        Status s = bucket_->Put(key, bytes);
        ASSERT_TRUE(s.ok()) << s.ToString();
        return;
      }
      off += kRecordHeaderBytes + len;
    }
    FAIL() << key << " has " << data_records << " data records, expected at least 2";
  };
  ASSERT_NO_FATAL_FAILURE(damage(crc_key, false));
  ASSERT_NO_FATAL_FAILURE(damage(aead_key, true));
  ASSERT_NO_FATAL_FAILURE(ClearReadCache());
  ASSERT_NO_FATAL_FAILURE(Mount());

  for (const Files* victim : {&crc_victim, &aead_victim}) {
    const auto& [rel, data] = (*victim)[0];
    int fd = ::open((mnt() + "/" + rel).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    int eio_chunks = 0;
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const size_t want = std::min(kChunk, data.size() - off);
      std::string buf(want, '\0');
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
      if (n < 0) {
        EXPECT_EQ(errno, EIO) << rel << " at " << off << ": " << strerror(errno);
        ++eio_chunks;
        continue;
      }
      EXPECT_EQ(static_cast<size_t>(n), want) << rel << " at " << off;
      EXPECT_TRUE(buf.substr(0, n) == data.substr(off, n)) << rel << ": wrong data at " << off;
    }
    ::close(fd);
    EXPECT_GE(eio_chunks, 1) << rel << " read back although its object is damaged";
    std::string got;
    EXPECT_FALSE(ReadWholeFile(mnt() + "/" + rel, &got)) << rel;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectReadsBack(others));
  // Each failed check is logged as an alert: the record CRC caught the first victim, the
  // AEAD tag the second.
  const std::string log = DaemonLog();
  EXPECT_CONTAINS(log, "ALERT");
  EXPECT_CONTAINS(log, "checksum mismatch");
  EXPECT_CONTAINS(log, "AEAD tag mismatch");
}

}  // namespace
}  // namespace strata::it
