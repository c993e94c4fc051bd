// Freeing space (docs/tiering.md, "Compaction and freeing space"): rolling back unfinished
// uploads, choosing the segments to compact, deleting emptied placement segments, and removing
// journal segments once a checkpoint and a metadata snapshot cover them.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "base/kill_point.h"
#include "base/logging.h"
#include "fs/filesystem.h"
#include "fs/tiering_internal.h"
#include "journal/journal.h"
#include "meta/meta_store.h"
#include "meta/ops.h"
#include "tiering/tier.h"

namespace strata::fs {

using internal::IsPlacement;
using internal::kHot;

// Removes a placement segment that no chunk points at: object first, then the row.
Status Filesystem::DeletePlacement(uint64_t segment, const std::string& tier) {
  // Not while the journal or the database has failed: the deletion could not be recorded, and
  // what the database says points at the segment may be behind the journal.
  {
    std::lock_guard<std::mutex> l(mu_);  // failed_ is written under it
    RETURN_IF_ERROR(CheckWritable());
  }
  auto it = tiers_.find(tier);
  if (it == tiers_.end())
    return Status::Unavailable("tier '" + tier + "' is not configured; segment kept");
  RETURN_IF_ERROR(it->second->Delete(SegmentKey(segment)));
  KILL_POINT("migrate.deleted");
  {
    std::lock_guard<std::mutex> l(mu_);
    RETURN_IF_ERROR(LogSegmentStateLocked(segment, tier, meta::SegmentState::kGone));
  }
  return SyncAndCommit();
}

Status Filesystem::RecoverPlacements(MigrateReport* report) {
  std::vector<meta::SegmentRow> pending;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto rows, meta_->ListSegments());
    for (auto& r : rows)
      if (IsPlacement(r.id) && r.state != meta::SegmentState::kLive) pending.push_back(r);
  }
  for (const auto& r : pending) {
    if (r.live_bytes != 0) continue;  // never delete what a chunk points at
    Status s = DeletePlacement(r.id, r.tier);
    if (!s.ok()) {
      report->errors.push_back(s.ToString());
      continue;
    }
    report->segments_rolled_back++;
  }
  return Status::OK();
}

Status Filesystem::ReclaimSegments(MigrateReport* report) {
  std::vector<meta::SegmentRow> empty;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto rows, meta_->ListSegments());
    for (auto& r : rows)
      if (IsPlacement(r.id) && r.state == meta::SegmentState::kLive && r.live_bytes == 0)
        empty.push_back(r);
  }
  for (const auto& r : empty) {
    {
      std::lock_guard<std::mutex> l(mu_);
      RETURN_IF_ERROR(LogSegmentStateLocked(r.id, r.tier, meta::SegmentState::kDeleting));
    }
    RETURN_IF_ERROR(SyncAndCommit());
    Status s = DeletePlacement(r.id, r.tier);
    if (!s.ok()) {
      report->errors.push_back(s.ToString());
      continue;
    }
    report->segments_deleted++;
    report->bytes_freed += r.size;
  }
  return Status::OK();
}

Result<Filesystem::CompactSet> Filesystem::CompactionCandidates(MigrateReport* report) {
  CompactSet out;
  if (config_.compact_below_pct == 0) return out;
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(auto rows, meta_->ListSegments());
  const uint64_t active = journal_->ActiveSegment();
  for (const auto& r : rows) {
    if (r.state != meta::SegmentState::kLive || r.live_bytes == 0) continue;
    // A journal segment still being written is not sealed yet; sealed ones are full.
    if (!IsPlacement(r.id) && r.id >= active) continue;
    const uint64_t size = IsPlacement(r.id) ? r.size : sb_.segment_size;
    if (r.live_bytes * 100 >= size * static_cast<uint64_t>(config_.compact_below_pct)) continue;
    const std::string tier = IsPlacement(r.id) ? r.tier : kHot;
    if (!tiers_.count(tier)) continue;  // an unconfigured tier: its data cannot be read
    out[r.id] = tier;
    report->segments_compacted++;
    if (report->dry_run) report->bytes_compacted += r.live_bytes;
  }
  return out;
}

// Journal segments that no chunk points into any more. Their metadata records are applied
// to the database; once the database file is durable past their last record (a checkpoint),
// and a snapshot of it covers them too (so that the database can still be rebuilt from a
// snapshot and the journal, DESIGN.md promise 5), recovery never needs them again.
Status Filesystem::ReclaimJournal(MigrateReport* report) {
  std::map<uint64_t, uint64_t> live;  // journal segments with chunks ever written into them
  std::vector<uint64_t> present;
  uint64_t active;
  {
    // One look under mu_: chunks are appended and applied under it, so every chunk in a
    // segment below the active one is in these rows. Sealed segments only lose live bytes
    // (new chunks go to the active one, moves to placement segments): dead now stays dead.
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto rows, meta_->ListSegments());
    for (const auto& r : rows)
      if (!IsPlacement(r.id)) live[r.id] = r.live_bytes;
    active = journal_->ActiveSegment();
    present = journal_->SegmentIds();
  }
  std::vector<uint64_t> dead, removed;
  for (uint64_t id : present) {
    auto it = live.find(id);
    if (id < active && (it == live.end() || it->second == 0)) dead.push_back(id);
  }
  // Rows of segments a crash removed before their rows went.
  for (const auto& [id, bytes] : live)
    if (id < active && bytes == 0 && !std::binary_search(present.begin(), present.end(), id))
      removed.push_back(id);
  if (dead.empty() && removed.empty()) return Status::OK();

  uint64_t durable_lsn = 0;
  if (!dead.empty()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      // The database must not run ahead of the journal: sync, commit, then checkpoint.
      RETURN_IF_ERROR(SyncAndCommitLocked());
      RETURN_IF_ERROR(meta_->Checkpoint());
      durable_lsn = meta_->applied_lsn();
    }
    KILL_POINT("reclaim.checkpointed");
    // A snapshot copies the whole database: take one only when it frees at least as much.
    ASSIGN_OR_RETURN(uint64_t snap_lsn, LatestSnapshotLsn());
    uint64_t db_bytes;
    {
      ASSIGN_OR_RETURN(auto db, env_->OpenFile(internal::MetaDbPath(config_), OpenMode::kReadOnly));
      ASSIGN_OR_RETURN(db_bytes, db->Size());
    }
    if (snap_lsn < durable_lsn && (snap_lsn == 0 || dead.size() * sb_.segment_size >= db_bytes)) {
      ASSIGN_OR_RETURN(snap_lsn, WriteMetaSnapshot());
    }
    KILL_POINT("reclaim.snapshot");
    const size_t orphans = removed.size();
    Status s = journal_->RemoveSegments(dead, std::min(durable_lsn, snap_lsn), &removed);
    KILL_POINT("reclaim.removed");
    report->journal_segments_freed += removed.size() - orphans;
    report->bytes_freed += (removed.size() - orphans) * sb_.segment_size;
    if (!s.ok()) report->errors.push_back(s.ToString());
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    // Forget their rows (live bytes 0); a crash before this leaves rows the next pass drops.
    for (uint64_t id : removed)
      if (live.count(id)) RETURN_IF_ERROR(LogSegmentStateLocked(id, "", meta::SegmentState::kGone));
  }
  return SyncAndCommit();
}

Result<uint64_t> Filesystem::LatestSnapshotLsn() {
  ASSIGN_OR_RETURN(bool exists, env_->FileExists(internal::SnapshotDir(config_)));
  if (!exists) return uint64_t{0};
  ASSIGN_OR_RETURN(auto names, env_->ListDir(internal::SnapshotDir(config_)));
  uint64_t best = 0;
  for (const auto& n : names) {
    unsigned long long lsn = 0;
    char tail = 0;
    if (n.size() == 24 && std::sscanf(n.c_str(), "meta-%16llx.d%c", &lsn, &tail) == 2 &&
        tail == 'b')
      best = std::max<uint64_t>(best, lsn);
  }
  return best;
}

Result<uint64_t> Filesystem::WriteMetaSnapshot() {
  const std::string dir = internal::SnapshotDir(config_);
  // Durable in <hot> before any journal segment the snapshot lets go is removed.
  RETURN_IF_ERROR(CreateDirDurably(env_, dir));
  const std::string tmp = JoinPath(dir, "meta.db.tmp");
  env_->RemoveFile(tmp).IgnoreError();
  // A separate connection reads the committed state: meta_ needs no lock for this.
  ASSIGN_OR_RETURN(uint64_t lsn, meta_->WriteSnapshot(tmp));
  {
    ASSIGN_OR_RETURN(auto f, env_->OpenFile(tmp, OpenMode::kReadWrite));
    RETURN_IF_ERROR(f->Sync());
  }
  const std::string name = fmt::format("meta-{:016x}.db", lsn);
  RETURN_IF_ERROR(env_->RenameFile(tmp, JoinPath(dir, name)));
  RETURN_IF_ERROR(env_->SyncDir(dir));
  // Keep the newest two.
  ASSIGN_OR_RETURN(auto names, env_->ListDir(dir));
  std::vector<std::string> snaps;
  for (const auto& n : names)
    if (n.size() == 24 && n.starts_with("meta-") && n.ends_with(".db")) snaps.push_back(n);
  std::sort(snaps.begin(), snaps.end());
  for (size_t i = 0; i + 2 < snaps.size(); i++)
    env_->RemoveFile(JoinPath(dir, snaps[i])).IgnoreError();
  log::Info("filesystem {}: metadata snapshot {} (LSN {})", sb_.name, name, lsn);
  return lsn;
}

}  // namespace strata::fs
