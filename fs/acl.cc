#include "fs/acl.h"

#include "base/coding.h"

namespace strata::fs {
namespace {
constexpr uint32_t kVersion = 2;
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10,
                   kOther = 0x20;
}  // namespace

Result<Acl> Acl::Parse(std::string_view x) {
  if (x.size() < 4 || (x.size() - 4) % 8 != 0 || DecodeFixed32(x.data()) != kVersion)
    return Status::Posix(EINVAL);
  Acl acl;
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  for (size_t off = 4; off < x.size(); off += 8) {
    AclEntry e;
    e.tag = DecodeFixed16(x.data() + off);
    e.perm = DecodeFixed16(x.data() + off + 2);
    e.id = DecodeFixed32(x.data() + off + 4);
    if (e.perm & ~7u) return Status::Posix(EINVAL);
    switch (e.tag) {
      case kUserObj:
        user_obj++;
        break;
      case kGroupObj:
        group_obj++;
        break;
      case kOther:
        other++;
        break;
      case kMask:
        mask++;
        break;
      case kUser:
      case kGroup:
        named++;
        break;
      default:
        return Status::Posix(EINVAL);
    }
    acl.entries_.push_back(e);
  }
  if (user_obj != 1 || group_obj != 1 || other != 1 || mask > 1 || (named > 0 && mask == 0))
    return Status::Posix(EINVAL);
  return acl;
}

std::string Acl::Encode() const {
  std::string s;
  PutFixed32(&s, kVersion);
  for (const auto& e : entries_) {
    PutFixed16(&s, e.tag);
    PutFixed16(&s, e.perm);
    PutFixed32(&s, e.id);
  }
  return s;
}

bool Acl::IsMinimal() const {
  for (const auto& e : entries_)
    if (e.tag != kUserObj && e.tag != kGroupObj && e.tag != kOther) return false;
  return true;
}

uint32_t Acl::ModeBits() const {
  uint32_t owner = 0, group = 0, other = 0, mask = 0;
  bool has_mask = false;
  for (const auto& e : entries_) {
    if (e.tag == kUserObj) owner = e.perm;
    if (e.tag == kGroupObj) group = e.perm;
    if (e.tag == kOther) other = e.perm;
    if (e.tag == kMask) {
      mask = e.perm;
      has_mask = true;
    }
  }
  return (owner << 6) | ((has_mask ? mask : group) << 3) | other;
}

void Acl::Chmod(uint32_t mode) {
  bool has_mask = false;
  for (const auto& e : entries_) has_mask |= e.tag == kMask;
  for (auto& e : entries_) {
    if (e.tag == kUserObj) e.perm = (mode >> 6) & 7;
    if (e.tag == kOther) e.perm = mode & 7;
    if (e.tag == kMask || (e.tag == kGroupObj && !has_mask)) e.perm = (mode >> 3) & 7;
  }
}

void Acl::CreateMask(uint32_t* mode) {
  bool has_mask = false;
  for (const auto& e : entries_) has_mask |= e.tag == kMask;
  uint32_t m = *mode;
  uint32_t out = m & ~0777u;
  for (auto& e : entries_) {
    if (e.tag == kUserObj) {
      e.perm &= (m >> 6) & 7;
      out |= uint32_t{e.perm} << 6;
    } else if (e.tag == kOther) {
      e.perm &= m & 7;
      out |= e.perm;
    } else if (e.tag == kMask || (e.tag == kGroupObj && !has_mask)) {
      e.perm &= (m >> 3) & 7;
      out |= uint32_t{e.perm} << 3;
    }
  }
  *mode = out;
}

}  // namespace strata::fs
