#include "fs/records.h"

#include "base/coding.h"
#include "crypto/crypto.h"

namespace strata::fs {
namespace {
constexpr uint64_t kCounterLimit = 1ull << 40;

std::string Ad(std::string_view domain, const std::array<unsigned char, 16>& uuid,
               std::string_view header) {
  std::string ad(domain);
  ad.append(reinterpret_cast<const char*>(uuid.data()), uuid.size());
  ad.append(header);
  return ad;
}
}  // namespace

meta::Op ChunkOp(const ChunkHeader& h, const journal::Location& loc) {
  meta::Op op;
  op.kind = h.patch ? meta::OpKind::kPatch : meta::OpKind::kChunk;
  op.ino = h.ino;
  op.chunk_index = h.index;
  op.version = h.version;
  op.logical_len = h.logical_len;
  op.size = h.file_size;
  op.mtime = h.mtime;
  op.segment = loc.segment;
  op.offset = loc.offset;
  op.stored_len = loc.length;
  return op;
}

Status RecordCodec::NextNonce(std::array<unsigned char, 12>* nonce, uint64_t* version) const {
  *nonce = nonces_->Next();
  uint32_t epoch = DecodeFixed32(reinterpret_cast<const char*>(nonce->data()));
  uint64_t counter = DecodeFixed64(reinterpret_cast<const char*>(nonce->data()) + 4);
  if (counter >= kCounterLimit)
    return Status::Aborted("nonce counter exhausted for this mount; remount to start a new epoch");
  *version = (uint64_t{epoch} << 40) | counter;
  return Status::OK();
}

Status RecordCodec::SealChunk(ChunkHeader* h, std::string_view body, std::string* out) const {
  std::array<unsigned char, 12> nonce;
  RETURN_IF_ERROR(NextNonce(&nonce, &h->version));
  out->clear();
  out->reserve(kChunkHeaderSize + body.size() + crypto::kSealOverhead);
  out->push_back(1);
  out->push_back(
      static_cast<char>((h->compressed ? 1 : 0) | (h->planes ? 2 : 0) | (h->patch ? 4 : 0)));
  PutFixed16(out, 0);
  PutFixed32(out, h->logical_len);
  PutFixed64(out, h->ino);
  PutFixed64(out, h->index);
  PutFixed64(out, h->version);
  PutFixed64(out, h->file_size);
  PutFixed64(out, static_cast<uint64_t>(h->mtime));
  std::string ad = Ad("strata-chunk-1", uuid_, *out);
  return aead_->Seal(nonce, ad, body, out);
}

Status RecordCodec::ParseChunkHeader(std::string_view p, ChunkHeader* h) {
  if (p.size() < kChunkHeaderSize + crypto::kSealOverhead || p[0] != 1)
    return Status::Corruption("data record: bad header");
  if (p[1] & ~7) return Status::Corruption("data record: unknown flags");
  h->compressed = (p[1] & 1) != 0;
  h->planes = (p[1] & 2) != 0;
  h->patch = (p[1] & 4) != 0;
  if (h->planes && !h->compressed) return Status::Corruption("data record: bad flags");
  h->logical_len = DecodeFixed32(p.data() + 4);
  h->ino = DecodeFixed64(p.data() + 8);
  h->index = DecodeFixed64(p.data() + 16);
  h->version = DecodeFixed64(p.data() + 24);
  h->file_size = DecodeFixed64(p.data() + 32);
  h->mtime = static_cast<int64_t>(DecodeFixed64(p.data() + 40));
  return Status::OK();
}

Status RecordCodec::OpenChunk(std::string_view p, const ChunkHeader& expect, ChunkHeader* got,
                              std::string* body) const {
  RETURN_IF_ERROR(ParseChunkHeader(p, got));
  if (got->ino != expect.ino || got->index != expect.index || got->version != expect.version)
    return Status::Corruption(
        "chunk record identity mismatch: expected inode " + std::to_string(expect.ino) + " chunk " +
        std::to_string(expect.index) + " version " + std::to_string(expect.version) +
        ", found inode " + std::to_string(got->ino) + " chunk " + std::to_string(got->index) +
        " version " + std::to_string(got->version));
  std::string ad = Ad("strata-chunk-1", uuid_, p.substr(0, kChunkHeaderSize));
  return aead_->Open(ad, p.substr(kChunkHeaderSize), body);
}

Status RecordCodec::SealMeta(std::string_view op, std::string* out) const {
  std::array<unsigned char, 12> nonce;
  uint64_t version;
  RETURN_IF_ERROR(NextNonce(&nonce, &version));
  out->assign(8, '\0');
  (*out)[0] = 1;
  PutFixed64(out, version);
  std::string ad = Ad("strata-meta-1", uuid_, *out);
  return aead_->Seal(nonce, ad, op, out);
}

Status RecordCodec::OpenMeta(std::string_view p, std::string* op) const {
  if (p.size() < kMetaHeaderSize + crypto::kSealOverhead || p[0] != 1)
    return Status::Corruption("metadata record: bad header");
  std::string ad = Ad("strata-meta-1", uuid_, p.substr(0, kMetaHeaderSize));
  return aead_->Open(ad, p.substr(kMetaHeaderSize), op);
}

Status RecordCodec::SealBlob(std::string_view domain, uint64_t ino, std::string_view extra,
                             std::string_view plaintext, std::string* out) const {
  std::array<unsigned char, 12> nonce;
  uint64_t version;
  RETURN_IF_ERROR(NextNonce(&nonce, &version));
  std::string header;
  PutFixed64(&header, ino);
  header.append(extra);
  out->clear();
  return aead_->Seal(nonce, Ad(domain, uuid_, header), plaintext, out);
}

Status RecordCodec::OpenBlob(std::string_view domain, uint64_t ino, std::string_view extra,
                             std::string_view sealed, std::string* out) const {
  std::string header;
  PutFixed64(&header, ino);
  header.append(extra);
  return aead_->Open(Ad(domain, uuid_, header), sealed, out);
}

}  // namespace strata::fs
