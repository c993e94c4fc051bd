// The tiering policy: an ordered list of rules, read from one TOML file that an administrator
// writes, that says which tier each file belongs on. docs/policy.md is the reference for the
// language; packaging/policies/ has commented examples.
//
//   [[rule]]
//   name = "old-studies"
//   match = "studies/**"    # glob(s) on the path relative to the filesystem root
//   older_than = "180d"     # since last modification
//   to = "archive"          # a tier of the filesystem config, or "hot"
//
// Evaluation: rules are tried in file order and the first whose conditions all hold selects
// the file; a file no rule selects stays where it is. Within a rule the cheap conditions run
// first (size, times), then the globs, and the xattrs last: FileFacts::xattr is called only
// when everything else in that rule has matched, and at most once per name per Match call.
//
// A bad policy is refused as a whole: Parse/Load return InvalidArgument naming
// `file:line: reason` for every problem found (one per line of the message, in file order),
// and have no side effects, so a caller that is reloading keeps its running Policy.
//
// Thread-safety: a Policy is immutable after Parse; Match may be called from many threads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "tiering/glob.h"

namespace strata::tiering {

// The name of the hot tier: always a valid target, whether or not `tiers` lists it.
inline constexpr std::string_view kHotTier = "hot";

// What a rule can look at, filled by the migration engine from the metadata. The views must
// outlive the Match call; nothing is retained after it returns.
struct FileFacts {
  std::string_view path;  // relative to the root, '/'-separated, no leading '/': "studies/a.dcm"
  uint64_t size = 0;
  int64_t mtime_ns = 0;   // last modification of the contents
  int64_t ctime_ns = 0;   // last status change (not used by any condition; kept for the engine)
  int64_t btime_ns = 0;   // creation (birth)
  int64_t atime_ns = 0;   // last access as the filesystem records it
  std::string_view tier;  // where the file's data is now: "hot" or a tier name
  // Fetches an xattr value by its full name ("user.modality"); nullopt when absent. Called
  // lazily (see above). May be empty: then no xattr condition holds. A lambda capturing one
  // or two pointers fits std::function's inline buffer and does not allocate.
  std::function<std::optional<std::string>(std::string_view name)> xattr;
};

// One xattr condition of a rule: the attribute exists and, when `values` is not empty, its
// value is exactly (byte for byte) one of them.
struct XattrCondition {
  std::string name;                 // full name: "user.modality"
  std::vector<std::string> values;  // any of; empty: present with any value (xattr_present)
};

// Remembers the xattrs fetched during one Match call, so that a name several rules test is
// fetched once. Holds views of the rules' names: use it only while the Policy lives.
class XattrCache {
 public:
  // f.xattr(name), fetched on the first call for `name`; nullopt when f.xattr is empty.
  const std::optional<std::string>& Get(const FileFacts& f, std::string_view name);

 private:
  struct Slot {
    std::string_view name;
    std::optional<std::string> value;
  };
  static constexpr int kSlots = 4;  // distinct names remembered; more are fetched every time
  Slot slots_[kSlots];
  int used_ = 0;
  std::optional<std::string> scratch_;
};

// One [[rule]]. Every condition that is set must hold; a rule with none selects every file.
struct Rule {
  std::string name;
  int line = 0;  // the line of the [[rule]] header, for messages and `migrate --dry-run`

  std::vector<Glob> match;           // at least one must match the path; empty: any path
  std::vector<Glob> exclude;         // none may match the path
  std::optional<uint64_t> min_size;  // size >= min_size
  std::optional<uint64_t> max_size;  // size <= max_size
  // Ages: now - time >= threshold (a time in the future is age < 0 and never old enough).
  std::optional<int64_t> older_than_ns;          // since mtime
  std::optional<int64_t> created_older_than_ns;  // since btime
  std::optional<int64_t> not_accessed_for_ns;    // since atime
  std::vector<XattrCondition> xattrs;            // all must hold

  std::string to;  // target tier: a configured tier name or "hot"
  // When a file this rule selects is read while on a cold tier, the engine brings it back to
  // the hot tier (see Policy::ShouldRecall). Only on rules with `to` != "hot" and with a
  // not_accessed_for condition (otherwise the next pass would move the file straight back).
  bool recall_on_read = false;

  // True when every condition holds for `f` at `now_ns`. Does not allocate unless it calls
  // f.xattr. `cache`, when not null, remembers fetched xattrs across the rules of one file.
  bool Holds(const FileFacts& f, int64_t now_ns, XattrCache* cache = nullptr) const;
};

// "180d" -> nanoseconds. A whole number and one unit: ms, s, min, h, d, w (7d), y (365d).
// A bare "m" is refused as ambiguous (minutes or months?). The message is the reason only.
Result<int64_t> ParseDurationNs(std::string_view s);
// "64MiB" -> bytes. A whole number and an optional unit: B, K/KiB, M/MiB, G/GiB, T/TiB (powers
// of 1024), KB, MB, GB, TB (powers of 1000); a space may separate them.
Result<uint64_t> ParseSizeBytes(std::string_view s);

class Policy {
 public:
  Policy() = default;  // the empty policy: no rules, nothing moves

  // Parses the policy text. `source` names it in messages (the file's path). `tiers` are the
  // tier names of the filesystem config; "hot" is always accepted. An empty policy is valid.
  static Result<Policy> Parse(std::string_view text, const std::string& source,
                              const std::vector<std::string>& tiers);
  // Reads the file through `env` (Env::Default() when null) and parses it.
  static Result<Policy> Load(const std::string& path, const std::vector<std::string>& tiers,
                             Env* env = nullptr);

  // The first rule whose conditions hold for `f` at `now_ns` (the injected clock: Match never
  // reads the real one), or nullptr when none does (the file stays where it is). The result
  // points into this Policy. Never allocates unless it calls f.xattr.
  const Rule* Match(const FileFacts& f, int64_t now_ns) const;

  // For the read path: true when `f` is on a cold tier and the rule that selects it has
  // recall_on_read. `f.atime_ns` must be the access time from before this read (the read
  // itself makes the file "recently accessed", which would defeat not_accessed_for).
  bool ShouldRecall(const FileFacts& f, int64_t now_ns) const;

  const std::vector<Rule>& rules() const { return rules_; }
  const std::string& source() const { return source_; }

 private:
  std::vector<Rule> rules_;
  std::string source_;
};

}  // namespace strata::tiering
