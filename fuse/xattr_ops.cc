// setxattr, getxattr, listxattr, removexattr.
#include <cstring>

#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {

void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  Dispatch(req, "setxattr", ino, [&](Request& r) {
    Status s = r.fs()->SetXattr(ino, name, std::string_view(value, size), flags);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Dispatch(req, "getxattr", ino, [&](Request& r) {
    auto v = r.fs()->GetXattr(ino, name);
    if (!v.ok()) return r.Error(v.status());
    if (size == 0) return r.Xattr(v->size());
    if (v->size() > size) return r.Errno(ERANGE);
    r.Buf(v->data(), v->size());
  });
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Dispatch(req, "listxattr", ino, [&](Request& r) {
    auto names = r.fs()->ListXattr(ino);
    if (!names.ok()) return r.Error(names.status());
    std::string out;
    for (const auto& n : *names) {
      out += n;
      out.push_back('\0');
    }
    if (size == 0) return r.Xattr(out.size());
    if (out.size() > size) return r.Errno(ERANGE);
    r.Buf(out.data(), out.size());
  });
}

void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Dispatch(req, "removexattr", ino, [&](Request& r) {
    Status s = r.fs()->RemoveXattr(ino, name);
    if (!s.ok()) return r.Error(s);
    r.Errno(0);
  });
}

}  // namespace

void AddXattrOps(fuse_lowlevel_ops* ops) {
  ops->setxattr = SetXattr;
  ops->getxattr = GetXattr;
  ops->listxattr = ListXattr;
  ops->removexattr = RemoveXattr;
}

}  // namespace strata::fuse
