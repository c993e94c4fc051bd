// The filesystem config (one TOML file per filesystem). Unknown keys and bad values are
// refused with the file, line and key, so a typo never silently becomes a default.
//
//   [filesystem]
//   name = "pacs"
//   chunk_size = "128KiB"      # fixed at mkfs
//   segment_size = "64MiB"     # fixed at mkfs
//   compression_level = 1      # zstd level, 1..19; 0 stores chunks uncompressed
//   [keys]
//   key_file = "/etc/strata/pacs.key"
//   [tiers.hot]
//   path = "/var/lib/strata/pacs/hot"
//   [cache]
//   chunk_cache = "256MiB"     # decoded chunks kept in memory
//   dirty_limit = "256MiB"     # unflushed file data held in memory
//   [journal]
//   commit_interval = "1s"     # unsynced changes become durable at most this late
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace strata::fs {

struct Config {
  std::string source;  // the config file's path, for messages
  std::string name;
  std::string key_file;
  std::string hot_path;
  uint32_t chunk_size = 128 * 1024;
  uint64_t segment_size = 64ull << 20;
  int compression_level = 1;
  uint64_t chunk_cache_bytes = 256ull << 20;
  uint64_t dirty_limit_bytes = 256ull << 20;
  int64_t commit_interval_ms = 1000;
};

Result<Config> LoadConfig(const std::string& path);
Result<Config> ParseConfig(const std::string& text, const std::string& source);

// "128KiB", "64MiB", "1GiB", "4096" -> bytes. "1s", "500ms", "90d" -> milliseconds.
Result<uint64_t> ParseSize(const std::string& s);
Result<int64_t> ParseDurationMs(const std::string& s);

}  // namespace strata::fs
