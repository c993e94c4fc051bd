#include "fs/space_guard.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace strata::fs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A disk whose free space the test sets, counting how often the guard reads it.
struct FakeDisk {
  uint64_t free = 0;
  int reads = 0;
  Status error;
  SpaceGuard Guard(uint64_t reserve, uint64_t slack = 0) {
    return SpaceGuard("/hot", reserve, slack, [this]() -> Result<uint64_t> {
      reads++;
      RETURN_IF_ERROR(error);
      return free;
    });
  }
};

TEST(SpaceGuardTest, AdmitsAboveTheReserveAndRefusesIntoIt) {
  FakeDisk disk;
  disk.free = 100 * kMiB;
  SpaceGuard g = disk.Guard(10 * kMiB);
  uint64_t admitted = 0;
  Status s;
  // The disk fills as the guard admits, as it would with strata the only writer.
  while ((s = g.Admit(kMiB)).ok()) {
    admitted += kMiB;
    disk.free -= kMiB;
    ASSERT_LE(admitted, 90 * kMiB);
  }
  EXPECT_EQ(s.ToErrno(), ENOSPC) << s.ToString();
  EXPECT_EQ(admitted, 90 * kMiB) << "everything above the reserve, and nothing of it";
  EXPECT_LT(disk.reads, 12)
      << "free space is read when half of what was left is used, not per write";
  const int reads = disk.reads;
  EXPECT_EQ(g.Admit(1).ToErrno(), ENOSPC) << "a refused guard reads again, and refuses again";
  EXPECT_EQ(disk.reads, reads + 1);
}

TEST(SpaceGuardTest, WritesResumeOnceSpaceIsFreed) {
  FakeDisk disk;
  disk.free = 10 * kMiB;
  SpaceGuard g = disk.Guard(10 * kMiB);
  EXPECT_EQ(g.Admit(4096).ToErrno(), ENOSPC);
  disk.free = 30 * kMiB;  // files deleted, segments freed
  EXPECT_TRUE(g.Admit(4096).ok());
  EXPECT_TRUE(g.Admit(5 * kMiB).ok());
}

TEST(SpaceGuardTest, TheSlackIsKeptBesidesTheReserve) {
  FakeDisk disk;
  disk.free = 20 * kMiB;
  SpaceGuard g = disk.Guard(8 * kMiB, 4 * kMiB);  // a journal segment preallocated at once
  EXPECT_EQ(g.floor(), 12 * kMiB);
  EXPECT_EQ(g.Admit(9 * kMiB).ToErrno(), ENOSPC);
  EXPECT_TRUE(g.Admit(8 * kMiB).ok());
}

TEST(SpaceGuardTest, ALargerRequestThanWhatIsLeftIsRefusedWhole) {
  FakeDisk disk;
  disk.free = 20 * kMiB;
  SpaceGuard g = disk.Guard(10 * kMiB);
  EXPECT_EQ(g.Admit(11 * kMiB).ToErrno(), ENOSPC);
  EXPECT_TRUE(g.Admit(10 * kMiB).ok()) << "exactly what is above the reserve fits";
}

TEST(SpaceGuardTest, AnUnreadableDiskIsAnErrorNotAnAdmission) {
  FakeDisk disk;
  disk.error = Status::IOError("statfs /hot", EIO);
  SpaceGuard g = disk.Guard(kMiB);
  Status s = g.Admit(4096);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("statfs /hot"), std::string::npos) << s.ToString();
}

TEST(SpaceGuardTest, DefaultReserveIsFivePercentUpToOneGiB) {
  EXPECT_EQ(SpaceGuard::DefaultReserve(100 * kMiB), 5 * kMiB);
  EXPECT_EQ(SpaceGuard::DefaultReserve(uint64_t{4} << 40), uint64_t{1} << 30);
}

}  // namespace
}  // namespace strata::fs
