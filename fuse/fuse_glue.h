// The FUSE shell over fs::Filesystem (libfuse3 low-level API). Thin: each op unpacks its
// arguments, calls the model, replies once.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace strata::fs {
class Filesystem;
}

namespace strata::fuse {

struct MountOptions {
  std::string mountpoint;
  std::vector<std::string> options;  // -o options passed to the kernel/libfuse
  bool foreground = false;
  unsigned max_threads = 16;
};

// Mounts `fs` and serves requests until unmount or SIGTERM/SIGINT/SIGHUP. Unless
// `foreground`, daemonises after the mount succeeded (errors before that reach the caller's
// stderr) and calls `after_daemonize` in the child before serving.
Status Serve(fs::Filesystem* fs, const MountOptions& options,
             const std::function<Status()>& after_daemonize);

}  // namespace strata::fuse
