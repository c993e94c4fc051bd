// Glob: a path pattern of the tiering policy, compiled once and matched many times.
//
// Syntax (docs/policy.md is the reference):
//   *        any run of characters within one path component (possibly empty; never '/')
//   ?        exactly one character (one UTF-8 encoded code point), never '/'
//   [abc]    one character of the set; [a-z] a range; [!x] or [^x] any character but x;
//            a ']' right after '[' (or '[!') is a member; '\' escapes inside a class too
//   **       as a whole component: zero or more whole components ("**/*.dcm", "a/**/b"),
//            except at the end of a pattern, where it matches one or more ("studies/**"
//            matches every file under studies/, not a file named "studies")
//   \c       the character c itself ("\*", "\[", "\\")
// A pattern is anchored at both ends to the whole relative path ("studies/2024/x.dcm": no
// leading '/'). A leading '/' in the pattern is accepted and ignored. Matching is by bytes
// (case-sensitive) except that '?' and classes consume one UTF-8 character, so "?" matches
// "ä". '*' also matches names that begin with '.'.
//
// Compile refuses: an empty pattern, a trailing '/', an empty component ("a//b"), a "." or
// ".." component (relative paths never contain them), '**' mixed with other characters in a
// component ("studies**"), an unclosed '[', a reversed range ("[z-a]"), '/' inside a class,
// an escaped '/', a trailing lone '\' and NUL.
//
// Matches never allocates and never throws: the path is walked in place; a literal prefix
// and suffix of the pattern are checked first, so most non-matching paths are rejected by one
// memcmp. Worst case O(pattern * path) (single-point backtracking per level, no recursion).
//
// Thread-safety: a compiled Glob is immutable; Matches may be called from many threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::tiering {

class Glob {
 public:
  // The error message (InvalidArgument) states the reason only, e.g. "unclosed '[' in pattern
  // 'studies/[ab'"; the policy parser puts file:line in front of it.
  static Result<Glob> Compile(std::string_view pattern);

  // True when the whole of `path` (relative, '/'-separated, no leading '/') matches.
  bool Matches(std::string_view path) const;

  // The pattern as written.
  const std::string& pattern() const { return pattern_; }

 private:
  enum class TokenKind : uint8_t { kLiteral, kAnyChar, kStar, kClass };
  struct Token {
    TokenKind kind;
    uint32_t a = 0;  // kLiteral: offset in literals_; kClass: index in classes_
    uint32_t b = 0;  // kLiteral: length
  };
  enum class SegmentKind : uint8_t {
    kPattern,       // one component matched by tokens_[first, first + count)
    kGlobstar,      // zero or more whole components
    kAnyComponent,  // exactly one component (the first of a trailing "**")
  };
  struct Segment {
    SegmentKind kind;
    uint32_t first = 0;
    uint32_t count = 0;
  };
  struct CharClass {
    bool negated = false;
    uint64_t ascii[2] = {0, 0};                         // members below 128
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // members from 128 up, inclusive
    bool Contains(uint32_t cp) const;
  };

  Glob() = default;
  bool MatchComponent(const Segment& seg, std::string_view s) const;

  std::string pattern_;
  std::string literals_;  // the bytes of every kLiteral token
  std::vector<Token> tokens_;
  std::vector<Segment> segments_;
  std::vector<CharClass> classes_;
  // Necessary conditions checked before the walk: the path starts with prefix_ and ends with
  // suffix_. When exact_ the pattern has no wildcard and prefix_ is the whole pattern.
  std::string prefix_;
  std::string suffix_;
  bool exact_ = false;
};

}  // namespace strata::tiering
