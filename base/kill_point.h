// Named kill points for crash tests (RocksDB's sync points, reduced to what a kill -9 test
// needs). KILL_POINT("migrate.uploaded") raises SIGKILL in the calling process when the
// environment variable STRATA_KILL_AT names that point (optionally "name:N" for its N-th hit,
// counting from 1), so a test can stop the daemon exactly between two steps of a protocol.
//
// Compiled in only when STRATA_KILL_POINTS is defined (the dev and asan-ubsan presets); in a
// release build KILL_POINT expands to nothing.
#pragma once

#include <functional>

namespace strata {
void KillPointHit(const char* name);
// Tests: `hook` runs at every kill point reached (before the STRATA_KILL_AT check), e.g. to
// make the Env fail from a given protocol step on. Set it while no kill point can run; an
// empty function removes it.
void SetKillPointHook(std::function<void(const char* name)> hook);
}  // namespace strata

#ifdef STRATA_KILL_POINTS
#define KILL_POINT(name) ::strata::KillPointHit(name)
#else
#define KILL_POINT(name) \
  do {                   \
  } while (0)
#endif
