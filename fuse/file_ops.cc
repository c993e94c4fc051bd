// open, create, read, write, flush, release, fsync, fallocate.
#include <fcntl.h>

#include <memory>
#include <vector>

#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Dispatch(req, "open", ino, [&](Request& r) {
    auto fh = r.fs()->Open(ino, fi->flags);
    if (!fh.ok()) return r.Error(fh.status());
    fi->fh = *fh;
    fi->keep_cache = 1;  // contents change only through this mount
    // Closing a read-only descriptor has nothing of its own to flush (locks are the kernel's):
    // the kernel skips the FLUSH round trip. Writers' data goes at their own close.
    if ((fi->flags & O_ACCMODE) == O_RDONLY) fi->noflush = 1;
    r.Open(fi);
  });
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Dispatch(req, "create", parent, [&](Request& r) {
    auto res = r.fs()->Create(parent, name, mode, fi->flags, r.caller());
    if (!res.ok()) return r.Error(res.status());
    fi->fh = res->second;
    fi->keep_cache = 1;
    r.Create(res->first, fi);
  });
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Dispatch(req, "read", ino, [&](Request& r) {
    // Replies now for data in memory (or decoded here while the cores have room); otherwise
    // later, from a hot reader (queued behind the reads decoding) or a cold reader (a read
    // that waits on a cold tier), so this worker goes back to the queue.
    fs::Filesystem* fs = r.fs();
    r.Detach();
    fs->ReadAsync(ino, fi->fh, static_cast<uint64_t>(off), size,
                  [req, ino](const Status& s, const char* data, size_t n) {
                    if (!s.ok())
                      ReplyError(req, "read", ino, s);
                    else
                      fuse_reply_buf(req, data, n);
                  });
  });
}

void Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
           fuse_file_info* fi) {
  Dispatch(req, "write", ino, [&](Request& r) {
    auto n = r.fs()->Write(ino, fi->fh, static_cast<uint64_t>(off), std::string_view(data, size));
    if (!n.ok()) return r.Error(n.status());
    r.Write(*n);
  });
}

void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Dispatch(req, "flush", ino, [&](Request& r) {
    Status s = r.fs()->Flush(ino, fi->fh);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Dispatch(req, "release", ino, [&](Request& r) {
    Status s = r.fs()->Release(ino, fi->fh);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Dispatch(req, "fsync", ino, [&](Request& r) {
    Status s = r.fs()->Fsync(ino, datasync != 0);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  Dispatch(req, "fallocate", ino, [&](Request& r) {
    if (offset < 0 || length <= 0) return r.Errno(EINVAL);
    Status s = r.fs()->Fallocate(ino, fi->fh, mode, static_cast<uint64_t>(offset),
                                 static_cast<uint64_t>(length));
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

}  // namespace

void AddFileOps(fuse_lowlevel_ops* ops) {
  ops->open = Open;
  ops->create = Create;
  ops->read = Read;
  ops->write = Write;
  ops->flush = Flush;
  ops->release = Release;
  ops->fsync = Fsync;
  ops->fallocate = Fallocate;
}

}  // namespace strata::fuse
