// POSIX ACLs in their xattr form (system.posix_acl_access / _default), as the kernel passes
// them when FUSE_CAP_POSIX_ACL is on: the kernel enforces them; strata stores them, keeps the
// mode bits in step, and makes new nodes inherit a directory's default ACL.
//
//   u32 version = 2 | entries of { u16 tag | u16 perm | u32 id }
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::fs {

inline constexpr const char* kAclAccess = "system.posix_acl_access";
inline constexpr const char* kAclDefault = "system.posix_acl_default";

struct AclEntry {
  uint16_t tag = 0, perm = 0;
  uint32_t id = 0;
};

class Acl {
 public:
  // Posix(EINVAL) for anything that is not a well-formed ACL.
  static Result<Acl> Parse(std::string_view xattr);
  std::string Encode() const;
  // True when the ACL says no more than the mode bits (owner, group, other only).
  bool IsMinimal() const;
  // The permission bits (0777 part) the ACL implies.
  uint32_t ModeBits() const;
  // chmod: owner, mask (or group) and other entries take the new bits.
  void Chmod(uint32_t mode);
  // Inheritance at create (posix_acl_create_masq): the ACL is narrowed by the requested mode,
  // and *mode is narrowed by the ACL.
  void CreateMask(uint32_t* mode);

 private:
  std::vector<AclEntry> entries_;
};

}  // namespace strata::fs
