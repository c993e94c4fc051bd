#include "fs/config.h"

#include <toml++/toml.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>

namespace strata::fs {
namespace {

std::string Where(const std::string& source, const toml::source_region& r) {
  return source + ":" + std::to_string(r.begin.line);
}

Status CheckKeys(const toml::table& t, const std::set<std::string>& allowed,
                 const std::string& table_name, const std::string& source) {
  for (auto&& [k, v] : t) {
    if (!allowed.count(std::string(k.str())))
      return Status::InvalidArgument(Where(source, v.source()) + ": unknown key '" +
                                     std::string(k.str()) + "' in [" + table_name + "]");
  }
  return Status::OK();
}

Result<std::string> GetString(const toml::table& t, const char* key, const std::string& table,
                              const std::string& source, bool required) {
  const toml::node* n = t.get(key);
  if (n == nullptr) {
    if (required)
      return Status::InvalidArgument(source + ": missing required key '" + key + "' in [" + table +
                                     "]");
    return std::string();
  }
  if (!n->is_string())
    return Status::InvalidArgument(Where(source, n->source()) + ": [" + table + "] " + key +
                                   " must be a string");
  std::string v = **n->as_string();
  if (v.empty())
    return Status::InvalidArgument(Where(source, n->source()) + ": [" + table + "] " + key +
                                   " must not be empty");
  return v;
}

// A size may be written as an integer (bytes) or a string with a unit.
Result<uint64_t> GetSize(const toml::table& t, const char* key, uint64_t def,
                         const std::string& table, const std::string& source) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return def;
  Result<uint64_t> r = Status::InvalidArgument("");
  if (n->is_integer()) {
    int64_t v = **n->as_integer();
    if (v < 0)
      r = Status::InvalidArgument("negative");
    else
      r = static_cast<uint64_t>(v);
  } else if (n->is_string()) {
    r = ParseSize(**n->as_string());
  }
  if (!r.ok())
    return Status::InvalidArgument(Where(source, n->source()) + ": [" + table + "] " + key +
                                   ": expected a size such as \"128KiB\" or \"64MiB\"");
  return r;
}

// A duration string ("30s", "1h"); "off" gives 0 when allowed.
Result<int64_t> GetDuration(const toml::table& t, const char* key, int64_t def,
                            const std::string& table, const std::string& source, int64_t min_ms,
                            int64_t max_ms, bool allow_off = false) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return def;
  if (n->is_string()) {
    std::string v = **n->as_string();
    if (allow_off && v == "off") return int64_t{0};
    auto ms = ParseDurationMs(v);
    if (ms.ok() && *ms >= min_ms && *ms <= max_ms) return *ms;
  }
  return Status::InvalidArgument(Where(source, n->source()) + ": [" + table + "] " + key +
                                 ": expected a duration between " + std::to_string(min_ms) +
                                 "ms and " + std::to_string(max_ms / 1000) + "s such as \"30s\"" +
                                 (allow_off ? " or \"off\"" : ""));
}

Result<bool> GetBool(const toml::table& t, const char* key, bool def, const std::string& table,
                     const std::string& source) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return def;
  if (!n->is_boolean())
    return Status::InvalidArgument(Where(source, n->source()) + ": [" + table + "] " + key +
                                   " must be true or false");
  return **n->as_boolean();
}

Result<TierConfig> ParseTier(const std::string& name, const toml::table& t,
                             const std::string& source) {
  const std::string table = "tiers." + name;
  TierConfig c;
  c.name = name;
  c.line = static_cast<int>(t.source().begin.line);
  for (char ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_')
      return Status::InvalidArgument(Where(source, t.source()) + ": tier name '" + name +
                                     "' may contain only letters, digits, '-' and '_'");
  ASSIGN_OR_RETURN(c.kind, GetString(t, "kind", table, source, true));
  if (c.kind == "directory") {
    RETURN_IF_ERROR(CheckKeys(
        t, {"kind", "path", "read_timeout", "readahead", "concurrent_fetches"}, table, source));
    ASSIGN_OR_RETURN(c.path, GetString(t, "path", table, source, true));
    if (c.path.front() != '/')
      return Status::InvalidArgument(Where(source, t.get("path")->source()) + ": [" + table +
                                     "] path must be absolute");
  } else if (c.kind == "s3") {
    RETURN_IF_ERROR(CheckKeys(
        t,
        {"kind", "endpoint", "region", "bucket", "prefix", "storage_class", "credentials_file",
         "profile", "ca_file", "verify_tls", "addressing", "connect_timeout", "request_timeout",
         "read_timeout", "readahead", "concurrent_fetches"},
        table, source));
    ASSIGN_OR_RETURN(c.endpoint, GetString(t, "endpoint", table, source, true));
    if (!c.endpoint.starts_with("http://") && !c.endpoint.starts_with("https://"))
      return Status::InvalidArgument(Where(source, t.get("endpoint")->source()) + ": [" + table +
                                     "] endpoint must start with https:// or http://");
    ASSIGN_OR_RETURN(c.bucket, GetString(t, "bucket", table, source, true));
    if (t.get("region")) {
      ASSIGN_OR_RETURN(c.region, GetString(t, "region", table, source, true));
    }
    if (t.get("prefix")) {
      ASSIGN_OR_RETURN(c.prefix, GetString(t, "prefix", table, source, true));
    }
    ASSIGN_OR_RETURN(c.storage_class, GetString(t, "storage_class", table, source, false));
    ASSIGN_OR_RETURN(c.credentials_file, GetString(t, "credentials_file", table, source, false));
    if (t.get("profile")) {
      ASSIGN_OR_RETURN(c.profile, GetString(t, "profile", table, source, true));
    }
    ASSIGN_OR_RETURN(c.ca_file, GetString(t, "ca_file", table, source, false));
    ASSIGN_OR_RETURN(c.verify_tls, GetBool(t, "verify_tls", true, table, source));
    std::string addressing;
    ASSIGN_OR_RETURN(addressing, GetString(t, "addressing", table, source, false));
    if (!addressing.empty() && addressing != "path" && addressing != "virtual")
      return Status::InvalidArgument(Where(source, t.get("addressing")->source()) + ": [" + table +
                                     "] addressing must be \"path\" or \"virtual\"");
    c.path_style = addressing != "virtual";
    ASSIGN_OR_RETURN(c.connect_timeout_ms, GetDuration(t, "connect_timeout", c.connect_timeout_ms,
                                                       table, source, 100, 600000));
    ASSIGN_OR_RETURN(c.request_timeout_ms, GetDuration(t, "request_timeout", c.request_timeout_ms,
                                                       table, source, 100, 3600000));
  } else {
    return Status::InvalidArgument(Where(source, t.get("kind")->source()) + ": [" + table +
                                   "] kind '" + c.kind + "' is not \"directory\" or \"s3\"");
  }
  ASSIGN_OR_RETURN(c.read_timeout_ms,
                   GetDuration(t, "read_timeout", c.read_timeout_ms, table, source, 100, 3600000));
  ASSIGN_OR_RETURN(c.readahead_bytes, GetSize(t, "readahead", c.readahead_bytes, table, source));
  if (c.readahead_bytes > kMaxReadahead)
    return Status::InvalidArgument(Where(source, t.get("readahead")->source()) + ": [" + table +
                                   "] readahead must be at most 64MiB");
  if (const toml::node* n = t.get("concurrent_fetches")) {
    if (!n->is_integer() || **n->as_integer() < 1 || **n->as_integer() > 256)
      return Status::InvalidArgument(Where(source, n->source()) + ": [" + table +
                                     "] concurrent_fetches must be an integer 1..256");
    c.concurrent_fetches = static_cast<int>(**n->as_integer());
  }
  return c;
}

}  // namespace

const TierConfig* Config::FindTier(const std::string& n) const {
  for (const auto& t : tiers)
    if (t.name == n) return &t;
  return nullptr;
}

std::vector<std::string> Config::TierNames() const {
  std::vector<std::string> out{"hot"};
  for (const auto& t : tiers) out.push_back(t.name);
  return out;
}

Result<uint64_t> ParseSize(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) i++;
  if (i == 0 || i > 18) return Status::InvalidArgument("bad size '" + s + "'");
  uint64_t v = std::stoull(s.substr(0, i));
  std::string unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  uint64_t mul;
  if (unit.empty() || unit == "B")
    mul = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k")
    mul = 1ull << 10;
  else if (unit == "MiB" || unit == "M")
    mul = 1ull << 20;
  else if (unit == "GiB" || unit == "G")
    mul = 1ull << 30;
  else if (unit == "TiB" || unit == "T")
    mul = 1ull << 40;
  else if (unit == "KB")
    mul = 1000;
  else if (unit == "MB")
    mul = 1000 * 1000;
  else if (unit == "GB")
    mul = 1000ull * 1000 * 1000;
  else
    return Status::InvalidArgument("bad size unit in '" + s + "'");
  if (v > UINT64_MAX / mul) return Status::InvalidArgument("size '" + s + "' is too large");
  return v * mul;
}

Result<int64_t> ParseDurationMs(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) i++;
  if (i == 0 || i > 12) return Status::InvalidArgument("bad duration '" + s + "'");
  int64_t v = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  int64_t mul;
  if (unit == "ms")
    mul = 1;
  else if (unit == "s")
    mul = 1000;
  else if (unit == "m" || unit == "min")
    mul = 60 * 1000;
  else if (unit == "h")
    mul = 3600 * 1000;
  else if (unit == "d")
    mul = 86400ll * 1000;
  else
    return Status::InvalidArgument("bad duration unit in '" + s + "' (use ms, s, m, h, d)");
  if (v > INT64_MAX / mul) return Status::InvalidArgument("duration '" + s + "' is too large");
  return v * mul;
}

Result<Config> ParseConfig(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }
  Config c;
  c.source = source;
  RETURN_IF_ERROR(CheckKeys(root, {"filesystem", "keys", "tiers", "cache", "journal", "policy"},
                            "top level", source));
  auto table = [&](const char* name, bool required) -> Result<const toml::table*> {
    const toml::node* n = root.get(name);
    if (n == nullptr) {
      if (required)
        return Status::InvalidArgument(source + ": missing required table [" + name + "]");
      return static_cast<const toml::table*>(nullptr);
    }
    if (!n->is_table())
      return Status::InvalidArgument(Where(source, n->source()) + ": '" + name +
                                     "' must be a table");
    return n->as_table();
  };

  ASSIGN_OR_RETURN(const toml::table* fs, table("filesystem", true));
  RETURN_IF_ERROR(CheckKeys(*fs, {"name", "chunk_size", "segment_size", "compression_level"},
                            "filesystem", source));
  ASSIGN_OR_RETURN(c.name, GetString(*fs, "name", "filesystem", source, true));
  for (char ch : c.name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
      return Status::InvalidArgument(source + ": [filesystem] name '" + c.name +
                                     "' may contain only letters, digits, '-', '_' and '.'");
  }
  ASSIGN_OR_RETURN(uint64_t chunk, GetSize(*fs, "chunk_size", c.chunk_size, "filesystem", source));
  if (chunk < 4096 || chunk > (4u << 20) || (chunk & (chunk - 1)) != 0)
    return Status::InvalidArgument(source +
                                   ": [filesystem] chunk_size must be a power of two "
                                   "between 4KiB and 4MiB");
  c.chunk_size = static_cast<uint32_t>(chunk);
  c.chunk_size_set = fs->contains("chunk_size");
  c.segment_size_set = fs->contains("segment_size");
  ASSIGN_OR_RETURN(c.segment_size,
                   GetSize(*fs, "segment_size", c.segment_size, "filesystem", source));
  if (c.segment_size < 4 * uint64_t{c.chunk_size} || c.segment_size > (4ull << 30))
    return Status::InvalidArgument(source +
                                   ": [filesystem] segment_size must be at least 4 "
                                   "chunks and at most 4GiB");
  if (const toml::node* n = fs->get("compression_level")) {
    if (!n->is_integer() || **n->as_integer() < 0 || **n->as_integer() > 19)
      return Status::InvalidArgument(Where(source, n->source()) +
                                     ": [filesystem] compression_level must be an integer 0..19");
    c.compression_level = static_cast<int>(**n->as_integer());
  }

  ASSIGN_OR_RETURN(const toml::table* keys, table("keys", true));
  RETURN_IF_ERROR(CheckKeys(*keys, {"key_file"}, "keys", source));
  ASSIGN_OR_RETURN(c.key_file, GetString(*keys, "key_file", "keys", source, true));

  ASSIGN_OR_RETURN(const toml::table* tiers, table("tiers", true));
  for (auto&& [k, v] : *tiers) {
    std::string tier(k.str());
    if (!v.is_table())
      return Status::InvalidArgument(Where(source, v.source()) + ": tiers." + tier +
                                     " must be a table");
    if (tier == "hot") {
      RETURN_IF_ERROR(CheckKeys(*v.as_table(), {"path", "reserve"}, "tiers.hot", source));
      ASSIGN_OR_RETURN(c.hot_path, GetString(*v.as_table(), "path", "tiers.hot", source, true));
      if (v.as_table()->contains("reserve")) {
        ASSIGN_OR_RETURN(c.hot_reserve_bytes,
                         GetSize(*v.as_table(), "reserve", 0, "tiers.hot", source));
      }
      continue;
    }
    ASSIGN_OR_RETURN(TierConfig t, ParseTier(tier, *v.as_table(), source));
    c.tiers.push_back(std::move(t));
  }
  if (c.hot_path.empty())
    return Status::InvalidArgument(source + ": missing required table [tiers.hot]");
  if (c.hot_path.front() != '/')
    return Status::InvalidArgument(source + ": [tiers.hot] path must be absolute");

  ASSIGN_OR_RETURN(const toml::table* policy, table("policy", false));
  if (policy) {
    RETURN_IF_ERROR(CheckKeys(*policy, {"file", "interval", "compact_below"}, "policy", source));
    // Without a file nothing migrates, but passes still compact and reclaim segments.
    ASSIGN_OR_RETURN(c.policy_file, GetString(*policy, "file", "policy", source, false));
    if (!c.policy_file.empty() && c.policy_file.front() != '/')
      return Status::InvalidArgument(Where(source, policy->get("file")->source()) +
                                     ": [policy] file must be an absolute path");
    ASSIGN_OR_RETURN(c.policy_interval_ms,
                     GetDuration(*policy, "interval", c.policy_interval_ms, "policy", source,
                                 60 * 1000, 366 * 86400000ll, /*allow_off=*/true));
    if (const toml::node* n = policy->get("compact_below")) {
      // "40%": a sealed segment whose live bytes fall below this share of its size is
      // compacted. "0%" turns compaction off (emptied segments are still freed).
      int pct = -1;
      if (n->is_string()) {
        const std::string v = **n->as_string();
        char* end = nullptr;
        long x = std::strtol(v.c_str(), &end, 10);
        if (!v.empty() && std::isdigit(static_cast<unsigned char>(v[0])) && end != nullptr &&
            std::string(end) == "%" && x >= 0 && x <= 90)
          pct = static_cast<int>(x);
      }
      if (pct < 0)
        return Status::InvalidArgument(Where(source, n->source()) +
                                       ": [policy] compact_below must be a percentage between "
                                       "\"0%\" and \"90%\", e.g. \"50%\"");
      c.compact_below_pct = pct;
    }
  }

  ASSIGN_OR_RETURN(const toml::table* cache, table("cache", false));
  if (cache) {
    RETURN_IF_ERROR(CheckKeys(
        *cache, {"chunk_cache", "dirty_limit", "dirty_expire", "read_cache", "cold_readers"},
        "cache", source));
    ASSIGN_OR_RETURN(c.read_cache_bytes,
                     GetSize(*cache, "read_cache", c.read_cache_bytes, "cache", source));
    if (const toml::node* n = cache->get("cold_readers")) {
      if (!n->is_integer() || **n->as_integer() < 1 || **n->as_integer() > 1024)
        return Status::InvalidArgument(Where(source, n->source()) +
                                       ": [cache] cold_readers must be an integer 1..1024");
      c.cold_readers = static_cast<int>(**n->as_integer());
    }
    ASSIGN_OR_RETURN(c.chunk_cache_bytes,
                     GetSize(*cache, "chunk_cache", c.chunk_cache_bytes, "cache", source));
    ASSIGN_OR_RETURN(c.dirty_limit_bytes,
                     GetSize(*cache, "dirty_limit", c.dirty_limit_bytes, "cache", source));
    if (c.dirty_limit_bytes < 4 * uint64_t{c.chunk_size})
      return Status::InvalidArgument(source + ": [cache] dirty_limit must hold at least 4 chunks");
    ASSIGN_OR_RETURN(c.dirty_expire_ms, GetDuration(*cache, "dirty_expire", c.dirty_expire_ms,
                                                    "cache", source, 10, 60000));
  }
  ASSIGN_OR_RETURN(const toml::table* journal, table("journal", false));
  if (journal) {
    RETURN_IF_ERROR(CheckKeys(*journal, {"commit_interval", "direct_io"}, "journal", source));
    ASSIGN_OR_RETURN(c.journal_direct_io,
                     GetBool(*journal, "direct_io", c.journal_direct_io, "journal", source));
    std::string ci;
    ASSIGN_OR_RETURN(ci, GetString(*journal, "commit_interval", "journal", source, false));
    if (!ci.empty()) {
      auto ms = ParseDurationMs(ci);
      if (!ms.ok() || *ms < 10 || *ms > 60000)
        return Status::InvalidArgument(source +
                                       ": [journal] commit_interval must be a duration "
                                       "between 10ms and 60s, e.g. \"1s\"");
      c.commit_interval_ms = *ms;
    }
  }
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    return Status::InvalidArgument("config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return ParseConfig(text, path);
}

}  // namespace strata::fs
