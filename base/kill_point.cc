#include "base/kill_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace strata {

void KillPointHit(const char* name) {
  // Read every time (kill points sit on rare protocol steps): a forked test child sets it.
  const char* target = std::getenv("STRATA_KILL_AT");
  if (target == nullptr) return;
  static std::atomic<long> hits{0};
  const char* colon = std::strchr(target, ':');
  size_t len = colon ? static_cast<size_t>(colon - target) : std::strlen(target);
  if (std::strlen(name) != len || std::strncmp(name, target, len) != 0) return;
  long want = colon ? std::atol(colon + 1) : 1;
  if (++hits >= want) std::raise(SIGKILL);
}

}  // namespace strata
