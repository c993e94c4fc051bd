// The tiering engine: tiers, placement segments, migration passes, cold reads and the read
// cache. The protocol and its crash guarantees are in fs/tiering.h and docs/tiering.md.
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

constexpr uint64_t kPrefetchBytes = 1 << 20;  // one cold fetch covers up to this much of a file
constexpr const char* kHot = "hot";

std::string StagingDir(const Config& c) { return JoinPath(c.hot_path, "staging"); }
std::string HotSegmentsDir(const Config& c) { return JoinPath(c.hot_path, "segments"); }
std::string ReadCacheDir(const Config& c) { return JoinPath(c.hot_path, "cache"); }

bool IsPlacement(uint64_t segment) { return segment >= journal::kFirstPlacementSegment; }

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

// One cold fetch in flight: a byte range of one segment, shared by every reader that needs a
// record inside it. Waiters give up at their tier's read timeout; the fetch itself may go on.
struct Filesystem::Fetch {
  uint64_t begin = 0, end = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
  std::string bytes;  // [begin, end) of the segment
};

// A placement segment being filled for one tier during a pass.
struct Filesystem::Builder {
  std::string tier;
  std::unique_ptr<journal::SegmentBuilder> seg;
  std::vector<meta::MoveEntry> entries;
  uint64_t finished = 0;  // segments completed (uploaded, verified, moved)
  // Files and stored bytes in the segment being built, and in completed ones.
  std::set<uint64_t> pending_files, moved_files;
  uint64_t pending_bytes = 0, moved_bytes = 0;
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
    placement_[s.id] = s.tier;
    if (!tiers_.count(s.tier))
      log::Error(
          "filesystem {}: segment {:x} is on tier '{}', which {} does not declare: its files "
          "read as EIO until the tier is configured again",
          sb_.name, s.id, s.tier, config_.source);
  }
  read_cache_ = std::make_unique<ReadCache>(env_, ReadCacheDir(config_), config_.read_cache_bytes);
  if (!read_only_) {
    RETURN_IF_ERROR(env_->CreateDir(HotSegmentsDir(config_)));
    RETURN_IF_ERROR(env_->CreateDir(StagingDir(config_)));
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
  return it == placement_.end() ? std::string("?") : it->second;
}

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
  if (auto hit = read_cache_->Get(c.segment, c.offset)) {
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
  const uint64_t need_begin = c.offset;
  const uint64_t need_end = c.offset + journal::kRecordHeaderBytes + c.stored_len;
  tiering::Tier* tier = tiers_.at(tier_name).get();
  const TierConfig* tc = config_.FindTier(tier_name);
  const int64_t timeout_ms = tc ? tc->read_timeout_ms : 30000;

  std::shared_ptr<Fetch> f;
  bool start = false;
  {
    std::lock_guard<std::mutex> l(fetch_mu_);
    for (const auto& in : fetches_[c.segment])
      if (in->begin <= need_begin && need_end <= in->end) f = in;
    if (f == nullptr) {
      // Prefetch: the chunks of this file that follow this one in the same segment, so one
      // ranged read brings a whole small file (a DICOM instance) in.
      f = std::make_shared<Fetch>();
      f->begin = need_begin;
      f->end = need_end;
      std::vector<meta::ChunkRow> rest;
      {
        std::lock_guard<std::mutex> ml(mu_);
        auto chunks = meta_->ListChunks(ino);
        if (chunks.ok()) rest = std::move(chunks).value();
      }
      for (const auto& r : rest) {
        if (r.index <= c.index || r.segment != c.segment) continue;
        if (r.offset != f->end) break;
        uint64_t end = r.offset + journal::kRecordHeaderBytes + r.stored_len;
        if (end - f->begin > kPrefetchBytes) break;
        f->end = end;
      }
      fetches_[c.segment].push_back(f);
      start = true;
    }
  }
  if (start) {
    ++cold_fetches_;
    auto job = [this, tier, f, segment = c.segment, ino] {
      std::string bytes;
      Status s = tier->Get(SegmentKey(segment), f->begin, f->end - f->begin, &bytes);
      if (s.ok()) {
        // Keep every record of the range on the hot tier for the reads that follow.
        std::vector<meta::ChunkRow> rows;
        {
          std::lock_guard<std::mutex> ml(mu_);
          auto chunks = meta_->ListChunks(ino);
          if (chunks.ok()) rows = std::move(chunks).value();
        }
        for (const auto& r : rows) {
          if (r.segment != segment || r.offset < f->begin) continue;
          uint64_t end = r.offset + journal::kRecordHeaderBytes + r.stored_len;
          if (end > f->end) continue;
          read_cache_->Put(segment, r.offset,
                           std::string_view(bytes).substr(r.offset - f->begin, end - r.offset));
        }
      } else {
        log::Error("filesystem {}: read of inode {} from {}: {}", sb_.name, ino, tier->name(),
                   s.ToString());
      }
      {
        std::lock_guard<std::mutex> l(f->mu);
        f->status = s;
        f->bytes = std::move(bytes);
        f->done = true;
      }
      f->cv.notify_all();
      std::lock_guard<std::mutex> l(fetch_mu_);
      auto& v = fetches_[segment];
      v.erase(std::remove(v.begin(), v.end(), f), v.end());
      if (v.empty()) fetches_.erase(segment);
    };
    if (fetchers_ != nullptr)
      fetchers_->Submit(std::move(job));
    else
      job();
  }
  std::unique_lock<std::mutex> l(f->mu);
  if (!f->cv.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return f->done; })) {
    return Status::Unavailable(fmt::format(
        "tier {}: no answer within {} ms reading segment {:x} (read_timeout in [tiers.{}])",
        tier_name, timeout_ms, c.segment, tier_name));
  }
  if (!f->status.ok()) return f->status;
  record->assign(f->bytes, need_begin - f->begin, need_end - need_begin);
  return Status::OK();
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
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    status_.pass_running = true;
    status_.progress = MigrateProgress{};
  }
  auto r = MigrateLocked(options);
  std::lock_guard<std::mutex> l(tiering_mu_);
  status_.pass_running = false;
  status_.last_pass_end_ns = Now();
  if (r.ok()) {
    const MigrateReport& rep = *r;
    if (rep.dry_run) {
      status_.backlog_files = status_.backlog_bytes = 0;
      for (const auto& rc : rep.rules) {
        status_.backlog_files += rc.files;
        status_.backlog_bytes += rc.bytes;
      }
    } else {
      uint64_t selected_files = 0, selected_bytes = 0;
      for (const auto& rc : rep.rules) {
        selected_files += rc.files;
        selected_bytes += rc.bytes;
      }
      status_.backlog_files = selected_files - std::min(selected_files, rep.files_moved);
      status_.backlog_bytes = selected_bytes - std::min(selected_bytes, rep.bytes_moved);
    }
    status_.last_pass_result =
        rep.errors.empty()
            ? fmt::format("ok: {} {} files ({} bytes)", rep.dry_run ? "would move" : "moved",
                          rep.dry_run ? status_.backlog_files : rep.files_moved,
                          rep.dry_run ? status_.backlog_bytes : rep.bytes_moved)
            : "incomplete: " + rep.errors.front();
  } else {
    status_.last_pass_result = "failed: " + r.status().ToString();
  }
  return r;
}

Result<MigrateReport> Filesystem::MigrateLocked(const MigrateOptions& o) {
  const int64_t start = Now();
  const int64_t now = o.now_ns != 0 ? o.now_ns : start;
  ASSIGN_OR_RETURN(auto policy, CurrentPolicy(/*reload=*/true));
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

  std::map<std::string, std::unique_ptr<Builder>> builders;
  struct Dir {
    uint64_t ino;
    std::string path;
  };
  std::vector<Dir> stack{{kRootIno, ""}};
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
            ASSIGN_OR_RETURN(it.chunks, meta_->ListChunks(it.e.ino));
          } else if (!S_ISDIR(it.e.mode)) {
            continue;
          }
          items.push_back(std::move(it));
        }
        if (entries.empty()) break;
      }
      for (auto& it : items) {
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
        // Where the file is now: the tier holding most of its stored bytes.
        std::map<std::string, uint64_t> by_tier;
        {
          std::lock_guard<std::mutex> l(mu_);
          for (const auto& c : it.chunks) {
            std::string t = TierOfLocked(c.segment);
            by_tier[t.empty() ? kHot : t] += c.stored_len;
          }
        }
        std::string current = kHot;
        uint64_t most = 0;
        for (const auto& [t, b] : by_tier)
          if (b > most) most = b, current = t;
        tiering::FileFacts facts;
        facts.path = path;
        facts.size = it.inode.size;
        facts.mtime_ns = it.inode.mtime;
        facts.ctime_ns = it.inode.ctime;
        facts.btime_ns = it.inode.btime;
        facts.atime_ns = it.inode.atime;
        facts.tier = current;
        const uint64_t ino = it.e.ino;
        facts.xattr = [this, ino](std::string_view n) -> std::optional<std::string> {
          std::lock_guard<std::mutex> l(mu_);
          auto v = GetXattrLocked(ino, std::string(n));
          return v.ok() ? *v : std::nullopt;
        };
        const tiering::Rule* rule = policy->Match(facts, now);
        if (rule == nullptr) continue;
        uint64_t off_target = 0;
        for (const auto& [t, b] : by_tier)
          if (t != rule->to) off_target += b;
        if (off_target == 0) continue;
        size_t ri = static_cast<size_t>(rule - policy->rules().data());
        report.rules[ri].files++;
        report.rules[ri].bytes += off_target;
        if (o.dry_run) {
          tick("scanning", false);
          continue;
        }
        if (rule->to != kHot && !tiers_.count(rule->to)) continue;
        uint64_t moved = 0;
        s = MoveChunksOf(ino, rule->to, &builders, &moved);
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
        if (o.cancel != nullptr && o.cancel->load()) {
          stop = true;
          break;
        }
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
  }
  if (!o.dry_run) {
    tick("compacting", true);
    Status s = ReclaimSegments(&report);
    if (!s.ok()) report.errors.push_back(s.ToString());
  }
  progress.segments_written = report.segments_written;
  tick("done", true);
  report.elapsed_ms = (Now() - start) / 1'000'000;
  return report;
}

Status Filesystem::MoveFile(uint64_t ino, const std::string& tier) {
  if (tier != kHot && !tiers_.count(tier))
    return Status::InvalidArgument("no tier named '" + tier + "'");
  std::lock_guard<std::mutex> pass(migrate_mu_);
  std::map<std::string, std::unique_ptr<Builder>> builders;
  uint64_t moved = 0;
  Status s = MoveChunksOf(ino, tier, &builders, &moved);
  for (auto& [t, b] : builders) {
    if (b->seg == nullptr) continue;
    Status f = FinishBuilder(b.get());
    if (s.ok()) s = f;
  }
  return s;
}

Status Filesystem::MoveChunksOf(uint64_t ino, const std::string& tier,
                                std::map<std::string, std::unique_ptr<Builder>>* builders,
                                uint64_t* moved_bytes) {
  std::vector<meta::ChunkRow> chunks;
  {
    std::lock_guard<std::mutex> l(mu_);
    ASSIGN_OR_RETURN(chunks, meta_->ListChunks(ino));
    std::erase_if(chunks, [&](const meta::ChunkRow& c) {
      std::string t = TierOfLocked(c.segment);
      return (t.empty() ? std::string(kHot) : t) == tier;
    });
  }
  for (const auto& c : chunks) {
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
      return s.WithContext(fmt::format("reading inode {} chunk {}", ino, c.index));
    }
    RETURN_IF_ERROR(AddToBuilder(tier, ino, c, payload, builders));
    *moved_bytes += c.stored_len;
  }
  return Status::OK();
}

Status Filesystem::AddToBuilder(const std::string& tier, uint64_t ino, const meta::ChunkRow& c,
                                std::string_view payload,
                                std::map<std::string, std::unique_ptr<Builder>>* builders) {
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
      meta::Op op;
      op.kind = meta::OpKind::kSegmentState;
      op.segment = id;
      op.name = tier;
      op.flags = static_cast<uint32_t>(meta::SegmentState::kUploading);
      RETURN_IF_ERROR(LogLocked(op));
      placement_[id] = tier;
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
  b->pending_files.insert(ino);
  b->pending_bytes += c.stored_len;
  return Status::OK();
}

Status Filesystem::FinishBuilder(Builder* b) {
  std::unique_ptr<journal::SegmentBuilder> seg = std::move(b->seg);
  const uint64_t id = seg->id();
  const std::string key = SegmentKey(id);
  tiering::Tier* tier = tiers_.at(b->tier).get();
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
      meta::Op state;
      state.kind = meta::OpKind::kSegmentState;
      state.segment = id;
      state.name = b->tier;
      state.flags = static_cast<uint32_t>(meta::SegmentState::kUploading);
      state.size = size;
      RETURN_IF_ERROR(LogLocked(state));
      meta::Op op;
      op.kind = meta::OpKind::kMoveChunks;
      op.segment = id;
      op.name = b->tier;
      op.blob = meta::EncodeMoveEntries(b->entries);
      RETURN_IF_ERROR(LogLocked(op));
    }
    RETURN_IF_ERROR(SyncAndCommit());
    KILL_POINT("migrate.moved");
    b->finished++;
    b->moved_files.insert(b->pending_files.begin(), b->pending_files.end());
    b->moved_bytes += b->pending_bytes;
    return Status::OK();
  }();
  const std::string path = seg->path();
  seg.reset();
  env_->RemoveFile(path).IgnoreError();  // step 6 (a leftover is removed at the next open)
  b->entries.clear();
  b->pending_files.clear();
  b->pending_bytes = 0;
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

// Removes a placement segment that no chunk points at: object first, then the row.
Status Filesystem::DeletePlacement(uint64_t segment, const std::string& tier) {
  auto it = tiers_.find(tier);
  if (it == tiers_.end())
    return Status::Unavailable("tier '" + tier + "' is not configured; segment kept");
  RETURN_IF_ERROR(it->second->Delete(SegmentKey(segment)));
  KILL_POINT("migrate.deleted");
  {
    std::lock_guard<std::mutex> l(mu_);
    meta::Op op;
    op.kind = meta::OpKind::kSegmentState;
    op.segment = segment;
    op.name = tier;
    op.flags = static_cast<uint32_t>(meta::SegmentState::kGone);
    RETURN_IF_ERROR(LogLocked(op));
    placement_.erase(segment);
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
      meta::Op op;
      op.kind = meta::OpKind::kSegmentState;
      op.segment = r.id;
      op.name = r.tier;
      op.flags = static_cast<uint32_t>(meta::SegmentState::kDeleting);
      RETURN_IF_ERROR(LogLocked(op));
    }
    RETURN_IF_ERROR(SyncAndCommit());
    Status s = DeletePlacement(r.id, r.tier);
    if (!s.ok()) {
      report->errors.push_back(s.ToString());
      continue;
    }
    report->segments_deleted++;
  }
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
  cold_readers_ = std::make_unique<WorkerPool>(n);
  fetchers_ = std::make_unique<WorkerPool>(n);
  if (read_only_ || !background_tiering_ || config_.policy_file.empty() ||
      config_.policy_interval_ms == 0)
    return;
  tierer_ = std::thread([this] { TieringLoop(); });
}

void Filesystem::StopTiering() {
  {
    std::lock_guard<std::mutex> l(tiering_mu_);
    tiering_stop_ = true;
  }
  tiering_cv_.notify_all();
  if (tierer_.joinable()) tierer_.join();
  cold_readers_.reset();
  fetchers_.reset();
}

void Filesystem::TieringLoop() {
  std::atomic<bool> cancel{false};
  int64_t wait_ms = config_.policy_interval_ms;
  std::unique_lock<std::mutex> l(tiering_mu_);
  for (;;) {
    tiering_cv_.wait_for(l, std::chrono::milliseconds(wait_ms), [&] { return tiering_stop_; });
    if (tiering_stop_) return;
    l.unlock();
    MigrateOptions o;
    o.cancel = &cancel;
    auto r = Migrate(o);
    // A tier that is down pauses migration; retry sooner than the schedule so it resumes by
    // itself when the tier returns.
    bool retry = !r.ok() || !r->errors.empty();
    wait_ms =
        retry ? std::min<int64_t>(config_.policy_interval_ms, 60'000) : config_.policy_interval_ms;
    if (!r.ok())
      log::Error("filesystem {}: background migration: {}", sb_.name, r.status().ToString());
    else if (r->files_moved > 0 || !r->errors.empty())
      log::Info("filesystem {}: background migration moved {} files ({} bytes){}", sb_.name,
                r->files_moved, r->bytes_moved,
                r->errors.empty() ? "" : "; incomplete: " + r->errors.front());
    l.lock();
  }
}

// --- reports -------------------------------------------------------------------------------

namespace {

std::string JsonString(std::string_view s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          o += fmt::format("\\u{:04x}", static_cast<int>(c));
        else
          o += c;
    }
  }
  return o + "\"";
}

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 5) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

}  // namespace

std::string ToJson(const MigrateReport& r) {
  std::string rules;
  for (const auto& rc : r.rules) {
    if (!rules.empty()) rules += ",";
    rules += fmt::format(R"({{"rule":{},"to":{},"files":{},"bytes":{}}})", JsonString(rc.rule),
                         JsonString(rc.to), rc.files, rc.bytes);
  }
  std::string errors;
  for (const auto& e : r.errors) errors += (errors.empty() ? "" : ",") + JsonString(e);
  return fmt::format(
      R"({{"dry_run":{},"files_scanned":{},"rules":[{}],"files_moved":{},"bytes_moved":{},)"
      R"("segments_written":{},"segments_deleted":{},"segments_rolled_back":{},"errors":[{}],)"
      R"("elapsed_ms":{}}})",
      r.dry_run, r.files_scanned, rules, r.files_moved, r.bytes_moved, r.segments_written,
      r.segments_deleted, r.segments_rolled_back, errors, r.elapsed_ms);
}

std::string ToText(const MigrateReport& r) {
  std::string o;
  o += fmt::format("{} files scanned in {:.1f} s\n", r.files_scanned, r.elapsed_ms / 1000.0);
  o += fmt::format("{:<24} {:<12} {:>10} {:>14}\n", "rule", "to", "files", "bytes");
  for (const auto& rc : r.rules)
    o += fmt::format("{:<24} {:<12} {:>10} {:>14}\n", rc.rule, rc.to, rc.files,
                     HumanBytes(rc.bytes));
  if (r.dry_run) {
    o += "dry run: nothing was moved\n";
  } else {
    o += fmt::format("moved {} files ({}) in {} segments", r.files_moved, HumanBytes(r.bytes_moved),
                     r.segments_written);
    if (r.segments_deleted) o += fmt::format("; removed {} emptied segments", r.segments_deleted);
    if (r.segments_rolled_back)
      o += fmt::format("; rolled back {} unfinished uploads", r.segments_rolled_back);
    o += "\n";
  }
  for (const auto& e : r.errors) o += "error: " + e + "\n";
  return o;
}

std::string ToJson(const TieringStatus& s) {
  std::string tiers;
  for (const auto& t : s.tiers) {
    if (!tiers.empty()) tiers += ",";
    tiers += fmt::format(
        R"({{"name":{},"kind":{},"segments":{},"live_bytes":{},"object_bytes":{}}})",
        JsonString(t.name), JsonString(t.kind), t.segments, t.live_bytes, t.object_bytes);
  }
  return fmt::format(
      R"({{"pass_running":{},"phase":{},"files_scanned":{},"files_moved":{},"bytes_moved":{},)"
      R"("last_pass_end_ns":{},"last_pass_result":{},"backlog_files":{},"backlog_bytes":{},)"
      R"("tiers":[{}],"read_cache_bytes":{},"cold_fetches":{},"read_cache_hits":{},)"
      R"("policy_file":{},"policy_error":{}}})",
      s.pass_running, JsonString(s.progress.phase), s.progress.files_scanned,
      s.progress.files_moved, s.progress.bytes_moved, s.last_pass_end_ns,
      JsonString(s.last_pass_result), s.backlog_files, s.backlog_bytes, tiers, s.read_cache_bytes,
      s.cold_fetches, s.read_cache_hits, JsonString(s.policy_file), JsonString(s.policy_error));
}

std::string ToText(const TieringStatus& s) {
  std::string o;
  if (s.pass_running)
    o += fmt::format("migration: running ({}): {} files scanned, {} moved ({})\n", s.progress.phase,
                     s.progress.files_scanned, s.progress.files_moved,
                     HumanBytes(s.progress.bytes_moved));
  else
    o += "migration: idle\n";
  o += "last pass: " + (s.last_pass_result.empty() ? std::string("none") : s.last_pass_result) +
       "\n";
  o += fmt::format("backlog: {} files ({})\n", s.backlog_files, HumanBytes(s.backlog_bytes));
  o += "policy: " + (s.policy_file.empty() ? std::string("none") : s.policy_file) + "\n";
  if (!s.policy_error.empty())
    o += "policy error (previous policy in force): " + s.policy_error + "\n";
  o += fmt::format("{:<16} {:<12} {:>10} {:>14} {:>14}\n", "tier", "kind", "segments", "live",
                   "stored");
  for (const auto& t : s.tiers)
    o += fmt::format("{:<16} {:<12} {:>10} {:>14} {:>14}\n", t.name, t.kind, t.segments,
                     HumanBytes(t.live_bytes), HumanBytes(t.object_bytes));
  o += fmt::format("read cache: {}, {} hits, {} cold fetches\n", HumanBytes(s.read_cache_bytes),
                   s.read_cache_hits, s.cold_fetches);
  return o;
}

}  // namespace strata::fs
