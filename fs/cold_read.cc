// Reads of chunks in placement segments: the hot placement directory, the read cache on the
// hot tier, and ranged fetches from cold tiers (one fetch per range, shared by its readers;
// waiters give up at the tier's read timeout). docs/tiering.md, "Reads of cold data".
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "base/logging.h"
#include "fs/filesystem.h"
#include "fs/read_cache.h"
#include "fs/tiering_internal.h"
#include "fs/worker_pool.h"
#include "journal/journal.h"
#include "journal/placement.h"
#include "meta/meta_store.h"
#include "tiering/tier.h"

namespace strata::fs {
namespace {

constexpr uint64_t kPrefetchBytes = 1 << 20;  // one cold fetch covers up to this much of a file

uint64_t RecordEnd(const meta::ChunkRow& r) {
  return r.offset + journal::kRecordHeaderBytes + r.stored_len;
}

}  // namespace

using internal::IsPlacement;
using internal::kHot;

// One cold fetch in flight: a byte range of one segment, shared by every reader that needs a
// record inside it. Waiters give up at their tier's read timeout; the fetch itself may go on.
struct Filesystem::Fetch {
  uint64_t begin = 0, end = 0;
  std::chrono::steady_clock::time_point started;  // waiters give up at started + read_timeout
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
  std::string bytes;  // [begin, end) of the segment
};

// --- reads ---------------------------------------------------------------------------------

Status Filesystem::ReadChunkPayload(uint64_t ino, const meta::ChunkRow& c, bool allow_cold,
                                    bool* blocked, std::string* payload) {
  journal::Location loc{c.segment, c.offset, c.stored_len};
  if (!IsPlacement(c.segment)) return journal_->Read(loc, payload);
  std::string tier;
  {
    std::lock_guard<std::mutex> l(mu_);
    tier = TierOfLocked(c.segment);
  }
  auto it = tiers_.find(tier);
  if (it == tiers_.end())
    return Status::Unavailable(
        fmt::format("segment {:x} is on tier '{}', which is not configured", c.segment, tier));
  std::string record;
  const std::string where = fmt::format("tier {} segment {:x}", tier, c.segment);
  if (tier == kHot) {
    RETURN_IF_ERROR(it->second->Get(SegmentKey(c.segment), c.offset,
                                    journal::kRecordHeaderBytes + uint64_t{c.stored_len}, &record));
    Status s = journal::ParseRecord(record, loc, payload);
    if (!s.ok()) log::Alert("filesystem {}: {}: {}", sb_.name, where, s.message());
    return s.WithContext(where);
  }
  if (auto hit = read_cache_->Get(c.segment, c.offset, RecordEnd(c) - c.offset)) {
    if (journal::ParseRecord(*hit, loc, payload).ok()) return Status::OK();
    read_cache_->Drop(c.segment, c.offset);  // damaged on the hot tier: fetch it again
  }
  if (!allow_cold) {
    if (blocked != nullptr) *blocked = true;
    return Status::Unavailable("a cold read must not run here");
  }
  RETURN_IF_ERROR(FetchCold(tier, ino, c, &record));
  Status s = journal::ParseRecord(record, loc, payload);
  if (!s.ok()) {
    read_cache_->Drop(c.segment, c.offset);
    log::Alert("filesystem {}: {}: {}", sb_.name, where, s.message());
    return s.WithContext(where);
  }
  return Status::OK();
}

Status Filesystem::FetchCold(const std::string& tier_name, uint64_t ino, const meta::ChunkRow& c,
                             std::string* record) {
  const uint64_t need_begin = c.offset, need_end = RecordEnd(c);
  tiering::Tier* tier = tiers_.at(tier_name).get();
  const TierConfig* tc = config_.FindTier(tier_name);
  const int64_t timeout_ms = tc ? tc->read_timeout_ms : 30000;

  // The range to fetch if no fetch in flight covers this record: this chunk and the ones of
  // the same file that follow it in the segment, so one ranged read brings a whole small file
  // (a DICOM instance) in; and the block of the tier's readahead size around it, which holds
  // the neighbouring files of the same series (a pass writes a series together), since a
  // GET's fixed cost is several times that of its bytes. Listed before fetch_mu_ is taken:
  // fetch_mu_ never waits on mu_.
  auto plan = std::make_shared<Fetch>();
  plan->started = std::chrono::steady_clock::now();
  plan->begin = need_begin;
  plan->end = need_end;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto chunks = meta_->ListChunks(ino);
    if (chunks.ok()) {
      for (const auto& r : *chunks) {
        if (r.index <= c.index || r.segment != c.segment) continue;
        if (r.offset != plan->end || RecordEnd(r) - plan->begin > kPrefetchBytes) break;
        plan->end = RecordEnd(r);
      }
    }
    // In readahead-aligned blocks: readers of a series in any order then fetch each byte once
    // (ranges starting wherever a reader happened to need a record overlapped).
    const uint64_t readahead = tc ? tc->readahead_bytes : 0;
    auto placed = placement_.find(c.segment);
    // Not when the read cache cannot keep the block (a read-only mount keeps nothing).
    if (readahead > 0 && read_cache_->Keeps(readahead) && placed != placement_.end() &&
        placed->second.size > 0) {
      const uint64_t block = need_begin / readahead * readahead;
      plan->begin = block;
      plan->end = std::max(plan->end, std::min(placed->second.size, block + readahead));
    }
  }
  std::shared_ptr<Fetch> f;
  {
    std::lock_guard<std::mutex> l(fetch_mu_);
    // Join a fetch in flight that covers the record. One that is overdue (a hung request that
    // may go on for minutes) means the tier is not answering: fail at once for another
    // read_timeout (the kernel retries a failed read straight away), then start afresh.
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    bool overdue = false;
    for (const auto& in : fetches_[c.segment]) {
      if (in->begin > need_begin || need_end > in->end) continue;
      bool done, failed;
      {
        std::lock_guard<std::mutex> fl(in->mu);  // fetch_mu_ then a fetch's mu, never reversed
        done = in->done;
        failed = done && !in->status.ok();
      }
      // A fetch that failed stays listed until its job lets go of it: a read after it (the
      // tier may be back) asks the tier again rather than take that failure.
      if (failed) continue;
      if (done || plan->started < in->started + timeout)
        f = in;
      else if (plan->started < in->started + 2 * timeout)
        overdue = true;
    }
    if (f == nullptr && overdue)
      return Status::Unavailable(
          fmt::format("tier {}: a read of segment {:x} got no answer within {} ms (read_timeout in "
                      "[tiers.{}]) and is still waiting",
                      tier_name, c.segment, timeout_ms, tier_name));
    if (f == nullptr) fetches_[c.segment].push_back(f = plan);
  }
  if (f == plan) {
    ++cold_fetches_;
    auto job = [this, tier, f, segment = c.segment, ino] {
      std::string bytes;
      Status s = tier->Get(SegmentKey(segment), f->begin, f->end - f->begin, &bytes);
      if (!s.ok())
        log::Error("filesystem {}: read of inode {} from {}: {}", sb_.name, ino, tier->name(),
                   s.ToString());
      {
        std::lock_guard<std::mutex> l(f->mu);
        f->status = s;
        f->bytes = std::move(bytes);
        f->done = true;  // from here on f->bytes is only read
      }
      f->cv.notify_all();  // the readers go on while the cache is written
      // Keep the range on the hot tier for the reads that follow (one cache file). The fetch
      // stays listed until then, so a reader arriving meanwhile takes its bytes, not a GET.
      if (s.ok()) read_cache_->Put(segment, f->begin, f->bytes);
      std::lock_guard<std::mutex> l(fetch_mu_);
      auto& v = fetches_[segment];
      v.erase(std::remove(v.begin(), v.end(), f), v.end());
      if (v.empty()) fetches_.erase(segment);
    };
    if (auto pool = fetchers_.find(tier_name); pool != fetchers_.end())
      pool->second->Submit(std::move(job));
    else
      job();  // not started (tools and tests that never mount)
  }
  // The deadline is the fetch's, not this reader's: a reader that joins a fetch already
  // hanging (the kernel retrying a failed read) gives up with it, not read_timeout later.
  std::unique_lock<std::mutex> l(f->mu);
  if (!f->cv.wait_until(l, f->started + std::chrono::milliseconds(timeout_ms),
                        [&] { return f->done; })) {
    return Status::Unavailable(fmt::format(
        "tier {}: no answer within {} ms reading segment {:x} (read_timeout in [tiers.{}])",
        tier_name, timeout_ms, c.segment, tier_name));
  }
  if (!f->status.ok()) return f->status;
  record->assign(f->bytes, need_begin - f->begin, need_end - need_begin);
  return Status::OK();
}

}  // namespace strata::fs
