// Session setup: capability negotiation, mount, daemonise, the multi-threaded loop.
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "fuse/dispatch.h"
#include "fuse/fuse_glue.h"

namespace strata::fuse {
namespace {

// Measured (bench/README.md): 128 KiB serialises a sequential reader; 1 MiB makes each 512 KiB
// DICOM file one READ decoded by one worker, and 32 readers of such files lost ~20% of their
// throughput and doubled their p99 against 512 KiB, which reads large files as fast as 1 MiB.
constexpr unsigned kReadaheadBytes = 512u << 10;
// Readahead READs are "background" requests, and the kernel lets only max_background of them
// be outstanding (12 by default). A read waiting on a cold tier holds its slot for the whole
// fetch: 12 such reads would stall every hot reader behind them in the kernel's queue, and cap
// the cold reads in flight at 12 whatever the readers. Past congestion_threshold the kernel
// stops issuing asynchronous readahead.
constexpr unsigned kMaxBackground = 128;

// /proc/self/mountinfo escapes ' ', '\t', '\n' and '\\' in paths as \ooo.
std::string UnescapeMountinfo(const std::string& in) {
  auto octal = [&](size_t k) { return k < in.size() && in[k] >= '0' && in[k] <= '7'; };
  std::string out;
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(
          static_cast<char>((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 + (in[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// The kernel gives a FUSE mount's bdi a 128 KiB readahead window, and the INIT reply can only
// lower it (to max_readahead). A sequential reader then has one 128 KiB READ in flight, decoded
// on one worker at a time; with the window at max_readahead several READs are in flight,
// decoded on several workers (cold sequential reads ~2x on 2 cores). Called after the mount and
// before the session loop: the device comes from the newest FUSE entry for `mountpoint` (an
// absolute, resolved path) in /proc/self/mountinfo, so nothing here waits on the mount itself.
// Without root or sysfs the kernel's default stays.
void RaiseReadahead(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, dev;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super
    std::istringstream fields(line);
    std::string id, parent, majmin, root, point;
    fields >> id >> parent >> majmin >> root >> point;
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos || UnescapeMountinfo(point) != mountpoint) continue;
    if (line.compare(dash + 3, 5, "fuse.") == 0) dev = majmin;
  }
  if (dev.empty())
    return log::Info(
        "readahead stays at the kernel's default: {} not found in "
        "/proc/self/mountinfo",
        mountpoint);
  const std::string path = "/sys/class/bdi/" + dev + "/read_ahead_kb";
  std::ofstream f(path);
  f << kReadaheadBytes / 1024;
  f.flush();
  if (!f) log::Info("readahead stays at the kernel's default: cannot write {}", path);
}

void Init(void* userdata, fuse_conn_info* conn) {
  // Large requests: a 1 MiB write is one round trip (kernel >= 4.20 honours max_pages).
  conn->max_write = 1u << 20;
  conn->max_readahead = kReadaheadBytes;
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kMaxBackground * 3 / 4;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  // POSIX ACLs: the kernel enforces them; strata stores them, inherits default ACLs and so
  // applies the umask itself (DONT_MASK).
  if (conn->capable & FUSE_CAP_POSIX_ACL) conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  // Let the kernel clear setuid/setgid on write, truncate and chown (it sends a mode change).
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // The kernel's writeback cache would move size and mtime authority into the page cache;
  // strata keeps it, so writes are synchronous FUSE requests.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void Destroy(void* userdata) {
  auto* fs = static_cast<fs::Filesystem*>(userdata);
  Status s = fs->Shutdown();
  if (!s.ok()) log::Error("unmount: {}", s.ToString());
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.destroy = Destroy;
  AddEntryOps(&ops);
  AddNamespaceOps(&ops);
  AddDirOps(&ops);
  AddFileOps(&ops);
  AddXattrOps(&ops);
  return ops;
}

}  // namespace

Status Serve(fs::Filesystem* fs, const MountOptions& options,
             const std::function<Status()>& after_daemonize) {
  static const fuse_lowlevel_ops ops = MakeOps();
  std::string opts =
      "default_permissions,fsname=strata:" + fs->superblock().name + ",subtype=strata";
  for (const auto& o : options.options) opts += "," + o;
  std::vector<std::string> argv_s = {"strata", "-o", opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, fs);
  if (se == nullptr) return Status::InvalidArgument("bad mount options: " + opts);
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return Status::IOError("cannot install signal handlers");
  }
  // Resolved before the mount: afterwards resolving it would wait on the mount's own answers.
  char abs[PATH_MAX];
  const std::string mountpoint =
      ::realpath(options.mountpoint.c_str(), abs) != nullptr ? abs : options.mountpoint;
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IOError("cannot mount at " + options.mountpoint +
                           " (is it an existing directory you may mount on?)");
  }
  RaiseReadahead(mountpoint);
  if (fuse_daemonize(options.foreground ? 1 : 0) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IOError("cannot daemonise");
  }
  Status s = after_daemonize ? after_daemonize() : Status::OK();
  int rc = 0;
  if (s.ok()) {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, options.max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, 4);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);  // calls Destroy (flush and commit) if the kernel did not
  if (!s.ok()) return s;
  Status shut = fs->Shutdown();
  if (!shut.ok()) return shut;
  if (rc < 0) return Status::IOError("FUSE session loop failed", -rc);
  return Status::OK();
}

}  // namespace strata::fuse
