#include "journal/format.h"

#include <fmt/format.h>

#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"

namespace strata::journal::format {

std::string EncodeSegmentHeader(const SegmentHeader& h) {
  std::string out;
  out.reserve(kSegmentHeaderSize);
  out.append(kSegmentMagic, sizeof kSegmentMagic);
  PutFixed32(&out, h.version);
  PutFixed32(&out, static_cast<uint32_t>(kSegmentHeaderSize));
  out.append(reinterpret_cast<const char*>(h.fs_uuid.data()), h.fs_uuid.size());
  PutFixed64(&out, h.segment_id);
  PutFixed64(&out, h.first_lsn);
  PutFixed64(&out, static_cast<uint64_t>(h.created_ns));
  out.resize(kSegmentHeaderCrcOffset, '\0');
  PutFixed32(&out, crc32c::Mask(crc32c::Value(out.data(), kSegmentHeaderCrcOffset)));
  return out;
}

HeaderProblem DecodeSegmentHeader(std::string_view in, SegmentHeader* h, std::string* why) {
  if (in.size() < kSegmentHeaderSize) {
    *why = fmt::format("segment header is {} bytes, expected {}", in.size(), kSegmentHeaderSize);
    return HeaderProblem::kShort;
  }
  const char* p = in.data();
  if (std::memcmp(p, kSegmentMagic, sizeof kSegmentMagic) != 0) {
    *why = "bad magic (not a strata journal segment)";
    return HeaderProblem::kBadMagic;
  }
  uint32_t stored = crc32c::Unmask(DecodeFixed32(p + kSegmentHeaderCrcOffset));
  if (stored != crc32c::Value(p, kSegmentHeaderCrcOffset)) {
    *why = "segment header checksum mismatch";
    return HeaderProblem::kBadChecksum;
  }
  h->version = DecodeFixed32(p + 8);
  if (h->version != kFormatVersion) {
    *why = fmt::format("unsupported journal format version {} (this program reads version {})",
                       h->version, kFormatVersion);
    return HeaderProblem::kBadVersion;
  }
  uint32_t header_len = DecodeFixed32(p + 12);
  if (header_len != kSegmentHeaderSize) {
    *why = fmt::format("segment header length {} is not {}", header_len, kSegmentHeaderSize);
    return HeaderProblem::kBadLayout;
  }
  for (size_t i = 56; i < kSegmentHeaderCrcOffset; i++) {
    if (p[i] != 0) {
      *why = "segment header reserved bytes are not zero";
      return HeaderProblem::kBadLayout;
    }
  }
  std::memcpy(h->fs_uuid.data(), p + 16, 16);
  h->segment_id = DecodeFixed64(p + 32);
  h->first_lsn = DecodeFixed64(p + 40);
  h->created_ns = static_cast<int64_t>(DecodeFixed64(p + 48));
  return HeaderProblem::kNone;
}

void AppendRecord(std::string* dst, uint8_t type, uint64_t lsn, std::string_view payload) {
  size_t start = dst->size();
  dst->resize(start + kRecordHeaderSize);
  char* h = dst->data() + start;
  EncodeFixed32(h + 4, static_cast<uint32_t>(payload.size()));
  h[8] = static_cast<char>(type);
  h[9] = h[10] = h[11] = 0;
  EncodeFixed64(h + 12, lsn);
  uint32_t crc = crc32c::Extend(0, h + 4, kRecordHeaderSize - 4);
  crc = crc32c::Extend(crc, payload.data(), payload.size());
  EncodeFixed32(h, crc32c::Mask(crc));
  dst->append(payload);
}

bool DecodeRecordHeader(const char* p, RecordHeader* h) {
  h->masked_crc = DecodeFixed32(p);
  h->length = DecodeFixed32(p + 4);
  h->type = static_cast<uint8_t>(p[8]);
  h->lsn = DecodeFixed64(p + 12);
  return IsKnownType(h->type) && p[9] == 0 && p[10] == 0 && p[11] == 0;
}

bool RecordChecksumOk(std::string_view record) {
  if (record.size() < kRecordHeaderSize) return false;
  uint32_t stored = crc32c::Unmask(DecodeFixed32(record.data()));
  return stored == crc32c::Value(record.data() + 4, record.size() - 4);
}

std::string UuidToString(const std::array<unsigned char, 16>& uuid) {
  std::string s;
  for (size_t i = 0; i < uuid.size(); i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += fmt::format("{:02x}", uuid[i]);
  }
  return s;
}

}  // namespace strata::journal::format
