// SpaceGuard: keeps the hot tier from filling its disk.
//
// strata's hot tier is log-structured: an unlink or a truncation frees nothing until segments
// are compacted or dropped, and both, like the journal record of the unlink itself, the SQLite
// WAL and a mount's replay, need some free space to run. A disk filled by file data leaves
// none of it, so a full hot tier could be neither cleaned through the mount nor mounted again.
// The guard keeps a reserve: new file data and new names are refused with ENOSPC (nothing
// written, nothing changed, the filesystem stays healthy) once the free space would fall
// below it, while everything that frees space or only rewrites metadata goes on into it.
//
// The guard keeps `reserve + slack` free, where the slack is what the journal may take at once
// without asking (it preallocates a whole segment when it starts one), so the reserve itself
// is there when it is needed. The free space is read with statvfs only when the bytes admitted
// since the last reading have used up half of what was then above that floor, so a write costs
// a subtraction, and the readings get closer together as the disk fills. Callers count bytes
// generously (a write as at least a whole chunk, before compression; a new name as 4 KiB).
// Space freed by others is seen at the next reading; a refusal always reads again, so writes
// resume as soon as space is back.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "base/status.h"

namespace strata::fs {

class SpaceGuard {
 public:
  // `free_bytes` reads the space available to strata on the hot tier's filesystem
  // (statvfs f_bavail * f_frsize); `path` names it in messages.
  SpaceGuard(std::string path, uint64_t reserve, uint64_t slack,
             std::function<Result<uint64_t>()> free_bytes);

  // Whether `bytes` more may be written: OK, or ENOSPC when they would leave less than the
  // reserve free (or the free space cannot be read: the error is returned).
  Status Admit(uint64_t bytes);
  // Reads the free space now: OK, or ENOSPC (logged) when it is below the floor. A mount calls
  // it, so that a filesystem mounted at its reserve knows it from the start.
  Status Check();
  uint64_t reserve() const { return reserve_; }
  // What is kept free: reserve + slack. statfs shows only the space above it as available.
  uint64_t floor() const { return reserve_ + slack_; }
  // Whether the last reading was below the floor (new data is being refused).
  bool refusing() {
    std::lock_guard<std::mutex> l(mu_);
    return refusing_;
  }
  // The default reserve of a hot tier on a filesystem of `total` bytes: min(1 GiB, 5%).
  static uint64_t DefaultReserve(uint64_t total);

 private:
  const std::string path_;
  const uint64_t reserve_;
  const uint64_t slack_;
  const std::function<Result<uint64_t>()> free_bytes_;
  Status ReadAndAdmitLocked(uint64_t bytes);

  std::mutex mu_;
  uint64_t headroom_ = 0;  // bytes that may be admitted before the next reading
  bool refusing_ = false;  // the last reading was below the reserve (logged once)
};

}  // namespace strata::fs
