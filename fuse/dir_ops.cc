// opendir, readdir, readdirplus, releasedir, fsyncdir.
#include <vector>

#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Dispatch(req, "opendir", ino, [&](Request& r) {
    auto a = r.fs()->GetAttr(ino);
    if (!a.ok()) return r.Error(a.status());
    if (!S_ISDIR(a->mode)) return r.Errno(ENOTDIR);
    fi->fh = 0;
    r.Open(fi);
  });
}

void DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Dispatch(req, plus ? "readdirplus" : "readdir", ino, [&](Request& r) {
    std::vector<char> buf(size);
    size_t used = 0;
    Status s = r.fs()->ReadDir(ino, static_cast<uint64_t>(off), [&](const fs::DirEntry& e) {
      size_t room = size - used;
      size_t n;
      if (plus) {
        fuse_entry_param p{};
        bool dots = e.name == "." || e.name == "..";
        if (dots) {
          p.attr.st_ino = e.ino;
          p.attr.st_mode = e.mode;
        } else {
          auto a = r.fs()->GetAttr(e.ino);
          if (!a.ok()) return true;  // removed meanwhile: skip it
          p.ino = a->ino;
          p.generation = a->generation;
          FillStat(*a, &p.attr);
          p.attr_timeout = kAttrTimeout;
          p.entry_timeout = kEntryTimeout;
        }
        n = fuse_add_direntry_plus(req, buf.data() + used, room, e.name.c_str(), &p,
                                   static_cast<off_t>(e.next_offset));
        if (n > room) return false;
        if (!dots) r.fs()->AddLookup(ino, e.ino, e.name);
      } else {
        struct stat st {};
        st.st_ino = e.ino;
        st.st_mode = e.mode;
        n = fuse_add_direntry(req, buf.data() + used, room, e.name.c_str(), &st,
                              static_cast<off_t>(e.next_offset));
        if (n > room) return false;
      }
      used += n;
      return true;
    });
    if (!s.ok() && used == 0) return r.Error(s);
    r.Buf(buf.data(), used);
  });
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Dispatch(req, "releasedir", ino, [&](Request& r) { r.Errno(0); });
}

void FsyncDir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Dispatch(req, "fsyncdir", ino, [&](Request& r) {
    Status s = r.fs()->Fsync(ino, datasync != 0);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

}  // namespace

void AddDirOps(fuse_lowlevel_ops* ops) {
  ops->opendir = OpenDir;
  ops->readdir = ReadDir;
  ops->readdirplus = ReadDirPlus;
  ops->releasedir = ReleaseDir;
  ops->fsyncdir = FsyncDir;
}

}  // namespace strata::fuse
