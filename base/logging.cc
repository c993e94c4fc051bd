#include "base/logging.h"

#include <syslog.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace strata::log {
namespace {
std::atomic<Level> g_min{Level::kInfo};
std::atomic<bool> g_syslog{false};
std::mutex g_mu;

const char* Name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warning";
    case Level::kError:
      return "error";
    case Level::kAlert:
      return "ALERT";
  }
  return "?";
}
int SyslogPriority(Level l) {
  switch (l) {
    case Level::kDebug:
      return LOG_DEBUG;
    case Level::kInfo:
      return LOG_INFO;
    case Level::kWarn:
      return LOG_WARNING;
    case Level::kError:
      return LOG_ERR;
    case Level::kAlert:
      return LOG_ALERT;
  }
  return LOG_INFO;
}
}  // namespace

void SetMinLevel(Level level) { g_min = level; }

void UseSyslog(const std::string& ident) {
  static std::string keep;
  keep = ident;
  openlog(keep.c_str(), LOG_PID, LOG_DAEMON);
  g_syslog = true;
}

void Write(Level level, const std::string& msg) {
  if (level < g_min.load() && level != Level::kAlert) return;
  if (g_syslog) {
    syslog(SyslogPriority(level), "%s: %s", Name(level), msg.c_str());
    return;
  }
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::lock_guard<std::mutex> l(g_mu);
  std::fprintf(stderr, "%s.%03ldZ strata %s: %s\n", buf, ts.tv_nsec / 1000000, Name(level),
               msg.c_str());
}

}  // namespace strata::log
