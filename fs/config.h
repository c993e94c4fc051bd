// The filesystem config (one TOML file per filesystem). Unknown keys and bad values are
// refused with the file, line and key, so a typo never silently becomes a default.
//
//   [filesystem]
//   name = "pacs"
//   chunk_size = "64KiB"       # fixed at mkfs
//   segment_size = "64MiB"     # fixed at mkfs
//   compression_level = 1      # zstd level, 1..19; 0 stores chunks uncompressed
//   [keys]
//   key_file = "/etc/strata/pacs.key"
//   [tiers.hot]
//   path = "/var/lib/strata/pacs/hot"
//   [cache]
//   chunk_cache = "256MiB"     # decoded chunks kept in memory
//   dirty_limit = "256MiB"     # unflushed file data held in memory
//   dirty_expire = "5s"        # unsynced file data dirty this long goes to the next commit
//   [journal]
//   commit_interval = "1s"     # unsynced metadata changes become durable at most this late
//   direct_io = true           # appends bypass the page cache where the filesystem allows it
//   [tiers.archive]            # any number of cold tiers (docs/tiering.md)
//   kind = "directory"         # or "s3"
//   path = "/srv/archive"
//   [policy]
//   file = "/etc/strata/pacs-policy.toml"
//   interval = "1h"            # background migration passes; "off" disables
//   compact_below = "50%"      # rewrite segments whose live share falls below this
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace strata::fs {

struct TierConfig {
  std::string name;
  std::string kind;  // "directory" or "s3"
  int line = 0;      // where it is declared, for messages
  std::string path;  // directory
  // s3
  std::string endpoint, region = "us-east-1", bucket, prefix, storage_class;
  std::string credentials_file;  // empty: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
  std::string profile = "default";
  std::string ca_file;
  bool verify_tls = true;
  bool path_style = true;
  int64_t connect_timeout_ms = 5000;
  int64_t request_timeout_ms = 30000;
  // A read that waits longer than this on the tier fails with EIO (the tier counts as down).
  int64_t read_timeout_ms = 30000;
  // A cold read fetches the block of this size of the segment that holds the record it needs
  // (the neighbouring files of the same series, usually), keeping it in the read cache; 0: only
  // the chunks of the file being read.
  uint64_t readahead_bytes = 1ull << 20;
  // Fetches (GETs, preads) in flight at once on this tier, each on a thread of the tier's own;
  // more wait in this tier's queue, so a tier that hangs never holds up another's fetches.
  int concurrent_fetches = 32;
};
inline constexpr uint64_t kMaxReadahead = 64ull << 20;

struct Config {
  std::string source;  // the config file's path, for messages
  std::string name;
  std::string key_file;
  std::string hot_path;
  // Free space on the hot tier's filesystem kept (with one journal segment) for what frees
  // space (unlink, truncate, compaction) and for recovery: below it, new data and names get ENOSPC
  // (fs/space_guard.h). Unset: min(1 GiB, 5% of that filesystem), computed at mount.
  std::optional<uint64_t> hot_reserve_bytes;
  uint32_t chunk_size = 64 * 1024;  // docs/architecture.md, "Choices"
  uint64_t segment_size = 64ull << 20;
  // Whether the file set them: both are fixed at mkfs, and a mount takes the superblock's.
  bool chunk_size_set = false, segment_size_set = false;
  int compression_level = 1;
  uint64_t chunk_cache_bytes = 256ull << 20;
  uint64_t dirty_limit_bytes = 256ull << 20;
  int64_t commit_interval_ms = 1000;
  // Journal appends bypass the page cache (O_DIRECT) where the hot tier's filesystem has it.
  bool journal_direct_io = true;
  // Unsynced file data is handed to the journal once it has been dirty this long (and is
  // durable at the next commit). Shorter than ext4's 30 s writeback and equal to its 5 s
  // journal commit: a chunk rewritten all the time is resealed once per expiry, not per second.
  int64_t dirty_expire_ms = 5000;
  std::vector<TierConfig> tiers;             // cold tiers, in config order (not the hot tier)
  std::string policy_file;                   // empty: no policy, nothing migrates
  int64_t policy_interval_ms = 3600 * 1000;  // 0: no background passes
  int compact_below_pct = 50;                // compact segments less live than this; 0: never
  uint64_t read_cache_bytes = 1ull << 30;    // cold chunks kept (sealed) on the hot tier
  int cold_readers = 32;                     // threads serving reads that wait on a tier

  const TierConfig* FindTier(const std::string& name) const;
  // "hot" and every cold tier's name.
  std::vector<std::string> TierNames() const;
};

Result<Config> LoadConfig(const std::string& path);
Result<Config> ParseConfig(const std::string& text, const std::string& source);

// "128KiB", "64MiB", "1GiB", "4096" -> bytes. "1s", "500ms", "90d" -> milliseconds.
Result<uint64_t> ParseSize(const std::string& s);
Result<int64_t> ParseDurationMs(const std::string& s);

}  // namespace strata::fs
