// lookup, forget, getattr, setattr, readlink.
#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Dispatch(req, "lookup", parent, [&](Request& r) {
    auto a = r.fs()->Lookup(parent, name);
    if (!a.ok() && a.status().ToErrno() == ENOENT) return r.NoEntry();
    if (!a.ok()) return r.Error(a.status());
    r.Entry(*a);
  });
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Dispatch(req, "forget", ino, [&](Request& r) {
    r.fs()->Forget(ino, nlookup);
    r.None();
  });
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Dispatch(req, "forget_multi", 0, [&](Request& r) {
    for (size_t i = 0; i < count; i++) r.fs()->Forget(forgets[i].ino, forgets[i].nlookup);
    r.None();
  });
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Dispatch(req, "getattr", ino, [&](Request& r) {
    auto a = r.fs()->GetAttr(ino);
    if (!a.ok()) return r.Error(a.status());
    r.Attr(*a);
  });
}

int64_t Ns(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Dispatch(req, "setattr", ino, [&](Request& r) {
    fs::SetAttrRequest q;
    if (to_set & FUSE_SET_ATTR_MODE) q.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) q.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) q.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) q.size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      q.atime = fs::SetAttrRequest::kNow;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      q.atime = Ns(attr->st_atim);
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      q.mtime = fs::SetAttrRequest::kNow;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      q.mtime = Ns(attr->st_mtim);
    if (to_set & FUSE_SET_ATTR_CTIME) q.ctime = Ns(attr->st_ctim);
    if (fi) q.fh = fi->fh;
    auto a = r.fs()->SetAttr(ino, q, r.caller());
    if (!a.ok()) return r.Error(a.status());
    r.Attr(*a);
  });
}

void Readlink(fuse_req_t req, fuse_ino_t ino) {
  Dispatch(req, "readlink", ino, [&](Request& r) {
    auto t = r.fs()->Readlink(ino);
    if (!t.ok()) return r.Error(t.status());
    r.Readlink(*t);
  });
}

void StatFs(fuse_req_t req, fuse_ino_t ino) {
  Dispatch(req, "statfs", ino, [&](Request& r) {
    auto s = r.fs()->StatFs();
    if (!s.ok()) return r.Error(s.status());
    struct statvfs v {};
    v.f_bsize = s->block_size;
    v.f_frsize = s->block_size;
    v.f_blocks = s->blocks;
    v.f_bfree = s->blocks_free;
    v.f_bavail = s->blocks_avail;
    v.f_files = s->files;
    v.f_ffree = s->files_free;
    v.f_favail = s->files_free;
    v.f_namemax = s->name_max;
    r.Statfs(&v);
  });
}

}  // namespace

void AddEntryOps(fuse_lowlevel_ops* ops) {
  ops->lookup = Lookup;
  ops->forget = Forget;
  ops->forget_multi = ForgetMulti;
  ops->getattr = GetAttr;
  ops->setattr = SetAttr;
  ops->readlink = Readlink;
  ops->statfs = StatFs;
}

}  // namespace strata::fuse
