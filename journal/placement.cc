#include "journal/placement.h"

#include <fmt/format.h>

#include "base/coding.h"
#include "journal/format.h"

namespace strata::journal {

static_assert(kRecordHeaderBytes == format::kRecordHeaderSize);

namespace {
constexpr size_t kFlushAt = 4u << 20;
}

Result<std::unique_ptr<SegmentBuilder>> SegmentBuilder::Create(
    Env* env, const std::string& path, const std::array<unsigned char, 16>& uuid, uint64_t id,
    int64_t now_ns) {
  std::unique_ptr<SegmentBuilder> b(new SegmentBuilder);
  ASSIGN_OR_RETURN(b->file_, env->OpenFile(path, OpenMode::kCreate));
  RETURN_IF_ERROR(b->file_->Truncate(0));
  b->path_ = path;
  b->id_ = id;
  format::SegmentHeader h;
  h.fs_uuid = uuid;
  h.segment_id = id;
  h.first_lsn = 0;
  h.created_ns = now_ns;
  b->buf_ = format::EncodeSegmentHeader(h);
  b->size_ = b->buf_.size();
  return b;
}

Status SegmentBuilder::FlushBuffer() {
  if (buf_.empty()) return Status::OK();
  RETURN_IF_ERROR(file_->Write(written_, buf_));
  written_ += buf_.size();
  buf_.clear();
  return Status::OK();
}

Status SegmentBuilder::Add(std::string_view payload, Location* loc) {
  loc->segment = id_;
  loc->offset = size_;
  loc->length = static_cast<uint32_t>(payload.size());
  format::AppendRecord(&buf_, format::kTypeData, 0, payload);
  size_ += format::kRecordHeaderSize + payload.size();
  if (buf_.size() >= kFlushAt) return FlushBuffer();
  return Status::OK();
}

Result<uint64_t> SegmentBuilder::Finish() {
  format::AppendRecord(&buf_, format::kTypeSegmentEnd, 0, {});
  size_ += format::kRecordHeaderSize;
  RETURN_IF_ERROR(FlushBuffer());
  RETURN_IF_ERROR(file_->Sync());
  return size_;
}

Status ParseRecord(std::string_view bytes, const Location& loc, std::string* payload) {
  format::RecordHeader h;
  if (bytes.size() != format::kRecordHeaderSize + uint64_t{loc.length})
    return Status::Corruption(fmt::format("record at offset {}: read {} bytes, expected {}",
                                          loc.offset, bytes.size(),
                                          format::kRecordHeaderSize + uint64_t{loc.length}));
  if (!format::DecodeRecordHeader(bytes.data(), &h) || h.type != format::kTypeData ||
      h.length != loc.length)
    return Status::Corruption(fmt::format("record at offset {}: bad header", loc.offset));
  if (!format::RecordChecksumOk(bytes))
    return Status::Corruption(fmt::format("record at offset {}: checksum mismatch", loc.offset));
  payload->assign(bytes.substr(format::kRecordHeaderSize));
  return Status::OK();
}

Status VerifyPlacementSegment(std::string_view bytes, const std::array<unsigned char, 16>& uuid,
                              uint64_t id) {
  format::SegmentHeader h;
  std::string why;
  if (format::DecodeSegmentHeader(bytes, &h, &why) != format::HeaderProblem::kNone)
    return Status::Corruption("segment header: " + why);
  if (h.fs_uuid != uuid || h.segment_id != id || h.first_lsn != 0)
    return Status::Corruption("segment header names another filesystem or segment");
  uint64_t off = format::kSegmentHeaderSize;
  for (;;) {
    format::RecordHeader r;
    if (bytes.size() - off < format::kRecordHeaderSize ||
        !format::DecodeRecordHeader(bytes.data() + off, &r))
      return Status::Corruption(fmt::format("bad or missing record header at offset {}", off));
    uint64_t n = format::kRecordHeaderSize + uint64_t{r.length};
    if (bytes.size() - off < n)
      return Status::Corruption(fmt::format("record at offset {} runs past the end", off));
    if (!format::RecordChecksumOk(bytes.substr(off, n)))
      return Status::Corruption(fmt::format("checksum mismatch at offset {}", off));
    off += n;
    if (r.type == format::kTypeSegmentEnd) break;
    if (r.type != format::kTypeData)
      return Status::Corruption(fmt::format("unexpected record type {} at offset {}", r.type, off));
  }
  if (off != bytes.size())
    return Status::Corruption(fmt::format("{} bytes after the end record", bytes.size() - off));
  return Status::OK();
}

}  // namespace strata::journal
