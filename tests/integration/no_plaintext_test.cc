// Promise 1, checked from the outside: nothing an application stored reaches the hot tier in
// plaintext. Files whose names, contents, xattrs and symlink targets carry unique marker
// strings are written through the mount; then every byte of every file under the hot tier
// (segments, the metadata database and its -wal/-shm, keyrings, everything) is searched for
// each marker, in plain bytes and in the encodings a careless implementation would use
// instead of encryption (hex, base64, UTF-16). The master key must not appear either.
#include <fcntl.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/fs_ops.h"
#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

std::string HexOf(std::string_view s, bool upper) {
  static const char* const kLower = "0123456789abcdef";
  static const char* const kUpper = "0123456789ABCDEF";
  const char* digits = upper ? kUpper : kLower;
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string Base64Of(std::string_view s, bool url) {
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {  // whole groups only: no padding-dependent tail
    const uint32_t v = (static_cast<unsigned char>(s[i]) << 16) |
                       (static_cast<unsigned char>(s[i + 1]) << 8) |
                       static_cast<unsigned char>(s[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  return out;
}

struct Needle {
  std::string label;  // what leaked, and how it was encoded
  std::string bytes;
};

// The marker itself and its common encodings. Base64 depends on where the marker falls in
// the encoded stream, so all three alignments are searched.
std::vector<Needle> NeedlesFor(const std::string& label, const std::string& marker) {
  std::vector<Needle> needles = {
      {label + " (plain)", marker},
      {label + " (hex)", HexOf(marker, false)},
      {label + " (HEX)", HexOf(marker, true)},
  };
  std::string utf16;
  for (char c : marker) {
    utf16 += c;
    utf16 += '\0';
  }
  needles.push_back({label + " (UTF-16LE)", utf16});
  for (size_t k = 0; k < 3; ++k) {
    needles.push_back({label + " (base64)", Base64Of(std::string_view(marker).substr(k), false)});
    needles.push_back({label + " (base64url)", Base64Of(std::string_view(marker).substr(k), true)});
  }
  return needles;
}

struct ScanResult {
  size_t files = 0;
  uint64_t bytes = 0;
  std::vector<std::string> leaks;
  std::vector<std::string> errors;
};

class NoPlaintextTest : public MountFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MountFixture::SetUp());
    unsigned char rnd[8];
    ASSERT_EQ(getrandom(rnd, sizeof rnd, 0), static_cast<ssize_t>(sizeof rnd));
    // Unique per run, so an old file cannot produce a false match.
    prefix_ = "STRATAMARK" + HexOf(std::string_view(reinterpret_cast<char*>(rnd), 8), false);
  }

  std::string Marker(const std::string& what) {
    std::string m = prefix_ + "-" + what + "-";
    markers_[what] = m;
    return m;
  }

  // Writes one of each kind of thing that must be encrypted. Returns the bytes of file
  // contents written that do not compress, which the hot tier must at least hold.
  size_t WriteMarkedData() {
    const std::string dir = mnt() + "/" + Marker("DIRNAME");
    EXPECT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoName(errno);

    // Compressible: text around the marker, repeated.
    const std::string text_marker = Marker("TEXT");
    std::string text;
    while (text.size() < 300 * 1024) {
      text += "Patient report " + text_marker + " impression: normal study. ";
    }
    EXPECT_TRUE(WriteWholeFile(dir + "/" + Marker("FILENAME") + ".txt", text, 0644));

    // Incompressible: random bytes with the marker at the start, across a chunk
    // boundary, and at the end.
    const std::string random_marker = Marker("RANDOM");
    std::string random = MakeData(1, 1024 * 1024, DataKind::kRandom);
    for (size_t off :
         {size_t{0}, size_t{1000}, size_t{65536 - 10}, size_t{131072 - 10}, random.size() - 64}) {
      random.replace(off, random_marker.size(), random_marker);
    }
    EXPECT_TRUE(WriteWholeFile(mnt() + "/random.bin", random, 0644));

    // Tiny files are where an implementation might inline data into its database.
    EXPECT_TRUE(WriteWholeFile(mnt() + "/tiny", Marker("TINY"), 0644));

    // Written in small appends, as a logger would.
    const std::string append_marker = Marker("APPEND");
    int fd = open((mnt() + "/appended").c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0);
    for (int i = 0; i < 50 && fd >= 0; ++i) {
      EXPECT_EQ(write(fd, append_marker.data(), append_marker.size()),
                static_cast<ssize_t>(append_marker.size()));
    }
    if (fd >= 0) {
      EXPECT_EQ(fsync(fd), 0);
      close(fd);
    }

    const std::string xname = "user." + Marker("XATTRNAME");
    const std::string xvalue = Marker("XATTRVALUE");
    EXPECT_EQ(setxattr((mnt() + "/tiny").c_str(), xname.c_str(), xvalue.data(), xvalue.size(), 0),
              0)
        << ErrnoName(errno);
    const std::string dir_xvalue = Marker("DIRXATTR");
    EXPECT_EQ(setxattr(dir.c_str(), "user.comment", dir_xvalue.data(), dir_xvalue.size(), 0), 0)
        << ErrnoName(errno);

    EXPECT_EQ(symlink(("../" + Marker("SYMLINKTARGET")).c_str(), (mnt() + "/link").c_str()), 0)
        << ErrnoName(errno);
    EXPECT_EQ(link((mnt() + "/tiny").c_str(), (mnt() + "/" + Marker("HARDLINK")).c_str()), 0)
        << ErrnoName(errno);

    // A name that existed only briefly, and contents that were deleted.
    const std::string old_name = mnt() + "/" + Marker("OLDNAME");
    EXPECT_TRUE(WriteWholeFile(old_name, Marker("DELETED") + std::string(5000, 'x'), 0644));
    EXPECT_EQ(rename(old_name.c_str(), (mnt() + "/" + Marker("NEWNAME")).c_str()), 0);
    EXPECT_EQ(unlink((mnt() + "/" + markers_["NEWNAME"]).c_str()), 0);

    // A file that is overwritten in place: both versions must be sealed.
    const std::string v1 = Marker("VERSION1");
    const std::string v2 = Marker("VERSION2");
    EXPECT_TRUE(WriteWholeFile(mnt() + "/versions", v1 + std::string(100000, 'a'), 0644));
    fd = open((mnt() + "/versions").c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(pwrite(fd, v2.data(), v2.size(), 50000), static_cast<ssize_t>(v2.size()));
      EXPECT_EQ(fdatasync(fd), 0);
      close(fd);
    }
    // A small correction inside a whole stored chunk: journaled as a patch over it.
    const std::string patched = Marker("PATCH");
    EXPECT_TRUE(WriteWholeFile(mnt() + "/patched", std::string(256 * 1024, 'b'), 0644));
    fd = open((mnt() + "/patched").c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(pwrite(fd, patched.data(), patched.size(), 140000),
                static_cast<ssize_t>(patched.size()));
      EXPECT_EQ(fdatasync(fd), 0);
      close(fd);
    }
    return random.size();
  }

  std::vector<Needle> AllNeedles() const {
    std::vector<Needle> needles;
    for (const auto& [what, marker] : markers_) {
      for (Needle& n : NeedlesFor(what, marker)) needles.push_back(std::move(n));
    }
    // The master key, raw and in hex: the archive must be storable without its keys.
    std::string key;
    ReadWholeFile(key_path(), &key);
    needles.push_back({"master key (raw)", key});
    needles.push_back({"master key (hex)", HexOf(key, false)});
    needles.push_back({"master key (HEX)", HexOf(key, true)});
    return needles;
  }

  static ScanResult Scan(const std::string& dir, const std::vector<Needle>& needles) {
    static thread_local ScanResult* result = nullptr;
    static thread_local const std::vector<Needle>* current = nullptr;
    ScanResult r;
    result = &r;
    current = &needles;
    auto visit = [](const char* path, const struct stat* st, int type, struct FTW*) -> int {
      if (type == FTW_DNR || type == FTW_NS) {
        result->errors.push_back(std::string(path) + ": cannot read");
        return 0;
      }
      if (type != FTW_F || !S_ISREG(st->st_mode)) return 0;
      std::string data;
      if (!ReadWholeFile(path, &data)) {
        result->errors.push_back(std::string(path) + ": " + ErrnoName(errno));
        return 0;
      }
      ++result->files;
      result->bytes += data.size();
      for (const Needle& n : *current) {
        const size_t at = data.find(n.bytes);
        if (at != std::string::npos) {
          result->leaks.push_back(n.label + " in " + path + " at offset " + std::to_string(at));
        }
      }
      return 0;
    };
    nftw(dir.c_str(), visit, 32, FTW_PHYS | FTW_MOUNT);
    result = nullptr;
    current = nullptr;
    return r;
  }

  void ExpectNoLeaks(const std::string& when, size_t incompressible_bytes) {
    const std::vector<Needle> needles = AllNeedles();

    // The scanner must find what it looks for: plant a marker next to the hot tier.
    const std::string planted = root() + "/scanner-self-check";
    ASSERT_TRUE(WriteWholeFile(planted, "xx" + markers_.begin()->second + "yy", 0600));
    ScanResult self = Scan(root() + "/scanner-self-check", needles);
    ASSERT_EQ(self.leaks.size(), 1u) << "the scanner does not work";
    unlink(planted.c_str());

    ScanResult r = Scan(hot(), needles);
    RecordProperty("hot_files", std::to_string(r.files));
    RecordProperty("hot_bytes", std::to_string(r.bytes));
    EXPECT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_GT(r.files, 0u);
    EXPECT_GE(r.bytes, incompressible_bytes)
        << "the hot tier holds less than the random data written: is the data stored under "
        << hot() << " at all?";
    std::string leaks;
    for (const std::string& l : r.leaks) leaks += "  " + l + "\n";
    EXPECT_TRUE(r.leaks.empty()) << when << ", found in the hot tier (" << r.files << " files, "
                                 << r.bytes << " bytes scanned):\n"
                                 << leaks;
  }

  std::string prefix_;
  std::map<std::string, std::string> markers_;  // what -> marker
};

TEST_F(NoPlaintextTest, NothingPlaintextAfterCleanUnmount) {
  const size_t incompressible = WriteMarkedData();
  ASSERT_FALSE(HasFailure());
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ExpectNoLeaks("after a clean unmount", incompressible);
  // And everything is still readable with the key.
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string tiny;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/tiny", &tiny)) << ErrnoName(errno);
  EXPECT_EQ(tiny, markers_["TINY"]);
  std::string patched;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/patched", &patched)) << ErrnoName(errno);
  std::string expect(256 * 1024, 'b');
  expect.replace(140000, markers_["PATCH"].size(), markers_["PATCH"]);
  EXPECT_EQ(patched, expect);
}

TEST_F(NoPlaintextTest, NothingPlaintextAfterKill9) {
  const size_t incompressible = WriteMarkedData();
  ASSERT_FALSE(HasFailure());
  // Make everything durable, then die without a clean shutdown: the journal and the
  // database's write-ahead log are left exactly as a crash leaves them. (syncfs does not
  // reach a FUSE daemon, so each file and directory is fsynced.)
  auto sync_one = [](const char* path, const struct stat* st, int type, struct FTW*) -> int {
    if (type != FTW_F && type != FTW_D) return 0;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
      ADD_FAILURE() << "fsync " << path << ": " << ErrnoName(errno);
    }
    if (fd >= 0) close(fd);
    return 0;
  };
  ASSERT_EQ(nftw(mnt().c_str(), sync_one, 16, FTW_PHYS), 0);
  ASSERT_NO_FATAL_FAILURE(KillDaemon9());
  ExpectNoLeaks("after kill -9", incompressible);
}

}  // namespace
}  // namespace strata::it
