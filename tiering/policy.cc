#include "tiering/policy.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <limits>
#include <map>
#include <utility>

namespace strata::tiering {
namespace {

constexpr int64_t kNsPerMs = 1000 * 1000;
constexpr int64_t kNsPerSecond = 1000 * kNsPerMs;
constexpr int64_t kNsPerDay = 86400 * kNsPerSecond;
constexpr size_t kMaxReportedErrors = 20;

constexpr std::string_view kRuleKeys[] = {
    "name",
    "match",
    "exclude",
    "min_size",
    "max_size",
    "older_than",
    "created_older_than",
    "not_accessed_for",
    "xattr",
    "xattr_present",
    "to",
    "recall_on_read",
};

// Keys people plausibly write for a rule key, too far from it for the edit distance to find.
constexpr std::pair<std::string_view, std::string_view> kKeyHints[] = {
    {"tier", "to"},
    {"target", "to"},
    {"destination", "to"},
    {"move_to", "to"},
    {"path", "match"},
    {"paths", "match"},
    {"glob", "match"},
    {"pattern", "match"},
    {"include", "match"},
    {"age", "older_than"},
    {"mtime", "older_than"},
    {"modified_older_than", "older_than"},
    {"atime", "not_accessed_for"},
    {"accessed_older_than", "not_accessed_for"},
    {"btime", "created_older_than"},
    {"recall", "recall_on_read"},
    {"xattrs", "xattr"},
    {"size_min", "min_size"},
    {"size_max", "max_size"},
};

// Optimal-string-alignment distance (edits: insert, delete, substitute, swap neighbours).
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); i++) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); j++) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    for (size_t j = 1; j <= b.size(); j++) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean 'x'?)" for the closest candidate within a couple of edits, else "".
template <typename Range>
std::string Suggest(std::string_view word, const Range& candidates) {
  std::string lower(word);
  for (char& c : lower) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == '-') c = '_';
  }
  std::string_view best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (std::string_view c : candidates) {
    const size_t d = EditDistance(lower, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, best.size() / 3));
  if (best_d <= limit) return " (did you mean '" + std::string(best) + "'?)";
  return "";
}

std::string SuggestRuleKey(std::string_view key) {
  for (const auto& [wrong, right] : kKeyHints) {
    if (key == wrong) return " (did you mean '" + std::string(right) + "'?)";
  }
  return Suggest(key, kRuleKeys);
}

std::string TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

int LineOf(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

// Every problem found in one policy, reported together in file order.
class Errors {
 public:
  explicit Errors(const std::string& source) : source_(source) {}

  void Add(int line, std::string_view reason) {
    std::string msg = source_;
    if (line > 0) msg += ":" + std::to_string(line);
    msg += ": ";
    msg += reason;
    list_.emplace_back(line, std::move(msg));
  }
  bool empty() const { return list_.empty(); }
  size_t count() const { return list_.size(); }

  Status ToStatus() {
    std::stable_sort(list_.begin(), list_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string msg;
    for (size_t i = 0; i < list_.size() && i < kMaxReportedErrors; i++) {
      if (i > 0) msg += '\n';
      msg += list_[i].second;
    }
    if (list_.size() > kMaxReportedErrors)
      msg += "\n(" + std::to_string(list_.size() - kMaxReportedErrors) + " more problems)";
    return Status::InvalidArgument(msg);
  }

 private:
  const std::string& source_;
  std::vector<std::pair<int, std::string>> list_;
};

bool IsValidRuleName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return true;
}

bool IsValidXattrName(std::string_view name) {
  for (std::string_view ns : {"user.", "trusted.", "security.", "system."}) {
    if (name.size() > ns.size() && name.substr(0, ns.size()) == ns) return true;
  }
  return false;
}

// now - t >= threshold, without overflow for any t and now.
bool OldEnough(int64_t t, int64_t now, int64_t threshold) {
  int64_t age;
  // On overflow |now - t| exceeds int64: t is far in the past (old enough) or far in the future.
  if (__builtin_sub_overflow(now, t, &age)) return t < now;
  return age >= threshold;
}

bool HasConditions(const Rule& r) {
  return !r.match.empty() || !r.exclude.empty() || r.min_size || r.max_size || r.older_than_ns ||
         r.created_older_than_ns || r.not_accessed_for_ns || !r.xattrs.empty();
}

// Parses one rule table into *r, adding every problem to *errors.
class RuleParser {
 public:
  RuleParser(const toml::table& t, Rule* r, const std::vector<std::string>& tiers, Errors* errors)
      : t_(t), r_(r), tiers_(tiers), errors_(errors) {}

  void Run() {
    r_->line = LineOf(t_);
    ParseName();
    // Keys in file order, so problems read top to bottom.
    std::vector<std::pair<std::string_view, const toml::node*>> keys;
    for (auto&& [k, v] : t_) keys.emplace_back(k.str(), &v);
    std::stable_sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
      return a.second->source().begin < b.second->source().begin;
    });
    bool has_to = false;
    for (const auto& [key, node] : keys) {
      const toml::node& n = *node;
      if (key == "name") {
        continue;
      } else if (key == "match") {
        CompileGlobs(key, n, &r_->match, /*allow_empty=*/false);
      } else if (key == "exclude") {
        CompileGlobs(key, n, &r_->exclude, /*allow_empty=*/true);
      } else if (key == "min_size") {
        r_->min_size = Size(key, n);
      } else if (key == "max_size") {
        r_->max_size = Size(key, n);
      } else if (key == "older_than") {
        r_->older_than_ns = Duration(key, n);
      } else if (key == "created_older_than") {
        r_->created_older_than_ns = Duration(key, n);
      } else if (key == "not_accessed_for") {
        r_->not_accessed_for_ns = Duration(key, n);
      } else if (key == "xattr") {
        Xattrs(n);
      } else if (key == "xattr_present") {
        XattrPresent(n);
      } else if (key == "to") {
        has_to = true;
        To(n);
      } else if (key == "recall_on_read") {
        if (!n.is_boolean())
          Error(n, "recall_on_read must be true or false (got " + TypeName(n) + ")");
        else
          r_->recall_on_read = **n.as_boolean();
      } else {
        Error(n, "unknown key '" + std::string(key) + "'" + SuggestRuleKey(key));
      }
    }

    if (!has_to) Error(r_->line, "no 'to' (the tier that the files this rule selects belong on)");
    if (r_->min_size && r_->max_size && *r_->min_size > *r_->max_size)
      Error(*t_.get("min_size"), "min_size is larger than max_size: no file can match");
    if (r_->recall_on_read) {
      const toml::node& n = *t_.get("recall_on_read");
      if (r_->to == kHotTier)
        Error(n, "recall_on_read applies to rules that move files off the hot tier, not to = \"" +
                     std::string(kHotTier) + "\"");
      else if (!r_->not_accessed_for_ns)
        Error(n,
              "recall_on_read needs a not_accessed_for condition in the same rule (without it "
              "the rule still selects a recalled file, and the next migrate pass moves it "
              "straight back)");
    }
  }

 private:
  std::string Label() const { return r_->name.empty() ? "rule" : "rule '" + r_->name + "'"; }
  void Error(int line, std::string_view reason) {
    errors_->Add(line, Label() + ": " + std::string(reason));
  }
  void Error(const toml::node& n, std::string_view reason) { Error(LineOf(n), reason); }

  void ParseName() {
    const toml::node* n = t_.get("name");
    if (n == nullptr) {
      Error(r_->line, "no 'name' (every rule needs one, for migrate --dry-run and the logs)");
    } else if (!n->is_string()) {
      Error(*n, "name must be a string (got " + TypeName(*n) + ")");
    } else if (!IsValidRuleName(**n->as_string())) {
      Error(*n, "name '" + **n->as_string() +
                    "' may contain only letters, digits, '-', '_' and '.', and not be empty");
    } else {
      r_->name = **n->as_string();
    }
  }

  // A string or an array of strings, each with its line.
  bool StringList(std::string_view key, const toml::node& n,
                  std::vector<std::pair<std::string, const toml::node*>>* out) {
    if (n.is_string()) {
      out->emplace_back(**n.as_string(), &n);
      return true;
    }
    if (n.is_array()) {
      bool ok = true;
      for (const toml::node& e : *n.as_array()) {
        if (e.is_string()) {
          out->emplace_back(**e.as_string(), &e);
        } else {
          Error(e, std::string(key) + " must be a string or an array of strings (found " +
                       TypeName(e) + " in the array)");
          ok = false;
        }
      }
      return ok;
    }
    Error(n,
          std::string(key) + " must be a string or an array of strings (got " + TypeName(n) + ")");
    return false;
  }

  void CompileGlobs(std::string_view key, const toml::node& n, std::vector<Glob>* out,
                    bool allow_empty) {
    std::vector<std::pair<std::string, const toml::node*>> patterns;
    if (!StringList(key, n, &patterns)) return;
    if (patterns.empty() && !allow_empty) {
      Error(n, std::string(key) + " = [] matches no path; remove the key to match every path");
      return;
    }
    for (const auto& [p, node] : patterns) {
      Result<Glob> g = Glob::Compile(p);
      if (!g.ok())
        Error(*node, std::string(key) + ": " + g.status().message());
      else
        out->push_back(std::move(*g));
    }
  }

  std::optional<uint64_t> Size(std::string_view key, const toml::node& n) {
    if (n.is_integer()) {
      if (**n.as_integer() >= 0) return static_cast<uint64_t>(**n.as_integer());
      Error(n, std::string(key) + " must not be negative");
      return std::nullopt;
    }
    if (!n.is_string()) {
      Error(n, std::string(key) + " must be a size such as \"64MiB\" or a number of bytes (got " +
                   TypeName(n) + ")");
      return std::nullopt;
    }
    Result<uint64_t> v = ParseSizeBytes(**n.as_string());
    if (!v.ok()) {
      Error(n, std::string(key) + ": " + v.status().message());
      return std::nullopt;
    }
    return *v;
  }

  std::optional<int64_t> Duration(std::string_view key, const toml::node& n) {
    if (!n.is_string()) {
      Error(n, std::string(key) + " must be a duration string with a unit, such as \"180d\" (got " +
                   TypeName(n) + ")");
      return std::nullopt;
    }
    Result<int64_t> v = ParseDurationNs(**n.as_string());
    if (!v.ok()) {
      Error(n, std::string(key) + ": " + v.status().message());
      return std::nullopt;
    }
    return *v;
  }

  bool XattrName(const toml::node& n, std::string_view name) {
    if (IsValidXattrName(name)) return true;
    std::string example = "'user.modality'";
    if (name.find('.') == std::string_view::npos) example = "'user." + std::string(name) + "'";
    Error(n, "xattr name '" + std::string(name) +
                 "' must be a full name with its namespace (user., trusted., security. or "
                 "system.), such as " +
                 example);
    return false;
  }

  void Xattrs(const toml::node& n) {
    if (!n.is_table()) {
      Error(n,
            "xattr must be a table of name = value(s), such as xattr = { \"user.modality\" = "
            "\"CT\" } (got " +
                TypeName(n) + ")");
      return;
    }
    for (auto&& [k, v] : *n.as_table()) {
      const std::string name(k.str());
      if (!XattrName(v, name)) continue;
      std::vector<std::pair<std::string, const toml::node*>> values;
      if (!StringList("xattr '" + name + "'", v, &values)) continue;
      if (values.empty()) {
        Error(v, "xattr '" + name +
                     "' = [] matches no file; use xattr_present to require only that it exists");
        continue;
      }
      XattrCondition c{name, {}};
      for (auto& [value, node] : values) c.values.push_back(std::move(value));
      r_->xattrs.push_back(std::move(c));
    }
  }

  void XattrPresent(const toml::node& n) {
    std::vector<std::pair<std::string, const toml::node*>> names;
    if (!StringList("xattr_present", n, &names)) return;
    for (const auto& [name, node] : names) {
      if (XattrName(*node, name)) r_->xattrs.push_back({name, {}});
    }
  }

  void To(const toml::node& n) {
    if (!n.is_string()) {
      Error(n, "to must be a tier name (got " + TypeName(n) + ")");
      return;
    }
    const std::string& to = **n.as_string();
    std::vector<std::string_view> known = {kHotTier};
    for (const std::string& t : tiers_) {
      if (t != kHotTier) known.push_back(t);
    }
    if (std::find(known.begin(), known.end(), to) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      std::string hint = Suggest(to, known);  // " (did you mean 'x'?)"
      if (!hint.empty()) hint = hint.substr(2, hint.size() - 3) + " ";
      Error(n, "to = \"" + to + "\" is not a tier of this filesystem (" + hint +
                   "tiers in the config: " + list + ")");
      return;
    }
    r_->to = to;
  }

  const toml::table& t_;
  Rule* r_;
  const std::vector<std::string>& tiers_;
  Errors* errors_;
};

}  // namespace

Result<int64_t> ParseDurationNs(std::string_view s) {
  const std::string quoted = "'" + std::string(s) + "'";
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) i++;
  const std::string_view unit = s.substr(i);
  if (i == 0)
    return Status::InvalidArgument("bad duration " + quoted +
                                   ": expected a whole number and a unit (ms, s, min, h, d, w, "
                                   "y), such as \"180d\"");
  if (unit.empty())
    return Status::InvalidArgument("duration " + quoted +
                                   " has no unit (ms, s, min, h, d, w, y), such as \"180d\"");
  if (unit == "m")
    return Status::InvalidArgument(
        "duration " + quoted +
        " is ambiguous (minutes or months?): write \"min\" for minutes, or days for months, "
        "such as \"180d\"");
  if (unit == "mo" || unit == "month" || unit == "months")
    return Status::InvalidArgument("duration " + quoted +
                                   ": months vary in length; write days, such as \"180d\"");
  int64_t mul;
  if (unit == "ms")
    mul = kNsPerMs;
  else if (unit == "s")
    mul = kNsPerSecond;
  else if (unit == "min")
    mul = 60 * kNsPerSecond;
  else if (unit == "h")
    mul = 3600 * kNsPerSecond;
  else if (unit == "d")
    mul = kNsPerDay;
  else if (unit == "w")
    mul = 7 * kNsPerDay;
  else if (unit == "y")
    mul = 365 * kNsPerDay;
  else
    return Status::InvalidArgument("bad unit in duration " + quoted +
                                   " (use ms, s, min, h, d, w or y)");
  if (i > 15) return Status::InvalidArgument("duration " + quoted + " is too long");
  int64_t v = 0;
  for (size_t k = 0; k < i; k++) v = v * 10 + (s[k] - '0');
  int64_t ns;
  if (__builtin_mul_overflow(v, mul, &ns))
    return Status::InvalidArgument("duration " + quoted + " is too long (at most 292y)");
  return ns;
}

Result<uint64_t> ParseSizeBytes(std::string_view s) {
  const std::string quoted = "'" + std::string(s) + "'";
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) i++;
  std::string_view unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  static const std::map<std::string_view, uint64_t> kUnits = {
      {"", 1},
      {"B", 1},
      {"K", 1ull << 10},
      {"k", 1ull << 10},
      {"KiB", 1ull << 10},
      {"M", 1ull << 20},
      {"MiB", 1ull << 20},
      {"G", 1ull << 30},
      {"GiB", 1ull << 30},
      {"T", 1ull << 40},
      {"TiB", 1ull << 40},
      {"KB", 1000},
      {"kB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000ull * 1000 * 1000},
      {"TB", 1000ull * 1000 * 1000 * 1000},
  };
  const auto it = kUnits.find(unit);
  if (i == 0 || it == kUnits.end())
    return Status::InvalidArgument("bad size " + quoted +
                                   ": expected a whole number and a unit (B, KiB, MiB, GiB, TiB, "
                                   "KB, MB, GB, TB), such as \"64MiB\"");
  if (i > 19) return Status::InvalidArgument("size " + quoted + " is too large");
  uint64_t v = 0;
  for (size_t k = 0; k < i; k++) v = v * 10 + static_cast<uint64_t>(s[k] - '0');
  uint64_t bytes;
  if (__builtin_mul_overflow(v, it->second, &bytes))
    return Status::InvalidArgument("size " + quoted + " is too large");
  return bytes;
}

const std::optional<std::string>& XattrCache::Get(const FileFacts& f, std::string_view name) {
  for (int i = 0; i < used_; i++) {
    if (slots_[i].name == name) return slots_[i].value;
  }
  std::optional<std::string> v;
  if (f.xattr) v = f.xattr(name);
  if (used_ < kSlots) {
    slots_[used_] = {name, std::move(v)};
    return slots_[used_++].value;
  }
  scratch_ = std::move(v);
  return scratch_;
}

bool Rule::Holds(const FileFacts& f, int64_t now_ns, XattrCache* cache) const {
  assert(f.path.empty() || f.path.front() != '/');  // relative paths only: see FileFacts
  // Integers first, globs next, xattrs (a metadata lookup and a decryption) last.
  if (min_size && f.size < *min_size) return false;
  if (max_size && f.size > *max_size) return false;
  if (older_than_ns && !OldEnough(f.mtime_ns, now_ns, *older_than_ns)) return false;
  if (created_older_than_ns && !OldEnough(f.btime_ns, now_ns, *created_older_than_ns)) return false;
  if (not_accessed_for_ns && !OldEnough(f.atime_ns, now_ns, *not_accessed_for_ns)) return false;
  if (!match.empty()) {
    bool any = false;
    for (const Glob& g : match) {
      if (g.Matches(f.path)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const Glob& g : exclude) {
    if (g.Matches(f.path)) return false;
  }
  if (xattrs.empty()) return true;
  XattrCache local;
  if (cache == nullptr) cache = &local;
  for (const XattrCondition& c : xattrs) {
    const std::optional<std::string>& v = cache->Get(f, c.name);
    if (!v) return false;
    if (!c.values.empty() && std::find(c.values.begin(), c.values.end(), *v) == c.values.end())
      return false;
  }
  return true;
}

Result<Policy> Policy::Parse(std::string_view text, const std::string& source,
                             const std::vector<std::string>& tiers) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }

  Errors errors(source);
  Policy p;
  p.source_ = source;
  constexpr std::string_view kTopKeys[] = {"rule"};
  for (auto&& [k, v] : root) {
    if (k.str() == "rule") continue;
    std::string hint = Suggest(k.str(), kTopKeys);
    if (hint.empty()) hint = " (a policy holds only [[rule]] tables)";
    errors.Add(LineOf(v), "unknown top-level key '" + std::string(k.str()) + "'" + hint);
  }

  if (const toml::node* rules = root.get("rule")) {
    if (rules->is_table()) {
      errors.Add(LineOf(*rules), "write each rule as [[rule]] (an array of tables), not [rule]");
    } else if (!rules->is_array()) {
      errors.Add(LineOf(*rules), "'rule' must be an array of tables written [[rule]] (got " +
                                     TypeName(*rules) + ")");
    } else {
      std::map<std::string, int> names;  // name -> line of its first rule
      std::optional<size_t> catch_all;   // index of the first rule without conditions
      for (const toml::node& n : *rules->as_array()) {
        if (!n.is_table()) {
          errors.Add(LineOf(n), "each rule must be a table (got " + TypeName(n) + ")");
          continue;
        }
        Rule r;
        const size_t errors_before = errors.count();
        RuleParser(*n.as_table(), &r, tiers, &errors).Run();
        const bool clean = errors.count() == errors_before;
        if (!r.name.empty()) {
          auto [it, inserted] = names.emplace(r.name, r.line);
          if (!inserted)
            errors.Add(r.line, "duplicate rule name '" + r.name + "' (first used at line " +
                                   std::to_string(it->second) + ")");
        }
        if (catch_all) {
          const Rule& c = p.rules_[*catch_all];
          errors.Add(r.line, "rule '" + r.name + "' can never match: rule '" + c.name +
                                 "' at line " + std::to_string(c.line) +
                                 " has no conditions and selects every file first (move it to "
                                 "the end)");
        } else if (clean && !HasConditions(r)) {
          catch_all = p.rules_.size();
        }
        p.rules_.push_back(std::move(r));
      }
    }
  }
  if (!errors.empty()) return errors.ToStatus();
  return p;
}

Result<Policy> Policy::Load(const std::string& path, const std::vector<std::string>& tiers,
                            Env* env) {
  if (env == nullptr) env = Env::Default();
  Result<std::string> text = ReadWholeFile(env, path);
  if (!text.ok()) return text.status().WithContext("policy file " + path);
  return Parse(*text, path, tiers);
}

bool Policy::ShouldRecall(const FileFacts& f, int64_t now_ns) const {
  if (f.tier == kHotTier) return false;
  const Rule* r = Match(f, now_ns);
  return r != nullptr && r->recall_on_read;
}

const Rule* Policy::Match(const FileFacts& f, int64_t now_ns) const {
  XattrCache cache;
  for (const Rule& r : rules_) {
    if (r.Holds(f, now_ns, &cache)) return &r;
  }
  return nullptr;
}

}  // namespace strata::tiering
