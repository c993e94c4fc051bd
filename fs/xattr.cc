// Extended attributes: names SIV-encrypted under the owning inode, values sealed with AEAD
// bound to the inode and the encrypted name.
#include <sys/xattr.h>

#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/filesystem.h"
#include "fs/records.h"
#include "meta/meta_store.h"
#include "meta/ops.h"

namespace strata::fs {
namespace {

constexpr size_t kMaxXattrValue = 65536;

// Xattr names are encrypted with a context distinct from any directory's (inode numbers stay
// below 2^63), so an xattr "x" of inode N never encrypts like the entry "x" in directory N.
uint64_t XattrContext(uint64_t ino) { return ino | (uint64_t{1} << 63); }

Status CheckXattrName(const std::string& name) {
  if (name.empty()) return Status::Posix(ERANGE);
  if (name.size() > 255) return Status::Posix(ERANGE);
  static const char* kNamespaces[] = {"user.", "security.", "trusted.", "system.posix_acl_access",
                                      "system.posix_acl_default"};
  for (const char* ns : kNamespaces) {
    if (name.rfind(ns, 0) == 0) return Status::OK();
  }
  return Status::Posix(EOPNOTSUPP);
}

}  // namespace

Status Filesystem::SetXattr(uint64_t ino, const std::string& name, std::string_view value,
                            int flags) {
  RETURN_IF_ERROR(CheckXattrName(name));
  if (value.size() > kMaxXattrValue) return Status::Posix(E2BIG);
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  if (name.rfind("user.", 0) == 0 && !S_ISREG(row->mode) && !S_ISDIR(row->mode))
    return Status::Posix(EPERM);
  std::string enc = keys_->names().Encrypt(XattrContext(ino), name);
  ASSIGN_OR_RETURN(auto existing, meta_->GetXattr(ino, enc));
  if ((flags & XATTR_CREATE) && existing) return Status::Posix(EEXIST);
  if ((flags & XATTR_REPLACE) && !existing) return Status::Posix(ENODATA);
  meta::Op op;
  op.kind = meta::OpKind::kSetXattr;
  op.ino = ino;
  op.ctime = Now();
  RETURN_IF_ERROR(codec_->SealBlob("strata-xattr-1", ino, enc, value, &op.blob));
  op.name = std::move(enc);
  return LogLocked(op);
}

Result<std::string> Filesystem::GetXattr(uint64_t ino, const std::string& name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  std::string enc = keys_->names().Encrypt(XattrContext(ino), name);
  std::optional<std::string> sealed;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
    if (!row) return Status::Posix(ENOENT);
    ASSIGN_OR_RETURN(sealed, meta_->GetXattr(ino, enc));
  }
  if (!sealed) return Status::Posix(ENODATA);
  std::string value;
  Status s = codec_->OpenBlob("strata-xattr-1", ino, enc, *sealed, &value);
  if (!s.ok()) {
    log::Alert("filesystem {}: an xattr of inode {} failed its integrity check", sb_.name, ino);
    return s;
  }
  return value;
}

Result<std::vector<std::string>> Filesystem::ListXattr(uint64_t ino) {
  std::vector<std::pair<std::string, std::string>> rows;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
    if (!row) return Status::Posix(ENOENT);
    ASSIGN_OR_RETURN(rows, meta_->ListXattrs(ino));
  }
  std::vector<std::string> names;
  for (auto& [enc, value] : rows) {
    std::string name;
    Status s = keys_->names().Decrypt(XattrContext(ino), enc, &name);
    if (!s.ok()) {
      log::Alert("filesystem {}: an xattr name of inode {} failed its integrity check", sb_.name,
                 ino);
      return s;
    }
    names.push_back(std::move(name));
  }
  return names;
}

Status Filesystem::RemoveXattr(uint64_t ino, const std::string& name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  std::string enc = keys_->names().Encrypt(XattrContext(ino), name);
  ASSIGN_OR_RETURN(auto existing, meta_->GetXattr(ino, enc));
  if (!existing) return Status::Posix(ENODATA);
  meta::Op op;
  op.kind = meta::OpKind::kRemoveXattr;
  op.ino = ino;
  op.name = std::move(enc);
  op.ctime = Now();
  return LogLocked(op);
}

}  // namespace strata::fs
