#include "meta/ops.h"

#include "base/coding.h"

namespace strata::meta {

namespace {
constexpr uint8_t kOpVersion = 1;
}

std::string EncodeOp(const Op& op) {
  std::string s;
  s.push_back(static_cast<char>(op.kind));
  s.push_back(static_cast<char>(kOpVersion));
  PutFixed64(&s, op.ino);
  PutFixed64(&s, op.parent);
  PutBytes(&s, op.name);
  PutFixed64(&s, op.new_parent);
  PutBytes(&s, op.new_name);
  PutFixed32(&s, op.flags);
  PutFixed32(&s, op.mode);
  PutFixed32(&s, op.uid);
  PutFixed32(&s, op.gid);
  PutFixed64(&s, op.rdev);
  PutFixed64(&s, op.size);
  PutFixed64(&s, static_cast<uint64_t>(op.atime));
  PutFixed64(&s, static_cast<uint64_t>(op.mtime));
  PutFixed64(&s, static_cast<uint64_t>(op.ctime));
  PutFixed32(&s, op.mask);
  PutBytes(&s, op.blob);
  PutFixed64(&s, op.chunk_index);
  PutFixed64(&s, op.segment);
  PutFixed64(&s, op.offset);
  PutFixed32(&s, op.stored_len);
  PutFixed32(&s, op.logical_len);
  PutFixed64(&s, op.version);
  return s;
}

Status DecodeOp(std::string_view in, Op* op) {
  Decoder d(in);
  uint8_t kind = 0, version = 0;
  d.GetU8(&kind);
  d.GetU8(&version);
  if (!d.ok() || version != kOpVersion || kind < 1 || kind > 11)
    return Status::Corruption("metadata op: unknown kind " + std::to_string(kind) + " or version " +
                              std::to_string(version));
  op->kind = static_cast<OpKind>(kind);
  d.GetU64(&op->ino);
  d.GetU64(&op->parent);
  d.GetBytes(&op->name);
  d.GetU64(&op->new_parent);
  d.GetBytes(&op->new_name);
  d.GetU32(&op->flags);
  d.GetU32(&op->mode);
  d.GetU32(&op->uid);
  d.GetU32(&op->gid);
  d.GetU64(&op->rdev);
  d.GetU64(&op->size);
  d.GetI64(&op->atime);
  d.GetI64(&op->mtime);
  d.GetI64(&op->ctime);
  d.GetU32(&op->mask);
  d.GetBytes(&op->blob);
  d.GetU64(&op->chunk_index);
  d.GetU64(&op->segment);
  d.GetU64(&op->offset);
  d.GetU32(&op->stored_len);
  d.GetU32(&op->logical_len);
  d.GetU64(&op->version);
  if (!d.done()) return Status::Corruption("metadata op: truncated or trailing bytes");
  return Status::OK();
}

std::string EncodeMoveEntries(const std::vector<MoveEntry>& entries) {
  std::string s;
  s.reserve(entries.size() * 36);
  for (const MoveEntry& e : entries) {
    PutFixed64(&s, e.ino);
    PutFixed64(&s, e.index);
    PutFixed64(&s, e.version);
    PutFixed64(&s, e.offset);
    PutFixed32(&s, e.stored_len);
  }
  return s;
}

Status DecodeMoveEntries(std::string_view in, std::vector<MoveEntry>* out) {
  out->clear();
  Decoder d(in);
  while (!d.done()) {
    MoveEntry e;
    d.GetU64(&e.ino);
    d.GetU64(&e.index);
    d.GetU64(&e.version);
    d.GetU64(&e.offset);
    d.GetU32(&e.stored_len);
    if (!d.ok()) return Status::Corruption("metadata op: truncated chunk move list");
    out->push_back(e);
  }
  return Status::OK();
}

}  // namespace strata::meta
