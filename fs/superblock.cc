#include "fs/superblock.h"

#include "base/coding.h"
#include "base/crc32c.h"

namespace strata::fs {

namespace {
constexpr char kMagic[8] = {'S', 'T', 'R', 'A', 'T', 'S', 'B', '\0'};
}

std::string EncodeSuperblock(const Superblock& sb) {
  std::string s(kMagic, 8);
  PutFixed32(&s, Superblock::kVersion);
  s.append(reinterpret_cast<const char*>(sb.uuid.data()), sb.uuid.size());
  PutFixed32(&s, sb.chunk_size);
  PutFixed64(&s, sb.segment_size);
  PutFixed32(&s, sb.epoch);
  PutFixed32(&s, static_cast<uint32_t>(sb.compression_level));
  PutBytes(&s, sb.name);
  PutFixed32(&s, crc32c::Mask(crc32c::Value(s.data(), s.size())));
  return s;
}

Status DecodeSuperblock(std::string_view in, const std::string& where, Superblock* sb) {
  if (in.size() < 8 + 4 + 4 || in.substr(0, 8) != std::string_view(kMagic, 8))
    return Status::Corruption(where + ": not a strata superblock (bad magic)");
  uint32_t stored = DecodeFixed32(in.data() + in.size() - 4);
  if (crc32c::Unmask(stored) != crc32c::Value(in.data(), in.size() - 4))
    return Status::Corruption(where + ": superblock checksum mismatch");
  Decoder d(in.substr(8, in.size() - 12));
  uint32_t version = 0, level = 0;
  d.GetU32(&version);
  if (version != Superblock::kVersion)
    return Status::InvalidArgument(where + ": superblock version " + std::to_string(version) +
                                   " is not supported (this strata reads version 1)");
  std::string_view rest = d.rest();
  if (rest.size() < 16) return Status::Corruption(where + ": superblock truncated");
  std::copy(rest.begin(), rest.begin() + 16, sb->uuid.begin());
  Decoder d2(rest.substr(16));
  d2.GetU32(&sb->chunk_size);
  d2.GetU64(&sb->segment_size);
  d2.GetU32(&sb->epoch);
  d2.GetU32(&level);
  d2.GetBytes(&sb->name);
  if (!d2.done()) return Status::Corruption(where + ": superblock truncated");
  sb->compression_level = static_cast<int32_t>(level);
  return Status::OK();
}

Result<Superblock> ReadSuperblock(Env* env, const std::string& path) {
  ASSIGN_OR_RETURN(std::string data, ReadWholeFile(env, path));
  Superblock sb;
  RETURN_IF_ERROR(DecodeSuperblock(data, path, &sb));
  return sb;
}

Status WriteSuperblock(Env* env, const std::string& path, const Superblock& sb) {
  return WriteFileAtomically(env, path, EncodeSuperblock(sb));
}

std::string UuidToString(const std::array<unsigned char, 16>& u) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < u.size(); i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(hex[u[i] >> 4]);
    s.push_back(hex[u[i] & 15]);
  }
  return s;
}

}  // namespace strata::fs
