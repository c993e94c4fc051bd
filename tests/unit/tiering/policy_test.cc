#include "tiering/policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tiering/glob.h"

// Counts heap allocations made by this thread while `g_count_allocations` is set, to check
// that Match does not allocate. Replacing the global operator new is test-binary only, and is
// left out under ASan/TSan/MSan, which replace it themselves.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRATA_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define STRATA_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef STRATA_COUNT_ALLOCATIONS
#define STRATA_COUNT_ALLOCATIONS 1
#endif

namespace {
thread_local bool g_count_allocations = false;
thread_local int64_t g_allocations = 0;
}  // namespace

#if STRATA_COUNT_ALLOCATIONS
// Every non-aligned form, so that no pointer from another allocator reaches free().
// noinline: GCC would otherwise see free() of a `new` pointer and warn (-Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (g_count_allocations) g_allocations++;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) { return operator new(n); }
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_count_allocations) g_allocations++;
  return std::malloc(n == 0 ? 1 : n);
}
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
  return operator new(n, t);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace strata::tiering {
namespace {

constexpr int64_t kSecond = 1000 * 1000 * 1000;
constexpr int64_t kDay = 86400 * kSecond;
// A fixed "now" (2024-06-01T00:00:00Z): the policy never reads the real clock.
constexpr int64_t kNow = 1717200000 * kSecond;

const std::vector<std::string> kTiers = {"hot", "nearline", "archive"};

Policy MustParse(std::string_view text) {
  Result<Policy> p = Policy::Parse(text, "policy.toml", kTiers);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : Policy();
}

// The message of a policy that must be refused.
std::string ParseError(std::string_view text) {
  Result<Policy> p = Policy::Parse(text, "policy.toml", kTiers);
  EXPECT_FALSE(p.ok()) << "accepted:\n" << text;
  if (p.ok()) return "";
  EXPECT_TRUE(p.status().IsInvalidArgument());
  return p.status().message();
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << (haystack) << "\n  lacks: " << (needle)

// A file last modified, created and read `age` ago.
FileFacts File(std::string_view path, uint64_t size = 1 << 20, int64_t age = 0) {
  FileFacts f;
  f.path = path;
  f.size = size;
  f.mtime_ns = f.ctime_ns = f.btime_ns = f.atime_ns = kNow - age;
  f.tier = "hot";
  return f;
}

std::string NameOf(const Rule* r) { return r == nullptr ? "(none)" : r->name; }

// ---------------------------------------------------------------------------------------------
// Globs

struct GlobCase {
  const char* pattern;
  const char* path;
  bool match;
};

TEST(GlobTest, TableOfMatches) {
  const GlobCase cases[] = {
      // Trailing "**": every file inside, at any depth, but not the directory's own name.
      {"studies/**", "studies/a.dcm", true},
      {"studies/**", "studies/2024/CT1/img1.dcm", true},
      {"studies/**", "studies", false},
      {"studies/**", "studiesX/a.dcm", false},
      {"studies/**", "other/studies/a.dcm", false},
      {"**", "a", true},
      {"**", "a/b/c", true},
      // Leading and inner "**": zero or more components.
      {"**/*.dcm", "a.dcm", true},
      {"**/*.dcm", "x/y/z/a.dcm", true},
      {"**/*.dcm", "x/a.dcm.bak", false},
      {"**/*.dcm", "x/y", false},
      {"**/*.dcm", "x/.dcm", true},
      {"a/**/b", "a/b", true},
      {"a/**/b", "a/x/b", true},
      {"a/**/b", "a/x/y/b", true},
      {"a/**/b", "a/b/c", false},
      {"a/**/b", "x/a/b", false},
      {"a/**/b", "a/xb", false},
      {"**/x/**", "x/a", true},
      {"**/x/**", "p/q/x/a/b", true},
      {"**/x/**", "x", false},
      {"**/x/**", "p/x", false},
      {"**/**/a", "a", true},
      {"**/**/a", "p/q/a", true},
      {"**/studies/**/*.dcm", "studies/c.dcm", true},
      {"**/studies/**/*.dcm", "site1/studies/a/b/c.dcm", true},
      {"**/studies/**/*.dcm", "site1/studies/a/b/c.txt", false},
      {"CT*/**", "CT1/a", true},
      {"CT*/**", "MR1/a", false},
      // '*' stays within one component, matches the empty string and leading dots.
      {"*", "a", true},
      {"*", "a/b", false},
      {"*", ".hidden", true},
      {"*.dcm", "a.dcm", true},
      {"*.dcm", "d/a.dcm", false},
      {"*.dcm", ".dcm", true},
      {"studies/*/x", "studies/a/x", true},
      {"studies/*/x", "studies/a/b/x", false},
      {"*a*b", "xaxb", true},
      {"*a*b", "aab", true},
      {"*a*b", "ab", true},
      {"*a*b", "ba", false},
      {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
      {"*.DCM", "a.dcm", false},  // case-sensitive
      // '?' is one character, also a multi-byte UTF-8 one, never '/'.
      {"?", "a", true},
      {"?", "ab", false},
      {"?", "\xc3\xa4", true},  // "ä"
      {"a?b", "a/b", false},
      {"img?.dcm", "img1.dcm", true},
      {"img?.dcm", "img10.dcm", false},
      // Classes.
      {"[abc].txt", "a.txt", true},
      {"[abc].txt", "d.txt", false},
      {"[a-c]x", "bx", true},
      {"[a-c]x", "dx", false},
      {"[!a-c]x", "dx", true},
      {"[!a-c]x", "ax", false},
      {"[^a]x", "bx", true},
      {"[]a]", "]", true},
      {"[]a]", "a", true},
      {"[]a]", "b", false},
      {"[!]]", "]", false},
      {"[!]]", "x", true},
      {"[\\]]", "]", true},
      {"[\xc3\xa4-\xc3\xb6]", "\xc3\xb6", true},  // [ä-ö] matches "ö"
      {"[\xc3\xa4-\xc3\xb6]", "a", false},
      {"[!a]", "\xc3\xa4", true},
      {"[0-9][0-9][0-9][0-9]/**", "2024/a", true},
      {"[0-9][0-9][0-9][0-9]/**", "20x4/a", false},
      // Escapes and literal patterns.
      {"\\*", "*", true},
      {"\\*", "a", false},
      {"a\\[b", "a[b", true},
      {"a\\?", "ab", false},
      {"studies/2024/CT1/img1.dcm", "studies/2024/CT1/img1.dcm", true},
      {"studies/2024/CT1/img1.dcm", "studies/2024/CT1/img1.dcmx", false},
      {"studies/2024/CT1/img1.dcm", "studies/2024/CT1", false},
      // A leading '/' in the pattern is ignored.
      {"/studies/*.dcm", "studies/a.dcm", true},
      {"/studies/**", "studies/a/b", true},
  };
  for (const GlobCase& c : cases) {
    Result<Glob> g = Glob::Compile(c.pattern);
    ASSERT_TRUE(g.ok()) << c.pattern << ": " << g.status().ToString();
    EXPECT_EQ(g->Matches(c.path), c.match)
        << "pattern '" << c.pattern << "' path '" << c.path << "'";
  }
}

// The documented semantics, written the slow and obvious way (exponential recursion).
bool NaiveComponentMatch(std::string_view p, std::string_view s) {
  if (p.empty()) return s.empty();
  if (p[0] == '*') {
    for (size_t k = 0; k <= s.size(); k++) {
      if (NaiveComponentMatch(p.substr(1), s.substr(k))) return true;
    }
    return false;
  }
  if (s.empty() || (p[0] != '?' && p[0] != s[0])) return false;
  return NaiveComponentMatch(p.substr(1), s.substr(1));
}

bool NaiveMatch(const std::vector<std::string>& p, size_t pi, const std::vector<std::string>& s,
                size_t si) {
  if (pi == p.size()) return si == s.size();
  if (p[pi] == "**") {
    if (pi + 1 == p.size()) return si < s.size();  // trailing: one or more
    for (size_t k = si; k <= s.size(); k++) {
      if (NaiveMatch(p, pi + 1, s, k)) return true;
    }
    return false;
  }
  return si < s.size() && NaiveComponentMatch(p[pi], s[si]) && NaiveMatch(p, pi + 1, s, si + 1);
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += (out.empty() ? "" : "/") + part;
  return out;
}

TEST(GlobTest, AgreesWithANaiveMatcher) {
  std::mt19937 rng(20240601);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  int matches = 0;
  for (int iter = 0; iter < 20000; iter++) {
    std::vector<std::string> pattern, path;
    for (int c = 1 + pick(4); c > 0; c--) {
      if (pick(4) == 0) {
        pattern.push_back("**");
        continue;
      }
      std::string comp;
      for (int k = 1 + pick(4); k > 0; k--) {
        char ch = "ab*?"[pick(4)];
        if (ch == '*' && !comp.empty() && comp.back() == '*') ch = 'a';
        comp += ch;
      }
      pattern.push_back(comp);
    }
    for (int c = 1 + pick(5); c > 0; c--) {
      std::string comp;
      for (int k = 1 + pick(3); k > 0; k--) comp += "ab"[pick(2)];
      path.push_back(comp);
    }
    Result<Glob> g = Glob::Compile(Join(pattern));
    ASSERT_TRUE(g.ok()) << Join(pattern) << ": " << g.status().ToString();
    const bool want = NaiveMatch(pattern, 0, path, 0);
    matches += want;
    ASSERT_EQ(g->Matches(Join(path)), want)
        << "pattern '" << Join(pattern) << "' path '" << Join(path) << "'";
  }
  EXPECT_GT(matches, 1000);  // the generator produces both outcomes
}

TEST(GlobTest, MalformedPatternsAreRefusedWithAReason) {
  const std::pair<std::string, const char*> cases[] = {
      {"", "empty pattern"},        {"/", "empty pattern"},
      {"studies/", "trailing '/'"}, {"a//b", "empty path component"},
      {"studies**", "'**' mixed"},  {"**x/a", "'**' mixed"},
      {"a/***", "'**' mixed"},      {"studies/[abc", "unclosed '['"},
      {"[!]", "unclosed '['"},      {"a/[b/c]", "'/' inside '[...]'"},
      {"[z-a]", "reversed range"},  {"a\\", "lone '\\'"},
      {"a\\/b", "'\\' before '/'"}, {"./a", "'.' component"},
      {"a/../b", "'..' component"}, {std::string("a\0b", 3), "NUL"},
  };
  for (const auto& [pattern, reason] : cases) {
    Result<Glob> g = Glob::Compile(pattern);
    ASSERT_FALSE(g.ok()) << "accepted '" << pattern << "'";
    EXPECT_TRUE(g.status().IsInvalidArgument());
    EXPECT_CONTAINS(g.status().message(), reason);
  }
}

TEST(GlobTest, InvalidUtf8InPathIsOneCharacterPerByte) {
  Result<Glob> g = Glob::Compile("a?b");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(
      g->Matches("a\xff"
                 "b"));
  EXPECT_TRUE(
      g->Matches("a\xc3"
                 "b"));  // truncated sequence
  EXPECT_FALSE(
      g->Matches("a\xff\xff"
                 "b"));
}

// ---------------------------------------------------------------------------------------------
// Durations and sizes

TEST(UnitsTest, Durations) {
  const std::pair<const char*, int64_t> ok[] = {
      {"90d", 90 * kDay},           {"12h", 12 * 3600 * kSecond},
      {"30min", 30 * 60 * kSecond}, {"1s", kSecond},
      {"500ms", kSecond / 2},       {"2w", 14 * kDay},
      {"30y", 30 * 365 * kDay},     {"0d", 0},
  };
  for (const auto& [text, ns] : ok) {
    Result<int64_t> d = ParseDurationNs(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().ToString();
    EXPECT_EQ(*d, ns) << text;
  }
  const std::pair<const char*, const char*> bad[] = {
      {"6m", "ambiguous"},     {"90", "no unit"},    {"d", "bad duration"},
      {"-5d", "bad duration"}, {"1.5d", "bad unit"}, {"10x", "bad unit"},
      {"3mo", "months"},       {"300y", "too long"}, {"99999999999999999999d", "too long"},
      {"", "bad duration"},    {"90 d", "bad unit"},
  };
  for (const auto& [text, reason] : bad) {
    Result<int64_t> d = ParseDurationNs(text);
    ASSERT_FALSE(d.ok()) << "accepted '" << text << "'";
    EXPECT_CONTAINS(d.status().message(), reason);
  }
}

TEST(UnitsTest, Sizes) {
  const std::pair<const char*, uint64_t> ok[] = {
      {"1MiB", 1 << 20},         {"500KB", 500000}, {"4096", 4096},
      {"64 MiB", 64 << 20},      {"1k", 1024},      {"2GiB", 2ull << 30},
      {"3TB", 3000000000000ull}, {"0B", 0},
  };
  for (const auto& [text, bytes] : ok) {
    Result<uint64_t> s = ParseSizeBytes(text);
    ASSERT_TRUE(s.ok()) << text << ": " << s.status().ToString();
    EXPECT_EQ(*s, bytes) << text;
  }
  for (const char* text :
       {"1.5GiB", "10XB", "", "MiB", "-1", "99999999999TiB", "999999999999999999999"}) {
    Result<uint64_t> s = ParseSizeBytes(text);
    EXPECT_FALSE(s.ok()) << "accepted '" << text << "'";
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing and matching

TEST(PolicyTest, MinimalForm) {
  Policy p = MustParse(R"(
[[rule]]
name = "old-studies"
match = "studies/**"
older_than = "180d"     # since last modification
to = "archive"
)");
  ASSERT_EQ(p.rules().size(), 1u);
  const Rule& r = p.rules()[0];
  EXPECT_EQ(r.name, "old-studies");
  EXPECT_EQ(r.line, 2);
  EXPECT_EQ(r.to, "archive");
  EXPECT_EQ(r.older_than_ns, 180 * kDay);
  EXPECT_FALSE(r.recall_on_read);
  EXPECT_EQ(p.source(), "policy.toml");

  EXPECT_EQ(p.Match(File("studies/2024/CT1/img1.dcm", 1, 181 * kDay), kNow), &r);
  EXPECT_EQ(p.Match(File("studies/2024/CT1/img1.dcm", 1, 179 * kDay), kNow), nullptr);
  EXPECT_EQ(p.Match(File("reports/a.pdf", 1, 400 * kDay), kNow), nullptr);
}

TEST(PolicyTest, EmptyPolicyIsValidAndMovesNothing) {
  for (const char* text : {"", "# nothing yet\n\n"}) {
    Policy p = MustParse(text);
    EXPECT_TRUE(p.rules().empty());
    EXPECT_EQ(p.Match(File("a", 1, 1000 * kDay), kNow), nullptr);
  }
  EXPECT_EQ(Policy().Match(File("a"), kNow), nullptr);
}

TEST(PolicyTest, FirstMatchWins) {
  Policy p = MustParse(R"(
[[rule]]
name = "ct-to-archive"
match = "studies/CT/**"
to = "archive"
[[rule]]
name = "studies-to-disk"
match = "studies/**"
to = "nearline"
[[rule]]
name = "default"
to = "hot"
)");
  EXPECT_EQ(NameOf(p.Match(File("studies/CT/a.dcm"), kNow)), "ct-to-archive");
  EXPECT_EQ(NameOf(p.Match(File("studies/MR/a.dcm"), kNow)), "studies-to-disk");
  EXPECT_EQ(NameOf(p.Match(File("reports/x.pdf"), kNow)), "default");
}

TEST(PolicyTest, CatchAllWithOnlyToIsLegitimateAtTheEnd) {
  Policy p = MustParse("[[rule]]\nname = \"everything-to-disk\"\nto = \"nearline\"\n");
  EXPECT_EQ(NameOf(p.Match(File("any/path"), kNow)), "everything-to-disk");
}

TEST(PolicyTest, MatchListIsAnyOfAndExcludeIsNoneOf) {
  Policy p = MustParse(R"(
[[rule]]
name = "r"
match = ["studies/**", "reports/**"]
exclude = ["**/*.tmp", "studies/keep/**"]
to = "archive"
)");
  EXPECT_NE(p.Match(File("studies/a.dcm"), kNow), nullptr);
  EXPECT_NE(p.Match(File("reports/a.pdf"), kNow), nullptr);
  EXPECT_EQ(p.Match(File("other/a.pdf"), kNow), nullptr);
  EXPECT_EQ(p.Match(File("studies/a.tmp"), kNow), nullptr);
  EXPECT_EQ(p.Match(File("studies/keep/a.dcm"), kNow), nullptr);
}

TEST(PolicyTest, SizeBoundsAreInclusive) {
  Policy p = MustParse(R"(
[[rule]]
name = "mid"
min_size = "1KiB"
max_size = 4096
to = "archive"
)");
  EXPECT_EQ(p.Match(File("a", 1023), kNow), nullptr);
  EXPECT_NE(p.Match(File("a", 1024), kNow), nullptr);
  EXPECT_NE(p.Match(File("a", 4096), kNow), nullptr);
  EXPECT_EQ(p.Match(File("a", 4097), kNow), nullptr);
  EXPECT_EQ(p.rules()[0].min_size, 1024u);
  EXPECT_EQ(p.rules()[0].max_size, 4096u);
}

TEST(PolicyTest, OlderThanCountsFromMtimeWithTheInjectedClock) {
  Policy p = MustParse("[[rule]]\nname = \"r\"\nolder_than = \"90d\"\nto = \"archive\"\n");
  FileFacts f = File("a");
  f.mtime_ns = kNow - 90 * kDay;
  f.btime_ns = f.atime_ns = 0;                        // irrelevant to older_than
  EXPECT_NE(p.Match(f, kNow), nullptr);               // exactly 90 days: old enough
  EXPECT_EQ(p.Match(f, kNow - 1), nullptr);           // one ns earlier: not yet
  EXPECT_NE(p.Match(f, kNow + 365 * kDay), nullptr);  // a year later
  f.mtime_ns = kNow + kDay;                           // in the future (clock skew): never old
  EXPECT_EQ(p.Match(f, kNow), nullptr);
}

TEST(PolicyTest, CreatedOlderThanCountsFromBirthTime) {
  Policy p = MustParse("[[rule]]\nname = \"r\"\ncreated_older_than = \"1y\"\nto = \"archive\"\n");
  FileFacts f = File("a");
  f.btime_ns = kNow - 366 * kDay;  // created long ago, modified today
  EXPECT_NE(p.Match(f, kNow), nullptr);
  f.btime_ns = kNow - 10 * kDay;
  f.mtime_ns = f.atime_ns = kNow - 1000 * kDay;
  EXPECT_EQ(p.Match(f, kNow), nullptr);
}

TEST(PolicyTest, NotAccessedForCountsFromAtime) {
  Policy p = MustParse("[[rule]]\nname = \"r\"\nnot_accessed_for = \"30d\"\nto = \"archive\"\n");
  FileFacts f = File("a", 1, 1000 * kDay);
  f.atime_ns = kNow - 29 * kDay;  // old file, read last month
  EXPECT_EQ(p.Match(f, kNow), nullptr);
  f.atime_ns = kNow - 31 * kDay;
  EXPECT_NE(p.Match(f, kNow), nullptr);
}

TEST(PolicyTest, ExtremeTimesDoNotOverflow) {
  Policy p = MustParse("[[rule]]\nname = \"r\"\nolder_than = \"1d\"\nto = \"archive\"\n");
  FileFacts f = File("a");
  f.mtime_ns = std::numeric_limits<int64_t>::min();
  EXPECT_NE(p.Match(f, kNow), nullptr);
  f.mtime_ns = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(p.Match(f, -kNow), nullptr);
}

TEST(PolicyTest, AllConditionsOfARuleMustHold) {
  Policy p = MustParse(R"(
[[rule]]
name = "r"
match = "studies/**"
min_size = "1MiB"
older_than = "180d"
not_accessed_for = "30d"
to = "archive"
)");
  EXPECT_NE(p.Match(File("studies/a", 2 << 20, 200 * kDay), kNow), nullptr);
  EXPECT_EQ(p.Match(File("studies/a", 1000, 200 * kDay), kNow), nullptr);
  EXPECT_EQ(p.Match(File("studies/a", 2 << 20, 100 * kDay), kNow), nullptr);
  EXPECT_EQ(p.Match(File("other/a", 2 << 20, 200 * kDay), kNow), nullptr);
}

// An xattr callback that serves fixed values and counts calls.
struct FakeXattrs {
  std::vector<std::pair<std::string, std::string>> values;
  std::vector<std::string> calls;
  void Attach(FileFacts* f) {
    f->xattr = [this](std::string_view name) -> std::optional<std::string> {
      calls.emplace_back(name);
      for (const auto& [k, v] : values) {
        if (k == name) return v;
      }
      return std::nullopt;
    };
  }
};

TEST(PolicyTest, XattrValueAndAnyOf) {
  Policy p = MustParse(R"(
[[rule]]
name = "ct"
xattr = { "user.modality" = "CT" }
to = "archive"
[[rule]]
name = "mr-or-pet"
xattr = { "user.modality" = ["MR", "PT"] }
to = "nearline"
)");
  for (const auto& [modality, rule] :
       std::vector<std::pair<std::string, std::string>>{{"CT", "ct"},
                                                        {"MR", "mr-or-pet"},
                                                        {"PT", "mr-or-pet"},
                                                        {"US", "(none)"},
                                                        {"ct", "(none)"}}) {
    FakeXattrs x{{{"user.modality", modality}}, {}};
    FileFacts f = File("a");
    x.Attach(&f);
    EXPECT_EQ(NameOf(p.Match(f, kNow)), rule) << modality;
  }
  FakeXattrs none;
  FileFacts f = File("a");
  none.Attach(&f);
  EXPECT_EQ(p.Match(f, kNow), nullptr);
}

TEST(PolicyTest, SeveralXattrsMustAllHold) {
  Policy p = MustParse(R"(
[[rule]]
name = "r"
to = "archive"
[rule.xattr]
"user.modality" = "CT"
"user.site" = "north"
)");
  FakeXattrs both{{{"user.modality", "CT"}, {"user.site", "north"}}, {}};
  FakeXattrs one{{{"user.modality", "CT"}}, {}};
  FileFacts f = File("a"), g = File("a");
  both.Attach(&f);
  one.Attach(&g);
  EXPECT_NE(p.Match(f, kNow), nullptr);
  EXPECT_EQ(p.Match(g, kNow), nullptr);
}

TEST(PolicyTest, XattrPresentIgnoresTheValue) {
  Policy p = MustParse(R"(
[[rule]]
name = "held"
xattr_present = "user.legal_hold"
to = "nearline"
)");
  FakeXattrs held{{{"user.legal_hold", ""}}, {}};
  FakeXattrs not_held;
  FileFacts f = File("a"), g = File("a");
  held.Attach(&f);
  not_held.Attach(&g);
  EXPECT_NE(p.Match(f, kNow), nullptr);
  EXPECT_EQ(p.Match(g, kNow), nullptr);
}

TEST(PolicyTest, XattrConditionsNeverHoldWithoutACallback) {
  Policy p = MustParse("[[rule]]\nname = \"r\"\nxattr_present = [\"user.x\"]\nto = \"archive\"\n");
  FileFacts f = File("a");
  ASSERT_FALSE(f.xattr);
  EXPECT_EQ(p.Match(f, kNow), nullptr);
}

TEST(PolicyTest, XattrIsFetchedOnlyWhenEverythingElseMatched) {
  Policy p = MustParse(R"(
[[rule]]
name = "r"
match = "studies/**"
min_size = "1MiB"
older_than = "30d"
xattr = { "user.modality" = "CT" }
to = "archive"
)");
  FakeXattrs x{{{"user.modality", "CT"}}, {}};
  FileFacts too_small = File("studies/a", 10, 100 * kDay);
  FileFacts too_new = File("studies/a", 2 << 20, kDay);
  FileFacts wrong_path = File("reports/a", 2 << 20, 100 * kDay);
  for (FileFacts* f : {&too_small, &too_new, &wrong_path}) {
    x.Attach(f);
    EXPECT_EQ(p.Match(*f, kNow), nullptr);
  }
  EXPECT_TRUE(x.calls.empty()) << x.calls.size() << " calls, first: " << x.calls[0];

  FileFacts hit = File("studies/a", 2 << 20, 100 * kDay);
  x.Attach(&hit);
  EXPECT_NE(p.Match(hit, kNow), nullptr);
  EXPECT_EQ(x.calls, std::vector<std::string>{"user.modality"});
}

TEST(PolicyTest, XattrIsFetchedOncePerMatchCall) {
  Policy p = MustParse(R"(
[[rule]]
name = "ct"
xattr = { "user.modality" = "CT" }
to = "archive"
[[rule]]
name = "mr"
xattr = { "user.modality" = "MR" }
to = "archive"
[[rule]]
name = "held-mr"
xattr_present = "user.legal_hold"
xattr = { "user.modality" = "MR" }
to = "nearline"
)");
  FakeXattrs x{{{"user.modality", "US"}}, {}};
  FileFacts f = File("a");
  x.Attach(&f);
  EXPECT_EQ(p.Match(f, kNow), nullptr);
  EXPECT_EQ(x.calls, (std::vector<std::string>{"user.modality", "user.legal_hold"}));
}

TEST(PolicyTest, ManyXattrNamesInOneRule) {
  Policy p = MustParse(R"(
[[rule]]
name = "r"
xattr_present = ["user.a", "user.b", "user.c", "user.d", "user.e", "user.f"]
xattr = { "user.a" = "1", "user.f" = "6" }
to = "archive"
)");
  FakeXattrs all{{{"user.a", "1"},
                  {"user.b", "2"},
                  {"user.c", "3"},
                  {"user.d", "4"},
                  {"user.e", "5"},
                  {"user.f", "6"}},
                 {}};
  FakeXattrs wrong_f = all;
  wrong_f.values.back().second = "7";
  FileFacts f = File("a"), g = File("a");
  all.Attach(&f);
  wrong_f.Attach(&g);
  EXPECT_NE(p.Match(f, kNow), nullptr);
  EXPECT_EQ(p.Match(g, kNow), nullptr);
}

TEST(PolicyTest, RecallOnRead) {
  Policy p = MustParse(R"(
[[rule]]
name = "cold-studies"
match = "studies/**"
not_accessed_for = "365d"
to = "archive"
recall_on_read = true
[[rule]]
name = "cold-reports"
match = "reports/**"
not_accessed_for = "365d"
to = "archive"
)");
  EXPECT_TRUE(p.rules()[0].recall_on_read);
  FileFacts prior = File("studies/2019/CT1/img1.dcm", 1 << 20, 5 * 365 * kDay);
  prior.tier = "archive";
  EXPECT_TRUE(p.ShouldRecall(prior, kNow));  // a prior pulled for comparison
  FileFacts report = File("reports/2019/a.pdf", 1 << 20, 5 * 365 * kDay);
  report.tier = "archive";
  EXPECT_FALSE(p.ShouldRecall(report, kNow));  // its rule does not recall
  FileFacts hot = prior;
  hot.tier = "hot";
  EXPECT_FALSE(p.ShouldRecall(hot, kNow));  // nothing to recall
  FileFacts recently_read = prior;
  recently_read.atime_ns = kNow - kDay;
  EXPECT_FALSE(p.ShouldRecall(recently_read, kNow));  // no longer selected by the rule
}

TEST(PolicyTest, ReloadFailureKeepsTheRunningPolicy) {
  Policy running = MustParse("[[rule]]\nname = \"a\"\nmatch = \"x/**\"\nto = \"archive\"\n");
  Result<Policy> next = Policy::Parse("[[rule]]\nname = \"a\"\nmatch = \"x/[\"\nto = \"archive\"\n",
                                      "new.toml", kTiers);
  ASSERT_FALSE(next.ok());
  if (next.ok()) running = std::move(next).value();
  EXPECT_EQ(NameOf(running.Match(File("x/y"), kNow)), "a");
}

TEST(PolicyTest, MatchDoesNotAllocate) {
  if (!STRATA_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocations are not counted under sanitizers";
  Policy p = MustParse(R"(
[[rule]]
name = "small"
max_size = "64KiB"
to = "hot"
[[rule]]
name = "dcm"
match = ["studies/**/*.dcm", "**/[0-9][0-9][0-9][0-9]/*/img?.dcm"]
exclude = "**/*.tmp"
older_than = "90d"
to = "archive"
[[rule]]
name = "other"
match = "reports/**"
to = "nearline"
)");
  const std::string paths[] = {"studies/2024/CT1/img1.dcm", "x/2019/CT/img7.dcm", "studies/a/b.tmp",
                               "reports/a.pdf", "misc/a"};
  int matched = 0;
  g_allocations = 0;
  g_count_allocations = true;
  for (int i = 0; i < 1000; i++) {
    for (const std::string& path : paths) {
      matched += p.Match(File(path, 1 << 20, 100 * kDay), kNow) != nullptr;
    }
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0);
  EXPECT_EQ(matched, 3000);  // every path but "studies/a/b.tmp" and "misc/a"
}

// ---------------------------------------------------------------------------------------------
// Refused policies: every message names file:line and the reason.

TEST(PolicyErrorTest, UnknownKeySuggestsTheRightOne) {
  std::string m = ParseError(R"(
[[rule]]
name = "old-studies"
match = "studies/**"
older_then = "180d"
to = "archive"
)");
  EXPECT_CONTAINS(m, "policy.toml:5: rule 'old-studies': unknown key 'older_then'");
  EXPECT_CONTAINS(m, "did you mean 'older_than'?");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\ntier = \"archive\"\n"),
                  "policy.toml:3: rule 'r': unknown key 'tier' (did you mean 'to'?)");
}

TEST(PolicyErrorTest, WrongTypes) {
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nolder_than = 180\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': older_than must be a duration string with a unit, "
                  "such as \"180d\" (got an integer)");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmatch = 3\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': match must be a string or an array of strings");
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nmatch = [\"a/**\",\n  4]\nto = \"archive\"\n"),
      "policy.toml:4: rule 'r': match must be a string or an array of strings (found an "
      "integer");
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nrecall_on_read = \"yes\"\nto = \"archive\"\n"),
      "policy.toml:3: rule 'r': recall_on_read must be true or false");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nto = 1\n"),
                  "policy.toml:3: rule 'r': to must be a tier name");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nxattr = \"user.m\"\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': xattr must be a table");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmin_size = 1.5\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': min_size must be a size");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = 7\nto = \"archive\"\n"),
                  "policy.toml:2: rule: name must be a string");
}

TEST(PolicyErrorTest, RuleWithoutTo) {
  EXPECT_CONTAINS(ParseError("\n\n[[rule]]\nname = \"r\"\nmatch = \"a/**\"\n"),
                  "policy.toml:3: rule 'r': no 'to'");
}

TEST(PolicyErrorTest, RuleWithoutName) {
  EXPECT_CONTAINS(ParseError("[[rule]]\nmatch = \"a/**\"\nto = \"archive\"\n"),
                  "policy.toml:1: rule: no 'name'");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"old studies\"\nto = \"archive\"\n"),
                  "policy.toml:2: rule: name 'old studies' may contain only");
}

TEST(PolicyErrorTest, UnknownTierListsTheKnownOnes) {
  std::string m = ParseError("[[rule]]\nname = \"r\"\nto = \"archiv\"\n");
  EXPECT_CONTAINS(m, "policy.toml:3: rule 'r': to = \"archiv\" is not a tier of this filesystem");
  EXPECT_CONTAINS(m, "did you mean 'archive'?");
  EXPECT_CONTAINS(m, "tiers in the config: hot, nearline, archive");
  // "hot" is always known, even when the caller's list omits it.
  EXPECT_TRUE(Policy::Parse("[[rule]]\nname = \"r\"\nto = \"hot\"\n", "p", {}).ok());
}

TEST(PolicyErrorTest, DuplicateRuleName) {
  std::string m = ParseError(R"([[rule]]
name = "r"
match = "a/**"
to = "archive"
[[rule]]
name = "r"
match = "b/**"
to = "nearline"
)");
  EXPECT_CONTAINS(m, "policy.toml:5: duplicate rule name 'r' (first used at line 1)");
}

TEST(PolicyErrorTest, BadGlobNamesTheLineOfThePattern) {
  std::string m = ParseError(R"([[rule]]
name = "r"
match = [
  "studies/**",
  "reports/[ab",
]
to = "archive"
)");
  EXPECT_CONTAINS(m, "policy.toml:5: rule 'r': match: unclosed '[' in pattern 'reports/[ab'");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nexclude = \"a**\"\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': exclude: '**' mixed");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmatch = []\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': match = [] matches no path");
}

TEST(PolicyErrorTest, BadDurationAndSize) {
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nnot_accessed_for = \"6m\"\nto = \"archive\"\n"),
      "policy.toml:3: rule 'r': not_accessed_for: duration '6m' is ambiguous");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nolder_than = \"90days\"\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': older_than: bad unit in duration '90days'");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmin_size = \"1 GiBB\"\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': min_size: bad size '1 GiBB'");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmax_size = -1\nto = \"archive\"\n"),
                  "policy.toml:3: rule 'r': max_size must not be negative");
}

TEST(PolicyErrorTest, MinSizeAboveMaxSize) {
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nmax_size = \"1MiB\"\nmin_size = "
                             "\"2MiB\"\nto = \"archive\"\n"),
                  "policy.toml:4: rule 'r': min_size is larger than max_size");
}

TEST(PolicyErrorTest, UnknownTopLevelKeysAndTables) {
  EXPECT_CONTAINS(ParseError("[[rules]]\nname = \"r\"\nto = \"archive\"\n"),
                  "policy.toml:1: unknown top-level key 'rules' (did you mean 'rule'?)");
  EXPECT_CONTAINS(ParseError("[schedule]\nevery = \"1h\"\n"),
                  "policy.toml:1: unknown top-level key 'schedule' (a policy holds only "
                  "[[rule]] tables)");
  EXPECT_CONTAINS(ParseError("[rule]\nname = \"r\"\nto = \"archive\"\n"),
                  "policy.toml:1: write each rule as [[rule]]");
}

TEST(PolicyErrorTest, XattrNamesNeedANamespace) {
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nxattr = { modality = \"CT\" }\nto = \"archive\"\n"),
      "policy.toml:3: rule 'r': xattr name 'modality' must be a full name with its namespace "
      "(user., trusted., security. or system.), such as 'user.modality'");
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nxattr_present = [\"hold\"]\nto = \"archive\"\n"),
      "policy.toml:3: rule 'r': xattr name 'hold'");
  EXPECT_CONTAINS(
      ParseError("[[rule]]\nname = \"r\"\nxattr = { \"user.m\" = [] }\nto = \"archive\"\n"),
      "policy.toml:3: rule 'r': xattr 'user.m' = [] matches no file");
}

TEST(PolicyErrorTest, RecallOnReadMisuse) {
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nolder_than = \"1y\"\nto = "
                             "\"archive\"\nrecall_on_read = true\n"),
                  "policy.toml:5: rule 'r': recall_on_read needs a not_accessed_for condition");
  EXPECT_CONTAINS(ParseError("[[rule]]\nname = \"r\"\nnot_accessed_for = \"1y\"\nto = "
                             "\"hot\"\nrecall_on_read = true\n"),
                  "policy.toml:5: rule 'r': recall_on_read applies to rules that move files off "
                  "the hot tier");
}

TEST(PolicyErrorTest, RuleAfterACatchAllCanNeverMatch) {
  EXPECT_CONTAINS(ParseError(R"([[rule]]
name = "everything"
to = "nearline"
[[rule]]
name = "old"
older_than = "1y"
to = "archive"
)"),
                  "policy.toml:4: rule 'old' can never match: rule 'everything' at line 1 has "
                  "no conditions");
}

TEST(PolicyErrorTest, TomlSyntaxErrorNamesLineAndColumn) {
  std::string m = ParseError("[[rule]]\nname = \"r\"\nto = \"archive\n");
  EXPECT_CONTAINS(m, "policy.toml:3:");
}

TEST(PolicyErrorTest, EveryProblemIsReportedInFileOrder) {
  std::string m = ParseError(R"([[rule]]
name = "a"
older_then = "1d"
to = "archive"
[[rule]]
name = "b"
match = "x/["
to = "nowhere"
)");
  const size_t first = m.find("policy.toml:3:");
  const size_t second = m.find("policy.toml:7:");
  const size_t third = m.find("policy.toml:8:");
  ASSERT_NE(first, std::string::npos) << m;
  ASSERT_NE(second, std::string::npos) << m;
  ASSERT_NE(third, std::string::npos) << m;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);
}

// ---------------------------------------------------------------------------------------------
// Files

std::string SourceDir() {
  // This file is tests/unit/tiering/policy_test.cc under the source root (CMake passes
  // absolute paths to the compiler).
  std::string f = __FILE__;
  return f.substr(0, f.rfind("/tests/unit/tiering/"));
}

TEST(PolicyFileTest, LoadNamesTheMissingFile) {
  Result<Policy> p = Policy::Load("/nonexistent/strata-policy.toml", kTiers);
  ASSERT_FALSE(p.ok());
  EXPECT_CONTAINS(p.status().message(), "/nonexistent/strata-policy.toml");
}

TEST(PolicyFileTest, PacsExampleLoads) {
  const std::string path = SourceDir() + "/packaging/policies/pacs-policy.toml";
  Result<Policy> p = Policy::Load(path, kTiers);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->source(), path);
  ASSERT_GE(p->rules().size(), 4u);

  FakeXattrs ct{{{"user.modality", "CT"}}, {}};
  FakeXattrs mg{{{"user.modality", "MG"}}, {}};
  FileFacts incoming = File("incoming/1.2.3/img1.dcm", 1 << 20, 1000 * kDay);
  FileFacts sr = File("studies/2020/1.2.3/sr.dcm", 10 << 10, 1000 * kDay);
  FileFacts old_ct = File("studies/2020/1.2.3/img1.dcm", 512 << 10, 1000 * kDay);
  FileFacts old_mg = File("studies/2020/1.2.4/img1.dcm", 20 << 20, 1000 * kDay);
  FileFacts ct_series = File("studies/2024/1.2.5/img1.dcm", 2 << 20, 100 * kDay);
  FileFacts fresh = File("studies/2024/1.2.6/img1.dcm", 2 << 20, kDay);
  ct.Attach(&old_ct);
  ct.Attach(&ct_series);
  mg.Attach(&old_mg);
  EXPECT_EQ(NameOf(p->Match(incoming, kNow)), "incoming-stays-hot");
  EXPECT_EQ(NameOf(p->Match(sr, kNow)), "small-objects-stay-hot");
  EXPECT_EQ(NameOf(p->Match(old_ct, kNow)), "cold-studies");
  EXPECT_EQ(NameOf(p->Match(old_mg, kNow)), "mammo-priors");
  EXPECT_EQ(NameOf(p->Match(ct_series, kNow)), "large-series-to-disk");
  EXPECT_EQ(p->Match(fresh, kNow), nullptr);
}

TEST(PolicyFileTest, EmrExampleLoads) {
  const std::string path = SourceDir() + "/packaging/policies/emr-policy.toml";
  Result<Policy> p = Policy::Load(path, kTiers);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_GE(p->rules().size(), 4u);

  FakeXattrs scan{{{"user.doctype", "scan"}}, {}};
  FakeXattrs held{{{"user.doctype", "letter"}, {"user.legal_hold", "case-17"}}, {}};
  FakeXattrs letter{{{"user.doctype", "letter"}}, {}};
  FileFacts draft = File("drafts/a.docx", 1 << 20, 1000 * kDay);
  FileFacts old_scan = File("documents/2023/17/scan1.pdf", 4 << 20, 90 * kDay);
  FileFacts held_letter = File("documents/2019/17/letter.pdf", 100 << 10, 2000 * kDay);
  FileFacts dormant = File("documents/2019/17/letter2.pdf", 100 << 10, 2000 * kDay);
  FileFacts partial = File("documents/2019/17/upload.part", 100 << 10, 2000 * kDay);
  scan.Attach(&old_scan);
  held.Attach(&held_letter);
  letter.Attach(&dormant);
  letter.Attach(&partial);
  EXPECT_EQ(NameOf(p->Match(draft, kNow)), "index-and-drafts-stay-hot");
  EXPECT_EQ(NameOf(p->Match(old_scan, kNow)), "scans-to-disk");
  EXPECT_EQ(NameOf(p->Match(held_letter, kNow)), "legal-hold-on-disk");
  EXPECT_EQ(NameOf(p->Match(dormant, kNow)), "dormant-records");
  EXPECT_EQ(p->Match(partial, kNow), nullptr);
}

// The demo's policy (scripts/demo.sh) against the demo config's tiers.
TEST(PolicyFileTest, DemoExampleLoads) {
  Result<Policy> p =
      Policy::Load(SourceDir() + "/packaging/policies/demo-policy.toml", {"hot", "cold"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(NameOf(p->Match(File("archive/fuse3/copyright", 4 << 10, 2 * kDay), kNow)),
            "old-archive");
  EXPECT_EQ(p->Match(File("archive/fuse3/copyright", 4 << 10, kDay / 2), kNow), nullptr);
  EXPECT_EQ(p->Match(File("hello.txt", 6, 2 * kDay), kNow), nullptr);
}

// Not a benchmark with a bar: prints how long `migrate --dry-run` spends in the policy for a
// million files, so a regression is visible in the test log.
TEST(PolicyPerfTest, MatchOverAMillionFiles) {
  Result<Policy> p = Policy::Load(SourceDir() + "/packaging/policies/pacs-policy.toml", kTiers);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  constexpr int kFiles = 1000 * 1000;
  std::vector<std::string> paths;
  paths.reserve(4096);
  for (int i = 0; i < 4096; i++) {
    paths.push_back((i % 8 == 0 ? "incoming/" : "studies/") + std::to_string(2010 + i % 15) +
                    "/1.2.840." + std::to_string(i * 7919) + "/img" + std::to_string(i) +
                    (i % 50 == 0 ? ".tmp" : ".dcm"));
  }
  const char* modalities[] = {"CT", "MR", "MG", "US", "CR"};
  int xattr_calls = 0;
  std::vector<int> per_rule(p->rules().size() + 1);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kFiles; i++) {
    FileFacts f;
    f.path = paths[static_cast<size_t>(i) % paths.size()];
    f.size = (static_cast<uint64_t>(i) * 2654435761u) % (8 << 20);
    f.mtime_ns = f.btime_ns = f.ctime_ns = kNow - (i % 1500) * kDay;
    f.atime_ns = kNow - (i % 900) * kDay;
    f.tier = "hot";
    const char* modality = modalities[i % 5];
    f.xattr = [&xattr_calls, modality](std::string_view) -> std::optional<std::string> {
      xattr_calls++;
      return std::string(modality);
    };
    const Rule* r = p->Match(f, kNow);
    per_rule[r == nullptr ? p->rules().size() : static_cast<size_t>(r - p->rules().data())]++;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[  PERF    ] Match over %d files: %.3f s (%.0f ns/file), %d xattr fetches\n", kFiles,
              secs, secs * 1e9 / kFiles, xattr_calls);
  for (size_t i = 0; i < per_rule.size(); i++) {
    std::printf("[  PERF    ]   %-24s %d\n",
                i < p->rules().size() ? p->rules()[i].name.c_str() : "(no rule)", per_rule[i]);
  }
  EXPECT_EQ(std::accumulate(per_rule.begin(), per_rule.end(), 0), kFiles);
}

}  // namespace
}  // namespace strata::tiering
