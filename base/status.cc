#include "base/status.h"

#include <cstring>

namespace strata {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      name = "NotFound";
      break;
    case Code::kCorruption:
      name = "Corruption";
      break;
    case Code::kInvalidArgument:
      name = "InvalidArgument";
      break;
    case Code::kIOError:
      name = "IOError";
      break;
    case Code::kNotSupported:
      name = "NotSupported";
      break;
    case Code::kBusy:
      name = "Busy";
      break;
    case Code::kPosix:
      name = "Posix";
      break;
    case Code::kAborted:
      name = "Aborted";
      break;
    case Code::kUnavailable:
      name = "Unavailable";
      break;
  }
  std::string s = name;
  s += ": ";
  s += msg_;
  if ((code_ == Code::kIOError || code_ == Code::kPosix) && errno_ != 0) {
    s += msg_.empty() ? "" : ": ";
    s += std::strerror(errno_);
  }
  return s;
}

Status Status::WithContext(std::string_view ctx) const {
  if (ok()) return *this;
  Status s = *this;
  s.msg_ = std::string(ctx) + ": " + msg_;
  return s;
}

}  // namespace strata
