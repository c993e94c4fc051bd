#include "cli/control.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "base/env.h"
#include "base/logging.h"
#include "cli/commands.h"

namespace strata::cli {
namespace {

constexpr const char* kMagic = "strata-control 1 ";

bool WriteAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

Status SockAddr(const std::string& path, sockaddr_un* a) {
  *a = {};
  a->sun_family = AF_UNIX;
  if (path.size() >= sizeof(a->sun_path))
    return Status::InvalidArgument("control socket path too long: " + path);
  std::memcpy(a->sun_path, path.c_str(), path.size() + 1);
  return Status::OK();
}

}  // namespace

std::string ControlSocketPath(const std::string& hot_path) {
  return JoinPath(hot_path, "control.sock");
}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(fs::Filesystem* fs,
                                                            const std::string& path) {
  std::unique_ptr<ControlServer> s(new ControlServer);
  s->fs_ = fs;
  s->path_ = path;
  sockaddr_un addr;
  RETURN_IF_ERROR(SockAddr(path, &addr));
  s->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0) return Status::IOError("control socket", errno);
  ::unlink(path.c_str());  // a stale socket of a killed daemon (we hold the filesystem lock)
  mode_t old = ::umask(0077);
  int rc = ::bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return Status::IOError("bind control socket " + path, errno);
  if (::listen(s->listen_fd_, 16) != 0) return Status::IOError("listen " + path, errno);
  if (::pipe2(s->wake_, O_CLOEXEC) != 0) return Status::IOError("pipe", errno);
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

ControlServer::~ControlServer() {
  if (wake_[1] >= 0) {
    char c = 1;
    (void)!::write(wake_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
  if (!path_.empty()) ::unlink(path_.c_str());
}

void ControlServer::Loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // One detached thread per request (a migration may run for hours while status requests
    // come and go); the destructor waits for the count to reach zero.
    {
      std::lock_guard<std::mutex> l(mu_);
      ++active_;
    }
    std::thread([this, fd] {
      Handle(fd);
      ::close(fd);
      std::lock_guard<std::mutex> l(mu_);
      if (--active_ == 0) idle_.notify_all();
    }).detach();
  }
  std::unique_lock<std::mutex> l(mu_);
  idle_.wait(l, [&] { return active_ == 0; });
}

void ControlServer::Handle(int fd) {
  std::string line;
  char c;
  while (line.size() < 4096) {
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n <= 0 || c == '\n') break;
    line += c;
  }
  if (line.rfind(kMagic, 0) != 0) {
    WriteAll(fd, fmt::format("R {}\nunknown control request\n", kExitUsage));
    return;
  }
  std::istringstream in(line.substr(std::strlen(kMagic)));
  std::string verb;
  in >> verb;
  if (verb == "migrate") {
    int dry = 0, json = 0;
    int64_t now = 0;
    in >> dry >> json >> now;
    fs::MigrateOptions o;
    o.dry_run = dry != 0;
    o.now_ns = now;
    o.progress = [&](const fs::MigrateProgress& p) {
      WriteAll(fd, fmt::format("P {}: {} files scanned, {} moved ({} bytes)\n", p.phase,
                               p.files_scanned, p.files_moved, p.bytes_moved));
    };
    auto r = fs_->Migrate(o);
    if (!r.ok()) {
      WriteAll(fd,
               fmt::format("R {}\n{}\n", r.status().IsInvalidArgument() ? kExitUsage : kExitFailed,
                           r.status().ToString()));
      return;
    }
    int code = r->errors.empty() ? kExitOk : kExitFailed;
    WriteAll(fd, fmt::format("R {}\n{}", code, json ? fs::ToJson(*r) + "\n" : fs::ToText(*r)));
  } else if (verb == "status") {
    int json = 0;
    in >> json;
    fs::TieringStatus st = fs_->GetTieringStatus();
    WriteAll(fd, fmt::format("R 0\n{}", json ? fs::ToJson(st) + "\n" : fs::ToText(st)));
  } else {
    WriteAll(fd, fmt::format("R {}\nunknown control request '{}'\n", kExitUsage, verb));
  }
}

Result<ControlReply> ControlRequest(const std::string& path, const std::string& request,
                                    const std::function<void(const std::string&)>& on_progress) {
  sockaddr_un addr;
  RETURN_IF_ERROR(SockAddr(path, &addr));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError("control socket", errno);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return Status::Unavailable("the mounted filesystem does not answer on " + path + ": " +
                               std::strerror(err));
  }
  if (!WriteAll(fd, std::string(kMagic) + request + "\n")) {
    ::close(fd);
    return Status::IOError("write to " + path, errno);
  }
  std::string buf;
  char chunk[4096];
  ssize_t n;
  ControlReply reply;
  bool have_code = false;
  while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) {
    buf.append(chunk, static_cast<size_t>(n));
    while (!have_code) {
      size_t nl = buf.find('\n');
      if (nl == std::string::npos) break;
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (l.rfind("P ", 0) == 0) {
        if (on_progress) on_progress(l.substr(2));
      } else if (l.rfind("R ", 0) == 0) {
        reply.exit_code = std::atoi(l.c_str() + 2);
        have_code = true;
      }
    }
  }
  ::close(fd);
  if (!have_code)
    return Status::IOError("the mounted filesystem closed the control connection early");
  reply.output = std::move(buf);
  return reply;
}

}  // namespace strata::cli
