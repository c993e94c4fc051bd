// The control socket: how `strata migrate CONFIG ...` reaches a mounted filesystem. The
// daemon listens on <hot>/control.sock (a Unix socket, mode 0600 in the 0700 hot directory,
// so only root talks to it) and runs each request against its open Filesystem.
//
// Protocol (one request per connection, text, version 1):
//   request   "strata-control 1 migrate <dry_run 0|1> <json 0|1> <now_ns>\n"
//             "strata-control 1 status <json 0|1>\n"
//   response  zero or more "P <progress line>\n", then "R <exit code>\n", then the output
//             (the same text or JSON the command prints when run unmounted) until EOF.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"
#include "fs/filesystem.h"

namespace strata::cli {

std::string ControlSocketPath(const std::string& hot_path);

class ControlServer {
 public:
  // Binds the socket (replacing a stale one left by a killed daemon) and starts serving.
  static Result<std::unique_ptr<ControlServer>> Start(fs::Filesystem* fs, const std::string& path);
  ~ControlServer();  // stops accepting, waits for the requests in progress, removes the socket

 private:
  ControlServer() = default;
  void Loop();
  void Handle(int fd);
  fs::Filesystem* fs_ = nullptr;
  std::string path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable idle_;
  int active_ = 0;  // requests being handled; guarded by mu_
};

// What a request produced: exit code and output.
struct ControlReply {
  int exit_code = 0;
  std::string output;
};

// Runs `request` (without the "strata-control 1 " prefix) against a mounted filesystem.
// on_progress receives the progress lines as they come. Unavailable when nothing listens.
Result<ControlReply> ControlRequest(const std::string& path, const std::string& request,
                                    const std::function<void(const std::string&)>& on_progress);

}  // namespace strata::cli
