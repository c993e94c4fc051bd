// Differential POSIX tests: each case runs one syscall script in a native directory on the host
// filesystem and in a directory on the strata mount, then compares every return value, errno
// and output (bytes read, stat summaries, directory listings) and the resulting trees
// (contents, type, mode, size, nlink, owner, symlink targets, user xattrs).
//
// The host filesystem is the reference: run these on ext4, xfs or tmpfs (STRATA_TEST_TMPDIR).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/fs_ops.h"
#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

constexpr off_t kKiB = 1024;
constexpr off_t kMiB = 1024 * kKiB;
constexpr off_t kGiB = 1024 * kMiB;
constexpr off_t kChunk = 64 * kKiB;  // the default chunk size: boundaries are interesting

class PosixCompareTest : public MountFixture {
 protected:
  std::string NativeDir(const std::string& sub) const { return native() + "/" + sub; }
  std::string StrataDir(const std::string& sub) const { return mnt() + "/" + sub; }

  // Runs `script` under <native>/<sub> and <mnt>/<sub> and compares traces and trees.
  template <typename Script>
  void RunBoth(const std::string& sub, Script&& script, const DiffOptions& diff = {}) {
    const std::string n = NativeDir(sub);
    const std::string m = StrataDir(sub);
    ASSERT_EQ(mkdir(n.c_str(), 0755), 0) << n << ": " << ErrnoName(errno);
    ASSERT_EQ(mkdir(m.c_str(), 0755), 0) << "mkdir " << m << ": " << ErrnoName(errno);
    std::vector<Event> native_events;
    std::vector<Event> strata_events;
    {
      Sys s(n);
      script(s);
      native_events = s.events();
    }
    {
      Sys s(m);
      script(s);
      strata_events = s.events();
    }
    std::string report = CompareEvents(native_events, strata_events);
    EXPECT_TRUE(report.empty()) << "syscall results differ from the native filesystem:\n" << report;
    report = CompareDirs(n, m, diff);
    EXPECT_TRUE(report.empty()) << "resulting trees differ:\n" << report;
  }

  void ExpectSameTrees(const std::string& sub, const DiffOptions& diff = {}) {
    const std::string report = CompareDirs(NativeDir(sub), StrataDir(sub), diff);
    EXPECT_TRUE(report.empty()) << report;
  }
};

// ---- Regular files ----------------------------------------------------------------------------

TEST_F(PosixCompareTest, RegularFileBasics) {
  RunBoth("w", [](Sys& s) {
    s.Open(0, "f", O_CREAT | O_EXCL | O_RDWR, 0640);
    s.Write(0, "hello world");
    s.Fstat(0);
    s.Pread(0, 100, 0);
    s.Pread(0, 10, 11);    // at EOF
    s.Pread(0, 10, 1000);  // beyond EOF
    s.Lseek(0, 0, SEEK_CUR);
    s.Lseek(0, 0, SEEK_END);
    s.Write(0, "");
    s.Close(0);
    s.Open(1, "f", O_CREAT | O_EXCL | O_WRONLY, 0644);  // EEXIST
    s.Open(1, "missing", O_RDONLY);                     // ENOENT
    s.Open(1, "f", O_RDONLY | O_DIRECTORY);             // ENOTDIR
    s.Open(1, "f/x", O_RDONLY);                         // ENOTDIR
    s.Mkdir("d");
    s.Open(1, "d", O_WRONLY);                // EISDIR
    s.Open(1, "d", O_RDONLY | O_DIRECTORY);  // fine
    s.Close(1);
    s.Open(2, "f", O_RDONLY);
    s.Write(2, "x");  // EBADF
    s.Read(2, 5);
    s.Read(2, 100);
    s.Read(2, 100);
    s.Close(2);
    s.Open(3, "f", O_WRONLY);
    s.Read(3, 5);  // EBADF
    s.Write(3, "J");
    s.Close(3);
    s.ReadFile("f");
    s.Stat("f");
    s.Open(4, "empty", O_CREAT | O_WRONLY, 0600);
    s.Close(4);
    s.Stat("empty");
    s.ReadFile("empty");
  });
}

TEST_F(PosixCompareTest, LargeUnalignedWritesAndOverwrites) {
  RunBoth("w", [](Sys& s) {
    const std::string data = MakeData(1, 3 * kMiB + 12345, DataKind::kMixed);
    const size_t pieces[] = {1, 4095, 4097, 65536, 131071, 131073, 300000, 7};
    s.Open(0, "big", O_CREAT | O_RDWR, 0644);
    size_t off = 0;
    for (size_t i = 0; off < data.size(); ++i) {
      const size_t n = std::min(pieces[i % 8], data.size() - off);
      s.Write(0, std::string_view(data).substr(off, n));
      off += n;
    }
    s.Fstat(0);
    s.Pread(0, data.size() + 10, 0);
    s.Pread(0, 10, kChunk - 5);
    s.Pread(0, 2, 2 * kChunk - 1);
    // Overwrite across chunk boundaries, then a single byte in the middle of a chunk.
    s.Pwrite(0, MakeData(2, 200000, DataKind::kRandom), 100000);
    s.Pwrite(0, "!", 5 * kChunk + 77);
    s.Pread(0, 400000, 0);
    s.Close(0);
    s.ReadFile("big");
    // The same bytes again, written through a fresh descriptor in one call.
    s.WriteFile("copy", data);
    s.ReadFile("copy");
  });
}

TEST_F(PosixCompareTest, SparseFiles) {
  RunBoth("w", [](Sys& s) {
    s.Open(0, "holes", O_CREAT | O_RDWR, 0644);
    s.Pwrite(0, "tail", kMiB + 3);
    s.Fstat(0);
    s.Pread(0, 100, 0);
    s.Pread(0, 200, kMiB - 100);
    s.Pwrite(0, "mid", 300000);  // into the hole
    s.Pread(0, 20, 300000 - 10);
    s.Close(0);
    s.ReadFile("holes");
    // Holes inside and between chunks.
    s.Open(1, "gaps", O_CREAT | O_RDWR, 0644);
    s.Pwrite(1, "a", 0);
    s.Pwrite(1, "b", 70000);
    s.Pwrite(1, "c", 140000);
    s.Pwrite(1, "d", 3 * kChunk);
    s.Fstat(1);
    s.Close(1);
    s.ReadFile("gaps");
  });
}

TEST_F(PosixCompareTest, SparseBeyondFourGiB) {
  RunBoth("w", [](Sys& s) {
    const off_t k4G = 4 * kGiB;
    s.Open(0, "huge", O_CREAT | O_RDWR, 0644);
    s.Pwrite(0, "across", k4G - 3);  // straddles 2^32
    s.Pwrite(0, "far", 5 * kGiB + 123);
    s.Fstat(0);
    s.Pread(0, 6, k4G - 3);
    s.Pread(0, 16, k4G - 8);
    s.Pread(0, 3, 5 * kGiB + 123);
    s.Pread(0, 100, 5 * kGiB + 100);
    s.Pread(0, 10, kGiB);  // hole
    s.Pread(0, 10, 0);
    s.Lseek(0, 0, SEEK_END);
    s.Ftruncate(0, k4G + 1);
    s.Fstat(0);
    s.Pread(0, 10, k4G - 3);
    s.Ftruncate(0, 5 * kGiB);  // grow again: the cut bytes must not come back
    s.Pread(0, 10, k4G - 3);
    s.Pread(0, 10, 5 * kGiB - 10);
    s.Fstat(0);
    s.Close(0);
    s.Unlink("huge");  // keep the tree comparison from reading 5 GiB of zeros
  });
}

TEST_F(PosixCompareTest, TruncateGrowAndShrink) {
  RunBoth("w", [](Sys& s) {
    const std::string data = MakeData(3, 300 * kKiB, DataKind::kRandom);
    s.WriteFile("t", data);
    s.Truncate("t", 130 * kKiB);
    s.Stat("t");
    s.ReadFile("t");
    s.Truncate("t", 400 * kKiB);  // the bytes cut above must read back as zeros
    s.Stat("t");
    s.ReadFile("t");
    s.Truncate("t", 0);
    s.Stat("t");
    s.ReadFile("t");
    s.Truncate("t", 5000);
    s.ReadFile("t");
    s.Open(0, "t", O_RDWR);
    s.Pwrite(0, data.substr(0, 10000), 0);
    s.Ftruncate(0, 4000);
    s.Ftruncate(0, 9000);
    s.Pread(0, 10000, 0);
    s.Fstat(0);
    s.Ftruncate(0, 100);
    s.Pwrite(0, "Z", 6000);  // within the same chunk as the cut
    s.Pread(0, 7000, 0);
    s.Ftruncate(0, -1);  // EINVAL
    s.Close(0);
    s.Open(1, "t", O_RDONLY);
    s.Ftruncate(1, 10);  // EBADF or EINVAL: not writable
    s.Close(1);
    s.Truncate("missing", 10);
    s.Mkdir("d");
    s.Truncate("d", 0);
    // Shrink exactly to, and grow from, chunk boundaries.
    s.WriteFile("b", data);
    s.Truncate("b", kChunk);
    s.Truncate("b", 2 * kChunk + 1);
    s.ReadFile("b");
    s.Truncate("b", kChunk - 1);
    s.ReadFile("b");
  });
}

TEST_F(PosixCompareTest, AppendMode) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("a", "0123456789");
    s.Open(0, "a", O_WRONLY | O_APPEND);
    s.Open(1, "a", O_RDWR);
    s.Pwrite(1, "XYZ", 20);  // another descriptor extends the file, leaving a hole
    s.Write(0, "tail");      // lands at the new end
    s.Lseek(0, 0, SEEK_SET);
    s.Write(0, "more");  // still at the end
    s.Lseek(0, 0, SEEK_CUR);
    s.Pwrite(0, "pw", 0);  // Linux: O_APPEND wins over the offset
    s.Fstat(1);
    s.Close(0);
    s.Close(1);
    s.ReadFile("a");
    s.Open(2, "b", O_CREAT | O_WRONLY | O_APPEND, 0644);
    s.Write(2, "one ");
    s.Write(2, MakeData(4, 200 * kKiB, DataKind::kText));
    s.Write(2, " three");
    s.Fstat(2);
    s.Close(2);
    s.ReadFile("b");
  });
}

TEST_F(PosixCompareTest, OpenWithTruncate) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("f", MakeData(5, 200 * kKiB, DataKind::kRandom));
    s.Open(0, "f", O_WRONLY | O_TRUNC);
    s.Fstat(0);
    s.Write(0, "new");
    s.Close(0);
    s.ReadFile("f");
    s.Stat("f");
    s.Open(1, "f", O_RDWR | O_TRUNC | O_CREAT, 0600);  // exists: the mode stays 0644
    s.Fstat(1);
    s.Pread(1, 10, 0);
    s.Close(1);
  });
}

TEST_F(PosixCompareTest, FallocateModeZero) {
  RunBoth("w", [](Sys& s) {
    s.Open(0, "f", O_CREAT | O_RDWR, 0644);
    s.Fallocate(0, 0, 0, 100000);
    s.Fstat(0);
    s.Pread(0, 100, 50000);
    s.Pwrite(0, "data", 10);
    s.Fallocate(0, 0, 0, 50);  // inside the file: size and data unchanged
    s.Fallocate(0, 0, 200000, 10);
    s.Fstat(0);
    s.Fallocate(0, 0, -1, 10);  // EINVAL
    s.Fallocate(0, 0, 0, 0);    // EINVAL
    s.Close(0);
    s.ReadFile("f");
  });
}

// ---- Directories ------------------------------------------------------------------------------

TEST_F(PosixCompareTest, Directories) {
  RunBoth("w", [](Sys& s) {
    s.Mkdir("a", 0755);
    s.Mkdir("a", 0755);  // EEXIST
    s.Mkdir("a/b", 0750);
    s.Mkdir("a/b/c", 0700);
    s.Mkdir("x/y");  // ENOENT
    s.WriteFile("a/f", "file");
    s.Mkdir("a/f/g");    // ENOTDIR
    s.Rmdir("a");        // ENOTEMPTY
    s.Rmdir("a/f");      // ENOTDIR
    s.Unlink("a/b");     // EISDIR
    s.Rmdir("a/b/c/.");  // EINVAL
    s.Rmdir("missing");  // ENOENT
    s.Lstat("a");
    s.Stat("a/b/c");
    s.ReadDir("a");
    s.ReadDir("a/b");
    s.ReadDir("a/f");  // ENOTDIR
    s.Rmdir("a/b/c");
    s.ReadDir("a/b");
    s.Mkdir("sticky", 01777);
    s.Stat("sticky");
    s.Mkdir("setgid", 02755);
    s.Stat("setgid");
    s.Rmdir("a/b");
    s.Unlink("a/f");
    s.Rmdir("a");
    s.Stat("a");
    s.ReadDir("");
  });
}

TEST_F(PosixCompareTest, LargeDirectory) {
  RunBoth("w", [](Sys& s) {
    // Long names so that a listing needs many getdents calls.
    auto name = [](int i) {
      char buf[96];
      snprintf(buf, sizeof buf, "instance-%04d-1.2.840.113619.2.55.3.604688119.868.1249", i);
      return std::string(buf);
    };
    for (int i = 0; i < 1000; ++i) {
      s.Open(0, name(i), O_CREAT | O_WRONLY | O_EXCL, 0644);
      s.Close(0);
    }
    s.ReadDir("");
    for (int i = 0; i < 1000; i += 3) s.Unlink(name(i));
    s.ReadDir("");
    for (int i = 0; i < 50; ++i) s.Mkdir("sub" + std::to_string(i));
    s.ReadDir("");
    s.Stat(name(1));
    s.Stat(name(3));
  });
}

// Names that stayed in a directory during a listing are returned exactly once; names added or
// removed meanwhile may or may not be (POSIX), but never twice. A rewind shows the new state.
void CheckReaddirUnderMutation(const std::string& dir) {
  SCOPED_TRACE(dir);
  auto make = [&](const std::string& name) {
    int fd = open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << name << ": " << ErrnoName(errno);
    close(fd);
  };
  char name[32];
  for (int i = 0; i < 300; ++i) {
    snprintf(name, sizeof name, "k%03d", i);
    ASSERT_NO_FATAL_FAILURE(make(name));
    snprintf(name, sizeof name, "r%03d", i);
    ASSERT_NO_FATAL_FAILURE(make(name));
  }
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr) << ErrnoName(errno);
  std::multiset<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    dirent* de = readdir(d);
    ASSERT_NE(de, nullptr);
    seen.insert(de->d_name);
  }
  for (int i = 0; i < 300; ++i) {
    snprintf(name, sizeof name, "r%03d", i);
    ASSERT_EQ(unlink((dir + "/" + name).c_str()), 0) << name << ": " << ErrnoName(errno);
    snprintf(name, sizeof name, "n%03d", i);
    ASSERT_NO_FATAL_FAILURE(make(name));
  }
  errno = 0;
  while (dirent* de = readdir(d)) seen.insert(de->d_name);
  EXPECT_EQ(errno, 0) << "readdir failed: " << ErrnoName(errno);
  for (const std::string& n : std::set<std::string>(seen.begin(), seen.end())) {
    EXPECT_EQ(seen.count(n), 1u) << n << " returned " << seen.count(n) << " times";
    const bool known =
        n == "." || n == ".." || ((n[0] == 'k' || n[0] == 'r' || n[0] == 'n') && n.size() == 4);
    EXPECT_TRUE(known) << "readdir returned a name that never existed: " << Printable(n);
  }
  for (int i = 0; i < 300; ++i) {
    snprintf(name, sizeof name, "k%03d", i);
    EXPECT_EQ(seen.count(name), 1u) << name << " was in the directory throughout";
  }
  EXPECT_EQ(seen.count("."), 1u);
  EXPECT_EQ(seen.count(".."), 1u);

  rewinddir(d);
  std::multiset<std::string> after;
  errno = 0;
  while (dirent* de = readdir(d)) after.insert(de->d_name);
  EXPECT_EQ(errno, 0);
  closedir(d);
  std::multiset<std::string> expected = {".", ".."};
  for (int i = 0; i < 300; ++i) {
    snprintf(name, sizeof name, "k%03d", i);
    expected.insert(name);
    snprintf(name, sizeof name, "n%03d", i);
    expected.insert(name);
  }
  EXPECT_TRUE(after == expected) << "after rewinddir: " << after.size() << " names, expected "
                                 << expected.size();
}

TEST_F(PosixCompareTest, ReaddirWhileAddingAndRemoving) {
  ASSERT_EQ(mkdir(NativeDir("w").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(StrataDir("w").c_str(), 0755), 0) << ErrnoName(errno);
  {
    SCOPED_TRACE("native reference");
    CheckReaddirUnderMutation(NativeDir("w"));
  }
  {
    SCOPED_TRACE("strata");
    CheckReaddirUnderMutation(StrataDir("w"));
  }
  ExpectSameTrees("w");
}

// ---- Links and names --------------------------------------------------------------------------

TEST_F(PosixCompareTest, Symlinks) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("target", "content");
    s.Symlink("target", "l1");
    s.Readlink("l1");
    s.Readlink("l1", 3);  // truncated, not NUL-terminated
    s.Lstat("l1");
    s.Stat("l1");
    s.ReadFile("l1");
    s.Symlink("missing", "dangling");
    s.Stat("dangling");  // ENOENT
    s.Lstat("dangling");
    s.Readlink("dangling");
    s.Readlink("target");                    // EINVAL
    s.Readlink("nope");                      // ENOENT
    s.Symlink("x", "l1");                    // EEXIST
    s.Open(0, "l1", O_RDONLY | O_NOFOLLOW);  // ELOOP
    s.Mkdir("d");
    s.Symlink("d", "ld");
    s.WriteFile("ld/inner", "via link");
    s.ReadDir("d");
    s.Symlink("../target", "d/up");
    s.ReadFile("d/up");
    s.Symlink(std::string(1000, 'p'), "long1000");
    s.Readlink("long1000");
    s.Symlink(std::string(4095, 'q'), "long4095");
    s.Readlink("long4095");
    s.Lstat("long4095");
    s.Symlink(std::string("odd\nbytes\x01\xff ok"), "odd");
    s.Readlink("odd");
    s.Symlink("", "empty");  // ENOENT on Linux
    s.Symlink("loop2", "loop1");
    s.Symlink("loop1", "loop2");
    s.Stat("loop1");  // ELOOP
    s.Unlink("l1");
    s.Stat("target");
  });
}

TEST_F(PosixCompareTest, HardLinks) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("a", "hello");
    s.Link("a", "b");
    s.Stat("a");
    s.Stat("b");
    s.Open(0, "b", O_WRONLY | O_APPEND);
    s.Write(0, " world");
    s.Close(0);
    s.ReadFile("a");
    s.Link("a", "c");
    s.Stat("a");
    s.Unlink("a");
    s.Stat("b");
    s.ReadFile("c");
    s.Mkdir("d");
    s.Link("d", "d2");   // EPERM
    s.Link("b", "c");    // EEXIST
    s.Link("zz", "z2");  // ENOENT
    s.Link("b", "d/b2");
    s.Stat("d/b2");
    s.Rename("b", "c");  // two names of one inode: a no-op that succeeds
    s.Stat("b");
    s.Stat("c");
    s.Chmod("c", 0600);
    s.Stat("b");
    s.Unlink("b");
    s.Unlink("c");
    s.Stat("d/b2");
    s.ReadFile("d/b2");
  });
}

TEST_F(PosixCompareTest, RenameFiles) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("a", "A");
    s.WriteFile("b", "B");
    s.Rename("a", "b");
    s.Stat("a");
    s.ReadFile("b");
    s.Rename("b", "b");
    s.Rename("missing", "x");  // ENOENT
    s.Open(0, "b", O_RDONLY);
    s.Rename("b", "c");  // an open descriptor follows the file
    s.Pread(0, 10, 0);
    s.Close(0);
    s.Rename("c", "nodir/c");  // ENOENT
    s.WriteFile("f", "F");
    s.Rename("c", "f/x");  // ENOTDIR
    s.WriteFile("x", "old x");
    s.Open(1, "x", O_RDONLY);
    s.Rename("f", "x");  // the replaced file stays readable through its descriptor
    s.Pread(1, 10, 0);
    s.Fstat(1);
    s.Close(1);
    s.ReadFile("x");
    s.Mkdir("d");
    s.Rename("x", "d/x");
    s.ReadDir("");
    s.ReadDir("d");
    s.WriteFile(std::string(255, 'L'), "long");
    s.Rename(std::string(255, 'L'), "d/" + std::string(255, 'M'));
    s.ReadDir("d");
  });
}

// The kernel caches names and the absence of names for long (fuse/dispatch.h): every way a
// name comes or goes through the mount must still show at once.
TEST_F(PosixCompareTest, NamesLookedUpWhileMissing) {
  RunBoth("neg", [](Sys& s) {
    for (const char* n : {"f", "d", "l", "h", "r", "p"}) s.Stat(n);  // all ENOENT, now cached
    s.WriteFile("f", "F");
    s.Stat("f");
    s.Mkdir("d");
    s.Stat("d");
    s.Symlink("f", "l");
    s.Stat("l");
    s.Link("f", "h");
    s.Stat("h");
    s.WriteFile("x", "X");
    s.Rename("x", "r");
    s.Stat("r");
    s.Stat("x");
    s.Mknod("p", S_IFIFO | 0644);
    s.Stat("p");
    s.Unlink("f");
    s.Stat("f");
    s.ReadFile("h");
    s.Rename("r", "f");
    s.ReadFile("f");
    s.Rmdir("d");
    s.Stat("d");
    s.Mkdir("d");
    s.Stat("d");
    s.ReadDir("");
  });
}

TEST_F(PosixCompareTest, RenameDirectories) {
  RunBoth("w", [](Sys& s) {
    s.Mkdir("a");
    s.Mkdir("a/sub");
    s.WriteFile("a/sub/f", "x");
    s.Mkdir("b");
    s.Rename("a", "b/a");
    s.ReadDir("b");
    s.ReadDir("b/a/sub");
    s.ReadFile("b/a/sub/f");
    s.Mkdir("empty");
    s.Rename("b/a", "empty");  // over an empty directory
    s.ReadFile("empty/sub/f");
    s.Stat("b/a");
    s.Mkdir("full");
    s.WriteFile("full/x", "x");
    s.Mkdir("src");
    s.Rename("src", "full");  // ENOTEMPTY
    s.WriteFile("file", "f");
    s.Rename("src", "file");                // ENOTDIR
    s.Rename("file", "src");                // EISDIR
    s.Rename("empty", "empty/sub/deeper");  // EINVAL: into itself
    s.Rename("empty/sub", "src/moved");     // moving changes both parents' nlink
    s.ReadDir("src");
    s.ReadFile("src/moved/f");
    s.Rename("src", "renamed");
    s.ReadDir("");
  });
}

TEST_F(PosixCompareTest, RenameNoReplaceAndExchange) {
  RunBoth("w", [](Sys& s) {
    s.WriteFile("a", "A");
    s.WriteFile("b", "B");
    s.Mkdir("d");
    s.WriteFile("d/x", "X");
    s.Renameat2("a", "b", RENAME_NOREPLACE);  // EEXIST
    s.Renameat2("a", "c", RENAME_NOREPLACE);
    s.ReadFile("c");
    s.Stat("a");
    s.Renameat2("c", "b", RENAME_EXCHANGE);
    s.ReadFile("c");
    s.ReadFile("b");
    s.Renameat2("b", "d", RENAME_EXCHANGE);  // a file and a directory swap places
    s.Lstat("b");
    s.Lstat("d");
    s.ReadFile("d");
    s.ReadDir("b");
    s.Renameat2("b", "nonexistent", RENAME_EXCHANGE);           // ENOENT
    s.Renameat2("b", "d", RENAME_NOREPLACE | RENAME_EXCHANGE);  // EINVAL
  });
}

TEST_F(PosixCompareTest, NamesAndNameLimits) {
  RunBoth("w", [](Sys& s) {
    const std::string n255(255, 'n');
    const std::string n256(256, 'n');
    s.WriteFile(n255, "max");
    s.Stat(n255);
    s.Rename(n255, "short");
    s.Rename("short", n255);
    s.ReadFile(n255);
    s.WriteFile(n256, "too long");  // ENAMETOOLONG
    s.Mkdir(n256);
    s.Stat(n256);
    s.Symlink("x", n256);
    std::string utf8_255;
    while (utf8_255.size() + 3 <= 255) utf8_255 += "\xe6\x97\xa5";  // 日
    s.WriteFile(utf8_255, "utf8");
    s.Stat(utf8_255);
    const char* const kNames[] = {"a b",
                                  " lead",
                                  "trail ",
                                  "\xc3\xbc\xe6\x97\xa5\xe6\x9c\xac",
                                  "\t\n\x7f\xfe\xff",
                                  ".hidden",
                                  "...",
                                  "-dash",
                                  "#x",
                                  "x:y",
                                  "*?",
                                  "\\back",
                                  "CASE",
                                  "case",
                                  "1.2.840.10008.5.1.4.1.1.2"};
    for (const char* name : kNames) s.WriteFile(name, name);
    for (const char* name : kNames) s.ReadFile(name);
    s.ReadDir("");
    s.Stat("Case");  // ENOENT: names are case-sensitive
  });
}

// ---- Special files ----------------------------------------------------------------------------

TEST_F(PosixCompareTest, FifosAndSockets) {
  RunBoth("w", [](Sys& s) {
    s.Mknod("fifo", S_IFIFO | 0644);
    s.Lstat("fifo");
    s.Mknod("fifo", S_IFIFO | 0644);  // EEXIST
    s.Mknod("sock", S_IFSOCK | 0600);
    s.Lstat("sock");
    s.Mknod("plain", S_IFREG | 0640);
    s.Lstat("plain");
    s.Open(0, "fifo", O_RDONLY | O_NONBLOCK);
    s.Close(0);
    // A listening Unix socket created by bind(2).
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = s.Path("bound.sock");
    int rc = -1;
    int err = ENAMETOOLONG;
    if (path.size() < sizeof addr.sun_path) {
      memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      err = rc == 0 ? 0 : errno;
    }
    close(fd);
    s.Note("bind(\"bound.sock\")", rc, err);
    s.Lstat("bound.sock");
    s.ReadDir("");
    s.Unlink("sock");
  });
}

// ---- Attributes -------------------------------------------------------------------------------

TEST_F(PosixCompareTest, ChmodAndChown) {
  const bool root = geteuid() == 0;
  RunBoth("w", [root](Sys& s) {
    s.WriteFile("f", "f");
    for (mode_t m : {0600, 04755, 02755, 01777, 0, 0644}) {
      s.Chmod("f", m);
      s.Stat("f");
    }
    s.Open(0, "f", O_RDONLY);
    s.Fchmod(0, 0640);
    s.Fstat(0);
    s.Close(0);
    s.Mkdir("d");
    s.Chmod("d", 0700);
    s.Stat("d");
    s.Chmod("missing", 0644);
    if (!root) return;
    s.Chown("f", 1234, 5678);
    s.Stat("f");
    s.Chown("f", static_cast<uid_t>(-1), 99);
    s.Stat("f");
    s.Chown("f", 77, static_cast<gid_t>(-1));
    s.Stat("f");
    s.Symlink("f", "l");
    s.Lchown("l", 4, 5);
    s.Lstat("l");
    s.Stat("l");
    s.Chown("d", 1, 1);
    s.Stat("d");
    s.Chmod("f", 06755);
    s.Chown("f", 1000, 1000);  // clears set-user-ID and set-group-ID
    s.Stat("f");
  });
}

TEST_F(PosixCompareTest, UtimensatExplicitTimes) {
  RunBoth(
      "w",
      [](Sys& s) {
        s.WriteFile("f", "f");
        s.Utimens("f", {1000000000, 123456789}, {1500000000, 987654321});
        s.Utimens("f", {0, 0}, {0, 1});
        s.Utimens("f", {2147483647, 0}, {2147483648LL, 5});  // beyond 2038
        s.Symlink("f", "l");
        s.Utimens("l", {1200000000, 1}, {1300000000, 2}, AT_SYMLINK_NOFOLLOW);
        s.Mkdir("d");
        s.Utimens("d", {1100000000, 0}, {1100000001, 999999999});
        s.Utimens("missing", {1, 0}, {1, 0});
      },
      DiffOptions{});
}

// UTIME_NOW and UTIME_OMIT, and time updates by ordinary writes, checked against the clock
// (the two runs happen at different times, so they are not compared with each other).
void CheckTimeUpdates(const std::string& dir) {
  SCOPED_TRACE(dir);
  const std::string f = dir + "/times";
  ASSERT_TRUE(WriteWholeFile(f, "x", 0644));
  const timespec fixed[2] = {{1000000000, 111}, {1000000000, 222}};
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), fixed, 0), 0) << ErrnoName(errno);
  auto now = [] {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec;
  };
  struct stat st {};
  const timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  time_t before = now();
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), now_omit, 0), 0) << ErrnoName(errno);
  time_t after = now();
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_GE(st.st_atim.tv_sec, before - 1) << "UTIME_NOW did not set atime";
  EXPECT_LE(st.st_atim.tv_sec, after + 1);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000000000) << "UTIME_OMIT changed mtime";
  EXPECT_EQ(st.st_mtim.tv_nsec, 222);
  EXPECT_GE(st.st_ctim.tv_sec, before - 1) << "utimensat did not update ctime";

  const timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  const timespec atime_before = st.st_atim;
  before = now();
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), omit_now, 0), 0) << ErrnoName(errno);
  after = now();
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, atime_before.tv_sec) << "UTIME_OMIT changed atime";
  EXPECT_EQ(st.st_atim.tv_nsec, atime_before.tv_nsec);
  EXPECT_GE(st.st_mtim.tv_sec, before - 1) << "UTIME_NOW did not set mtime";
  EXPECT_LE(st.st_mtim.tv_sec, after + 1);

  // A write moves mtime and ctime to now; chmod moves ctime only.
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), fixed, 0), 0);
  before = now();
  int fd = open(f.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "yy", 2, 1), 2);
  ASSERT_EQ(close(fd), 0);
  after = now();
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_GE(st.st_mtim.tv_sec, before - 1) << "write did not update mtime";
  EXPECT_LE(st.st_mtim.tv_sec, after + 1);
  EXPECT_GE(st.st_ctim.tv_sec, before - 1) << "write did not update ctime";
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), fixed, 0), 0);
  ASSERT_EQ(chmod(f.c_str(), 0600), 0);
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000000000) << "chmod changed mtime";
  EXPECT_GE(st.st_ctim.tv_sec, before - 1) << "chmod did not update ctime";

  // Creating an entry updates the directory's mtime.
  const timespec old_dir[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, dir.c_str(), old_dir, 0), 0);
  ASSERT_TRUE(WriteWholeFile(dir + "/new-entry", "", 0644));
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_GE(st.st_mtim.tv_sec, before - 1) << "creating a file did not update the dir mtime";
}

TEST_F(PosixCompareTest, UtimeNowAndOmitAndImplicitUpdates) {
  ASSERT_EQ(mkdir(NativeDir("w").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(StrataDir("w").c_str(), 0755), 0) << ErrnoName(errno);
  {
    SCOPED_TRACE("native reference");
    CheckTimeUpdates(NativeDir("w"));
  }
  {
    SCOPED_TRACE("strata");
    CheckTimeUpdates(StrataDir("w"));
  }
}

// ---- Extended attributes ----------------------------------------------------------------------

// Runs the xattr script and checks each step against Linux semantics, so it is meaningful even
// where the host filesystem lacks user xattrs.
void XattrScript(Sys& s) {
  auto expect = [&s](long long ret, int err) {
    EXPECT_EQ(s.last().ret, ret) << Describe(s.last());
    EXPECT_EQ(s.last().err, err) << Describe(s.last());
  };
  s.WriteFile("f", "f");
  s.Setxattr("f", "user.a", "v1", 0);
  expect(0, 0);
  s.Getxattr("f", "user.a", 100);
  expect(2, 0);
  EXPECT_EQ(s.last().data, "v1");
  s.Getxattr("f", "user.a", 0);  // size query
  expect(2, 0);
  s.Getxattr("f", "user.a", 1);
  expect(-1, ERANGE);
  s.Getxattr("f", "user.missing", 100);
  expect(-1, ENODATA);
  s.Setxattr("f", "user.a", "v2", XATTR_CREATE);
  expect(-1, EEXIST);
  s.Setxattr("f", "user.b", "x", XATTR_REPLACE);
  expect(-1, ENODATA);
  s.Setxattr("f", "user.a", "a longer value", XATTR_REPLACE);
  expect(0, 0);
  s.Getxattr("f", "user.a", 100);
  EXPECT_EQ(s.last().data, "a longer value");
  s.Setxattr("f", "user.empty", "", 0);
  expect(0, 0);
  s.Getxattr("f", "user.empty", 100);
  expect(0, 0);
  s.Setxattr("f", "user.bin", std::string("\0\1\2\xff", 4), XATTR_CREATE);
  expect(0, 0);
  s.Getxattr("f", "user.bin", 100);
  EXPECT_TRUE(s.last().data == std::string("\0\1\2\xff", 4)) << Describe(s.last());
  const std::string big = MakeData(7, 4000, DataKind::kRandom);
  s.Setxattr("f", "user.big", big, 0);
  expect(0, 0);
  s.Getxattr("f", "user.big", 8000);
  EXPECT_TRUE(s.last().data == big) << Describe(s.last());
  s.Listxattr("f", 0);
  const long long list_size = s.last().ret;
  EXPECT_GE(list_size, static_cast<long long>(std::strlen("user.a user.big user.bin user.empty ")));
  s.Listxattr("f", 65536);
  EXPECT_EQ(s.last().data, "user.a;user.big;user.bin;user.empty;");
  s.Listxattr("f", 3);
  expect(-1, ERANGE);
  s.Removexattr("f", "user.a");
  expect(0, 0);
  s.Getxattr("f", "user.a", 100);
  expect(-1, ENODATA);
  s.Removexattr("f", "user.a");
  expect(-1, ENODATA);
  s.Mkdir("d");
  s.Setxattr("d", "user.dir", "on a directory", 0);
  expect(0, 0);
  s.Listxattr("d", 65536);
  EXPECT_EQ(s.last().data, "user.dir;");
  s.Getxattr("missing", "user.a", 10);
  expect(-1, ENOENT);
  // A hard link shares the inode's xattrs.
  s.Link("f", "g");
  s.Getxattr("g", "user.bin", 100);
  EXPECT_TRUE(s.last().data == std::string("\0\1\2\xff", 4)) << Describe(s.last());
}

TEST_F(PosixCompareTest, UserXattrs) {
  const std::string n = NativeDir("w");
  const std::string m = StrataDir("w");
  ASSERT_EQ(mkdir(n.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(m.c_str(), 0755), 0) << ErrnoName(errno);
  const bool native_has_xattrs = setxattr(n.c_str(), "user.probe", "1", 1, 0) == 0 &&
                                 removexattr(n.c_str(), "user.probe") == 0;
  std::vector<Event> native_events;
  if (native_has_xattrs) {
    SCOPED_TRACE("native reference");
    Sys s(n);
    XattrScript(s);
    native_events = s.events();
  }
  std::vector<Event> strata_events;
  {
    SCOPED_TRACE("strata");
    Sys s(m);
    XattrScript(s);
    strata_events = s.events();
  }
  if (native_has_xattrs) {
    const std::string report = CompareEvents(native_events, strata_events);
    EXPECT_TRUE(report.empty()) << report;
    ExpectSameTrees("w");
  }
}

// ---- Whole-filesystem calls -------------------------------------------------------------------

TEST_F(PosixCompareTest, StatfsWorks) {
  struct statvfs vfs {};
  ASSERT_EQ(statvfs(mnt().c_str(), &vfs), 0) << ErrnoName(errno);
  EXPECT_GT(vfs.f_bsize, 0u);
  EXPECT_GT(vfs.f_frsize, 0u);
  EXPECT_GT(vfs.f_blocks, 0u) << "df would show a zero-sized filesystem";
  EXPECT_LE(vfs.f_bfree, vfs.f_blocks);
  EXPECT_LE(vfs.f_bavail, vfs.f_bfree);
  EXPECT_EQ(vfs.f_namemax, 255u);
  ASSERT_TRUE(WriteWholeFile(mnt() + "/data", MakeData(8, 4 * kMiB, DataKind::kRandom), 0644));
  int fd = open((mnt() + "/data").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct statvfs fvfs {};
  EXPECT_EQ(fstatvfs(fd, &fvfs), 0) << ErrnoName(errno);
  close(fd);
  EXPECT_EQ(fvfs.f_fsid, vfs.f_fsid);
}

TEST_F(PosixCompareTest, FsyncAndFdatasyncReturnZero) {
  RunBoth("w", [](Sys& s) {
    s.Open(0, "f", O_CREAT | O_RDWR, 0644);
    s.Fsync(0);  // nothing written yet
    s.Write(0, MakeData(9, 300 * kKiB, DataKind::kMixed));
    s.Fsync(0);
    s.Pwrite(0, "again", 17);
    s.Fdatasync(0);
    s.Ftruncate(0, 1000);
    s.Fsync(0);
    s.Close(0);
    s.Open(1, "f", O_RDONLY);
    s.Fsync(1);  // read-only descriptors may be synced too
    s.Fdatasync(1);
    s.Close(1);
    s.Open(2, "", O_RDONLY | O_DIRECTORY);  // what databases do after creating a file
    s.Fsync(2);
    s.Close(2);
    s.Open(3, "s", O_CREAT | O_WRONLY | O_SYNC, 0644);
    s.Write(3, "synchronous");
    s.Close(3);
    s.ReadFile("f");
    s.ReadFile("s");
  });
  int fd = open(mnt().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(syncfs(fd), 0) << ErrnoName(errno);
  close(fd);
}

TEST_F(PosixCompareTest, BlocksReportedForFilesWithData) {
  const std::string f = mnt() + "/data";
  ASSERT_TRUE(WriteWholeFile(f, MakeData(10, 200 * kKiB, DataKind::kRandom), 0644));
  ASSERT_TRUE(WriteWholeFile(mnt() + "/one", "1", 0644));
  struct stat st {};
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_GT(st.st_blocks, 0) << "du and backup tools would treat the file as empty or sparse";
  ASSERT_EQ(stat((mnt() + "/one").c_str(), &st), 0);
  EXPECT_GT(st.st_blocks, 0);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_GT(st.st_blocks, 0) << "after a remount";
  ASSERT_TRUE(WriteWholeFile(mnt() + "/empty", "", 0644));
  ASSERT_EQ(stat((mnt() + "/empty").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);
}

TEST_F(PosixCompareTest, UnlinkedOpenFileStaysReadable) {
  RunBoth("w", [](Sys& s) {
    const std::string data = MakeData(11, 300 * kKiB, DataKind::kMixed);
    s.WriteFile("f", data);
    s.Open(0, "f", O_RDWR);
    s.Unlink("f");
    s.Stat("f");  // ENOENT
    s.ReadDir("");
    s.Pread(0, data.size(), 0);
    s.Fstat(0);  // nlink 0
    s.Pwrite(0, "more", data.size());
    s.Pread(0, 10, data.size() - 6);
    s.Ftruncate(0, 50);
    s.Fstat(0);
    s.Open(1, "f", O_RDONLY);  // ENOENT
    s.WriteFile("f", "a new file under the old name");
    s.ReadFile("f");
    s.Pread(0, 100, 0);
    s.Close(0);
    s.ReadFile("f");
    s.Stat("f");
  });
}

TEST_F(PosixCompareTest, MmapReadAndSharedWrite) {
  RunBoth("w", [](Sys& s) {
    const size_t len = 300 * kKiB;
    s.WriteFile("f", MakeData(12, len, DataKind::kRandom));
    s.Open(0, "f", O_RDWR);
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd(0), 0);
    if (p == MAP_FAILED) {
      s.Note("mmap(MAP_SHARED, PROT_WRITE)", -1, errno);
    } else {
      char* c = static_cast<char*>(p);
      s.Note("mmap(MAP_SHARED, PROT_WRITE)", 0, 0, std::string(c + kChunk - 8, 16));
      memcpy(c + 1000, "mapped", 6);
      memcpy(c + 200000, "write", 5);
      const int rc = msync(p, len, MS_SYNC);
      s.Note("msync(MS_SYNC)", rc, rc == 0 ? 0 : errno);
      munmap(p, len);
    }
    s.Close(0);
    s.ReadFile("f");
    s.Open(1, "f", O_RDONLY);
    p = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, s.fd(1), 0);
    if (p == MAP_FAILED) {
      s.Note("mmap(MAP_PRIVATE, PROT_READ)", -1, errno);
    } else {
      s.Note("mmap(MAP_PRIVATE, PROT_READ)", 0, 0, std::string(static_cast<char*>(p), len));
      munmap(p, len);
    }
    s.Close(1);
  });
}

// ---- Persistence ------------------------------------------------------------------------------

// A tree with one of everything the tests above create.
void BuildRichTree(Sys& s, bool root) {
  s.Mkdir("studies", 0755);
  s.Mkdir("studies/1.2.3", 0750);
  s.Mkdir("studies/1.2.3/series-1", 0700);
  const size_t sizes[] = {0, 1, 4095, 4096, 65535, 65536, 65537, 131072, kMiB + 17, 3 * kMiB};
  int i = 0;
  for (size_t size : sizes) {
    const DataKind kind = (i % 3 == 0)   ? DataKind::kText
                          : (i % 3 == 1) ? DataKind::kRandom
                                         : DataKind::kMixed;
    s.WriteFile("studies/1.2.3/series-1/img" + std::to_string(i) + ".dcm",
                MakeData(100 + static_cast<uint64_t>(i), size, kind));
    ++i;
  }
  s.Open(0, "sparse", O_CREAT | O_RDWR, 0644);
  s.Pwrite(0, "head", 0);
  s.Pwrite(0, "tail", 10 * kMiB);
  s.Close(0);
  s.WriteFile("truncated", MakeData(20, 500 * kKiB, DataKind::kRandom));
  s.Truncate("truncated", 140 * kKiB);
  s.Truncate("truncated", 260 * kKiB);
  s.WriteFile("linked", "three names");
  s.Link("linked", "studies/linked2");
  s.Link("linked", "studies/1.2.3/linked3");
  s.Symlink("studies/1.2.3/series-1/img1.dcm", "shortcut");
  s.Symlink(std::string(3000, 'z'), "longlink");
  s.Mknod("fifo", S_IFIFO | 0640);
  s.WriteFile("private", "p", 0600);
  s.Chmod("private", 0400);
  s.WriteFile("setuid", "s", 0755);
  s.Chmod("setuid", 04755);
  s.Setxattr("studies", "user.site", "north", 0);
  s.Setxattr("linked", "user.checksum", MakeData(21, 64, DataKind::kRandom), 0);
  s.Setxattr("linked", "user.empty", "", 0);
  if (root) {
    s.Chown("studies/1.2.3", 1001, 1002);
    s.Lchown("shortcut", 5, 6);
  }
  s.Utimens("studies/1.2.3/series-1/img3.dcm", {1234567890, 5}, {1234567891, 6});
  s.Mkdir("gone");
  s.WriteFile("gone/file", "x");
  s.Unlink("gone/file");
  s.Rmdir("gone");
  s.Mkdir("old-name");
  s.WriteFile("old-name/f", "moved");
  s.Rename("old-name", "studies/new-name");
  s.WriteFile("replaced", "first version");
  s.WriteFile("replacement", "second version");
  s.Rename("replacement", "replaced");
}

// Changes after a remount: new data must not disturb the old, and the old stays writable.
void ModifyRichTree(Sys& s) {
  s.Open(0, "studies/1.2.3/series-1/img7.dcm", O_WRONLY | O_APPEND);
  s.Write(0, MakeData(30, 70 * kKiB, DataKind::kMixed));
  s.Close(0);
  s.Open(1, "studies/1.2.3/series-1/img8.dcm", O_WRONLY);
  s.Pwrite(1, MakeData(31, 150 * kKiB, DataKind::kRandom), kMiB - 1000);
  s.Close(1);
  for (int i = 0; i < 20; ++i) {
    s.WriteFile("new" + std::to_string(i),
                MakeData(40 + static_cast<uint64_t>(i), static_cast<size_t>(i) * 37 * kKiB,
                         DataKind::kMixed));
  }
  s.Unlink("studies/linked2");
  s.Rename("studies/new-name", "renamed-after-remount");
  s.Removexattr("linked", "user.empty");
  s.Setxattr("linked", "user.added", "later", 0);
  s.Truncate("sparse", 5);
}

class PersistenceTest : public PosixCompareTest {};

TEST_F(PersistenceTest, EverythingSurvivesRemount) {
  const bool root = geteuid() == 0;
  RunBoth("w", [root](Sys& s) { BuildRichTree(s, root); });
  const Tree before = Snapshot(StrataDir("w"));

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSameTrees("w");
  const Tree after = Snapshot(StrataDir("w"));
  DiffOptions same_fs;
  same_fs.root_attrs = true;
  same_fs.ino = true;  // inode numbers are persistent (NFS export, backup tools, hard links)
  same_fs.times = true;
  std::vector<std::string> diffs = DiffTrees(before, after, same_fs);
  for (const std::string& d : diffs) ADD_FAILURE() << "changed by the remount: " << d;

  // Write after the restart, then remount again.
  {
    Sys n(NativeDir("w"));
    ModifyRichTree(n);
    Sys m(StrataDir("w"));
    ModifyRichTree(m);
    const std::string report = CompareEvents(n.events(), m.events());
    EXPECT_TRUE(report.empty()) << report;
  }
  ExpectSameTrees("w");
  const Tree before2 = Snapshot(StrataDir("w"));
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSameTrees("w");
  diffs = DiffTrees(before2, Snapshot(StrataDir("w")), same_fs);
  for (const std::string& d : diffs) ADD_FAILURE() << "changed by the second remount: " << d;
}

TEST_F(PersistenceTest, UnsyncedDataSurvivesCleanUnmount) {
  // No fsync anywhere: a clean unmount must still write everything out.
  const std::string data = MakeData(50, 5 * kMiB + 3, DataKind::kMixed);
  int fd = open((mnt() + "/nosync").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  for (size_t off = 0; off < data.size(); off += 100000) {
    const size_t n = std::min<size_t>(100000, data.size() - off);
    ASSERT_EQ(write(fd, data.data() + off, n), static_cast<ssize_t>(n));
  }
  ASSERT_EQ(close(fd), 0);
  ASSERT_NO_FATAL_FAILURE(Remount());
  std::string back;
  ASSERT_TRUE(ReadWholeFile(mnt() + "/nosync", &back)) << ErrnoName(errno);
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data) << "contents differ after remount";
}

// ---- Permissions with default_permissions,allow_other ------------------------------------------

class PermissionTest : public PosixCompareTest {
 protected:
  PermissionTest() { mount_options_ = {"default_permissions", "allow_other"}; }
};

struct NobodyResults {
  int open_private_read = -1;  // errno, 0 on success
  int open_public_read = -1;
  int public_contents_ok = 0;
  int open_public_write = -1;
  int create_in_dir = -1;
  int unlink_private = -1;
  int stat_private = -1;
  int chmod_private = -1;
};

// Forks, becomes uid/gid 65534 (nobody) in the child and tries the operations on `dir`.
NobodyResults RunAsNobody(const std::string& dir) {
  NobodyResults r;
  // Everything the child needs is prepared before fork().
  const std::string private_path = dir + "/private";
  const std::string public_path = dir + "/public";
  const std::string new_path = dir + "/new";
  int fds[2];
  if (pipe(fds) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    NobodyResults c;
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(3);
    }
    auto err_of = [](int rc) { return rc >= 0 ? 0 : errno; };
    int fd = open(private_path.c_str(), O_RDONLY);
    c.open_private_read = err_of(fd);
    if (fd >= 0) close(fd);
    fd = open(public_path.c_str(), O_RDONLY);
    c.open_public_read = err_of(fd);
    if (fd >= 0) {
      char buf[32] = {};
      c.public_contents_ok = read(fd, buf, sizeof buf) == 6 && memcmp(buf, "public", 6) == 0;
      close(fd);
    }
    fd = open(public_path.c_str(), O_WRONLY);
    c.open_public_write = err_of(fd);
    if (fd >= 0) close(fd);
    fd = open(new_path.c_str(), O_CREAT | O_WRONLY, 0644);
    c.create_in_dir = err_of(fd);
    if (fd >= 0) close(fd);
    c.unlink_private = err_of(unlink(private_path.c_str()));
    struct stat st {};
    c.stat_private = err_of(stat(private_path.c_str(), &st));
    c.chmod_private = err_of(chmod(private_path.c_str(), 0666));
    ssize_t w = write(fds[1], &c, sizeof c);
    _exit(w == static_cast<ssize_t>(sizeof c) ? 0 : 4);
  }
  close(fds[1]);
  if (pid > 0) {
    NobodyResults got;
    if (read(fds[0], &got, sizeof got) == static_cast<ssize_t>(sizeof got)) r = got;
    int status = 0;
    waitpid(pid, &status, 0);
  }
  close(fds[0]);
  return r;
}

TEST_F(PermissionTest, OtherUserIsDeniedByModeBits) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to uid 65534";
  ASSERT_EQ(chmod(root().c_str(), 0755), 0);  // let nobody reach native/ and mnt/
  for (const std::string& dir : {NativeDir("w"), StrataDir("w")}) {
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << ErrnoName(errno);
    ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
    ASSERT_TRUE(WriteWholeFile(dir + "/private", "secret", 0600));
    ASSERT_TRUE(WriteWholeFile(dir + "/public", "public", 0644));
  }
  const NobodyResults native = RunAsNobody(NativeDir("w"));
  const NobodyResults strata = RunAsNobody(StrataDir("w"));
  ASSERT_EQ(native.open_private_read, EACCES) << "the native reference run did not work";

  EXPECT_EQ(ErrnoName(strata.open_private_read), "EACCES") << "reading a 0600 root file";
  EXPECT_EQ(ErrnoName(strata.open_public_read), "0")
      << "reading a 0644 file (allow_other must let other users in)";
  EXPECT_TRUE(strata.public_contents_ok);
  EXPECT_EQ(ErrnoName(strata.open_public_write), ErrnoName(native.open_public_write));
  EXPECT_EQ(ErrnoName(strata.create_in_dir), ErrnoName(native.create_in_dir));
  EXPECT_EQ(ErrnoName(strata.unlink_private), ErrnoName(native.unlink_private));
  EXPECT_EQ(ErrnoName(strata.stat_private), ErrnoName(native.stat_private));
  EXPECT_EQ(ErrnoName(strata.chmod_private), ErrnoName(native.chmod_private));

  // Root still reads it, and nothing was changed by the denied calls.
  std::string contents;
  EXPECT_TRUE(ReadWholeFile(StrataDir("w") + "/private", &contents));
  EXPECT_EQ(contents, "secret");
  ExpectSameTrees("w");
}

}  // namespace
}  // namespace strata::it
