// The tiering engine: tiers, placement segments, migration passes and the background loop.
// The protocol and its crash guarantees are in fs/tiering.h and docs/tiering.md; reads of
// cold data are in fs/cold_read.cc, freeing space in fs/reclaim.cc, the reports in
// fs/tiering_report.cc.
#include "fs/tiering.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "base/kill_point.h"
#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/chunk_cache.h"
#include "fs/filesystem.h"
#include "fs/read_cache.h"
#include "fs/records.h"
#include "fs/tiering_internal.h"
#include "fs/worker_pool.h"
#include "journal/journal.h"
#include "journal/placement.h"
#include "meta/meta_store.h"
#include "meta/ops.h"
#include "tiering/directory_tier.h"
#include "tiering/policy.h"
#include "tiering/s3_tier.h"

namespace strata::fs {
namespace {

using internal::HotSegmentsDir;
using internal::IsPlacement;
using internal::kHot;
using internal::ReadCacheDir;
using internal::StagingDir;

Result<std::unique_ptr<tiering::Tier>> OpenColdTier(const TierConfig& t, Env* env,
                                                    const std::string& source) {
  if (t.kind == "directory") return tiering::OpenDirectoryTier(env, {t.name, t.path});
  tiering::S3Options o;
  o.name = t.name;
  o.endpoint = t.endpoint;
  o.region = t.region;
  o.bucket = t.bucket;
  o.prefix = t.prefix;
  o.storage_class = t.storage_class;
  o.ca_file = t.ca_file;
  o.verify_tls = t.verify_tls;
  o.path_style = t.path_style;
  o.connect_timeout_ms = t.connect_timeout_ms;
  o.request_timeout_ms = t.request_timeout_ms;
  auto creds = t.credentials_file.empty()
                   ? tiering::S3CredentialsFromEnvironment()
                   : tiering::LoadS3CredentialsFile(t.credentials_file, t.profile);
  if (!creds.ok())
    return creds.status().WithContext(
        fmt::format("{}:{}: [tiers.{}] credentials", source, t.line, t.name));
  o.credentials = std::move(creds).value();
  return tiering::OpenS3Tier(o);
}

}  // namespace

// A placement segment being filled for one tier during a pass.
struct Filesystem::Builder {
  std::string tier;
  std::unique_ptr<journal::SegmentBuilder> seg;
  std::vector<meta::MoveEntry> entries;
  uint64_t finished = 0;  // segments completed (uploaded, verified, moved)
  // Files and stored bytes the policy moves, in the segment being built and in completed
  // ones; and bytes rewritten by compaction (chunks staying on their tier).
  std::set<uint64_t> pending_files, moved_files;
  uint64_t pending_bytes = 0, moved_bytes = 0;
  uint64_t pending_compacted = 0, compacted = 0;
};

std::string Filesystem::SegmentKey(uint64_t segment) const {
  std::string uuid;
  for (unsigned char b : sb_.uuid) uuid += fmt::format("{:02x}", b);
  return fmt::format("{}/{:03x}/{:016x}.seg", uuid, (segment >> 8) & 0xfff, segment);
}

Status Filesystem::OpenTiers() {
  for (const TierConfig& t : config_.tiers) {
    ASSIGN_OR_RETURN(auto tier, OpenColdTier(t, env_, config_.source));
    tiers_[t.name] = std::move(tier);
  }
  ASSIGN_OR_RETURN(tiers_[kHot], tiering::OpenDirectoryTier(env_, {kHot, HotSegmentsDir(config_)}));
  ASSIGN_OR_RETURN(auto segments, meta_->ListSegments());
  for (const auto& s : segments) {
    if (!IsPlacement(s.id)) continue;
    placement_[s.id] = Placed{s.tier, s.size};
    if (!tiers_.count(s.tier))
      log::Error(
          "filesystem {}: segment {:x} is on tier '{}', which {} does not declare: its files "
          "read as EIO until the tier is configured again",
          sb_.name, s.id, s.tier, config_.source);
  }
  // A read-only open writes nothing on the hot tier, not even cache entries.
  read_cache_ = std::make_unique<ReadCache>(env_, ReadCacheDir(config_),
                                            read_only_ ? 0 : config_.read_cache_bytes);
  if (!read_only_) {
    RETURN_IF_ERROR(CreateDirDurably(env_, HotSegmentsDir(config_)));
    RETURN_IF_ERROR(CreateDirDurably(env_, StagingDir(config_)));
    // Staging files of a pass a crash interrupted: their intents roll back at the next pass.
    ASSIGN_OR_RETURN(auto staged, env_->ListDir(StagingDir(config_)));
    for (const auto& n : staged) env_->RemoveFile(JoinPath(StagingDir(config_), n)).IgnoreError();
    RETURN_IF_ERROR(read_cache_->Open());
  }
  return Status::OK();
}

std::string Filesystem::TierOfLocked(uint64_t segment) const {
  if (!IsPlacement(segment)) return std::string();
  auto it = placement_.find(segment);
  return it == placement_.end() ? std::string("?") : it->second.tier;
}

bool Filesystem::OnColdTierLocked(uint64_t segment) const {
  return IsPlacement(segment) && TierOfLocked(segment) != kHot;
}

// --- migration -----------------------------------------------------------------------------

Result<std::shared_ptr<const tiering::Policy>> Filesystem::CurrentPolicy(bool reload) {
  std::lock_guard<std::mutex> l(tiering_mu_);
  if (config_.policy_file.empty()) return std::make_shared<const tiering::Policy>();
  if (reload || policy_ == nullptr) {
    auto p = tiering::Policy::Load(config_.policy_file, config_.TierNames(), env_);
    if (!p.ok()) {
      policy_error_ = p.status().message();
      if (policy_ == nullptr) return p.status();
      log::Error("filesystem {}: policy not reloaded, the previous one stays in force: {}",
                 sb_.name, p.status().message());
      return p.status();
    }
    policy_error_.clear();
    policy_ = std::make_shared<const tiering::Policy>(std::move(p).value());
  }
  return policy_;
}

Result<MigrateReport> Filesystem::Migrate(const MigrateOptions& options) {
  if (read_only_ && !options.dry_run) return Status::Posix(EROFS, "read-only filesystem");
  std::lock_guard<std::mutex> pass(migrate_mu_);
  if (stopping_tiering_.load()) return Status::Aborted("the filesystem is being unmounted");
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    status_.pass_running = true;
    status_.progress = MigrateProgress{};
  }
  auto r = MigrateLocked(options);
  std::lock_guard<std::mutex> l(tiering_mu_);
  status_.pass_running = false;
  // A reclaim at the reserve says nothing of the policy's backlog: the last real pass stands.
  if (options.reclaim_only) return r;
  status_.last_pass_end_ns = Now();
  if (r.ok()) {
    const MigrateReport& rep = *r;
    uint64_t files = 0, bytes = 0;  // selected by the policy and not on their tier yet
    for (const auto& rc : rep.rules) {
      files += rc.files;
      bytes += rc.bytes;
    }
    status_.backlog_files = files - std::min(files, rep.files_moved);
    status_.backlog_bytes = bytes - std::min(bytes, rep.bytes_moved);
    status_.last_pass_result =
        rep.errors.empty()
            ? fmt::format("ok: {} {} files ({} bytes)", rep.dry_run ? "would move" : "moved",
                          rep.dry_run ? files : rep.files_moved,
                          rep.dry_run ? bytes : rep.bytes_moved)
            : "incomplete: " + rep.errors.front();
  } else {
    status_.last_pass_result = "failed: " + r.status().ToString();
  }
  return r;
}

Result<MigrateReport> Filesystem::MigrateLocked(const MigrateOptions& o) {
  const int64_t start = Now();
  const int64_t now = o.now_ns != 0 ? o.now_ns : start;
  // A reclaim needs no policy: a broken policy file must not keep a full disk full.
  std::shared_ptr<const tiering::Policy> policy = std::make_shared<const tiering::Policy>();
  if (!o.reclaim_only) {
    ASSIGN_OR_RETURN(policy, CurrentPolicy(/*reload=*/true));
  }
  MigrateReport report;
  report.dry_run = o.dry_run;
  for (const auto& rule : policy->rules()) report.rules.push_back({rule.name, rule.to, 0, 0});
  MigrateProgress progress;
  int64_t last_progress = 0;
  auto tick = [&](const char* phase, bool force) {
    progress.phase = phase;
    {
      std::lock_guard<std::mutex> l(tiering_mu_);
      status_.progress = progress;
    }
    int64_t t = Now();
    if (o.progress && (force || t - last_progress > 250'000'000)) {
      last_progress = t;
      o.progress(progress);
    }
  };
  if (!o.dry_run) {
    tick("recovering", true);
    RETURN_IF_ERROR(RecoverPlacements(&report));
  }
  tick("scanning", true);
  CompactSet compact;
  if (!o.reclaim_only) {
    ASSIGN_OR_RETURN(compact, CompactionCandidates(&report));
  }

  Builders builders;
  struct Dir {
    uint64_t ino;
    std::string path;
  };
  std::vector<Dir> stack{{kRootIno, ""}};
  // With no rule and nothing to compact there is nothing to look for.
  if (policy->rules().empty() && compact.empty()) stack.clear();
  bool stop = false;
  while (!stack.empty() && !stop) {
    Dir d = std::move(stack.back());
    stack.pop_back();
    std::vector<Dir> subdirs;
    uint64_t after = 0;
    for (;;) {
      struct Item {
        meta::EntryRow e;
        meta::InodeRow inode;
        std::vector<meta::ChunkRow> chunks;
      };
      std::vector<Item> items;
      {
        std::lock_guard<std::mutex> l(mu_);
        ASSIGN_OR_RETURN(auto entries, meta_->ListEntries(d.ino, after, 256));
        for (auto& e : entries) {
          after = e.cookie;
          Item it;
          it.e = std::move(e);
          if (S_ISREG(it.e.mode)) {
            ASSIGN_OR_RETURN(auto inode, meta_->GetInode(it.e.ino));
            if (!inode) continue;
            it.inode = std::move(*inode);
            ASSIGN_OR_RETURN(it.chunks, StoredRecordsLocked(it.e.ino));
          } else if (!S_ISDIR(it.e.mode)) {
            continue;
          }
          items.push_back(std::move(it));
        }
        if (entries.empty()) break;
      }
      for (auto& it : items) {
        // Unmounting, or the caller gave up: stop at this file (what moved stays moved).
        if (stopping_tiering_.load() || (o.cancel != nullptr && o.cancel->load())) {
          stop = true;
          break;
        }
        std::string name;
        Status s = keys_->names().Decrypt(d.ino, it.e.name, &name);
        if (!s.ok()) {
          log::Alert("filesystem {}: a name in directory {} failed its integrity check", sb_.name,
                     d.ino);
          report.errors.push_back(fmt::format("directory {}: {}", d.ino, s.message()));
          continue;
        }
        std::string path = d.path.empty() ? name : d.path + "/" + name;
        if (S_ISDIR(it.e.mode)) {
          subdirs.push_back({it.e.ino, std::move(path)});
          continue;
        }
        ++report.files_scanned;
        ++progress.files_scanned;
        std::map<std::string, uint64_t> by_tier;
        bool compacting = false;  // some of its chunks are in a segment being compacted
        tiering::FileFacts facts;
        {
          std::lock_guard<std::mutex> l(mu_);
          facts = FactsLocked(it.inode, path, it.chunks, &by_tier);
          for (const auto& c : it.chunks) compacting = compacting || compact.count(c.segment);
        }
        const uint64_t ino = it.e.ino;
        std::string to;  // where the policy wants it, if it is not all there yet
        if (const tiering::Rule* rule = policy->Match(facts, now)) {
          uint64_t off_target = 0;
          for (const auto& [t, b] : by_tier)
            if (t != rule->to) off_target += b;
          if (off_target != 0) {
            size_t ri = static_cast<size_t>(rule - policy->rules().data());
            report.rules[ri].files++;
            report.rules[ri].bytes += off_target;
            to = rule->to;
          }
        }
        if (!to.empty() && !o.dry_run) {
          std::lock_guard<std::mutex> l(mu_);
          auto open = open_.find(ino);
          if (open != open_.end() && open->second->writers > 0) {
            ++report.files_busy;
            to.clear();  // its chunks in a segment being compacted still move
          }
        }
        if (to.empty() && !compacting) continue;
        if (o.dry_run) {
          tick("scanning", false);
          continue;
        }
        s = MoveChunksOf(ino, to, &compact, &builders);
        if (!s.ok()) {
          report.errors.push_back(s.ToString());
          log::Error("filesystem {}: migration pass stopped: {}", sb_.name, s.ToString());
          stop = true;
          break;
        }
        progress.files_moved = progress.bytes_moved = 0;
        for (const auto& [t, b] : builders) {
          progress.files_moved += b->moved_files.size();
          progress.bytes_moved += b->moved_bytes;
        }
        tick("uploading", false);
      }
      if (stop) break;
    }
    // Depth-first, in entry order: the files of one study and series stay together.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
  }
  for (auto& [t, b] : builders) {
    if (b->seg != nullptr) {
      Status s = FinishBuilder(b.get());
      if (!s.ok()) report.errors.push_back(s.ToString());
    }
    report.segments_written += b->finished;
    report.files_moved += b->moved_files.size();
    report.bytes_moved += b->moved_bytes;
    report.bytes_compacted += b->compacted;
  }
  if (!o.dry_run) {
    tick("compacting", true);
    Status s = ReclaimSegments(&report);
    if (s.ok()) s = ReclaimJournal(&report);
    if (!s.ok()) report.errors.push_back(s.ToString());
  }
  progress.segments_written = report.segments_written;
  progress.files_moved = report.files_moved;
  progress.bytes_moved = report.bytes_moved;
  tick("done", true);
  report.elapsed_ms = (Now() - start) / 1'000'000;
  return report;
}

Result<std::vector<meta::ChunkRow>> Filesystem::StoredRecordsLocked(uint64_t ino) {
  ASSIGN_OR_RETURN(auto rows, meta_->ListChunks(ino));
  bool patched = false;
  for (const auto& c : rows) patched = patched || c.patches > 0;
  if (patched) {
    ASSIGN_OR_RETURN(auto patches, meta_->ListPatches(ino));
    rows.insert(rows.end(), patches.begin(), patches.end());
  }
  return rows;
}

tiering::FileFacts Filesystem::FactsLocked(const meta::InodeRow& inode, const std::string& path,
                                           const std::vector<meta::ChunkRow>& chunks,
                                           std::map<std::string, uint64_t>* by_tier) {
  for (const auto& c : chunks) {
    std::string t = TierOfLocked(c.segment);
    (*by_tier)[t.empty() ? kHot : t] += c.stored_len;
  }
  tiering::FileFacts facts;
  // Where the file is now: the tier holding most of its stored bytes.
  facts.tier = kHot;
  uint64_t most = 0;
  for (const auto& [t, b] : *by_tier)
    if (b > most) most = b, facts.tier = t;
  facts.path = path;
  facts.size = inode.size;
  facts.mtime_ns = inode.mtime;
  facts.ctime_ns = inode.ctime;
  facts.btime_ns = inode.btime;
  facts.atime_ns = inode.atime;
  const uint64_t ino = inode.ino;
  facts.xattr = [this, ino](std::string_view n) -> std::optional<std::string> {
    std::lock_guard<std::mutex> l(mu_);
    auto v = GetXattrLocked(ino, std::string(n));
    return v.ok() ? *v : std::nullopt;
  };
  return facts;
}

// --- recall on read ------------------------------------------------------------------------

void Filesystem::MaybeQueueRecallLocked(uint64_t ino, int64_t atime_before) {
  if (!recall_running_.load()) return;
  std::optional<std::string> path = PathOfLocked(ino);
  if (!path) return;  // not reached through a path the kernel knows: the policy cannot say
  std::lock_guard<std::mutex> l(tiering_mu_);
  if (recalls_.size() >= kMaxRecallQueue || !recalls_queued_.insert(ino).second) return;
  recalls_.push_back({ino, std::move(*path), atime_before});
  recall_cv_.notify_one();
}

void Filesystem::RecallLoop() {
  std::unique_lock<std::mutex> l(tiering_mu_);
  for (;;) {
    recall_cv_.wait(l, [&] { return tiering_stop_ || !recalls_.empty(); });
    if (tiering_stop_) return;
    RecallCandidate c = std::move(recalls_.front());
    recalls_.pop_front();
    l.unlock();
    Status s = RecallIfPolicySays(c);
    if (!s.ok())
      log::Warn("filesystem {}: recall of inode {} on read: {}", sb_.name, c.ino, s.ToString());
    l.lock();
    recalls_queued_.erase(c.ino);
  }
}

Status Filesystem::RecallIfPolicySays(const RecallCandidate& c) {
  ASSIGN_OR_RETURN(auto policy, CurrentPolicy(/*reload=*/false));
  bool any = false;
  for (const auto& r : policy->rules()) any = any || r.recall_on_read;
  if (!any) return Status::OK();
  tiering::FileFacts facts;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(auto inode, meta_->GetInode(c.ino));
    if (!inode || inode->nlink == 0) return Status::OK();
    ASSIGN_OR_RETURN(auto chunks, StoredRecordsLocked(c.ino));
    std::map<std::string, uint64_t> by_tier;
    facts = FactsLocked(*inode, c.path, chunks, &by_tier);
  }
  // As the file was before this read: the read itself made it "recently accessed".
  facts.atime_ns = c.atime_before;
  if (!policy->ShouldRecall(facts, Now())) return Status::OK();
  RETURN_IF_ERROR(MoveFile(c.ino, kHot));
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    status_.files_recalled++;
  }
  log::Info("filesystem {}: inode {} recalled to the hot tier on read", sb_.name, c.ino);
  return Status::OK();
}

Status Filesystem::MoveFile(uint64_t ino, const std::string& tier) {
  if (tier != kHot && !tiers_.count(tier))
    return Status::InvalidArgument("no tier named '" + tier + "'");
  std::lock_guard<std::mutex> pass(migrate_mu_);
  if (stopping_tiering_.load()) return Status::Aborted("the filesystem is being unmounted");
  Builders builders;
  Status s = MoveChunksOf(ino, tier, nullptr, &builders);
  for (auto& [t, b] : builders) {
    if (b->seg == nullptr) continue;
    Status f = FinishBuilder(b.get());
    if (s.ok()) s = f;
  }
  return s;
}

Status Filesystem::MoveChunksOf(uint64_t ino, const std::string& to, CompactSet* compact,
                                Builders* builders) {
  struct Move {
    meta::ChunkRow c;
    std::string dest;
    bool compaction;  // stays on its tier, in a new segment
  };
  std::vector<Move> moves;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Patches move with their chunks, as they are (a patch over a chunk on another tier reads
    // as well, but a file is on a tier with all its records).
    ASSIGN_OR_RETURN(auto chunks, StoredRecordsLocked(ino));
    for (auto& c : chunks) {
      std::string cur = TierOfLocked(c.segment);
      if (cur.empty()) cur = kHot;
      if (!to.empty() && cur != to)
        moves.push_back({std::move(c), to, false});
      else if (compact != nullptr && compact->count(c.segment))
        moves.push_back({std::move(c), cur, true});
    }
  }
  for (const auto& [c, dest, compaction] : moves) {
    std::string payload;
    Status s = ReadChunkPayload(ino, c, true, nullptr, &payload);
    if (s.ok()) {
      // Never copy damage to a new tier: check the tag now (the copy keeps the same bytes).
      ChunkHeader expect, got;
      expect.ino = ino;
      expect.index = c.index;
      expect.version = c.version;
      std::string body;
      s = codec_->OpenChunk(payload, expect, &got, &body);
    }
    if (!s.ok()) {
      if (s.IsCorruption()) {
        log::Alert("filesystem {}: inode {} chunk {} failed its integrity check; not migrated",
                   sb_.name, ino, c.index);
        continue;  // the file stays readable where it is (and reports EIO for that chunk)
      }
      if (compaction && s.IsUnavailable()) {
        // A tier that is down holds up its own compaction only, not the rest of the pass.
        log::Warn("filesystem {}: compaction on tier {} waits: {}", sb_.name, dest, s.ToString());
        std::erase_if(*compact, [&](const auto& e) { return e.second == dest; });
        continue;
      }
      return s.WithContext(fmt::format("reading inode {} chunk {}", ino, c.index));
    }
    RETURN_IF_ERROR(AddToBuilder(dest, ino, c, payload, compaction, builders));
  }
  return Status::OK();
}

Status Filesystem::AddToBuilder(const std::string& tier, uint64_t ino, const meta::ChunkRow& c,
                                std::string_view payload, bool compaction, Builders* builders) {
  auto& b = (*builders)[tier];
  if (b == nullptr) {
    b = std::make_unique<Builder>();
    b->tier = tier;
  }
  const uint64_t need = 2 * journal::kRecordHeaderBytes + payload.size();
  if (b->seg != nullptr && b->seg->size() + need > sb_.segment_size)
    RETURN_IF_ERROR(FinishBuilder(b.get()));
  if (b->seg == nullptr) {
    // Step 1: the intent, durable before any byte of the segment can exist on the tier.
    uint64_t id;
    {
      std::lock_guard<std::mutex> l(mu_);
      id = meta_->next_placement_segment();
      RETURN_IF_ERROR(LogSegmentStateLocked(id, tier, meta::SegmentState::kUploading));
    }
    RETURN_IF_ERROR(SyncAndCommit());
    KILL_POINT("migrate.intent");
    ASSIGN_OR_RETURN(
        b->seg, journal::SegmentBuilder::Create(
                    env_, JoinPath(StagingDir(config_), fmt::format("{:016x}.seg", id)), sb_.uuid,
                    id, Now()));
    b->entries.clear();
  }
  journal::Location loc;
  RETURN_IF_ERROR(b->seg->Add(payload, &loc));
  b->entries.push_back({ino, c.index, c.version, loc.offset, c.stored_len});
  if (compaction) {
    b->pending_compacted += c.stored_len;
  } else {
    b->pending_files.insert(ino);
    b->pending_bytes += c.stored_len;
  }
  return Status::OK();
}

Status Filesystem::FinishBuilder(Builder* b) {
  std::unique_ptr<journal::SegmentBuilder> seg = std::move(b->seg);
  const uint64_t id = seg->id();
  const std::string key = SegmentKey(id);
  tiering::Tier* tier = tiers_.at(b->tier).get();
  bool move_logged = false;  // the kMoveChunks record may be in the journal
  Status s = [&]() -> Status {
    // Step 2: the segment, complete and durable locally.
    ASSIGN_OR_RETURN(uint64_t size, seg->Finish());
    KILL_POINT("migrate.built");
    // Step 3: upload.
    RETURN_IF_ERROR(tier->PutFile(key, seg->path()));
    KILL_POINT("migrate.uploaded");
    // Step 4: read the stored copy back and compare it with what was written.
    std::string stored;
    RETURN_IF_ERROR(tier->Get(key, 0, size, &stored));
    ASSIGN_OR_RETURN(std::string local, ReadWholeFile(env_, seg->path()));
    if (stored != local)
      return Status::Corruption(fmt::format(
          "tier {}: segment {:x} read back differs from what was uploaded", b->tier, id));
    RETURN_IF_ERROR(journal::VerifyPlacementSegment(stored, sb_.uuid, id));
    KILL_POINT("migrate.verified");
    // Step 5: the move, applied chunk by chunk only where the chunk is unchanged.
    {
      std::lock_guard<std::mutex> l(mu_);
      meta::Op op;
      op.kind = meta::OpKind::kMoveChunks;
      op.segment = id;
      op.size = size;
      op.blob = meta::EncodeMoveEntries(b->entries);
      move_logged = true;
      RETURN_IF_ERROR(LogLocked(op));
      placement_[id].size = size;
    }
    RETURN_IF_ERROR(SyncAndCommit());
    KILL_POINT("migrate.moved");
    b->finished++;
    b->moved_files.insert(b->pending_files.begin(), b->pending_files.end());
    b->moved_bytes += b->pending_bytes;
    b->compacted += b->pending_compacted;
    return Status::OK();
  }();
  const std::string path = seg->path();
  seg.reset();
  env_->RemoveFile(path).IgnoreError();  // step 6 (a leftover is removed at the next open)
  b->entries.clear();
  b->pending_files.clear();
  b->pending_bytes = b->pending_compacted = 0;
  if (!s.ok() && move_logged) {
    // The move may be durable although its commit failed (a full disk under the database, a
    // journal sync error after the write): a replay would point the files at this segment. It
    // stays; the next pass, after the remount's replay, deletes it only if no chunk points at
    // it (RecoverPlacements).
    log::Error("filesystem {}: segment {:x} on tier {} kept for the next pass to settle: {}",
               sb_.name, id, b->tier, s.ToString());
    return s.WithContext(fmt::format("migrating to tier {}", b->tier));
  }
  if (!s.ok()) {
    // Roll back now if the tier lets us; otherwise the intent stays and the next pass does it.
    Status d = DeletePlacement(id, b->tier);
    if (!d.ok())
      log::Warn("filesystem {}: segment {:x} on tier {} stays pending rollback: {}", sb_.name, id,
                b->tier, d.ToString());
    return s.WithContext(fmt::format("migrating to tier {}", b->tier));
  }
  return Status::OK();
}

Status Filesystem::LogSegmentStateLocked(uint64_t segment, const std::string& tier,
                                         meta::SegmentState state) {
  meta::Op op;
  op.kind = meta::OpKind::kSegmentState;
  op.segment = segment;
  op.name = tier;
  op.flags = static_cast<uint32_t>(state);
  RETURN_IF_ERROR(LogLocked(op));
  if (state == meta::SegmentState::kGone)
    placement_.erase(segment);
  else
    placement_[segment].tier = tier;
  return Status::OK();
}

// --- status and the background loop --------------------------------------------------------

TieringStatus Filesystem::GetTieringStatus() {
  TieringStatus st;
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    st = status_;
    st.policy_error = policy_error_;
  }
  st.policy_file = config_.policy_file;
  std::map<std::string, TierUsage> usage;
  usage[kHot] = TierUsage{kHot, "hot", 0, 0, 0};
  for (const auto& t : config_.tiers) usage[t.name] = TierUsage{t.name, t.kind, 0, 0, 0};
  {
    std::lock_guard<std::mutex> l(mu_);
    if (meta_ == nullptr) return st;  // unmounted meanwhile (a late status request)
    auto rows = meta_->ListSegments();
    if (rows.ok()) {
      for (const auto& r : *rows) {
        std::string t = r.tier.empty() ? kHot : r.tier;
        auto& u = usage[t];
        if (u.name.empty()) u.name = t, u.kind = "unconfigured";
        u.segments++;
        u.live_bytes += r.live_bytes;
        u.object_bytes += r.size;
      }
    }
  }
  for (const auto& t : config_.TierNames()) st.tiers.push_back(usage[t]);
  for (auto& [n, u] : usage)
    if (u.kind == "unconfigured") st.tiers.push_back(u);
  st.read_cache_bytes = read_cache_ ? read_cache_->bytes() : 0;
  st.read_cache_hits = read_cache_ ? read_cache_->hits() : 0;
  st.cold_fetches = cold_fetches_;
  return st;
}

void Filesystem::StartTiering() {
  unsigned n = static_cast<unsigned>(config_.cold_readers);
  // Reads that wait on a cold tier run below the FUSE workers serving hot data, so a burst of
  // cold reads (decryption, decompression, HTTP) takes the CPU that hot reads leave.
  cold_readers_ = std::make_unique<WorkerPool>(n, kColdReadNice);
  for (const auto& t : config_.tiers)
    fetchers_[t.name] =
        std::make_unique<WorkerPool>(static_cast<unsigned>(t.concurrent_fetches), kColdReadNice);
  if (read_only_ || !background_tiering_) return;
  if (!config_.policy_file.empty()) {
    recall_running_ = true;
    recaller_ = std::thread([this] { RecallLoop(); });
  }
  // Without a policy file passes still compact and free segments.
  if (config_.policy_interval_ms != 0) tierer_ = std::thread([this] { TieringLoop(); });
}

void Filesystem::StopTiering() {
  stopping_tiering_ = true;  // a pass in flight stops at its next file
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    tiering_stop_ = true;
  }
  tiering_cv_.notify_all();
  recall_running_ = false;
  recall_cv_.notify_all();
  if (tierer_.joinable()) tierer_.join();
  if (recaller_.joinable()) recaller_.join();
  // A pass started by `strata migrate` through the control socket runs on its own thread:
  // wait for it to wind down before the caller closes the journal and the database.
  { std::lock_guard<std::mutex> pass(migrate_mu_); }
  cold_readers_.reset();
  fetchers_.clear();
}

void Filesystem::KickTiering() {
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    tiering_kick_ = true;
  }
  tiering_cv_.notify_all();
}

void Filesystem::TieringLoop() {
  // The schedule runs on the steady clock: a step of the wall clock moves no pass.
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::milliseconds(config_.policy_interval_ms);
  const auto gap = std::chrono::milliseconds(kKickedPassGapMs);
  auto next_full = Clock::now() + interval;
  auto next_kicked = Clock::now();  // the earliest time a kick may run a reclaim
  std::unique_lock<std::mutex> l(tiering_mu_);
  for (;;) {
    tiering_cv_.wait_until(l, next_full, [&] { return tiering_stop_ || tiering_kick_; });
    if (tiering_stop_) return;
    const bool full = Clock::now() >= next_full;
    if (!full) {
      if (!tiering_kick_) continue;
      // Kicks come with every refused write: one reclaim per gap is enough.
      if (tiering_cv_.wait_until(l, std::min(next_kicked, next_full),
                                 [&] { return tiering_stop_; }))
        return;
    }
    tiering_kick_ = false;
    l.unlock();
    // A kicked pass only frees (a policy pass may move for hours before it frees anything);
    // the scheduled passes keep their schedule.
    MigrateOptions options;
    options.reclaim_only = !full;
    auto r = Migrate(options);
    // A tier that is down pauses migration; retry sooner than the schedule so it resumes by
    // itself when the tier returns. A reclaim that failed waits a minute, not the gap.
    const bool retry = !r.ok() || !r->errors.empty();
    if (full)
      next_full =
          Clock::now() + (retry ? std::min<Clock::duration>(interval, std::chrono::minutes(1))
                                : Clock::duration(interval));
    else
      next_kicked = Clock::now() + (retry ? Clock::duration(std::chrono::minutes(1)) : gap);
    if (!r.ok())
      log::Error("filesystem {}: background {}: {}", sb_.name, full ? "migration" : "reclaim",
                 r.status().ToString());
    else if (r->files_moved > 0 || !r->errors.empty())
      log::Info("filesystem {}: background migration moved {} files ({} bytes){}", sb_.name,
                r->files_moved, r->bytes_moved,
                r->errors.empty() ? "" : "; incomplete: " + r->errors.front());
    l.lock();
  }
}

}  // namespace strata::fs
