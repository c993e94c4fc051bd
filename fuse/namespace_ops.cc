// mknod, mkdir, symlink, link, unlink, rmdir, rename.
#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {

void ReplyEntry(Request& r, const Result<fs::Attr>& a) {
  if (!a.ok()) return r.Error(a.status());
  r.Entry(*a);
}

void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Dispatch(req, "mknod", parent,
           [&](Request& r) { ReplyEntry(r, r.fs()->Mknod(parent, name, mode, rdev, r.caller())); });
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Dispatch(req, "mkdir", parent,
           [&](Request& r) { ReplyEntry(r, r.fs()->Mkdir(parent, name, mode, r.caller())); });
}

void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  Dispatch(req, "symlink", parent,
           [&](Request& r) { ReplyEntry(r, r.fs()->Symlink(parent, name, target, r.caller())); });
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  Dispatch(req, "link", ino,
           [&](Request& r) { ReplyEntry(r, r.fs()->Link(ino, new_parent, new_name)); });
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Dispatch(req, "unlink", parent, [&](Request& r) {
    Status s = r.fs()->Unlink(parent, name);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Dispatch(req, "rmdir", parent, [&](Request& r) {
    Status s = r.fs()->Rmdir(parent, name);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
            const char* new_name, unsigned int flags) {
  Dispatch(req, "rename", parent, [&](Request& r) {
    Status s = r.fs()->Rename(parent, name, new_parent, new_name, flags);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

}  // namespace

void AddNamespaceOps(fuse_lowlevel_ops* ops) {
  ops->mknod = Mknod;
  ops->mkdir = Mkdir;
  ops->symlink = Symlink;
  ops->link = Link;
  ops->unlink = Unlink;
  ops->rmdir = Rmdir;
  ops->rename = Rename;
}

}  // namespace strata::fuse
