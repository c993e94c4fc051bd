// Filesystem lifecycle: mkfs, open (key check, lock, epoch bump, replay), the committer
// thread, shutdown, and the journal-then-database path every change takes.
#include "fs/filesystem.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include "base/logging.h"
#include "crypto/crypto.h"
#include "fs/chunk_cache.h"
#include "fs/chunk_memory.h"
#include "fs/read_cache.h"
#include "fs/records.h"
#include "fs/worker_pool.h"
#include "journal/journal.h"
#include "meta/meta_store.h"
#include "meta/ops.h"
#include "tiering/policy.h"
#include "tiering/tier.h"

namespace strata::fs {
namespace {

// The most chunk memory a mount touches ahead of use: ~0.2 s of one core per 256 MiB here.
constexpr uint64_t kReserveBytes = 256ull << 20;

std::string SuperblockPath(const Config& c) { return JoinPath(c.hot_path, "superblock"); }
std::string KeyringPath(const Config& c) { return JoinPath(c.hot_path, "keyring"); }
std::string LockPath(const Config& c) { return JoinPath(c.hot_path, "lock"); }
std::string JournalDir(const Config& c) { return JoinPath(c.hot_path, "journal"); }
std::string MetaPath(const Config& c) { return JoinPath(c.hot_path, "meta.db"); }

Status CheckHotDir(const Config& c) {
  struct stat st;
  if (::stat(c.hot_path.c_str(), &st) != 0)
    return Status::InvalidArgument(c.source + ": [tiers.hot] path " + c.hot_path + ": " +
                                   std::strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return Status::InvalidArgument(c.source + ": [tiers.hot] path " + c.hot_path +
                                   " is not a directory");
  return Status::OK();
}

Result<std::unique_ptr<journal::Journal>> OpenJournal(const Config& c, Env* env,
                                                      const Superblock& sb, bool read_only) {
  journal::Options o;
  o.env = env;
  o.dir = JournalDir(c);
  o.fs_uuid = sb.uuid;
  o.segment_size = sb.segment_size;
  o.read_only = read_only;
  o.direct_writes = c.journal_direct_io;
  // Direct appends leave nothing in the page cache: the newest records stay in memory instead
  // (only when the journal does write directly), half as many bytes as the decoded-chunk cache
  // (~4x that in CT-like file data).
  if (!read_only) o.keep_written = c.chunk_cache_bytes / 2;
  return journal::Journal::Open(o);
}

// A mount that failed because the hot tier's disk is full (filled by another program: strata
// keeps its reserve) says what to do about it.
Status WhenFull(const Status& s, const std::string& hot) {
  if (s.ok() || (s.ToErrno() != ENOSPC && s.ToString().find("disk is full") == std::string::npos))
    return s;
  return s.WithContext("the filesystem of the hot tier " + hot +
                       " is full: free space on it and mount again (nothing acknowledged is "
                       "lost: the journal is replayed then)");
}

// Space on `path`'s filesystem available to strata (statvfs f_bavail).
Result<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs v;
  if (::statvfs(path.c_str(), &v) != 0) return Status::IOError("statfs " + path, errno);
  return uint64_t{v.f_bavail} * v.f_frsize;
}

}  // namespace

Filesystem::Filesystem(const Config& config, Env* env) : config_(config), env_(env) {}

Filesystem::~Filesystem() {
  Status s = Shutdown();
  if (!s.ok()) log::Error("shutdown of filesystem {}: {}", sb_.name, s.ToString());
}

Status Filesystem::Mkfs(const Config& c, Env* env) {
  RETURN_IF_ERROR(CheckHotDir(c));
  ASSIGN_OR_RETURN(auto entries, env->ListDir(c.hot_path));
  ASSIGN_OR_RETURN(bool has_sb, env->FileExists(SuperblockPath(c)));
  if (has_sb)
    return Status::InvalidArgument("hot tier " + c.hot_path +
                                   " already holds a strata filesystem; mkfs refuses to "
                                   "overwrite it");
  if (!entries.empty())
    return Status::InvalidArgument("hot tier " + c.hot_path + " is not empty (" +
                                   std::to_string(entries.size()) +
                                   " entries); mkfs needs an empty directory");
  ASSIGN_OR_RETURN(crypto::SecretBytes kek, crypto::LoadKeyFile(c.key_file));

  Superblock sb;
  {
    crypto::SecretBytes r = crypto::SecretBytes::Random(16);
    std::copy(r.data(), r.data() + 16, sb.uuid.begin());
  }
  sb.chunk_size = c.chunk_size;
  sb.segment_size = c.segment_size;
  sb.compression_level = c.compression_level;
  sb.epoch = 1;
  sb.name = c.name;
  crypto::SecretBytes master;
  ASSIGN_OR_RETURN(std::string keyring, crypto::CreateKeyring(kek, sb.uuid, &master));
  auto keys = crypto::FsKeys::FromMaster(master);
  crypto::NonceSequence nonces(sb.epoch);
  RecordCodec codec(&keys->aead(), &nonces, sb.uuid);

  RETURN_IF_ERROR(WriteFileAtomically(env, KeyringPath(c), keyring));
  RETURN_IF_ERROR(env->CreateDir(JournalDir(c)));
  RETURN_IF_ERROR(env->SyncDir(c.hot_path));
  ASSIGN_OR_RETURN(auto journal, OpenJournal(c, env, sb, false));
  ASSIGN_OR_RETURN(auto meta, meta::MetaStore::Open(MetaPath(c), sb.chunk_size, true, false));

  meta::Op root;
  root.kind = meta::OpKind::kCreate;
  root.ino = kRootIno;
  root.mode = S_IFDIR | 0755;
  root.ctime = env->NowNanos();
  std::string payload;
  RETURN_IF_ERROR(codec.SealMeta(meta::EncodeOp(root), &payload));
  uint64_t lsn;
  journal::Location loc;
  RETURN_IF_ERROR(journal->Append(journal::RecordType::kMeta, payload, &lsn, &loc));
  RETURN_IF_ERROR(journal->Sync(lsn));
  RETURN_IF_ERROR(meta->Apply(root, lsn));
  // Into meta.db and synced (WAL mode with synchronous=NORMAL syncs at checkpoints): the
  // superblock below must never outlive a database without its schema.
  RETURN_IF_ERROR(meta->Checkpoint());
  RETURN_IF_ERROR(env->SyncDir(c.hot_path));
  // The superblock is written last: its presence says mkfs completed.
  return WriteSuperblock(env, SuperblockPath(c), sb);
}

Result<std::unique_ptr<Filesystem>> Filesystem::Open(const Config& config, Env* env,
                                                     const OpenOptions& options) {
  std::unique_ptr<Filesystem> fs(new Filesystem(config, env));
  RETURN_IF_ERROR(fs->OpenInternal(options));
  return fs;
}

Status Filesystem::OpenInternal(const OpenOptions& options) {
  const Config& c = config_;
  read_only_ = options.read_only;
  background_tiering_ = options.background_tiering;
  null_data_ = options.null_data;
  reserve_memory_ = options.reserve_memory && !options.null_data;
  if (null_data_ && read_only_)
    return Status::InvalidArgument("--null-data (a benchmark mount) cannot be read-only");
  RETURN_IF_ERROR(CheckHotDir(c));
  ASSIGN_OR_RETURN(bool has_sb, env_->FileExists(SuperblockPath(c)));
  if (!has_sb)
    return Status::InvalidArgument("hot tier " + c.hot_path +
                                   " holds no strata filesystem (run strata mkfs first)");
  ASSIGN_OR_RETURN(sb_, ReadSuperblock(env_, SuperblockPath(c)));
  if (sb_.name != c.name)
    return Status::InvalidArgument(c.source + ": filesystem name '" + c.name + "' but " +
                                   c.hot_path + " holds filesystem '" + sb_.name + "'");
  auto lock = env_->LockFile(LockPath(c));
  const int64_t deadline = env_->NowNanos() + options.lock_wait_ms * 1000000;
  while (!lock.ok() && lock.status().IsBusy() && env_->NowNanos() < deadline) {
    ::usleep(20000);  // the holder is exiting; it gives no notification we could wait on
    lock = env_->LockFile(LockPath(c));
  }
  if (!lock.ok()) {
    if (lock.status().IsBusy())
      return Status::Busy("filesystem '" + sb_.name + "' at " + c.hot_path +
                          " is already mounted or in use by another strata process");
    return lock.status();
  }
  lock_ = std::move(lock).value();

  ASSIGN_OR_RETURN(crypto::SecretBytes kek, crypto::LoadKeyFile(c.key_file));
  ASSIGN_OR_RETURN(std::string keyring, ReadWholeFile(env_, KeyringPath(c)));
  std::array<unsigned char, 16> ring_uuid{};
  auto master = crypto::OpenKeyring(kek, keyring, &ring_uuid);
  if (!master.ok())
    return master.status().WithContext("key file " + c.key_file + " for filesystem '" + sb_.name +
                                       "'");
  if (ring_uuid != sb_.uuid)
    return Status::Corruption(KeyringPath(c) + " belongs to another filesystem");
  keys_ = crypto::FsKeys::FromMaster(master.value());

  if (null_data_) {
    // A benchmark mount discards contents and reads zeros: never over a filesystem that holds
    // data, where it would hide every file and make truncates and renames destroy them.
    ASSIGN_OR_RETURN(auto meta, meta::MetaStore::Open(MetaPath(c), sb_.chunk_size, false, true));
    ASSIGN_OR_RETURN(bool has_data, meta->HasChunks());
    if (has_data)
      return Status::InvalidArgument(
          "--null-data is for benchmarks on a filesystem that holds no file data; '" + sb_.name +
          "' at " + c.hot_path + " holds some: refused, nothing was changed");
    log::Warn(
        "filesystem {}: mounted with --null-data (a benchmark): file contents written now are "
        "discarded and read back as zeros",
        sb_.name);
  }
  // Only a size the file sets is worth a word: a filesystem made with an older default keeps
  // its own without one.
  auto fixed_at_mkfs = [&](const char* key, bool set, uint64_t asked, uint64_t made) {
    if (set && asked != made)
      log::Warn(
          "{}: [filesystem] {} is {} but this filesystem was made with {}: it is fixed at "
          "mkfs, so {} is used",
          c.source, key, asked, made, made);
  };
  fixed_at_mkfs("chunk_size", c.chunk_size_set, c.chunk_size, sb_.chunk_size);
  fixed_at_mkfs("segment_size", c.segment_size_set, c.segment_size, sb_.segment_size);
  // The config checked dirty_limit against its own chunk_size; the chunks are the superblock's.
  if (!read_only_ && c.dirty_limit_bytes < 4 * uint64_t{sb_.chunk_size})
    return Status::InvalidArgument(fmt::format(
        "{}: [cache] dirty_limit ({} bytes) must hold at least 4 chunks, and this filesystem "
        "was made with {}-byte chunks",
        c.source, c.dirty_limit_bytes, sb_.chunk_size));
  sb_.compression_level = c.compression_level;
  if (!read_only_) {
    // A new writer epoch, durable before the first seal: nonces never repeat.
    sb_.epoch++;
    RETURN_IF_ERROR(WhenFull(WriteSuperblock(env_, SuperblockPath(c), sb_), c.hot_path));
  }
  nonces_ = std::make_unique<crypto::NonceSequence>(sb_.epoch);
  codec_ = std::make_unique<RecordCodec>(&keys_->aead(), nonces_.get(), sb_.uuid);
  if (!read_only_ && !null_data_) {
    struct statvfs v;
    if (::statvfs(c.hot_path.c_str(), &v) != 0)
      return Status::IOError("statfs " + c.hot_path, errno);
    const uint64_t reserve =
        c.hot_reserve_bytes.value_or(SpaceGuard::DefaultReserve(uint64_t{v.f_blocks} * v.f_frsize));
    space_ = std::make_unique<SpaceGuard>(c.hot_path, reserve, sb_.segment_size,
                                          [path = c.hot_path] { return FreeBytes(path); });
  }
  memory_ = ChunkMemory::Make(sb_.chunk_size, c.chunk_cache_bytes);
  cache_ = std::make_unique<ChunkCache>(c.chunk_cache_bytes, memory_);
  // Recovery writes (a torn tail cut, the replay's transaction, orphans deleted): a disk that
  // another program filled fails them, and the message says what to do.
  auto journal = OpenJournal(c, env_, sb_, read_only_);
  if (!journal.ok()) return WhenFull(journal.status(), c.hot_path);
  journal_ = std::move(journal).value();
  auto meta = meta::MetaStore::Open(MetaPath(c), sb_.chunk_size, false, read_only_);
  if (!meta.ok()) return WhenFull(meta.status(), c.hot_path);
  meta_ = std::move(meta).value();
  RETURN_IF_ERROR(WhenFull(Replay(), c.hot_path));
  if (!read_only_) RETURN_IF_ERROR(WhenFull(CleanOrphans(), c.hot_path));
  // Mounted at the floor: say so now, and let the first delete ask for a reclaim. After the
  // recovery, which may take space (the journal's active segment is preallocated again).
  if (space_ != nullptr) {
    if (Status s = space_->Check(); !s.ok() && s.ToErrno() != ENOSPC) return s;
  }
  return OpenTiers();
}

Status Filesystem::Replay() {
  replayed_from_ = meta_->applied_lsn();
  uint64_t count = 0;
  Status s = journal_->Replay(replayed_from_, [&](const journal::Record& r) -> Status {
    meta::Op op;
    if (r.type == journal::RecordType::kMeta) {
      std::string plain;
      RETURN_IF_ERROR(codec_->OpenMeta(r.payload, &plain)
                          .WithContext("metadata record LSN " + std::to_string(r.lsn)));
      RETURN_IF_ERROR(meta::DecodeOp(plain, &op));
    } else if (r.type == journal::RecordType::kData) {
      ChunkHeader h;
      RETURN_IF_ERROR(RecordCodec::ParseChunkHeader(r.payload, &h)
                          .WithContext("data record LSN " + std::to_string(r.lsn)));
      op = ChunkOp(h, r.loc);
    } else {
      return Status::OK();
    }
    count++;
    return meta_->Apply(op, r.lsn);
  });
  if (!s.ok()) {
    meta_->Rollback();
    return s.WithContext("replaying the journal of '" + sb_.name + "'");
  }
  replayed_records_ = count;
  if (count > 0) {
    log::Info("filesystem {}: replayed {} journal records after LSN {}", sb_.name, count,
              replayed_from_);
    if (!read_only_) RETURN_IF_ERROR(meta_->Commit());
  }
  return Status::OK();
}

Status Filesystem::CleanOrphans() {
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(auto orphans, meta_->Orphans());
  for (uint64_t ino : orphans) {
    meta::Op op;
    op.kind = meta::OpKind::kDeleteInode;
    op.ino = ino;
    RETURN_IF_ERROR(LogLocked(op));
  }
  if (!orphans.empty())
    log::Info("filesystem {}: removed {} files unlinked while open", sb_.name, orphans.size());
  return Status::OK();
}

Status Filesystem::Start() {
  // The cache's memory, touched before the first reads need it (at most kReserveBytes: a larger
  // cache fills at the pace of the reads).
  if (memory_ && reserve_memory_)
    memory_->StartReserving(std::min(config_.chunk_cache_bytes, kReserveBytes));
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  read_helpers_ = std::make_unique<WorkerPool>(std::max(2u, cores));
  // One decoding read per core, and two more to cover reads waiting on the disk (a hint has
  // started their records in, WillRead): 32 PACS readers on 2 cores had their lowest p99 at
  // 4-6 threads (bench/README.md, item 16).
  hot_readers_ = std::make_unique<WorkerPool>(cores + 2);
  hot_inline_ = cores;
  if (read_only_) {
    StartTiering();  // cold readers only
    return Status::OK();
  }
  // Threads start here, not in Open: the CLI forks to daemonise in between.
  sealers_ = std::make_unique<WorkerPool>(std::max(2u, std::thread::hardware_concurrency()));
  committer_ = std::thread([this] { CommitterLoop(); });
  StartTiering();
  return Status::OK();
}

void Filesystem::CommitterLoop() {
  std::unique_lock<std::mutex> l(committer_mu_);
  while (!stopping_) {
    committer_cv_.wait_for(l, std::chrono::milliseconds(config_.commit_interval_ms));
    if (stopping_) break;
    l.unlock();
    Status s = FlushOlderThan(Now() - config_.dirty_expire_ms * 1000000);
    if (s.ok()) s = SyncAndCommit();
    if (!s.ok()) log::Error("filesystem {}: background commit: {}", sb_.name, s.ToString());
    l.lock();
  }
}

Status Filesystem::SyncAndCommit() {
  std::lock_guard<std::mutex> l(mu_);
  return SyncAndCommitLocked();
}

Status Filesystem::SyncAndCommitLocked() {
  if (read_only_) return Status::OK();
  RETURN_IF_ERROR(failed_);
  uint64_t last = journal_->LastLsn();
  // The database must never run ahead of the durable journal: sync first, then commit.
  Status s = journal_->Sync(last);
  if (!s.ok()) {
    // The journal has failed for good (its errors are sticky). The open transaction stays
    // open and is never committed: reads keep seeing what was written and acknowledged (a
    // rollback made them serve the older state with no error), nothing more is written, and
    // a remount replays what reached the journal.
    failed_ = Status::Aborted("journal sync failed: " + s.ToString() + "; remount");
    log::Error("filesystem {}: {}", sb_.name, failed_.ToString());
    return s;
  }
  s = meta_->Commit();
  if (!s.ok()) {
    // SQLite may have rolled back on its own; later ops must not run in autocommit ahead of
    // the journal. Stop writing; a remount replays the journal into the database.
    failed_ = Status::Aborted("metadata commit failed: " + s.ToString() + "; remount");
    log::Error("filesystem {}: {}", sb_.name, failed_.ToString());
    meta_->Rollback();
  }
  return s;
}

Status Filesystem::Shutdown() {
  if (shut_down_) return Status::OK();
  shut_down_ = true;
  // The session has stopped: no new read comes in. Reads still queued run now, before the
  // pools they may hand on to (cold readers, read helpers) go.
  hot_readers_.reset();
  StopTiering();
  if (memory_) memory_->StopReserving();
  {
    std::lock_guard<std::mutex> l(committer_mu_);
    stopping_ = true;
  }
  committer_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  read_helpers_.reset();
  if (!meta_ || !journal_) return Status::OK();
  Status first;
  if (!read_only_) {
    std::vector<std::pair<uint64_t, std::shared_ptr<OpenInode>>> open;
    {
      std::lock_guard<std::mutex> l(mu_);
      open.assign(open_.begin(), open_.end());
    }
    for (auto& [ino, f] : open) {
      std::unique_lock<std::mutex> fl(f->mu);
      Status s = FlushAll(ino, f, fl);
      if (first.ok()) first = s;
    }
    sealers_.reset();
    Status s = SyncAndCommit();
    if (first.ok()) first = s;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!read_only_ && first.ok()) meta_->Checkpoint().IgnoreError();
    meta_.reset();
  }
  journal_.reset();
  lock_.reset();
  return first;
}

Status Filesystem::CheckWritable() const {
  if (read_only_) return Status::Posix(EROFS);
  RETURN_IF_ERROR(failed_);
  return journal_->error();
}

Status Filesystem::LogLocked(meta::Op& op) {
  RETURN_IF_ERROR(CheckWritable());
  std::string payload;
  RETURN_IF_ERROR(codec_->SealMeta(meta::EncodeOp(op), &payload));
  uint64_t lsn;
  journal::Location loc;
  RETURN_IF_ERROR(journal_->Append(journal::RecordType::kMeta, payload, &lsn, &loc));
  return ApplyLocked(op, lsn);
}

Status Filesystem::ApplyLocked(const meta::Op& op, uint64_t lsn) {
  Status s = meta_->Apply(op, lsn);
  if (!s.ok()) {
    // The journal holds a change the database could not take: stop writing; a remount
    // replays the journal into a fresh transaction.
    failed_ = Status::Aborted("metadata database failed: " + s.ToString() + "; remount");
    log::Error("filesystem {}: {}", sb_.name, failed_.ToString());
    meta_->Rollback();
  }
  return s;
}

Status Filesystem::AdmitNewBytes(uint64_t bytes) {
  if (!space_) return Status::OK();
  Status s = space_->Admit(bytes);
  if (s.ToErrno() == ENOSPC) KickTiering();
  return s;
}

Result<FsStats> Filesystem::StatFs() {
  struct statvfs v;
  if (::statvfs(config_.hot_path.c_str(), &v) != 0)
    return Status::IOError("statfs " + config_.hot_path, errno);
  FsStats st;
  st.block_size = 4096;
  uint64_t total = uint64_t{v.f_blocks} * v.f_frsize;
  uint64_t avail = uint64_t{v.f_bavail} * v.f_frsize;
  // What applications may still write: the reserve is not theirs (fs/space_guard.h).
  if (space_) avail = avail > space_->floor() ? avail - space_->floor() : 0;
  uint64_t free_bytes = uint64_t{v.f_bfree} * v.f_frsize;
  st.blocks = total / st.block_size;
  st.blocks_free = free_bytes / st.block_size;
  st.blocks_avail = avail / st.block_size;
  std::lock_guard<std::mutex> l(mu_);
  meta::Totals t = meta_->totals();
  st.files = t.inodes + (uint64_t{1} << 32);
  st.files_free = uint64_t{1} << 32;
  return st;
}

}  // namespace strata::fs
