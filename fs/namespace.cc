// Namespace operations: lookup, attributes, create/link/unlink/rename, readdir.
// Each change is validated against the current view under mu_, then logged as one op.
#include <fmt/format.h>
#include <linux/fs.h>

#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/acl.h"
#include "fs/filesystem.h"
#include "fs/records.h"
#include "journal/journal.h"
#include "meta/meta_store.h"
#include "meta/ops.h"

namespace strata::fs {
namespace {

Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return Status::Posix(EINVAL);
  if (name.size() > kMaxNameLen) return Status::Posix(ENAMETOOLONG);
  if (name.find('/') != std::string::npos) return Status::Posix(EINVAL);
  return Status::OK();
}

constexpr uint32_t kMaxLinks = 65000;

}  // namespace

std::string Filesystem::EncName(uint64_t parent, const std::string& name) const {
  return keys_->names().Encrypt(parent, name);
}

Attr Filesystem::ToAttr(const meta::InodeRow& r) {
  Attr a;
  a.ino = r.ino;
  a.mode = r.mode;
  a.nlink = r.nlink;
  a.uid = r.uid;
  a.gid = r.gid;
  a.rdev = r.rdev;
  a.size = r.size;
  a.atime = r.atime;
  a.mtime = r.mtime;
  a.ctime = r.ctime;
  a.btime = r.btime;
  a.generation = 1;
  uint64_t stored = r.stored_bytes;
  if (S_ISDIR(r.mode)) {
    a.size = 4096;
    stored = 4096;
  }
  auto it = open_.find(r.ino);
  if (it != open_.end()) {
    a.size = it->second->size.load();
    a.mtime = std::max(a.mtime, it->second->mtime.load());
    a.ctime = std::max(a.ctime, a.mtime);  // a write changes both
    stored += it->second->dirty_bytes.load();
  }
  a.blocks = (stored + 511) / 512;
  return a;
}

Result<Attr> Filesystem::AttrLocked(uint64_t ino) {
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  return ToAttr(*row);
}

Result<Attr> Filesystem::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > kMaxNameLen) return Status::Posix(ENAMETOOLONG);
  const std::string enc = EncName(parent, name);  // outside mu_: the cipher is thread-safe
  std::lock_guard<std::mutex> l(mu_);
  // One statement on the common path; only a miss looks at the parent, to tell ENOENT from
  // ENOTDIR (entries only ever live under directories).
  ASSIGN_OR_RETURN(auto e, meta_->LookupEntryInode(parent, enc));
  if (!e) {
    ASSIGN_OR_RETURN(auto dir, meta_->GetInode(parent));
    if (dir && !S_ISDIR(dir->mode)) return Status::Posix(ENOTDIR);
    return Status::Posix(ENOENT);
  }
  // An entry without its inode is damage, not absence (which the kernel would cache).
  if (!e->inode)
    return Status::Corruption(fmt::format("entry in directory {} names inode {}, which is missing",
                                          parent, e->entry.ino));
  RememberLocked(e->entry.ino, parent, name);
  return ToAttr(*e->inode);
}

void Filesystem::Forget(uint64_t ino, uint64_t nlookup) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = lookups_.find(ino);
  if (it == lookups_.end()) return;
  if (it->second.lookups <= nlookup) {
    lookups_.erase(it);
  } else {
    it->second.lookups -= nlookup;
  }
}

void Filesystem::AddLookup(uint64_t parent, uint64_t ino, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  RememberLocked(ino, parent, name);
}

void Filesystem::RememberLocked(uint64_t ino, uint64_t parent, const std::string& name) {
  Known& k = lookups_[ino];
  k.lookups++;
  k.parent = parent;
  if (k.name != name) k.name = name;
}

std::optional<std::string> Filesystem::PathOfLocked(uint64_t ino) const {
  std::string path;
  // Bounded: a cycle cannot exist in a tree, but stale entries must not loop forever.
  for (int depth = 0; ino != kRootIno && depth < 256; depth++) {
    auto it = lookups_.find(ino);
    if (it == lookups_.end()) return std::nullopt;
    path = path.empty() ? it->second.name : it->second.name + "/" + path;
    ino = it->second.parent;
  }
  if (ino != kRootIno) return std::nullopt;
  return path;
}

Result<Attr> Filesystem::GetAttr(uint64_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  return AttrLocked(ino);
}

Result<Attr> Filesystem::SetAttr(uint64_t ino, const SetAttrRequest& req, const Caller& caller) {
  std::shared_ptr<OpenInode> f;
  std::unique_lock<std::mutex> fl;
  std::unique_lock<std::mutex> l;
  while (true) {
    // A change must see the open inode's buffers, and OpenInode::mu comes before mu_:
    // take them in order, then make sure no open happened in between.
    // Chunks still being sealed carry the old size and mtime: let them land first.
    f = GetOpen(ino);
    fl = f ? std::unique_lock<std::mutex>(f->mu) : std::unique_lock<std::mutex>();
    if (f) {
      f->cv.wait(fl, [&] { return f->inflight == 0; });
      // Setting mtime: buffered data carries the write time, so store it first, then let later
      // chunks carry the new time (cp -p, touch -d on an open file).
      if (req.mtime) {
        Status s = FlushAll(ino, f, fl);
        if (!s.ok()) return s;
      }
    }
    l = std::unique_lock<std::mutex>(mu_);
    auto it = open_.find(ino);
    if ((it == open_.end() ? nullptr : it->second) == f) break;
    l.unlock();
  }
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  int64_t now = Now();
  meta::Op op;
  op.kind = meta::OpKind::kSetAttr;
  op.ino = ino;
  op.ctime = now;
  op.mask = meta::kSetCtime;
  if (req.mode) {
    op.mask |= meta::kSetMode;
    op.mode = *req.mode;
    ASSIGN_OR_RETURN(auto acl_x, GetXattrLocked(ino, kAclAccess));
    if (acl_x) {
      ASSIGN_OR_RETURN(Acl acl, Acl::Parse(*acl_x));
      acl.Chmod(*req.mode);
      RETURN_IF_ERROR(PutXattrLocked(ino, kAclAccess, acl.Encode()));
    }
  }
  if (req.uid) {
    op.mask |= meta::kSetUid;
    op.uid = *req.uid;
  }
  if (req.gid) {
    op.mask |= meta::kSetGid;
    op.gid = *req.gid;
  }
  if (req.atime) {
    op.mask |= meta::kSetAtime;
    op.atime = *req.atime == SetAttrRequest::kNow ? now : *req.atime;
  }
  if (req.mtime) {
    op.mask |= meta::kSetMtime;
    op.mtime = *req.mtime == SetAttrRequest::kNow ? now : *req.mtime;
  }
  if (req.ctime && *req.ctime != SetAttrRequest::kNow) op.ctime = *req.ctime;
  if (req.size && req.grow_only && *req.size <= (f ? f->size.load() : row->size))
    return AttrLocked(ino);
  if (req.size) {
    if (S_ISDIR(row->mode)) return Status::Posix(EISDIR);
    if (!S_ISREG(row->mode)) return Status::Posix(EINVAL);
    op.mask |= meta::kSetSize;
    op.size = *req.size;
    if (!req.mtime) {
      op.mask |= meta::kSetMtime;
      op.mtime = now;
    }
    if (f) {
      // Drop or cut dirty buffers past the new end; the op below records the size.
      uint64_t cs = sb_.chunk_size;
      for (auto it = f->dirty.begin(); it != f->dirty.end();) {
        if (it->first * cs >= *req.size) {
          f->dirty_bytes -= cs;
          dirty_bytes_ -= cs;
          it = f->dirty.erase(it);
          continue;
        }
        if ((it->first + 1) * cs > *req.size) {
          it->second.CutAt(*req.size - it->first * cs);
        }
        ++it;
      }
      f->size = *req.size;
      f->persisted_size = *req.size;
      f->mtime = op.mtime;
    }
  }
  RETURN_IF_ERROR(LogLocked(op));
  if (f && (op.mask & meta::kSetMtime)) f->mtime = op.mtime;
  return AttrLocked(ino);
}

Result<Attr> Filesystem::CreateNode(uint64_t parent, const std::string& name, uint32_t mode,
                                    uint64_t rdev, const std::string& symlink_target,
                                    const Caller& caller) {
  RETURN_IF_ERROR(CheckName(name));
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto dir, meta_->GetInode(parent));
  if (!dir || dir->nlink == 0) return Status::Posix(ENOENT);
  if (!S_ISDIR(dir->mode)) return Status::Posix(ENOTDIR);
  std::string enc = EncName(parent, name);
  ASSIGN_OR_RETURN(auto existing, meta_->LookupEntry(parent, enc));
  if (existing) return Status::Posix(EEXIST);
  if (S_ISDIR(mode) && dir->nlink >= kMaxLinks) return Status::Posix(EMLINK);
  RETURN_IF_ERROR(AdmitNewBytes(kNewEntryBytes + symlink_target.size()));

  meta::Op op;
  op.kind = meta::OpKind::kCreate;
  op.ino = meta_->next_ino();
  op.parent = parent;
  op.name = std::move(enc);
  op.uid = caller.uid;
  op.gid = caller.gid;
  if (dir->mode & S_ISGID) {
    // BSD group semantics on a setgid directory, as ext4 does.
    op.gid = dir->gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  // A directory's default ACL replaces the umask for what is created in it.
  std::optional<Acl> inherited;
  if (!S_ISLNK(mode)) {
    ASSIGN_OR_RETURN(auto def, GetXattrLocked(parent, kAclDefault));
    if (def) {
      ASSIGN_OR_RETURN(Acl acl, Acl::Parse(*def));
      acl.CreateMask(&mode);
      inherited = std::move(acl);
    } else {
      mode &= ~(caller.umask & 0777);
    }
  }
  op.mode = mode;
  op.rdev = rdev;
  op.ctime = Now();
  if (S_ISLNK(mode)) {
    op.size = symlink_target.size();
    RETURN_IF_ERROR(codec_->SealBlob("strata-symlink-1", op.ino, {}, symlink_target, &op.blob));
  }
  RETURN_IF_ERROR(LogLocked(op));
  if (inherited) {
    if (!inherited->IsMinimal())
      RETURN_IF_ERROR(PutXattrLocked(op.ino, kAclAccess, inherited->Encode()));
    if (S_ISDIR(mode)) {
      ASSIGN_OR_RETURN(auto def, GetXattrLocked(parent, kAclDefault));
      if (def) RETURN_IF_ERROR(PutXattrLocked(op.ino, kAclDefault, *def));
    }
  }
  ASSIGN_OR_RETURN(Attr a, AttrLocked(op.ino));
  RememberLocked(op.ino, parent, name);
  return a;
}

Result<Attr> Filesystem::Mknod(uint64_t parent, const std::string& name, uint32_t mode,
                               uint64_t rdev, const Caller& caller) {
  uint32_t type = mode & S_IFMT;
  if (type == 0)
    mode |= S_IFREG;
  else if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
           type != S_IFBLK)
    return Status::Posix(EINVAL);
  std::lock_guard<std::mutex> l(mu_);
  return CreateNode(parent, name, mode, rdev, {}, caller);
}

Result<Attr> Filesystem::Mkdir(uint64_t parent, const std::string& name, uint32_t mode,
                               const Caller& caller) {
  std::lock_guard<std::mutex> l(mu_);
  return CreateNode(parent, name, S_IFDIR | (mode & 07777), 0, {}, caller);
}

Result<Attr> Filesystem::Symlink(uint64_t parent, const std::string& name,
                                 const std::string& target, const Caller& caller) {
  if (target.empty()) return Status::Posix(ENOENT);
  if (target.size() >= 4096) return Status::Posix(ENAMETOOLONG);
  std::lock_guard<std::mutex> l(mu_);
  return CreateNode(parent, name, S_IFLNK | 0777, 0, target, caller);
}

Result<Attr> Filesystem::Link(uint64_t ino, uint64_t new_parent, const std::string& new_name) {
  RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row) return Status::Posix(ENOENT);
  if (S_ISDIR(row->mode)) return Status::Posix(EPERM);
  if (row->nlink >= kMaxLinks) return Status::Posix(EMLINK);
  ASSIGN_OR_RETURN(auto dir, meta_->GetInode(new_parent));
  if (!dir || dir->nlink == 0) return Status::Posix(ENOENT);
  if (!S_ISDIR(dir->mode)) return Status::Posix(ENOTDIR);
  std::string enc = EncName(new_parent, new_name);
  ASSIGN_OR_RETURN(auto existing, meta_->LookupEntry(new_parent, enc));
  if (existing) return Status::Posix(EEXIST);
  RETURN_IF_ERROR(AdmitNewBytes(kNewEntryBytes));
  meta::Op op;
  op.kind = meta::OpKind::kLink;
  op.ino = ino;
  op.parent = new_parent;
  op.name = std::move(enc);
  op.ctime = Now();
  RETURN_IF_ERROR(LogLocked(op));
  ASSIGN_OR_RETURN(Attr a, AttrLocked(ino));
  RememberLocked(ino, new_parent, new_name);
  return a;
}

Status Filesystem::MaybeDeleteLocked(uint64_t ino) {
  ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
  if (!row || row->nlink > 0) return Status::OK();
  if (open_.count(ino)) return Status::OK();  // deleted at the last release
  meta::Op op;
  op.kind = meta::OpKind::kDeleteInode;
  op.ino = ino;
  RETURN_IF_ERROR(LogLocked(op));
  // At the reserve, what the file held comes back at the next reclaim: ask for one now (an
  // unlink, a rename over it, or its last close).
  if (space_ && space_->refusing()) KickTiering();
  return Status::OK();
}

Status Filesystem::RemoveEntry(uint64_t parent, const std::string& name, bool dir) {
  if (name.size() > kMaxNameLen) return Status::Posix(ENAMETOOLONG);
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(auto p, meta_->GetInode(parent));
  if (!p) return Status::Posix(ENOENT);
  if (!S_ISDIR(p->mode)) return Status::Posix(ENOTDIR);
  std::string enc = EncName(parent, name);
  ASSIGN_OR_RETURN(auto e, meta_->LookupEntry(parent, enc));
  if (!e) return Status::Posix(ENOENT);
  if (dir) {
    if (!S_ISDIR(e->mode)) return Status::Posix(ENOTDIR);
    ASSIGN_OR_RETURN(bool empty, meta_->DirIsEmpty(e->ino));
    if (!empty) return Status::Posix(ENOTEMPTY);
  } else if (S_ISDIR(e->mode)) {
    return Status::Posix(EISDIR);
  }
  meta::Op op;
  op.kind = meta::OpKind::kUnlink;
  op.parent = parent;
  op.name = std::move(enc);
  op.ino = e->ino;
  op.ctime = Now();
  RETURN_IF_ERROR(LogLocked(op));
  return MaybeDeleteLocked(e->ino);
}

Status Filesystem::Unlink(uint64_t parent, const std::string& name) {
  return RemoveEntry(parent, name, false);
}

Status Filesystem::Rmdir(uint64_t parent, const std::string& name) {
  return RemoveEntry(parent, name, true);
}

Status Filesystem::Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                          const std::string& new_name, unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Status::Posix(EINVAL);
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Status::Posix(EINVAL);
  RETURN_IF_ERROR(CheckName(new_name));
  if (name.size() > kMaxNameLen) return Status::Posix(ENAMETOOLONG);
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(CheckWritable());
  for (uint64_t d : {parent, new_parent}) {
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(d));
    if (!row || row->nlink == 0) return Status::Posix(ENOENT);
    if (!S_ISDIR(row->mode)) return Status::Posix(ENOTDIR);
  }
  std::string enc = EncName(parent, name);
  std::string new_enc = EncName(new_parent, new_name);
  ASSIGN_OR_RETURN(auto src, meta_->LookupEntry(parent, enc));
  if (!src) return Status::Posix(ENOENT);
  ASSIGN_OR_RETURN(auto dst, meta_->LookupEntry(new_parent, new_enc));
  if (flags & RENAME_EXCHANGE) {
    if (!dst) return Status::Posix(ENOENT);
  } else if (dst) {
    if (flags & RENAME_NOREPLACE) return Status::Posix(EEXIST);
    if (dst->ino == src->ino) return Status::OK();
    if (S_ISDIR(src->mode) && !S_ISDIR(dst->mode)) return Status::Posix(ENOTDIR);
    if (!S_ISDIR(src->mode) && S_ISDIR(dst->mode)) return Status::Posix(EISDIR);
    if (S_ISDIR(dst->mode)) {
      ASSIGN_OR_RETURN(bool empty, meta_->DirIsEmpty(dst->ino));
      if (!empty) return Status::Posix(ENOTEMPTY);
    }
  }
  if (!(flags & RENAME_EXCHANGE) && S_ISDIR(src->mode) && parent != new_parent) {
    ASSIGN_OR_RETURN(auto np, meta_->GetInode(new_parent));
    if (np.has_value() && np->nlink >= kMaxLinks) return Status::Posix(EMLINK);
  }
  meta::Op op;
  op.kind = meta::OpKind::kRename;
  op.parent = parent;
  op.name = std::move(enc);
  op.new_parent = new_parent;
  op.new_name = std::move(new_enc);
  op.flags = flags & RENAME_EXCHANGE ? 2u : 0u;
  op.ino = src->ino;
  op.ctime = Now();
  RETURN_IF_ERROR(LogLocked(op));
  // Keep the paths of known inodes current (they name the file to the policy).
  auto moved = [&](uint64_t ino, uint64_t p, const std::string& n) {
    if (auto it = lookups_.find(ino); it != lookups_.end()) {
      it->second.parent = p;
      it->second.name = n;
    }
  };
  moved(src->ino, new_parent, new_name);
  if (dst && (flags & RENAME_EXCHANGE)) moved(dst->ino, parent, name);
  if (dst && !(flags & RENAME_EXCHANGE)) return MaybeDeleteLocked(dst->ino);
  return Status::OK();
}

Result<std::string> Filesystem::Readlink(uint64_t ino) {
  std::string sealed;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
    if (!row) return Status::Posix(ENOENT);
    if (!S_ISLNK(row->mode)) return Status::Posix(EINVAL);
    sealed = std::move(row->symlink);
  }
  std::string target;
  Status s = codec_->OpenBlob("strata-symlink-1", ino, {}, sealed, &target);
  if (!s.ok()) {
    log::Alert("filesystem {}: symlink inode {} failed its integrity check: {}", sb_.name, ino,
               s.ToString());
    return s;
  }
  return target;
}

Status Filesystem::ReadDir(uint64_t ino, uint64_t offset,
                           const std::function<bool(const DirEntry&)>& fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto row, meta_->GetInode(ino));
    if (!row) return Status::Posix(ENOENT);
    if (!S_ISDIR(row->mode)) return Status::Posix(ENOTDIR);
  }
  if (offset == 0 && !fn(DirEntry{".", ino, S_IFDIR, 1})) return Status::OK();
  if (offset <= 1 && !fn(DirEntry{"..", ino, S_IFDIR, 2})) return Status::OK();
  uint64_t after = offset > 2 ? offset - 2 : 0;
  while (true) {
    std::vector<meta::EntryRow> batch;
    {
      std::lock_guard<std::mutex> l(mu_);
      ASSIGN_OR_RETURN(batch, meta_->ListEntries(ino, after, 128));
    }
    if (batch.empty()) return Status::OK();
    for (auto& e : batch) {
      DirEntry d;
      Status s = keys_->names().Decrypt(ino, e.name, &d.name);
      if (!s.ok()) {
        log::Alert("filesystem {}: an entry name in directory {} failed its integrity check",
                   sb_.name, ino);
        return s;
      }
      d.ino = e.ino;
      d.mode = e.mode & S_IFMT;
      d.next_offset = e.cookie + 2;
      after = e.cookie;
      if (!fn(d)) return Status::OK();
    }
  }
}

}  // namespace strata::fs
