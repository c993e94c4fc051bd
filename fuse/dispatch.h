// One noexcept entry wrapper for every FUSE op: runs the handler, turns a thrown exception or
// a handler that forgot to reply into EIO, logs the op and inode, and guarantees exactly one
// reply per request.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <exception>

#include "base/logging.h"
#include "base/status.h"
#include "fs/filesystem.h"

namespace strata::fuse {

// How long the kernel may trust what it was told. Only this mount changes the namespace (the
// filesystem is locked to one daemon, and every create, link, rename and unlink comes through
// the kernel, which updates its dentries itself), so names, and the absence of a name, are
// cached for an hour: a rename or unlink of a file looked up more than a second ago needs no
// LOOKUP first. Attributes are also changed by the daemon alone (atime on read, st_blocks
// once buffered data is sealed), so they expire after a second.
inline constexpr double kEntryTimeout = 3600.0;
inline constexpr double kAttrTimeout = 1.0;

class Request {
 public:
  Request(fuse_req_t req, const char* op, fuse_ino_t ino) : req_(req), op_(op), ino_(ino) {}
  fs::Filesystem* fs() const { return static_cast<fs::Filesystem*>(fuse_req_userdata(req_)); }
  fs::Caller caller() const {
    const fuse_ctx* c = fuse_req_ctx(req_);
    return fs::Caller{c->uid, c->gid, c->umask};
  }
  fuse_req_t raw() const { return req_; }
  bool replied() const { return replied_; }

  void Error(const Status& s);
  // The reply will be sent later by someone else (an asynchronous read), exactly once.
  void Detach() { replied_ = true; }
  void Errno(int err) {
    replied_ = true;
    fuse_reply_err(req_, err);
  }
  void None() {
    replied_ = true;
    fuse_reply_none(req_);
  }
  void Entry(const fs::Attr& a);
  // "No such entry", cached by the kernel like a positive one (see kEntryTimeout).
  void NoEntry();
  void Attr(const fs::Attr& a);
  void Create(const fs::Attr& a, fuse_file_info* fi);
  void Open(fuse_file_info* fi) {
    replied_ = true;
    fuse_reply_open(req_, fi);
  }
  void Buf(const char* data, size_t n) {
    replied_ = true;
    fuse_reply_buf(req_, data, n);
  }
  void Write(size_t n) {
    replied_ = true;
    fuse_reply_write(req_, n);
  }
  void Readlink(const std::string& target) {
    replied_ = true;
    fuse_reply_readlink(req_, target.c_str());
  }
  void Xattr(size_t n) {
    replied_ = true;
    fuse_reply_xattr(req_, n);
  }
  void Statfs(const struct statvfs* st) {
    replied_ = true;
    fuse_reply_statfs(req_, st);
  }

  const char* op() const { return op_; }
  fuse_ino_t ino() const { return ino_; }

 private:
  fuse_req_t req_;
  const char* op_;
  fuse_ino_t ino_;
  bool replied_ = false;
};

void FillStat(const fs::Attr& a, struct stat* st);
// Replies the errno a failed Status maps to, logging what is not a plain POSIX outcome.
void ReplyError(fuse_req_t req, const char* op, fuse_ino_t ino, const Status& s);

template <typename Fn>
void Dispatch(fuse_req_t req, const char* op, fuse_ino_t ino, Fn&& fn) noexcept {
  Request r(req, op, ino);
  try {
    fn(r);
  } catch (const std::exception& e) {
    log::Error("{} inode {}: unexpected exception: {}", op, ino, e.what());
  } catch (...) {
    log::Error("{} inode {}: unexpected exception", op, ino);
  }
  if (!r.replied()) {
    log::Error("{} inode {}: no reply was sent; replying EIO", op, ino);
    fuse_reply_err(req, EIO);
  }
}

// Fills a fuse_lowlevel_ops table; each family adds its own ops.
void AddEntryOps(fuse_lowlevel_ops* ops);      // lookup, forget, getattr, setattr, readlink
void AddNamespaceOps(fuse_lowlevel_ops* ops);  // mknod, mkdir, symlink, link, unlink, rename
void AddDirOps(fuse_lowlevel_ops* ops);        // opendir, readdir(plus), releasedir, fsyncdir
void AddFileOps(fuse_lowlevel_ops* ops);       // open, create, read, write, flush, fsync, ...
void AddXattrOps(fuse_lowlevel_ops* ops);      // setxattr, getxattr, listxattr, removexattr

}  // namespace strata::fuse
