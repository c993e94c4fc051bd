// Helpers shared by the benchmark programs (strata_fsbench, strata_tierbench): fatal errors,
// a monotonic clock, printf-style formatting, one-line JSON, counts from the command line and
// dropping the kernel's caches.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace strata::bench {

// The program's name in error messages; each program defines it.
extern const char* const kProgram;

[[noreturn]] inline void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%s: ", kProgram);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::exit(2);
}

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline std::string Fmt(const char* fmt, ...) {
  char b[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  return b;
}

inline size_t ParseCount(const char* s) {
  char* end;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s) Die("bad number '%s'", s);
  return static_cast<size_t>(v);
}

// Syncs and empties the kernel's page, dentry and inode caches. Needs root.
inline bool DropKernelCaches() {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY);
  bool ok = fd >= 0 && ::write(fd, "3\n", 2) == 2;
  if (fd >= 0) ::close(fd);
  return ok;
}

// One JSON object, built in order.
class Json {
 public:
  Json& Str(const char* k, const std::string& v) {
    Key(k);
    out_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') out_ += '\\';
      out_ += c;
    }
    out_ += '"';
    return *this;
  }
  Json& Num(const char* k, double v) {
    Key(k);
    char b[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
      std::snprintf(b, sizeof b, "%.0f", v);
    else if (std::isfinite(v))
      std::snprintf(b, sizeof b, "%.4g", v);
    else
      std::snprintf(b, sizeof b, "null");
    out_ += b;
    return *this;
  }
  Json& Bool(const char* k, bool v) {
    Key(k);
    out_ += v ? "true" : "false";
    return *this;
  }
  std::string Done() const { return out_ + "}"; }

 private:
  void Key(const char* k) {
    out_ += out_.size() == 1 ? "\"" : ",\"";
    out_ += k;
    out_ += "\":";
  }
  std::string out_ = "{";
};

}  // namespace strata::bench
