// Randomized differential test: a seeded random sequence of namespace and data operations on a
// small pool of names runs step by step on the strata mount and on a native directory; every
// return value, errno and output must match. The full trees are compared midway, at the end,
// and after each remount.
//
// The seed is fixed for CI. For long runs:
//   STRATA_RANDOM_OPS=50000 STRATA_SEED=$RANDOM ./random_ops_test
// A failure prints the seed and the step, so it replays exactly.
#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/fs_ops.h"
#include "tests/integration/mount_fixture.h"

namespace strata::it {
namespace {

constexpr off_t kChunk = 64 * 1024;  // the default chunk size

enum class OpKind {
  kCreate,
  kOpen,
  kClose,
  kPwrite,
  kWrite,
  kPread,
  kWritePath,
  kReadPath,
  kTruncate,
  kFtruncate,
  kRename,
  kUnlink,
  kMkdir,
  kRmdir,
  kLink,
  kSymlink,
  kChmod,
  kStat,
  kLstat,
  kReadDir,
  kFsync,
  kReadlink,
};

struct Op {
  OpKind kind = OpKind::kStat;
  std::string a, b;
  int slot = 0;
  int flags = 0;
  mode_t mode = 0644;
  off_t off = 0;
  size_t len = 0;
  uint64_t data_seed = 0;
  DataKind data_kind = DataKind::kRandom;
  unsigned rename_flags = 0;

  std::string Data() const { return MakeData(data_seed, len, data_kind); }
};

// Generates operations from a seed. Results never feed back into generation, so the same seed
// yields the same script on both sides.
class OpGenerator {
 public:
  explicit OpGenerator(uint64_t seed) : rng_(seed) {}

  Op Next() {
    static const std::pair<OpKind, int> kWeights[] = {
        {OpKind::kCreate, 8},    {OpKind::kOpen, 7},     {OpKind::kClose, 5},
        {OpKind::kPwrite, 12},   {OpKind::kWrite, 4},    {OpKind::kPread, 8},
        {OpKind::kWritePath, 8}, {OpKind::kReadPath, 5}, {OpKind::kTruncate, 4},
        {OpKind::kFtruncate, 3}, {OpKind::kRename, 8},   {OpKind::kUnlink, 5},
        {OpKind::kMkdir, 5},     {OpKind::kRmdir, 4},    {OpKind::kLink, 4},
        {OpKind::kSymlink, 3},   {OpKind::kChmod, 3},    {OpKind::kStat, 4},
        {OpKind::kLstat, 2},     {OpKind::kReadDir, 4},  {OpKind::kFsync, 2},
        {OpKind::kReadlink, 2},
    };
    int total = 0;
    for (const auto& [kind, w] : kWeights) total += w;
    int pick = Uniform(0, total - 1);
    Op op;
    for (const auto& [kind, w] : kWeights) {
      if (pick < w) {
        op.kind = kind;
        break;
      }
      pick -= w;
    }
    want_dir_ = op.kind == OpKind::kMkdir || op.kind == OpKind::kRmdir ||
                op.kind == OpKind::kReadDir || (op.kind == OpKind::kRename && Chance(30));
    op.a = Path();
    op.b = Path();
    // Descriptor operations mostly target slots this script has opened (whether the open
    // worked is not known here: generation must not depend on results).
    op.slot =
        (!open_slots_.empty() && Chance(85))
            ? open_slots_[static_cast<size_t>(Uniform(0, static_cast<int>(open_slots_.size()) - 1))]
            : Uniform(0, 3);
    op.off = Offset();
    op.len = Length();
    op.data_seed = rng_();
    op.data_kind = static_cast<DataKind>(Uniform(0, 3));
    switch (op.kind) {
      case OpKind::kCreate: {
        op.flags = O_CREAT | O_WRONLY;
        if (Chance(20)) op.flags |= O_EXCL;
        if (Chance(20)) op.flags |= O_TRUNC;
        static const mode_t kModes[] = {0644, 0600, 0755, 0444};
        op.mode = kModes[Uniform(0, 3)];
        break;
      }
      case OpKind::kOpen: {
        static const int kFlags[] = {O_RDONLY,          O_WRONLY,           O_RDWR,
                                     O_RDWR | O_APPEND, O_WRONLY | O_TRUNC, O_RDWR | O_CREAT};
        op.flags = kFlags[Uniform(0, 5)];
        break;
      }
      case OpKind::kWritePath:
        op.flags = O_WRONLY | (Chance(50) ? O_CREAT : 0);
        break;
      case OpKind::kRename: {
        const int r = Uniform(0, 9);
        op.rename_flags = r == 0 ? RENAME_NOREPLACE : r == 1 ? RENAME_EXCHANGE : 0;
        break;
      }
      case OpKind::kMkdir: {
        static const mode_t kModes[] = {0755, 0700, 0777};
        op.mode = kModes[Uniform(0, 2)];
        break;
      }
      case OpKind::kSymlink: {
        // Relative targets only: both trees must resolve them the same way.
        static const char* const kPrefixes[] = {"", "../", "d0/", "../../"};
        op.b = std::string(kPrefixes[Uniform(0, 3)]) + Path();
        std::swap(op.a, op.b);  // a = target, b = link path
        break;
      }
      case OpKind::kChmod: {
        static const mode_t kModes[] = {0644, 0600, 0755, 0444, 0, 04755, 01777};
        op.mode = kModes[Uniform(0, 6)];
        break;
      }
      case OpKind::kReadDir:
        if (Chance(25)) op.a = "";
        break;
      default:
        break;
    }
    // Remember names this script creates so later operations find something there.
    switch (op.kind) {
      case OpKind::kCreate:
      case OpKind::kWritePath:
      case OpKind::kMkdir:
        Remember(op.a);
        break;
      case OpKind::kRename:
      case OpKind::kLink:
        Remember(op.b);
        break;
      case OpKind::kSymlink:
        Remember(op.b);
        break;
      case OpKind::kOpen:
        Remember(op.a);
        if (std::find(open_slots_.begin(), open_slots_.end(), op.slot) == open_slots_.end()) {
          open_slots_.push_back(op.slot);
        }
        break;
      case OpKind::kClose:
        open_slots_.erase(std::remove(open_slots_.begin(), open_slots_.end(), op.slot),
                          open_slots_.end());
        break;
      default:
        break;
    }
    return op;
  }

  // The test closes every descriptor at a remount; the generator must know.
  void ForgetOpenSlots() { open_slots_.clear(); }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Uniform(0, 99) < percent; }

  void Remember(const std::string& path) {
    recent_.push_back(path);
    if (recent_.size() > 24) recent_.erase(recent_.begin());
  }

  std::string Path() {
    if (!recent_.empty() && Chance(50)) {
      return recent_[static_cast<size_t>(Uniform(0, static_cast<int>(recent_.size()) - 1))];
    }
    // Names that tend to be files and names that tend to be directories, so that most
    // operations find the type they need, and some do not.
    static const char* const kFiles[] = {"a", "b", "c", "s"};
    static const char* const kDirs[] = {"d0", "d1"};
    auto any = [&] { return Chance(50) ? kFiles[Uniform(0, 3)] : kDirs[Uniform(0, 1)]; };
    const int r = Uniform(0, 99);
    const int depth = r < 60 ? 1 : r < 92 ? 2 : 3;
    std::string p;
    for (int i = 0; i < depth - 1; ++i) {
      p += Chance(85) ? kDirs[Uniform(0, 1)] : any();
      p += '/';
    }
    if (want_dir_) {
      p += Chance(85) ? kDirs[Uniform(0, 1)] : any();
    } else {
      p += Chance(85) ? kFiles[Uniform(0, 3)] : any();
    }
    return p;
  }

  off_t Offset() {
    const int r = Uniform(0, 99);
    if (r < 20) return 0;
    if (r < 50) return Uniform(0, 64 * 1024 - 1);
    if (r < 80) return Uniform(0, 450 * 1024);
    return Uniform(1, 3) * kChunk + Uniform(-3, 3);
  }

  size_t Length() {
    const int r = Uniform(0, 99);
    if (r < 15) return static_cast<size_t>(Uniform(0, 16));
    if (r < 60) return static_cast<size_t>(Uniform(1, 8192));
    return static_cast<size_t>(Uniform(1, 200 * 1024));
  }

  std::mt19937_64 rng_;
  std::vector<std::string> recent_;
  std::vector<int> open_slots_;
  bool want_dir_ = false;
};

void Apply(const Op& op, Sys& s) {
  constexpr int kTempSlot = 9;
  switch (op.kind) {
    case OpKind::kCreate:
      s.Open(kTempSlot, op.a, op.flags, op.mode);
      s.Close(kTempSlot);
      break;
    case OpKind::kOpen:
      s.Open(op.slot, op.a, op.flags, 0644);
      break;
    case OpKind::kClose:
      s.Close(op.slot);
      break;
    case OpKind::kPwrite:
      s.Pwrite(op.slot, op.Data(), op.off);
      break;
    case OpKind::kWrite:
      s.Write(op.slot, op.Data());
      break;
    case OpKind::kPread:
      s.Pread(op.slot, op.len, op.off);
      break;
    case OpKind::kWritePath:
      s.Open(kTempSlot, op.a, op.flags, 0644);
      s.Pwrite(kTempSlot, op.Data(), op.off);
      s.Close(kTempSlot);
      break;
    case OpKind::kReadPath:
      s.ReadFile(op.a);
      break;
    case OpKind::kTruncate:
      s.Truncate(op.a, op.off);
      break;
    case OpKind::kFtruncate:
      s.Ftruncate(op.slot, op.off);
      break;
    case OpKind::kRename:
      if (op.rename_flags == 0) {
        s.Rename(op.a, op.b);
      } else {
        s.Renameat2(op.a, op.b, op.rename_flags);
      }
      break;
    case OpKind::kUnlink:
      s.Unlink(op.a);
      break;
    case OpKind::kMkdir:
      s.Mkdir(op.a, op.mode);
      break;
    case OpKind::kRmdir:
      s.Rmdir(op.a);
      break;
    case OpKind::kLink:
      s.Link(op.a, op.b);
      break;
    case OpKind::kSymlink:
      s.Symlink(op.a, op.b);
      break;
    case OpKind::kChmod:
      s.Chmod(op.a, op.mode);
      break;
    case OpKind::kStat:
      s.Stat(op.a);
      break;
    case OpKind::kLstat:
      s.Lstat(op.a);
      break;
    case OpKind::kReadDir:
      s.ReadDir(op.a);
      break;
    case OpKind::kFsync:
      s.Fsync(op.slot);
      break;
    case OpKind::kReadlink:
      s.Readlink(op.a);
      break;
  }
}

struct RandomOpsParam {
  const char* name;
  uint64_t seed;
  std::vector<std::string> filesystem_config;
};

// Names the parameter in test names and messages.
void PrintTo(const RandomOpsParam& p, std::ostream* os) { *os << p.name; }

class RandomOpsTest : public MountFixture, public ::testing::WithParamInterface<RandomOpsParam> {
 protected:
  RandomOpsTest() { filesystem_config_ = GetParam().filesystem_config; }

  std::string NativeWork() const { return native() + "/w"; }
  std::string StrataWork() const { return mnt() + "/w"; }

  void CompareTrees(const std::string& when) {
    const std::string report = CompareDirs(NativeWork(), StrataWork());
    EXPECT_TRUE(report.empty()) << "seed " << seed_ << ", " << when << ":\n" << report;
  }

  uint64_t seed_ = 0;
};

TEST_P(RandomOpsTest, MatchesNativeFilesystem) {
  seed_ = static_cast<uint64_t>(EnvInt("STRATA_SEED", static_cast<long long>(GetParam().seed)));
  const long long count = EnvInt("STRATA_RANDOM_OPS", 1500);
  RecordProperty("seed", std::to_string(seed_));
  RecordProperty("ops", std::to_string(count));
  std::cout << "random ops: seed " << seed_ << ", " << count
            << " operations (STRATA_SEED / STRATA_RANDOM_OPS to change)\n";

  ASSERT_EQ(mkdir(NativeWork().c_str(), 0755), 0);
  ASSERT_EQ(mkdir(StrataWork().c_str(), 0755), 0) << ErrnoName(errno);
  OpGenerator gen(seed_);
  Sys native_sys(NativeWork());
  Sys strata_sys(StrataWork());
  const long long remount_at = count / 2;
  for (long long i = 0; i < count; ++i) {
    if (i == remount_at) {
      native_sys.CloseAll();
      strata_sys.CloseAll();
      gen.ForgetOpenSlots();
      CompareTrees("before the midway remount (after " + std::to_string(i) + " operations)");
      ASSERT_NO_FATAL_FAILURE(Remount());
      CompareTrees("after the midway remount");
      if (HasFailure()) return;
    }
    const Op op = gen.Next();
    const size_t before = strata_sys.events().size();
    Apply(op, native_sys);
    Apply(op, strata_sys);
    bool same = native_sys.events().size() == strata_sys.events().size();
    for (size_t k = before; same && k < strata_sys.events().size(); ++k) {
      const Event& n = native_sys.events()[k];
      const Event& m = strata_sys.events()[k];
      same = n.call == m.call && n.ret == m.ret && n.err == m.err && n.data == m.data;
    }
    ASSERT_TRUE(same) << "seed " << seed_ << ", operation " << i << " of " << count
                      << " differs from the native filesystem (replay with STRATA_SEED=" << seed_
                      << " STRATA_RANDOM_OPS=" << i + 1 << "):\n"
                      << CompareEvents(native_sys.events(), strata_sys.events());
  }
  native_sys.CloseAll();
  strata_sys.CloseAll();
  size_t succeeded = 0;
  std::map<std::string, int> failures;
  for (const Event& e : native_sys.events()) {
    if (e.ret != -1) {
      ++succeeded;
    } else {
      ++failures[e.call.substr(0, e.call.find('(')) + ":" + ErrnoName(e.err)];
    }
  }
  std::string top;
  for (const auto& [what, n] : failures) top += " " + what + "=" + std::to_string(n);
  const size_t entries = Snapshot(NativeWork()).size() - 1;
  std::cout << "random ops: " << succeeded << " of " << native_sys.events().size()
            << " calls succeeded; " << entries << " entries at the end; failures:" << top << "\n";
  CompareTrees("at the end");
  ASSERT_NO_FATAL_FAILURE(Remount());
  CompareTrees("after the final remount");
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, RandomOpsTest,
    ::testing::Values(RandomOpsParam{"Seed1", 1, {}}, RandomOpsParam{"Seed2", 2, {}},
                      RandomOpsParam{"Seed3", 3, {}},
                      // Small chunks put many chunk boundaries inside the offsets above.
                      RandomOpsParam{"Seed4SmallChunks", 4, {"chunk_size = \"16KiB\""}}),
    [](const ::testing::TestParamInfo<RandomOpsParam>& info) { return info.param.name; });

}  // namespace
}  // namespace strata::it
