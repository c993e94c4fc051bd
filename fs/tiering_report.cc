// Migration reports and tiering status as text (for people) and JSON (for scripts).
#include <fmt/format.h>

#include "fs/tiering.h"

namespace strata::fs {

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
      R"("files_busy":{},"segments_written":{},"segments_deleted":{},"segments_rolled_back":{},)"
      R"("segments_compacted":{},"bytes_compacted":{},"journal_segments_freed":{},)"
      R"("bytes_freed":{},"errors":[{}],"elapsed_ms":{}}})",
      r.dry_run, r.files_scanned, rules, r.files_moved, r.bytes_moved, r.files_busy,
      r.segments_written, r.segments_deleted, r.segments_rolled_back, r.segments_compacted,
      r.bytes_compacted, r.journal_segments_freed, r.bytes_freed, errors, r.elapsed_ms);
}

std::string ToText(const MigrateReport& r) {
  std::string o;
  o += fmt::format("{} files scanned in {:.1f} s\n", r.files_scanned, r.elapsed_ms / 1000.0);
  o += fmt::format("{:<24} {:<12} {:>10} {:>14}\n", "rule", "to", "files", "bytes");
  for (const auto& rc : r.rules)
    o += fmt::format("{:<24} {:<12} {:>10} {:>14}\n", rc.rule, rc.to, rc.files,
                     HumanBytes(rc.bytes));
  if (r.dry_run) {
    if (r.segments_compacted)
      o += fmt::format("would compact {} segments ({} live)\n", r.segments_compacted,
                       HumanBytes(r.bytes_compacted));
    o += "dry run: nothing was moved\n";
  } else {
    o += fmt::format("moved {} files ({}) in {} segments", r.files_moved, HumanBytes(r.bytes_moved),
                     r.segments_written);
    if (r.segments_deleted) o += fmt::format("; removed {} emptied segments", r.segments_deleted);
    if (r.segments_rolled_back)
      o += fmt::format("; rolled back {} unfinished uploads", r.segments_rolled_back);
    o += "\n";
    if (r.files_busy)
      o += fmt::format("left {} files open for writing for a later pass\n", r.files_busy);
    if (r.segments_compacted || r.bytes_freed)
      o += fmt::format("compacted {} segments ({} rewritten); freed {} ({} journal segments)\n",
                       r.segments_compacted, HumanBytes(r.bytes_compacted),
                       HumanBytes(r.bytes_freed), r.journal_segments_freed);
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
      R"("files_recalled":{},"policy_file":{},"policy_error":{}}})",
      s.pass_running, JsonString(s.progress.phase), s.progress.files_scanned,
      s.progress.files_moved, s.progress.bytes_moved, s.last_pass_end_ns,
      JsonString(s.last_pass_result), s.backlog_files, s.backlog_bytes, tiers, s.read_cache_bytes,
      s.cold_fetches, s.read_cache_hits, s.files_recalled, JsonString(s.policy_file),
      JsonString(s.policy_error));
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
  o += fmt::format("read cache: {}, {} hits, {} cold fetches; {} files recalled on read\n",
                   HumanBytes(s.read_cache_bytes), s.read_cache_hits, s.cold_fetches,
                   s.files_recalled);
  return o;
}

}  // namespace strata::fs
