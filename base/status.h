// Status and Result<T>: the error currency of every strata library.
//
// No exception crosses a library boundary. A Status carries a code that drives decisions
// (Corruption only for a failed tag or checksum; retryable() for transient errors), an
// optional POSIX errno for errors that must reach the FUSE reply unchanged, and a message that
// says what failed and where ("open /var/lib/strata/hot/seg/00000001.seg: No such file").
#pragma once

#include <cassert>
#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace strata {

class [[nodiscard]] Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kNotFound,         // ENOENT
    kCorruption,       // a failed AEAD tag, checksum or structural check: EIO + alert
    kInvalidArgument,  // bad config, option, policy or argument
    kIOError,          // a syscall failed; errno() says which
    kNotSupported,
    kBusy,         // e.g. the filesystem is already mounted
    kPosix,        // a POSIX-semantics error from the filesystem model; errno() says which
    kAborted,      // sticky journal error: the filesystem needs a remount
    kUnavailable,  // a tier or peer is down, timed out or throttled: retryable
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, ENOENT, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, EIO, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, EINVAL, msg);
  }
  // An I/O error from a syscall: `err` is the errno the syscall set.
  static Status IOError(std::string_view msg, int err = EIO) {
    return Status(Code::kIOError, err, msg);
  }
  static Status NotSupported(std::string_view msg) {
    return Status(Code::kNotSupported, EOPNOTSUPP, msg);
  }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, EBUSY, msg); }
  static Status Posix(int err, std::string_view msg = {}) { return Status(Code::kPosix, err, msg); }
  static Status Aborted(std::string_view msg) { return Status(Code::kAborted, EIO, msg); }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, EIO, msg); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  // Transient: the same call may succeed later (a tier that timed out, EAGAIN, EINTR).
  bool retryable() const {
    return code_ == Code::kUnavailable ||
           (code_ == Code::kIOError &&
            (errno_ == EAGAIN || errno_ == EINTR || errno_ == ETIMEDOUT));
  }
  // The positive errno a FUSE reply should carry (0 for OK).
  int ToErrno() const { return ok() ? 0 : (errno_ != 0 ? errno_ : EIO); }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

  // Adds context in front of the message: "while replaying segment 7: <msg>".
  Status WithContext(std::string_view ctx) const;

  // Explicitly drops a Status whose failure the caller has decided not to act on.
  void IgnoreError() const {}

 private:
  Status(Code code, int err, std::string_view msg) : code_(code), errno_(err), msg_(msg) {}
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string msg_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok());
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

#define STRATA_CONCAT_INNER(a, b) a##b
#define STRATA_CONCAT(a, b) STRATA_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)      \
  do {                             \
    ::strata::Status _st = (expr); \
    if (!_st.ok()) return _st;     \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo())`: unwraps a Result or returns its Status.
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(STRATA_CONCAT(_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

}  // namespace strata
