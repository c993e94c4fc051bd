// Little-endian fixed-width encoding used by every on-disk and on-wire format.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace strata {

inline void PutFixed16(std::string* dst, uint16_t v) {
  dst->append(reinterpret_cast<const char*>(&v), 2);
}
inline void PutFixed32(std::string* dst, uint32_t v) {
  dst->append(reinterpret_cast<const char*>(&v), 4);
}
inline void PutFixed64(std::string* dst, uint64_t v) {
  dst->append(reinterpret_cast<const char*>(&v), 8);
}
inline void EncodeFixed32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void EncodeFixed64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint16_t DecodeFixed16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Length-prefixed (u32) byte string.
inline void PutBytes(std::string* dst, std::string_view s) {
  PutFixed32(dst, static_cast<uint32_t>(s.size()));
  dst->append(s);
}

// A cursor over an encoded buffer. Every Get returns false (and leaves the reader failed) when
// the input is too short, so decoders check once at the end.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool GetU8(uint8_t* v) {
    if (!Need(1)) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool GetU16(uint16_t* v) {
    if (!Need(2)) return false;
    *v = DecodeFixed16(in_.data());
    in_.remove_prefix(2);
    return true;
  }
  bool GetU32(uint32_t* v) {
    if (!Need(4)) return false;
    *v = DecodeFixed32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool GetU64(uint64_t* v) {
    if (!Need(8)) return false;
    *v = DecodeFixed64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  bool GetI64(int64_t* v) {
    uint64_t u;
    if (!GetU64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool GetBytes(std::string_view* v) {
    uint32_t n;
    if (!GetU32(&n) || !Need(n)) return false;
    *v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool GetBytes(std::string* v) {
    std::string_view s;
    if (!GetBytes(&s)) return false;
    v->assign(s);
    return true;
  }
  bool done() const { return ok_ && in_.empty(); }
  bool ok() const { return ok_; }
  std::string_view rest() const { return in_; }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace strata
