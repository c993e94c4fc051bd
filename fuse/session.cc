// Session setup: capability negotiation, mount, daemonise, the multi-threaded loop.
#include <string>

#include "fuse/dispatch.h"
#include "fuse/fuse_glue.h"

namespace strata::fuse {
namespace {

void Init(void* userdata, fuse_conn_info* conn) {
  // Large requests: a 1 MiB write is one round trip (kernel >= 4.20 honours max_pages).
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
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
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IOError("cannot mount at " + options.mountpoint +
                           " (is it an existing directory you may mount on?)");
  }
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
