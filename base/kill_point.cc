#include "base/kill_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace strata {

namespace {
std::function<void(const char*)>& Hook() {
  static std::function<void(const char*)> hook;
  return hook;
}
}  // namespace

void SetKillPointHook(std::function<void(const char* name)> hook) { Hook() = std::move(hook); }

void KillPointHit(const char* name) {
  if (Hook()) Hook()(name);
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
