// Filesystem: the strata filesystem model. Everything the FUSE glue and the CLI do goes
// through here; it includes no libfuse header, so tests and fsck open a filesystem without
// mounting it.
//
// Every change is one journal record (sealed with AES-256-GCM) followed by the same op
// applied to the SQLite view, both under mu_. File data is buffered per open inode in
// chunk-sized dirty buffers and written as sealed, zstd-compressed kData records when a chunk
// fills, on flush/fsync, under memory pressure, or once dirty for dirty_expire.
//
// Lock order: OpenInode::mu (per inode, data) -> mu_ (metadata) -> journal internals.
// No lock is held across a FUSE reply (the glue replies after these calls return).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "fs/config.h"
#include "fs/space_guard.h"
#include "fs/superblock.h"
#include "fs/tiering.h"

namespace strata::crypto {
class FsKeys;
class NonceSequence;
}  // namespace strata::crypto
namespace strata::journal {
class Journal;
struct Location;
}  // namespace strata::journal
namespace strata::meta {
class MetaStore;
struct Op;
struct InodeRow;
struct ChunkRow;
struct MoveEntry;
enum class SegmentState : uint32_t;
}  // namespace strata::meta
namespace strata::tiering {
class Tier;
class Policy;
struct FileFacts;
}  // namespace strata::tiering

namespace strata::fs {

struct ChunkHeader;

class ChunkCache;
class ChunkMemory;
class ReadCache;
class RecordCodec;
class WorkerPool;

inline constexpr uint64_t kRootIno = 1;
inline constexpr size_t kMaxNameLen = 255;

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0, nlink = 0, uid = 0, gid = 0;
  uint64_t rdev = 0, size = 0, blocks = 0;
  int64_t atime = 0, mtime = 0, ctime = 0, btime = 0;  // ns since the epoch
  uint64_t generation = 0;
};

// The caller of an operation (from the FUSE request).
struct Caller {
  uint32_t uid = 0, gid = 0;
  uint32_t umask = 0;  // applied by strata (the kernel does not mask: ACLs may replace umask)
};

struct SetAttrRequest {
  std::optional<uint32_t> mode, uid, gid;
  std::optional<uint64_t> size;
  // For times: nullopt = leave; kNow = current time.
  static constexpr int64_t kNow = INT64_MIN;
  std::optional<int64_t> atime, mtime;
  std::optional<int64_t> ctime;  // explicit ctime (rare)
  uint64_t fh = 0;               // open handle when called via ftruncate/futimens
  bool grow_only = false;        // fallocate: never shrink (the size is checked under the locks)
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;  // type bits
  uint64_t next_offset = 0;
};

struct FsStats {
  uint64_t block_size = 4096;
  uint64_t blocks = 0, blocks_free = 0, blocks_avail = 0;
  uint64_t files = 0, files_free = 0;
  uint64_t name_max = kMaxNameLen;
};

struct OpenOptions {
  bool read_only = false;
  // How long to wait for the filesystem lock. A daemon that was just unmounted is still
  // flushing and committing; the CLI waits for it when no mount of this filesystem is active.
  int64_t lock_wait_ms = 0;
  // Run migration passes in the background on the config's schedule (after Start).
  bool background_tiering = true;
  // Benchmarks only: file contents are discarded (no buffers, chunks or seals) and read back
  // as zeros; sizes, names and every namespace change still go through the journal. Runs of
  // the same workload with and without it split a figure into FUSE's cost and the engine's.
  bool null_data = false;
  // A mount: Start touches the decoded-chunk cache's first 256 MiB ahead of use
  // (fs/chunk_memory.h). Not for tools and tests that open the filesystem briefly.
  bool reserve_memory = false;
};

class Filesystem {
 public:
  // Creates a new filesystem: refuses if the hot path is missing, not a directory, not empty,
  // or the key file is bad. Nothing is changed on any refusal.
  static Status Mkfs(const Config& config, Env* env);
  // Opens the filesystem: checks the key, takes the lock (Busy if mounted elsewhere), bumps the
  // writer epoch, replays the journal after the applied LSN.
  static Result<std::unique_ptr<Filesystem>> Open(const Config& config, Env* env,
                                                  const OpenOptions& options = {});
  ~Filesystem();

  // Starts the background threads (committer, chunk sealing pool). Separate from Open so the
  // CLI can daemonise (fork) between the two; without it, chunks are sealed by the caller.
  Status Start();
  // Flushes all dirty data, makes the journal durable, commits the metadata, checkpoints the
  // database. Called at unmount; also by the destructor.
  Status Shutdown();

  // --- namespace -------------------------------------------------------------------------
  // Lookups count references (the FUSE lookup count): every successful Lookup/Create/Mknod/
  // Mkdir/Symlink/Link adds one; Forget subtracts.
  Result<Attr> Lookup(uint64_t parent, const std::string& name);
  void Forget(uint64_t ino, uint64_t nlookup);
  // Counts one more reference for an inode handed out by ReadDir (readdirplus) as `name` in
  // directory `parent`.
  void AddLookup(uint64_t parent, uint64_t ino, const std::string& name);
  Result<Attr> GetAttr(uint64_t ino);
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& req, const Caller& caller);
  Result<Attr> Mknod(uint64_t parent, const std::string& name, uint32_t mode, uint64_t rdev,
                     const Caller& caller);
  Result<Attr> Mkdir(uint64_t parent, const std::string& name, uint32_t mode, const Caller& caller);
  Result<Attr> Symlink(uint64_t parent, const std::string& name, const std::string& target,
                       const Caller& caller);
  Result<Attr> Link(uint64_t ino, uint64_t new_parent, const std::string& new_name);
  Status Unlink(uint64_t parent, const std::string& name);
  Status Rmdir(uint64_t parent, const std::string& name);
  // flags: RENAME_NOREPLACE, RENAME_EXCHANGE.
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                const std::string& new_name, unsigned flags);
  Result<std::string> Readlink(uint64_t ino);
  // Entries after `offset` (0 = start; "." and ".." come first), until `fn` returns false.
  Status ReadDir(uint64_t ino, uint64_t offset, const std::function<bool(const DirEntry&)>& fn);
  Result<FsStats> StatFs();

  // --- files -------------------------------------------------------------------------------
  // Returns a handle. flags are the open(2) flags (O_APPEND, O_TRUNC are honoured here).
  Result<uint64_t> Open(uint64_t ino, int flags);
  Result<std::pair<Attr, uint64_t>> Create(uint64_t parent, const std::string& name, uint32_t mode,
                                           int flags, const Caller& caller);
  // Blocks until the data is there, from whichever tier holds it.
  Result<size_t> Read(uint64_t ino, uint64_t fh, uint64_t offset, size_t size, char* buf);
  // The same read for the FUSE glue: `done` runs exactly once, before ReadAsync returns when
  // every byte is in memory (buffered, or in the decoded-chunk cache) or when the read decodes
  // on the calling thread (while fewer reads than cores are decoding). Otherwise later: on a
  // hot-reader thread, in the order the reads came, when its records are all on the hot
  // tier; on a cold-reader thread when it has to wait on a cold tier. A burst of reads so
  // never holds every FUSE worker: lookups, opens and stats queued behind it are answered at
  // once (docs/architecture.md, "Read"). A read waiting on a cold tier never holds one.
  using ReadDone = std::function<void(const Status& s, const char* data, size_t n)>;
  void ReadAsync(uint64_t ino, uint64_t fh, uint64_t offset, size_t size, ReadDone done);
  Result<size_t> Write(uint64_t ino, uint64_t fh, uint64_t offset, std::string_view data);
  Status Flush(uint64_t ino, uint64_t fh);
  Status Release(uint64_t ino, uint64_t fh);
  // Returns when all data and metadata of the filesystem up to now is durable.
  Status Fsync(uint64_t ino, bool datasync);
  Status Fallocate(uint64_t ino, uint64_t fh, int mode, uint64_t offset, uint64_t length);

  // --- xattrs (values are sealed, names SIV-encrypted) --------------------------------------
  Status SetXattr(uint64_t ino, const std::string& name, std::string_view value, int flags);
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  Result<std::vector<std::string>> ListXattr(uint64_t ino);
  Status RemoveXattr(uint64_t ino, const std::string& name);

  // --- tiering (fs/tiering.cc, docs/tiering.md) ----------------------------------------------
  // Runs one migration pass (or, with dry_run, counts what one would move). One pass at a
  // time: a second caller waits for the first. InvalidArgument when the policy is bad.
  Result<MigrateReport> Migrate(const MigrateOptions& options);
  TieringStatus GetTieringStatus();
  // Moves every chunk of `ino` to `tier` ("hot" recalls it) now, regardless of the policy.
  Status MoveFile(uint64_t ino, const std::string& tier);

  const Superblock& superblock() const { return sb_; }
  uint64_t applied_lsn_at_open() const { return replayed_from_; }
  uint64_t replayed_records() const { return replayed_records_; }
  bool read_only() const { return read_only_; }
  // Below this many reads decoding, a FUSE worker decodes its own (default: one per core).
  // After Start; 0 sends every read with records to decode to the hot readers.
  void SetHotInlineForTesting(unsigned reads) { hot_inline_ = reads; }

 private:
  // A chunk being written. A partial write to a chunk stored on the hot tier does not read it
  // first: the chunk is "lazy", its buffer holds what was written since (zeros elsewhere),
  // `ranges` says where, and the bytes of [0, base_len) outside them are the stored chunk's.
  // The sealer journals a lazy chunk's ranges as a patch, or reads the stored chunk and seals
  // the whole (docs/architecture.md, "Small rewrites").
  struct DirtyChunk {
    std::string data;   // chunk_size bytes
    int64_t since = 0;  // when it first became dirty (ns)
    bool lazy = false;
    uint32_t base_len = 0;                              // lazy: stored bytes that still count
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // lazy: written [begin, end), sorted
    void Wrote(uint32_t begin, uint32_t end);           // after writing data[begin, end)
    void CutAt(uint64_t keep);  // bytes from `keep` on are zeros (a truncate)
  };
  // State of an inode with open handles.
  struct OpenInode {
    std::mutex mu;       // guards everything below except open_count and the atomics' reads
    int open_count = 0;  // guarded by Filesystem::mu_
    int writers = 0;     // handles open for writing (guarded by Filesystem::mu_)
    // Written under mu; read without it by GetAttr (which holds Filesystem::mu_ and so cannot
    // take this lock).
    std::atomic<uint64_t> size{0};  // the file size programs see
    std::atomic<int64_t> mtime{0};
    std::atomic<uint64_t> dirty_bytes{0};
    uint64_t persisted_size = 0;           // the size the journal knows (or will, once sealed)
    std::map<uint64_t, DirtyChunk> dirty;  // chunk index -> buffer
    // Chunks handed to the sealing pool and not yet in the journal: readable from here.
    // At most one per index, so a chunk's versions reach the journal in order.
    std::map<uint64_t, std::shared_ptr<const DirtyChunk>> sealing;
    int inflight = 0;
    Status async_error;          // the first failure of a sealing job, reported at drain
    std::condition_variable cv;  // signalled whenever a sealing job finishes
    bool null_written = false;   // --null-data: written since the last flush
    bool no_capability = false;  // no security.capability xattr (guarded by Filesystem::mu_)
    bool accessed = false;       // a read since the inode was opened saw to atime
    bool cold_seen = false;      // ... and one read cold data (recall candidate)
    std::atomic<int64_t> atime_before{-1};  // the atime that read found (-1: not yet)
  };
  // An inode the kernel holds references to: its lookup count, and the entry it was last
  // reached by (plain name), from which the policy's path of a read file is rebuilt.
  struct Known {
    uint64_t lookups = 0;
    uint64_t parent = 0;
    std::string name;
  };
  struct Handle {
    uint64_t ino;
    int flags;
  };

  Filesystem(const Config& config, Env* env);
  Status OpenInternal(const OpenOptions& options);
  Status Replay();
  Status CleanOrphans();
  void CommitterLoop();

  // REQUIRES: mu_ held. Seals the op into a kMeta record, appends it, applies it.
  Status LogLocked(meta::Op& op);
  // REQUIRES: mu_ held. Applies a journaled op; a failure puts the filesystem in the failed
  // state (every later change fails until a remount replays the journal).
  Status ApplyLocked(const meta::Op& op, uint64_t lsn);
  Status CheckWritable() const;
  // ENOSPC when `bytes` more would eat into the hot tier's reserve (fs/space_guard.h).
  // A refusal asks for a background pass, which frees what deletes have emptied.
  Status AdmitNewBytes(uint64_t bytes);
  // What a new name (or an xattr) is counted as: its record and its database rows.
  static constexpr uint64_t kNewEntryBytes = 4096;
  Result<Attr> AttrLocked(uint64_t ino);
  Attr ToAttr(const meta::InodeRow& r);
  Result<Attr> CreateNode(uint64_t parent, const std::string& name, uint32_t mode, uint64_t rdev,
                          const std::string& symlink_target, const Caller& caller);
  Status RemoveEntry(uint64_t parent, const std::string& name, bool dir);
  Status MaybeDeleteLocked(uint64_t ino);
  std::string EncName(uint64_t parent, const std::string& name) const;
  // Xattr primitives. REQUIRES: mu_ held.
  Result<std::optional<std::string>> GetXattrLocked(uint64_t ino, const std::string& name);
  Status PutXattrLocked(uint64_t ino, const std::string& name, std::string_view value);
  Status DropXattrLocked(uint64_t ino, const std::string& name);
  // An ACL was set on `ino`: store it (or drop it when the mode says it all) and set the mode.
  Status ApplyAccessAclLocked(const meta::InodeRow& row, std::string_view value);
  int64_t Now() const { return env_->NowNanos(); }

  // Data path.
  std::shared_ptr<OpenInode> GetOpen(uint64_t ino);
  // Hands the dirty chunk to the sealing pool. REQUIRES: `lk` holds f->mu (it may be
  // released while waiting for an earlier version of the same chunk or for pool room).
  Status SubmitChunk(uint64_t ino, const std::shared_ptr<OpenInode>& f,
                     std::unique_lock<std::mutex>& lk, uint64_t index);
  // Waits until no chunk of f is being sealed; returns (and clears) a sealing failure.
  // REQUIRES: `lk` holds f->mu; mu_ not held.
  Status Drain(OpenInode* f, std::unique_lock<std::mutex>& lk);
  // Submits every dirty chunk and drains. Same requirements as Drain.
  Status FlushAll(uint64_t ino, const std::shared_ptr<OpenInode>& f,
                  std::unique_lock<std::mutex>& lk);
  Status FlushOlderThan(int64_t deadline);
  // The sealing job: compress, seal, append, apply. Takes mu_.
  // A lazy chunk goes as a patch when it may (else it is read and sealed whole).
  Status SealAndStore(uint64_t ino, uint64_t index, uint32_t len, uint64_t file_size, int64_t mtime,
                      std::shared_ptr<const DirtyChunk> chunk);
  // Fills the bytes of a lazy chunk that are the stored chunk's; it is then whole. Takes mu_.
  // With allow_cold false, a chunk on a cold tier is not fetched (Unavailable).
  Status Materialize(uint64_t ino, uint64_t index, DirtyChunk* c, bool allow_cold = true);
  // How chunk `index` of `ino` is stored: not at all; whole (chunk_size long) on the hot tier
  // with fewer patches than a chunk may have, so that a rewrite may go as a patch; or
  // otherwise (cut short, on a cold tier, or at the patch limit).
  enum class Stored { kNone, kPatchable, kWhole };
  Result<Stored> WhereStored(uint64_t ino, uint64_t index);
  // The stored records of a file: its chunks, then its patches. REQUIRES: mu_ held.
  Result<std::vector<meta::ChunkRow>> StoredRecordsLocked(uint64_t ino);
  // What a read may wait for on the thread it runs on: only memory (no decoding: a FUSE
  // worker), the hot tier and the read cache (a hot reader), or any tier (a cold reader).
  enum class Reach { kMemory, kHot, kAny };
  // Fills buf with the stored chunk's bytes [off, off+n) (zeros past its logical length).
  // *cold (may be null) is set when the chunk is on a cold tier.
  Status ReadStoredChunk(uint64_t ino, uint64_t index, uint64_t off, size_t n, char* buf,
                         Reach reach, bool* blocked, bool* cold);
  // A chunk that needs more than `reach` (decoding, or a wait on a cold tier) is not read:
  // *blocked is set and the result is an error the caller discards.
  // The chunk's bytes with its patches (rows from ListPatches) applied.
  Result<std::shared_ptr<const std::string>> LoadChunk(uint64_t ino, const meta::ChunkRow& c,
                                                       const std::vector<meta::ChunkRow>& patches,
                                                       Reach reach = Reach::kAny,
                                                       bool* blocked = nullptr);
  // Reads, checks and decompresses one record (a chunk or a patch) into its plaintext. On
  // success *plain is exactly that: its size is set and every byte written, so it may be a
  // reused buffer holding other data (ChunkMemory::TakeToOverwrite).
  Status DecodeRecord(uint64_t ino, const meta::ChunkRow& c, bool allow_cold, bool* blocked,
                      ChunkHeader* got, std::string* plain);
  Result<size_t> ReadImpl(uint64_t ino, uint64_t fh, uint64_t offset, size_t size, char* buf,
                          Reach reach, bool* blocked);
  // ReadAsync's steps: the read within `reach` on this thread, or handed to the pool that may
  // wait for more.
  void ReadWithin(Reach reach, uint64_t ino, uint64_t fh, uint64_t offset, size_t size,
                  ReadDone done);
  // Whether every stored record under [offset, offset + size) is on the hot tier; if so,
  // starts reading in those in journal segments without waiting (a hot reader will decode
  // them soon). Takes mu_.
  bool HintHotRecords(uint64_t ino, uint64_t offset, size_t size);

  // Tiering internals (fs/tiering.cc).
  struct Fetch;
  struct Builder;
  Status OpenTiers();
  void StartTiering();
  void StopTiering();
  void TieringLoop();
  // Asks the background loop for a pass now (no-op without one). Takes tiering_mu_: callers
  // may hold mu_ or an inode's mu, never tiering_mu_.
  void KickTiering();
  // The tier holding placement segment `segment` ("" for a journal segment). REQUIRES: mu_.
  std::string TierOfLocked(uint64_t segment) const;
  // Whether a segment is on a cold tier (not a journal or hot placement segment). Same lock.
  bool OnColdTierLocked(uint64_t segment) const;
  std::string SegmentKey(uint64_t segment) const;
  // The sealed record payload of a stored chunk, from wherever it lives, checksum-verified.
  Status ReadChunkPayload(uint64_t ino, const meta::ChunkRow& c, bool allow_cold, bool* blocked,
                          std::string* payload);
  Status FetchCold(const std::string& tier, uint64_t ino, const meta::ChunkRow& c,
                   std::string* record);
  Status RecoverPlacements(MigrateReport* report);
  using Builders = std::map<std::string, std::unique_ptr<Builder>>;  // by target tier
  using CompactSet = std::map<uint64_t, std::string>;  // segments to compact -> their tier
  // Copies the chunks of `ino` that are not on `to` (empty: none) to it, and those in a
  // segment of `compact` to a new segment on their own tier.
  // A compaction read from a tier that is down drops that tier's segments from `compact`.
  Status MoveChunksOf(uint64_t ino, const std::string& to, CompactSet* compact, Builders* builders);
  Status AddToBuilder(const std::string& tier, uint64_t ino, const meta::ChunkRow& c,
                      std::string_view payload, bool compaction, Builders* builders);
  Status FinishBuilder(Builder* b);
  Status ReclaimSegments(MigrateReport* report);
  // Sealed segments whose live share is below compact_below (counted in the report).
  Result<CompactSet> CompactionCandidates(MigrateReport* report);
  Status ReclaimJournal(MigrateReport* report);
  Status DeletePlacement(uint64_t segment, const std::string& tier);
  // Journals a placement segment's new state and keeps placement_ in step. REQUIRES: mu_.
  Status LogSegmentStateLocked(uint64_t segment, const std::string& tier, meta::SegmentState state);
  Result<MigrateReport> MigrateLocked(const MigrateOptions& options);
  Result<std::shared_ptr<const tiering::Policy>> CurrentPolicy(bool reload);
  Status SyncAndCommit();
  Status SyncAndCommitLocked();  // REQUIRES: mu_
  // Writes a snapshot of the metadata database under <hot>/snapshots and keeps the newest
  // two; returns the LSN it covers.
  Result<uint64_t> WriteMetaSnapshot();
  // The LSN the newest snapshot covers (0 when there is none).
  Result<uint64_t> LatestSnapshotLsn();
  // One more lookup of `ino`, reached as `name` in `parent`. REQUIRES: mu_.
  void RememberLocked(uint64_t ino, uint64_t parent, const std::string& name);
  // The path of `ino` from the root as the kernel reached it, or nullopt. REQUIRES: mu_.
  std::optional<std::string> PathOfLocked(uint64_t ino) const;
  // After a read: relatime (atime moves when it is older than mtime/ctime or a day old), and
  // for a read of data on a cold tier, a recall when the policy says so.
  void AfterRead(uint64_t ino, OpenInode* f, bool cold);
  // Recall on read (fs/tiering.cc): evaluates the policy for a file just read from a cold tier
  // with its access time from before the read, and queues its recall. REQUIRES: mu_.
  void MaybeQueueRecallLocked(uint64_t ino, int64_t atime_before);
  void RecallLoop();
  struct RecallCandidate;
  Status RecallIfPolicySays(const RecallCandidate& c);
  // What the policy sees of a file; *by_tier gets its stored bytes per tier. REQUIRES: mu_.
  tiering::FileFacts FactsLocked(const meta::InodeRow& inode, const std::string& path,
                                 const std::vector<meta::ChunkRow>& chunks,
                                 std::map<std::string, uint64_t>* by_tier);

  Config config_;
  Env* env_;
  Superblock sb_;
  bool read_only_ = false;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<crypto::FsKeys> keys_;
  std::unique_ptr<crypto::NonceSequence> nonces_;
  std::unique_ptr<journal::Journal> journal_;
  std::shared_ptr<ChunkMemory> memory_;  // chunk buffers for reuse
  std::unique_ptr<SpaceGuard> space_;    // writable mounts: the hot tier's reserve
  bool reserve_memory_ = false;
  std::unique_ptr<ChunkCache> cache_;
  std::unique_ptr<RecordCodec> codec_;
  std::unique_ptr<WorkerPool> sealers_;
  // Decode a READ's other chunks while its FUSE thread decodes one (WorkerPool::RunWithHelp),
  // when fewer reads than helpers are decoding stored chunks (reads_decoding_).
  std::unique_ptr<WorkerPool> read_helpers_;
  std::atomic<unsigned> reads_decoding_{0};
  // ReadAsync jobs that decode hot records, in the order the reads came (started: null before).
  std::unique_ptr<WorkerPool> hot_readers_;
  std::atomic<unsigned> hot_reads_{0};   // reads decoding hot records or queued to
  std::atomic<unsigned> hot_inline_{0};  // below this many, a FUSE worker decodes its read
  uint64_t replayed_from_ = 0, replayed_records_ = 0;

  std::mutex mu_;  // metadata: meta_, lookups_, open_, handles_
  std::unique_ptr<meta::MetaStore> meta_;
  std::unordered_map<uint64_t, Known> lookups_;
  std::unordered_map<uint64_t, std::shared_ptr<OpenInode>> open_;
  std::unordered_map<uint64_t, Handle> handles_;
  Status failed_;  // sticky: the database could not apply a journaled change
  uint64_t next_fh_ = 1;
  std::atomic<int64_t> dirty_bytes_{0};

  // Tiering. tiers_ is fixed after Open ("hot" = placement segments under <hot>/segments).
  std::map<std::string, std::unique_ptr<tiering::Tier>> tiers_;
  struct Placed {
    std::string tier;
    uint64_t size = 0;  // bytes, once its chunks moved in (0: not known yet)
  };
  std::unordered_map<uint64_t, Placed> placement_;  // placement segment id; guarded by mu_
  std::unique_ptr<ReadCache> read_cache_;
  std::unique_ptr<WorkerPool> cold_readers_;  // ReadAsync jobs that wait on a tier
  // Per cold tier: its fetches (waiters give up at the timeout), concurrent_fetches threads.
  std::map<std::string, std::unique_ptr<WorkerPool>> fetchers_;
  std::mutex fetch_mu_;  // never held while waiting for mu_
  std::map<uint64_t, std::vector<std::shared_ptr<Fetch>>> fetches_;  // in flight, by segment
  std::atomic<uint64_t> cold_fetches_{0};
  std::mutex migrate_mu_;  // one pass at a time
  std::mutex tiering_mu_;  // guards the fields below
  std::condition_variable tiering_cv_;
  std::shared_ptr<const tiering::Policy> policy_;
  std::string policy_error_;
  TieringStatus status_;  // pass_running, progress, last pass, backlog
  bool tiering_stop_ = false;
  // The hot tier is at its reserve: the background loop runs a pass soon (it frees the
  // segments that deletes emptied), at most one per kKickedPassGapMs.
  bool tiering_kick_ = false;
  static constexpr int64_t kKickedPassGapMs = 2000;
  bool background_tiering_ = true;
  bool null_data_ = false;  // OpenOptions::null_data
  std::thread tierer_;
  // Files read from a cold tier, for the recall thread to decide on. GUARDED_BY(tiering_mu_).
  static constexpr size_t kMaxRecallQueue = 4096;
  struct RecallCandidate {
    uint64_t ino;
    std::string path;
    int64_t atime_before;  // the access time the read replaced
  };
  std::deque<RecallCandidate> recalls_;
  std::unordered_set<uint64_t> recalls_queued_;  // the inos in recalls_
  std::condition_variable recall_cv_;
  std::atomic<bool> recall_running_{false};    // read by readers without tiering_mu_
  std::atomic<bool> stopping_tiering_{false};  // set at Shutdown: passes stop, none start
  std::thread recaller_;

  std::mutex committer_mu_;
  std::condition_variable committer_cv_;
  bool stopping_ = false;
  bool shut_down_ = false;
  std::thread committer_;
};

}  // namespace strata::fs
