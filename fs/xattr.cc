// Extended attributes: names SIV-encrypted under the owning inode, values sealed with AEAD
// bound to the inode and the encrypted name.
#include <sys/xattr.h>

#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/acl.h"
#include "fs/filesystem.h"
#include "fs/records.h"
#include "meta/meta_store.h"
#include "meta/ops.h"

namespace strata::fs {
namespace {

constexpr size_t kMaxXattrValue = 65536;
constexpr std::string_view kCapability = "security.capability";

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

Result<std::optional<std::string>> Filesystem::GetXattrLocked(uint64_t ino,
                                                              const std::string& name) {
  // Most inodes have no xattr: answered from memory, with no name to encrypt.
  ASSIGN_OR_RETURN(bool any, meta_->HasXattrs(ino));
  if (!any) return std::optional<std::string>();
  std::string enc = keys_->names().Encrypt(XattrContext(ino), name);
  ASSIGN_OR_RETURN(auto sealed, meta_->GetXattr(ino, enc));
  if (!sealed) return std::optional<std::string>();
  std::string value;
  Status s = codec_->OpenBlob("strata-xattr-1", ino, enc, *sealed, &value);
  if (!s.ok()) {
    log::Alert("filesystem {}: an xattr of inode {} failed its integrity check", sb_.name, ino);
    return s;
  }
  return std::optional<std::string>(std::move(value));
}

Status Filesystem::PutXattrLocked(uint64_t ino, const std::string& name, std::string_view value) {
  if (name == kCapability) {
    if (auto it = open_.find(ino); it != open_.end()) it->second->no_capability = false;
  }
  meta::Op op;
  op.kind = meta::OpKind::kSetXattr;
  op.ino = ino;
  op.ctime = Now();
  op.name = keys_->names().Encrypt(XattrContext(ino), name);
  RETURN_IF_ERROR(codec_->SealBlob("strata-xattr-1", ino, op.name, value, &op.blob));
  return LogLocked(op);
}

Status Filesystem::DropXattrLocked(uint64_t ino, const std::string& name) {
  meta::Op op;
  op.kind = meta::OpKind::kRemoveXattr;
  op.ino = ino;
  op.name = keys_->names().Encrypt(XattrContext(ino), name);
  op.ctime = Now();
  return LogLocked(op);
}

Status Filesystem::ApplyAccessAclLocked(const meta::InodeRow& row, std::string_view value) {
  ASSIGN_OR_RETURN(Acl acl, Acl::Parse(value));
  if (acl.IsMinimal()) {
    ASSIGN_OR_RETURN(auto old, GetXattrLocked(row.ino, kAclAccess));
    if (old) RETURN_IF_ERROR(DropXattrLocked(row.ino, kAclAccess));
  } else {
    RETURN_IF_ERROR(PutXattrLocked(row.ino, kAclAccess, acl.Encode()));
  }
  meta::Op op;
  op.kind = meta::OpKind::kSetAttr;
  op.ino = row.ino;
  op.mask = meta::kSetMode | meta::kSetCtime;
  op.mode = (row.mode & 07000) | acl.ModeBits();
  op.ctime = Now();
  return LogLocked(op);
}

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
  ASSIGN_OR_RETURN(auto existing, GetXattrLocked(ino, name));
  if ((flags & XATTR_CREATE) && existing) return Status::Posix(EEXIST);
  if ((flags & XATTR_REPLACE) && !existing) return Status::Posix(ENODATA);
  // An access ACL is a mode change at most (chmod is never refused), the rest new bytes.
  if (name == kAclAccess) return ApplyAccessAclLocked(*row, value);
  if (name == kAclDefault) {
    if (!S_ISDIR(row->mode)) return Status::Posix(EACCES);
    ASSIGN_OR_RETURN(Acl acl, Acl::Parse(value));
    RETURN_IF_ERROR(AdmitNewBytes(kNewEntryBytes + value.size()));
    return PutXattrLocked(ino, name, acl.Encode());
  }
  RETURN_IF_ERROR(AdmitNewBytes(kNewEntryBytes + value.size()));
  return PutXattrLocked(ino, name, value);
}

Result<std::string> Filesystem::GetXattr(uint64_t ino, const std::string& name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  std::lock_guard<std::mutex> l(mu_);
  // The kernel asks for security.capability before every write to a FUSE file (it cannot
  // know that writes need not clear it): an open inode remembers that it has none.
  const bool capability = name == kCapability;
  auto open = capability ? open_.find(ino) : open_.end();
  if (open != open_.end() && open->second->no_capability) return Status::Posix(ENODATA);
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  ASSIGN_OR_RETURN(auto value, GetXattrLocked(ino, name));
  if (!value) {
    if (open != open_.end()) open->second->no_capability = true;
    return Status::Posix(ENODATA);
  }
  return std::move(*value);
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
  ASSIGN_OR_RETURN(auto existing,
                   meta_->GetXattr(ino, keys_->names().Encrypt(XattrContext(ino), name)));
  if (!existing) return Status::Posix(ENODATA);
  return DropXattrLocked(ino, name);
}

}  // namespace strata::fs
