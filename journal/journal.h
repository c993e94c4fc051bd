// The journal: the record of every change (DESIGN.md promise 5), an append-only sequence of
// segment files holding checksummed records numbered by a dense log sequence number (LSN).
// Payloads arrive already encrypted; the journal knows no keys, and CRC-32C lets anyone (the
// mirror site, fsck) validate records without them. Models: leveldb's log format and write
// group, RocksDB's WAL recovery.
//
// On-disk format, version 1 (normative spec: docs/formats/journal.md). Little-endian.
//
//   segment file  <dir>/<16 lowercase hex id>.seg, ids 1, 2, 3, ...
//   +------------------------------ header, 64 bytes -----------------------------+
//   | 0 magic "STRATASG"     | 8 version u32 = 1      | 12 header length u32 = 64 |
//   | 16 fs_uuid [16]        | 32 segment id u64      | 40 first LSN u64          |
//   | 48 created unix ns i64 | 56 reserved [4] = 0    | 60 masked CRC-32C [0,60)  |
//   +-----------------------------------------------------------------------------+
//   | record | record | ... | record | kSegmentEnd record (only once sealed)      |
//
//   record (20-byte header + payload; never spans segments)
//   +-----------+------------+---------+----------------+---------+-----------+
//   | crc u32   | length u32 | type u8 | reserved [3]=0 | LSN u64 | payload   |
//   +-----------+------------+---------+----------------+---------+-----------+
//     crc = masked CRC-32C of every record byte after the crc field.
//
// LSNs start at 1 and increase by exactly 1 per data/meta/checkpoint record, across segments.
// kSegmentEnd consumes no LSN: its LSN field repeats the last LSN of the segment (first LSN - 1
// for an empty one), its payload is empty, and nothing follows it in the file. A segment is
// sealed when the next record would not leave room for the kSegmentEnd record within
// segment_size; the sealed segment is fdatasync'ed before the next one is created.
//
// Durability chain: a record is durable once Sync covers it (the write and an fdatasync of its
// segment). A new segment is created with its header written and fdatasync'ed and the
// directory fsync'ed before any record is written into it, and the previous segment has been
// sealed and synced by then, so only the tail of the last segment can ever be torn.
//
// Thread-safety: every public method is thread-safe. Append, Sync, Read and Replay may run
// concurrently. The destructor must not race with any other call.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/status.h"

namespace strata::journal {

enum class RecordType : uint8_t {
  kData = 1,
  kMeta = 2,
  kCheckpoint = 3,
  kSegmentEnd = 4,  // internal: written when sealing; never returned by Replay, refused by Append
};

// Where a record lives. `offset` is the byte offset of the record header in the segment file.
struct Location {
  uint64_t segment = 0;
  uint64_t offset = 0;
  uint32_t length = 0;  // payload bytes
};

struct Record {
  uint64_t lsn;
  RecordType type;
  Location loc;
  std::string payload;
};

struct Options {
  Env* env = nullptr;                       // required
  std::string dir;                          // directory holding the segment files; must exist
  std::array<unsigned char, 16> fs_uuid{};  // written in every segment header and checked on open
  // A segment is sealed when the next record would not fit. At least 4 KiB. The largest
  // payload is segment_size - 104 bytes (segment header + record header + kSegmentEnd record).
  uint64_t segment_size = 64ull << 20;
  size_t write_buffer = 4u << 20;  // unsynced appends are buffered up to this, then written
  // Opens without writing anything: no lock, no truncation of a torn tail (the tail is just
  // ignored), Append returns NotSupported. For fsck and inspection.
  bool read_only = false;
  // Appends bypass the page cache (File::EnableDirectWrites) where the filesystem allows it:
  // the active segment may then end with up to 4095 zero bytes of padding after its last
  // record after a crash, which recovery skips and the next append writes over. A clean close
  // and a seal cut the segment to its exact end (docs/formats/journal.md).
  bool direct_writes = true;
  // Up to this many bytes of the most recently written records stay in memory, and Read serves
  // them from there: what the page cache held for a journal written through it (a record read
  // back soon after it was written, before the decoded-chunk cache has it: a study read right
  // after its acquisition). Only with direct writes (a journal written through the page cache
  // has its records there). 0: none.
  uint64_t keep_written = 0;
};

class Journal {
 public:
  // Opens (or, if `dir` has no segments, creates) the journal.
  //
  // A writable journal holds an advisory lock on <dir>/LOCK (Busy if taken). Recovery reads
  // every segment header (magic, version, fs_uuid: InvalidArgument or Corruption naming the
  // file), then scans ONLY the last segment for its valid end; it never scans the archive.
  // - A torn tail (bad or short records with no valid record after them) is truncated away and
  //   the file fdatasync'ed; a Warn names the segment and offset.
  // - A bad record followed by a valid record with a greater LSN is Corruption naming the
  //   segment file and offset (the admin runs fsck).
  // - A last segment whose header is incomplete and that holds no records (a crash while it
  //   was being created) is removed.
  // Whatever recovery finds is fdatasync'ed, so DurableLsn() == LastLsn() after Open.
  static Result<std::unique_ptr<Journal>> Open(const Options& opts);

  // Writes (without syncing) appends that are still buffered. A crash after this may still
  // lose them: only Sync makes records durable.
  ~Journal();

  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends one record and assigns the next LSN (the first LSN ever is 1; dense). The record
  // is readable by Read/Replay as soon as Append returns, even if it is only in memory, but is
  // not durable until Sync covers it. `type` must not be kSegmentEnd. The payload may be at
  // most segment_size - 104 bytes (InvalidArgument otherwise). lsn and loc may be null.
  //
  // Usually only copies into the write buffer. When the buffer reaches write_buffer bytes, or
  // a segment is sealed, the caller may write it (without fdatasync, except when sealing), and
  // it waits when the I/O in flight falls too far behind. InvalidArgument (bad type or size)
  // and NotSupported (read-only) assign no LSN. IOError or Aborted mean the journal has failed
  // (sticky error, see error()) and the record must be treated as lost.
  Status Append(RecordType type, std::string_view payload, uint64_t* lsn, Location* loc);

  // Returns when every record with LSN <= lsn is durable (written and fdatasync'ed). lsn is
  // clamped to LastLsn(), so Sync(UINT64_MAX) syncs everything appended so far.
  // Group commit: the first caller to find no I/O in progress becomes the leader: it takes
  // every buffered record, releases the mutex and writes them ending with one
  // File::WriteAndSync (a linked write + fdatasync), while appends go on into a fresh buffer;
  // the others wait on a condition variable and return once the leader's sync covers them,
  // or lead the next round with everything appended meanwhile.
  Status Sync(uint64_t lsn);

  // Reads the record at `loc`, checks its CRC, type (not kSegmentEnd) and length against
  // `loc`, and returns its payload. Corruption (and a logged alert) on any mismatch, never
  // wrong data. Records still in memory are served from memory.
  Status Read(const Location& loc, std::string* payload) const;
  // Asks the filesystem to start reading the records at `locs` in (they are about to be Read),
  // without waiting for them: one hint per run of nearby records. Records in memory and
  // locations that name no record of a live segment (a removed one, or past its end by a
  // damaged length) are skipped. Advisory; never fails.
  void WillRead(std::vector<Location> locs) const;

  // Calls fn for every record with after_lsn < LSN <= LastLsn() (as of the call), in LSN order,
  // starting from the segment whose header says it holds after_lsn + 1. Checks every record's
  // CRC and that LSNs are dense across segments; a sealed segment must end with its
  // kSegmentEnd record. Corruption names the segment file and offset. Returns fn's first
  // error unchanged. NotFound if the segment holding after_lsn + 1 is no longer in `dir`.
  // fn runs without any journal lock held (it may call Append).
  Status Replay(uint64_t after_lsn, const std::function<Status(const Record&)>& fn) const;

  // True when appends bypass the page cache (Options::direct_writes and the filesystem has
  // O_DIRECT; a filesystem that refuses it later is still reported here).
  bool direct_writes() const { return direct_; }

  uint64_t LastLsn() const;  // 0 when empty
  uint64_t DurableLsn() const;

  // Sticky error (leveldb's rule): a failed write, fdatasync or segment creation is never
  // retried. The call that hit it returns the original error; every later Append and Sync
  // returns Aborted("journal is in a failed state after <original error>; remount to
  // recover"). error() returns the original error, or OK. Read and Replay keep working.
  Status error() const;

  // Segments whose files exist, ascending. Every id below ActiveSegment() is sealed: complete,
  // ending with its kSegmentEnd record, fdatasync'ed (safe to ship, upload or scrub).
  // ActiveSegment() is the segment being appended to on disk. Right after a seal, Append may
  // briefly return locations in ActiveSegment() + 1 while the sealing I/O is in flight; Read
  // and Replay serve those from memory.
  std::vector<uint64_t> SegmentIds() const;
  // Bytes of written records kept in memory for Read (at most Options::keep_written).
  uint64_t KeptBytes() const;
  uint64_t ActiveSegment() const;

  // Deletes the files of sealed segments whose records are no longer needed, and fsyncs the
  // directory: the caller has made everything they hold durable elsewhere up to `max_lsn`
  // (the metadata database, their chunks moved). Segments holding an LSN above max_lsn stay,
  // as do ids not in the journal; an id at or above ActiveSegment() is InvalidArgument (and
  // nothing is removed). Replay and Read of a removed segment fail.
  // Gaps are normal afterwards: recovery and Replay from any LSN above max_lsn never cross one.
  // `removed` (may be null) receives the ids whose files were deleted.
  Status RemoveSegments(const std::vector<uint64_t>& ids, uint64_t max_lsn,
                        std::vector<uint64_t>* removed);
  std::string SegmentPath(uint64_t id) const;  // dir + "/" + 16 lowercase hex digits + ".seg"

 private:
  struct Chunk;  // a run of encoded records bound for one place in one segment
  struct SegmentInfo {
    uint64_t id;
    uint64_t first_lsn;
  };

  explicit Journal(const Options& opts);

  Status Recover();
  Status ScanLastSegment(File* file, uint64_t first_lsn, bool* sealed);
  Status CreateSegment(uint64_t id, uint64_t first_lsn, std::shared_ptr<File>* out);

  // REQUIRES: mu_ held.
  std::shared_ptr<Chunk> NewChunkLocked() const;
  void PushBufferLocked();
  void SealLocked();
  void SetErrorLocked(const Status& s);
  Status AbortedLocked() const;
  // REQUIRES: mu_ held via l; if the I/O token is free, writes out pending_ (may release mu_).
  Status MaybeWriteLocked(std::unique_lock<std::mutex>& l);
  // REQUIRES: mu_ held via l and the I/O token (io_busy_) taken by the caller. Writes the first
  // `count` chunks of pending_ in order, releasing mu_ around each I/O; fdatasyncs sealing
  // chunks and, when sync_last, the last one.
  Status DrainLocked(std::unique_lock<std::mutex>& l, size_t count, bool sync_last);
  // REQUIRES: mu_ held via l and the I/O token. Writes every queued seal, then gives the token
  // back and wakes waiters.
  Status ReleaseIoLocked(std::unique_lock<std::mutex>& l);
  // What of a chunk just written to keep for Read (null: nothing; a small chunk's bytes are
  // copied out of their large buffer). No lock needed.
  std::shared_ptr<const Chunk> ForKeeping(const std::shared_ptr<const Chunk>& c) const;
  // Whether `c` holds the whole record at `loc`; no overflow, whatever a damaged row says.
  static bool Holds(const Chunk& c, const Location& loc);
  // REQUIRES: mu_ held. The written or queued chunk (not buf_) that holds the whole record at
  // `loc`, or null.
  std::shared_ptr<const Chunk> FindInMemoryLocked(const Location& loc) const;
  // REQUIRES: mu_ held. Keeps it, dropping the oldest kept beyond Options::keep_written.
  void KeepLocked(std::shared_ptr<const Chunk> c);
  // REQUIRES: the I/O token, mu_ NOT held.
  Status WriteChunk(const Chunk& c, bool sync);

  Result<std::shared_ptr<File>> ReadFile(uint64_t id) const;
  Status ReadSegmentHeader(File* file, uint64_t id, uint64_t* first_lsn) const;
  Status CorruptionAt(uint64_t segment, uint64_t offset, std::string_view what) const;

  const Options opts_;
  Env* const env_;
  const uint64_t max_payload_;
  std::unique_ptr<FileLock> lock_;

  // Lock order: mu_ and files_mu_ are never held together. No lock is held across a write or
  // fdatasync: the I/O token (io_busy_) serialises file writes instead, and a thread holding
  // the token still takes mu_ only briefly between I/Os. cv_ waits happen only without the
  // token, so the token holder never waits for anyone.
  mutable std::mutex mu_;
  std::condition_variable cv_;  // signalled when durable_lsn_, pending_ or io_busy_ change

  // GUARDED_BY(mu_):
  uint64_t next_lsn_ = 1;
  uint64_t written_lsn_ = 0;     // every LSN <= this has been written to its segment file
  uint64_t durable_lsn_ = 0;     // every LSN <= this has been written and fdatasync'ed
  uint64_t active_segment_ = 0;  // where Append puts records (may be ahead of the disk)
  uint64_t disk_segment_ = 0;    // the last segment whose file exists; those below are sealed
  uint64_t active_end_ = 0;      // logical end of the active segment: file + memory
  std::shared_ptr<Chunk> buf_;   // open write buffer, always for (active_segment_, offset)
  // Chunks handed off for writing, in file order. A chunk leaves only after its write
  // completed, so Read and Replay find every unwritten record either here or in buf_.
  std::deque<std::shared_ptr<const Chunk>> pending_;
  uint64_t pending_bytes_ = 0;
  // Written chunks kept for Read (Options::keep_written), in file order, oldest first;
  // kept_bytes_ counts their allocations.
  std::deque<std::shared_ptr<const Chunk>> kept_;
  uint64_t kept_bytes_ = 0;
  std::vector<SegmentInfo> segments_;  // ascending; includes segments not yet created on disk
  bool io_busy_ = false;               // the I/O token: at most one thread writes files
  Status error_;

  // Owned by the holder of the I/O token (or Open/~Journal): the file being appended to.
  std::shared_ptr<File> io_file_;
  uint64_t io_segment_ = 0;
  // Whether appends bypass the page cache: decided by Open on its first segment file, before
  // any other thread can call in; every later segment follows it.
  bool direct_ = false;

  // Read-only handles for Read and Replay, a small cache keyed by segment id.
  mutable std::mutex files_mu_;
  mutable std::map<uint64_t, std::shared_ptr<File>> read_files_;  // GUARDED_BY(files_mu_)
};

}  // namespace strata::journal
