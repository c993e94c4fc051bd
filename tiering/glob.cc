#include "tiering/glob.h"

#include <cstring>

namespace strata::tiering {
namespace {

constexpr size_t kNpos = std::string_view::npos;

// Decodes the character at s[i] (i < s.size()) into *cp and returns its length in bytes. A
// byte that does not start a complete UTF-8 sequence is one character of its own, decoded as
// 0xDC00 + byte (a lone surrogate, never a real character), so invalid names still match '?'
// and '*' and never match a class member written as valid UTF-8.
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    v = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    v = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    v = c & 0x07;
  } else {
    *cp = 0xDC00 + c;
    return 1;
  }
  if (s.size() - i < len) {
    *cp = 0xDC00 + c;
    return 1;
  }
  for (size_t k = 1; k < len; k++) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      *cp = 0xDC00 + c;
      return 1;
    }
    v = (v << 6) | (cc & 0x3F);
  }
  *cp = v;
  return len;
}

size_t CharLen(std::string_view s, size_t i) {
  if (static_cast<unsigned char>(s[i]) < 0x80) return 1;
  uint32_t cp;
  return DecodeUtf8(s, i, &cp);
}

}  // namespace

bool Glob::CharClass::Contains(uint32_t cp) const {
  bool in = false;
  if (cp < 128) {
    in = (ascii[cp >> 6] >> (cp & 63)) & 1;
  } else {
    for (const auto& [lo, hi] : ranges) {
      if (cp >= lo && cp <= hi) {
        in = true;
        break;
      }
    }
  }
  return in != negated;
}

Result<Glob> Glob::Compile(std::string_view pattern) {
  auto fail = [&](std::string_view reason) -> Status {
    return Status::InvalidArgument(std::string(reason) + " in pattern '" + std::string(pattern) +
                                   "'");
  };
  Glob g;
  g.pattern_ = std::string(pattern);
  std::string_view p = pattern;
  if (p.find('\0') != kNpos) return fail("NUL character");
  if (!p.empty() && p.front() == '/') p.remove_prefix(1);
  if (p.empty()) return Status::InvalidArgument("empty pattern");
  if (p.back() == '/') return fail("trailing '/' (write 'dir/**' to match every file under dir)");

  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == kNpos) end = p.size();
    const bool cut_by_slash = end < p.size();
    const std::string_view comp = p.substr(start, end - start);
    start = end + 1;

    if (comp.empty()) return fail("empty path component ('//')");
    if (comp == "." || comp == "..")
      return fail("'" + std::string(comp) +
                  "' component (paths are relative to the filesystem root and never contain "
                  "'.' or '..')");
    if (comp == "**") {
      // "**/**" is the same as "**".
      if (g.segments_.empty() || g.segments_.back().kind != SegmentKind::kGlobstar)
        g.segments_.push_back({SegmentKind::kGlobstar, 0, 0});
      continue;
    }

    Segment seg{SegmentKind::kPattern, static_cast<uint32_t>(g.tokens_.size()), 0};
    std::string lit;
    auto flush_literal = [&] {
      if (lit.empty()) return;
      g.tokens_.push_back({TokenKind::kLiteral, static_cast<uint32_t>(g.literals_.size()),
                           static_cast<uint32_t>(lit.size())});
      g.literals_ += lit;
      lit.clear();
    };
    // Reads one (possibly escaped) character of `comp` at *i into *cp; false at a lone '\'.
    auto read_char = [&](size_t* i, uint32_t* cp, std::string* bytes) -> Status {
      if (comp[*i] == '\\') {
        ++*i;
        if (*i >= comp.size())
          return fail(cut_by_slash ? "'\\' before '/' ('/' always separates components)"
                                   : "pattern ends with a lone '\\'");
      }
      const size_t len = DecodeUtf8(comp, *i, cp);
      if (bytes != nullptr) bytes->append(comp.substr(*i, len));
      *i += len;
      return Status::OK();
    };

    size_t i = 0;
    while (i < comp.size()) {
      const char c = comp[i];
      if (c == '*') {
        if (i + 1 < comp.size() && comp[i + 1] == '*')
          return fail(
              "'**' mixed with other characters in a component ('**' must be a whole "
              "component, as in 'studies/**' or '**/*.dcm'; within a component use '*')");
        flush_literal();
        g.tokens_.push_back({TokenKind::kStar});
        i++;
      } else if (c == '?') {
        flush_literal();
        g.tokens_.push_back({TokenKind::kAnyChar});
        i++;
      } else if (c == '[') {
        flush_literal();
        CharClass cc;
        size_t j = i + 1;
        if (j < comp.size() && (comp[j] == '!' || comp[j] == '^')) {
          cc.negated = true;
          j++;
        }
        bool first = true;
        while (true) {
          if (j >= comp.size())
            return fail(cut_by_slash ? "'/' inside '[...]' (a class never matches '/')"
                                     : "unclosed '['");
          if (comp[j] == ']' && !first) {
            j++;
            break;
          }
          first = false;
          uint32_t lo, hi;
          RETURN_IF_ERROR(read_char(&j, &lo, nullptr));
          hi = lo;
          if (j + 1 < comp.size() && comp[j] == '-' && comp[j + 1] != ']') {
            j++;
            RETURN_IF_ERROR(read_char(&j, &hi, nullptr));
            if (hi < lo) return fail("reversed range in '[...]'");
          }
          for (uint32_t ch = lo; ch <= hi && ch < 128; ch++) cc.ascii[ch >> 6] |= 1ull << (ch & 63);
          if (hi >= 128) cc.ranges.emplace_back(lo < 128 ? 128 : lo, hi);
        }
        g.tokens_.push_back({TokenKind::kClass, static_cast<uint32_t>(g.classes_.size())});
        g.classes_.push_back(std::move(cc));
        i = j;
      } else {
        uint32_t cp;
        RETURN_IF_ERROR(read_char(&i, &cp, &lit));
      }
    }
    flush_literal();
    seg.count = static_cast<uint32_t>(g.tokens_.size()) - seg.first;
    g.segments_.push_back(seg);
  }

  // A trailing "**" means "everything inside": one component, then zero or more.
  if (g.segments_.back().kind == SegmentKind::kGlobstar) {
    g.segments_.back().kind = SegmentKind::kAnyComponent;
    g.segments_.push_back({SegmentKind::kGlobstar, 0, 0});
  }

  // Literal prefix: whole literal components joined by '/', then the leading literal of the
  // first component that has a wildcard.
  auto literal_of = [&](const Token& t) { return std::string_view(g.literals_).substr(t.a, t.b); };
  bool exact = true;
  for (const Segment& seg : g.segments_) {
    if (seg.kind != SegmentKind::kPattern) {
      exact = false;
      break;
    }
    const Token& t0 = g.tokens_[seg.first];
    if (seg.count == 1 && t0.kind == TokenKind::kLiteral) {
      g.prefix_ += literal_of(t0);
      g.prefix_ += '/';
      continue;
    }
    if (t0.kind == TokenKind::kLiteral) g.prefix_ += literal_of(t0);
    exact = false;
    break;
  }
  if (exact) {
    g.prefix_.pop_back();
    g.exact_ = true;
  } else if (const Segment& last = g.segments_.back(); last.kind == SegmentKind::kPattern) {
    const Token& tl = g.tokens_[last.first + last.count - 1];
    if (tl.kind == TokenKind::kLiteral) g.suffix_ = std::string(literal_of(tl));
  }
  return g;
}

bool Glob::MatchComponent(const Segment& seg, std::string_view s) const {
  const Token* tokens = tokens_.data() + seg.first;
  const size_t n = seg.count;
  size_t ti = 0, si = 0;
  size_t star_ti = kNpos, star_si = 0;
  while (true) {
    if (ti < n) {
      const Token& t = tokens[ti];
      switch (t.kind) {
        case TokenKind::kStar:
          if (ti + 1 == n) return true;  // the rest of the component
          star_ti = ti++;
          star_si = si;
          continue;
        case TokenKind::kLiteral:
          if (s.size() - si >= t.b &&
              std::memcmp(s.data() + si, literals_.data() + t.a, t.b) == 0) {
            si += t.b;
            ti++;
            continue;
          }
          break;
        case TokenKind::kAnyChar:
          if (si < s.size()) {
            si += CharLen(s, si);
            ti++;
            continue;
          }
          break;
        case TokenKind::kClass:
          if (si < s.size()) {
            uint32_t cp;
            const size_t len = DecodeUtf8(s, si, &cp);
            if (classes_[t.a].Contains(cp)) {
              si += len;
              ti++;
              continue;
            }
          }
          break;
      }
    } else if (si == s.size()) {
      return true;
    }
    // Mismatch: let the last '*' absorb one more character and retry after it. Earlier stars
    // never need to move (the classic single-backtrack argument), so this is O(n * m).
    if (star_ti == kNpos || star_si >= s.size()) return false;
    star_si += CharLen(s, star_si);
    si = star_si;
    ti = star_ti + 1;
  }
}

bool Glob::Matches(std::string_view path) const {
  if (exact_) return path == prefix_;
  if (path.empty() || path.size() < prefix_.size() + suffix_.size() ||
      std::memcmp(path.data(), prefix_.data(), prefix_.size()) != 0 ||
      std::memcmp(path.data() + path.size() - suffix_.size(), suffix_.data(), suffix_.size()) != 0)
    return false;

  // The same algorithm one level up: components are the characters, "**" is the star.
  const size_t n = path.size();
  auto component_end = [&](size_t from) {
    const size_t e = path.find('/', from);
    return e == kNpos ? n : e;
  };
  size_t si = 0;
  size_t pos = 0;  // start of the next component; n + 1 once the path is used up
  size_t star_si = kNpos, star_pos = 0;
  while (true) {
    if (si < segments_.size()) {
      const Segment& seg = segments_[si];
      if (seg.kind == SegmentKind::kGlobstar) {
        if (si + 1 == segments_.size()) return true;  // zero or more: whatever is left
        star_si = si++;
        star_pos = pos;
        continue;
      }
      if (pos <= n) {
        const size_t end = component_end(pos);
        if (seg.kind == SegmentKind::kAnyComponent ||
            MatchComponent(seg, path.substr(pos, end - pos))) {
          pos = end + 1;
          si++;
          continue;
        }
      }
    } else if (pos > n) {
      return true;
    }
    if (star_si == kNpos || star_pos > n) return false;
    star_pos = component_end(star_pos) + 1;
    pos = star_pos;
    si = star_si + 1;
  }
}

}  // namespace strata::tiering
