#include "fuse/dispatch.h"

namespace strata::fuse {
namespace {
timespec ToTs(int64_t ns) {
  timespec t;
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    t.tv_sec -= 1;
  }
  return t;
}
}  // namespace

void FillStat(const fs::Attr& a, struct stat* st) {
  *st = {};
  st->st_ino = a.ino;
  st->st_mode = a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_rdev = a.rdev;
  st->st_size = static_cast<off_t>(a.size);
  st->st_blksize = 4096;
  st->st_blocks = static_cast<blkcnt_t>(a.blocks);
  st->st_atim = ToTs(a.atime);
  st->st_mtim = ToTs(a.mtime);
  st->st_ctim = ToTs(a.ctime);
}

void ReplyError(fuse_req_t req, const char* op, fuse_ino_t ino, const Status& s) {
  int err = s.ToErrno();
  if (s.code() != Status::Code::kPosix && s.code() != Status::Code::kNotFound)
    log::Error("{} inode {}: {}", op, ino, s.ToString());
  fuse_reply_err(req, err == 0 ? EIO : err);
}

void Request::Error(const Status& s) {
  replied_ = true;
  ReplyError(req_, op_, ino_, s);
}

void Request::Entry(const fs::Attr& a) {
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = a.generation;
  FillStat(a, &e.attr);
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kEntryTimeout;
  replied_ = true;
  fuse_reply_entry(req_, &e);
}

void Request::NoEntry() {
  fuse_entry_param e{};  // ino 0: a negative entry
  e.entry_timeout = kEntryTimeout;
  replied_ = true;
  fuse_reply_entry(req_, &e);
}

void Request::Attr(const fs::Attr& a) {
  struct stat st;
  FillStat(a, &st);
  replied_ = true;
  fuse_reply_attr(req_, &st, kAttrTimeout);
}

void Request::Create(const fs::Attr& a, fuse_file_info* fi) {
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = a.generation;
  FillStat(a, &e.attr);
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kEntryTimeout;
  replied_ = true;
  fuse_reply_create(req_, &e, fi);
}

}  // namespace strata::fuse
