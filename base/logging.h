// Logging. One process-wide sink (stderr in the foreground, syslog/journald when daemonised),
// set up by the CLI; libraries only call these functions. Never log key material, file names
// or file contents: log inode numbers, segment ids and LSNs instead.
#pragma once

#include <fmt/format.h>

#include <string>

namespace strata::log {

enum class Level { kDebug, kInfo, kWarn, kError, kAlert };

void Write(Level level, const std::string& msg);
void SetMinLevel(Level level);
// Sends log lines to syslog (facility daemon, ident "strata") instead of stderr.
void UseSyslog(const std::string& ident);

template <typename... Args>
void Info(fmt::format_string<Args...> f, Args&&... args) {
  Write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Warn(fmt::format_string<Args...> f, Args&&... args) {
  Write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Error(fmt::format_string<Args...> f, Args&&... args) {
  Write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}
// An integrity alert: a failed AEAD tag or checksum. Always logged, whatever the level.
template <typename... Args>
void Alert(fmt::format_string<Args...> f, Args&&... args) {
  Write(Level::kAlert, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void Debug(fmt::format_string<Args...> f, Args&&... args) {
  Write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace strata::log
