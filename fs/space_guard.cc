#include "fs/space_guard.h"

#include <cerrno>
#include <utility>

#include "base/logging.h"

namespace strata::fs {

SpaceGuard::SpaceGuard(std::string path, uint64_t reserve, uint64_t slack,
                       std::function<Result<uint64_t>()> free_bytes)
    : path_(std::move(path)),
      reserve_(reserve),
      slack_(slack),
      free_bytes_(std::move(free_bytes)) {}

uint64_t SpaceGuard::DefaultReserve(uint64_t total) {
  return std::min<uint64_t>(uint64_t{1} << 30, total / 20);
}

Status SpaceGuard::Admit(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  if (bytes <= headroom_) {
    headroom_ -= bytes;
    return Status::OK();
  }
  return ReadAndAdmitLocked(bytes);
}

Status SpaceGuard::Check() {
  std::lock_guard<std::mutex> l(mu_);
  return ReadAndAdmitLocked(0);
}

Status SpaceGuard::ReadAndAdmitLocked(uint64_t bytes) {
  ASSIGN_OR_RETURN(uint64_t free, free_bytes_());
  const uint64_t above = free > floor() ? free - floor() : 0;
  if (free < floor() || bytes > above) {
    headroom_ = 0;
    if (!refusing_) {
      refusing_ = true;
      log::Warn(
          "hot tier {}: {} MiB free, of which {} MiB are kept (its reserve of {} MiB and one "
          "journal segment): what does not fit gets ENOSPC until space is freed (unlink and "
          "truncate still work)",
          path_, free >> 20, floor() >> 20, reserve_ >> 20);
    }
    return Status::Posix(ENOSPC);
  }
  if (refusing_) {
    refusing_ = false;
    log::Info("hot tier {}: {} MiB free again ({} MiB kept): writes resume", path_, free >> 20,
              floor() >> 20);
  }
  headroom_ = above / 2 > bytes ? above / 2 - bytes : 0;
  return Status::OK();
}

}  // namespace strata::fs
