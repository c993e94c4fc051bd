// The tiering engine's public types: what a migration pass reports and what `strata migrate
// --status` shows. The engine itself is part of fs::Filesystem (fs/tiering.cc): it needs the
// chunk map, the journal and the keys, and it must order its steps with the data path.
//
// A pass (docs/tiering.md): evaluate the policy over every file (depth-first, so the files of
// one study are adjacent), copy the sealed chunks of each file that belongs elsewhere into a
// placement segment for the target tier, and for each finished segment:
//   1. journal the intent (kSegmentState kUploading) and make it durable;
//   2. write and fdatasync the segment under <hot>/staging/;
//   3. upload it; 4. read it back whole and compare;
//   5. journal kMoveChunks (each chunk moves only if unchanged since it was copied), durable;
//   6. remove the staging file. The old copies are now dead bytes.
// A crash before 5 leaves an intent without a move: the next open or pass deletes the object
// (rollback). After 5 the move is complete. Nothing is freed before its copy is verified.
//
// The same pass compacts: the live chunks of sealed segments whose live share fell below
// [policy] compact_below are rewritten the same way into new segments on the same tier (a
// journal segment's go to a placement segment on the hot tier). Then it frees what no chunk
// points at any more: placement segments on their tier, and journal segments once the
// metadata database is checkpointed past their last record.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace strata::fs {

struct MigrateProgress {
  std::string phase;  // "recovering", "scanning", "uploading", "compacting", "done"
  uint64_t files_scanned = 0;
  uint64_t files_moved = 0;
  uint64_t bytes_moved = 0;  // stored (compressed, sealed) bytes copied to their new tier
  uint64_t segments_written = 0;
};

struct MigrateOptions {
  bool dry_run = false;  // evaluate and count; change nothing
  // The time the policy's ages are measured against; 0 = the Env's clock.
  int64_t now_ns = 0;
  // Called from the pass's thread as it goes (at most a few times a second).
  std::function<void(const MigrateProgress&)> progress;
  // Set to stop the pass early (at the next file); what was moved stays moved.
  const std::atomic<bool>* cancel = nullptr;
  // Only free what no file uses any more (segments emptied by deletes, journal segments): no
  // scan of the namespace, no move, no compaction. What a full hot tier asks for.
  bool reclaim_only = false;
};

// Per rule: the files the rule selects that are not (all) on its target tier yet.
struct RuleCount {
  std::string rule;
  std::string to;
  uint64_t files = 0;
  uint64_t bytes = 0;  // stored bytes that would move / moved
};

struct MigrateReport {
  bool dry_run = false;
  uint64_t files_scanned = 0;
  std::vector<RuleCount> rules;  // in policy order
  uint64_t files_moved = 0;
  uint64_t bytes_moved = 0;
  // Files a rule selected that were open for writing: left for a later pass, as a file being
  // written is not cold (and its head would go to the tier while its tail is written hot).
  uint64_t files_busy = 0;
  uint64_t segments_written = 0;
  uint64_t segments_deleted = 0;  // emptied placement segments removed from their tier
  // Compaction: segments below compact_below whose live chunks were rewritten (dry run:
  // would be), and those live bytes.
  uint64_t segments_compacted = 0;
  uint64_t bytes_compacted = 0;
  uint64_t journal_segments_freed = 0;  // journal segment files removed from the hot tier
  uint64_t bytes_freed = 0;             // their sizes plus the deleted placement segments'
  uint64_t segments_rolled_back = 0;    // uploads a crash or an error left unfinished
  std::vector<std::string> errors;      // e.g. a tier that was down: those moves wait
  int64_t elapsed_ms = 0;
};

struct TierUsage {
  std::string name;
  std::string kind;  // "hot", "directory", "s3"
  uint64_t segments = 0;
  uint64_t live_bytes = 0;    // stored bytes files point at
  uint64_t object_bytes = 0;  // bytes of its segments (live + dead, before compaction)
};

struct TieringStatus {
  bool pass_running = false;
  MigrateProgress progress;  // of the running pass
  int64_t last_pass_end_ns = 0;
  std::string last_pass_result;  // "ok: moved N files (M bytes)" or the error
  uint64_t backlog_files = 0;    // selected but not yet moved, as of the last pass
  uint64_t backlog_bytes = 0;
  std::vector<TierUsage> tiers;
  uint64_t read_cache_bytes = 0;
  uint64_t cold_fetches = 0;
  uint64_t read_cache_hits = 0;
  uint64_t files_recalled = 0;  // by recall_on_read since the filesystem was opened
  std::string policy_file;
  std::string policy_error;  // why the last reload was refused (the old policy stays)
};

std::string ToJson(const MigrateReport& r);
std::string ToJson(const TieringStatus& s);
std::string ToText(const MigrateReport& r);
std::string ToText(const TieringStatus& s);

}  // namespace strata::fs
