// resilience/detail/text_escape.hpp: the one place where user strings (names,
// operations, tenants, exception messages) are made safe for the two text
// formats the library writes: JSON lines (logging.hpp) and the Prometheus
// text format (metrics.hpp). Users name those headers, never this one.
//
// Both formats must be valid UTF-8 whatever the input, so both go through
// one decoder: each byte that does not start a valid UTF-8 sequence (stray
// continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated)
// becomes U+FFFD. Each format then escapes what its grammar asks. No fmt
// here: metrics.hpp must not need it.
//
//   std::string out;
//   resilience::detail::append_prometheus_label_value(out, "caf\xff");  // caf\xEF\xBF\xBD
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace resilience {
inline namespace v1 {
namespace detail {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes
// there are not one (stray continuation byte, overlong form, surrogate,
// beyond U+10FFFF, truncated).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto cont = [&](std::size_t k) { return k < s.size() && (byte(k) & 0xC0u) == 0x80u; };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80u) return 1;
  if (b0 >= 0xC2u && b0 <= 0xDFu) return cont(i + 1) ? 2 : 0;
  if (b0 >= 0xE0u && b0 <= 0xEFu) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    const unsigned char b1 = byte(i + 1);
    if (b0 == 0xE0u && b1 < 0xA0u) return 0;  // overlong
    if (b0 == 0xEDu && b1 > 0x9Fu) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b0 >= 0xF0u && b0 <= 0xF4u) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    const unsigned char b1 = byte(i + 1);
    if (b0 == 0xF0u && b1 < 0x90u) return 0;  // overlong
    if (b0 == 0xF4u && b1 > 0x8Fu) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;  // 0x80..0xC1 and 0xF5..0xFF never start a character
}

// True when s is valid UTF-8 throughout.
inline bool valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Appends bytes to any buffer with append(first, last) and push_back (std::string, fmt::memory_buffer).
template <class Out>
void append_text(Out& out, std::string_view s) {
  out.append(s.data(), s.data() + s.size());
}

// Walks s as UTF-8: escape(out, c) may write an escape for each ASCII byte
// (returning false to have it copied as is) and is also offered 0xA8 / 0xA9
// for U+2028 / U+2029; other valid sequences are copied, and every invalid
// byte becomes `replacement`.
template <class Out, class Escape>
void append_sanitized(Out& out, std::string_view s, std::string_view replacement, Escape&& escape) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80u) {
      if (!escape(out, static_cast<char>(c))) out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      append_text(out, replacement);  // one replacement per invalid byte
      ++i;
      continue;
    }
    // U+2028 and U+2029 are valid but end lines in JavaScript and some log viewers.
    if (n == 3 && c == 0xE2u && static_cast<unsigned char>(s[i + 1]) == 0x80u &&
        (static_cast<unsigned char>(s[i + 2]) & 0xFEu) == 0xA8u && escape(out, static_cast<char>(s[i + 2]))) {
      i += 3;
      continue;
    }
    append_text(out, s.substr(i, n));
    i += n;
  }
}

// s with every invalid UTF-8 byte replaced by U+FFFD, nothing escaped.
inline std::string sanitized_utf8(std::string_view s) {
  std::string out;
  append_sanitized(out, s, "\xEF\xBF\xBD", [](std::string&, char) { return false; });
  return out;
}

// "\u00XX" for a byte or code unit below 0x10000.
template <class Out>
void append_json_u_escape(Out& out, unsigned v) {
  constexpr std::string_view hex = "0123456789abcdef";
  const char buf[6] = {'\\', 'u', hex[(v >> 12) & 0xFu], hex[(v >> 8) & 0xFu], hex[(v >> 4) & 0xFu], hex[v & 0xFu]};
  out.append(buf, buf + 6);
}

// Appends s as a JSON string literal (RFC 8259), quotes included: quotes,
// backslashes and control characters are escaped, DEL too (for terminals),
// U+2028/U+2029 as \u escapes, invalid UTF-8 bytes as \ufffd.
template <class Out>
void append_json_string(Out& out, std::string_view s) {
  out.push_back('"');
  append_sanitized(out, s, "\\ufffd", [](Out& o, char ch) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': append_text(o, "\\\""); return true;
      case '\\': append_text(o, "\\\\"); return true;
      case '\n': append_text(o, "\\n"); return true;
      case '\r': append_text(o, "\\r"); return true;
      case '\t': append_text(o, "\\t"); return true;
      case '\b': append_text(o, "\\b"); return true;
      case '\f': append_text(o, "\\f"); return true;
      case 0xA8u:
      case 0xA9u: append_json_u_escape(o, 0x2028u + (c - 0xA8u)); return true;  // U+2028, U+2029
      default: break;
    }
    if (c < 0x20u || c == 0x7Fu) {
      append_json_u_escape(o, c);
      return true;
    }
    return false;
  });
  out.push_back('"');
}

// Prometheus label value (text format 0.0.4): backslash, double quote and
// newline are escaped (the format's only escapes), invalid UTF-8 bytes become
// U+FFFD, everything else is written as is.
template <class Out>
void append_prometheus_label_value(Out& out, std::string_view s) {
  append_sanitized(out, s, "\xEF\xBF\xBD", [](Out& o, char c) {
    switch (c) {
      case '\\': append_text(o, "\\\\"); return true;
      case '"': append_text(o, "\\\""); return true;
      case '\n': append_text(o, "\\n"); return true;
      default: return false;
    }
  });
}

// Prometheus HELP text: only backslash and newline are escaped; UTF-8 as above.
template <class Out>
void append_prometheus_help(Out& out, std::string_view s) {
  append_sanitized(out, s, "\xEF\xBF\xBD", [](Out& o, char c) {
    switch (c) {
      case '\\': append_text(o, "\\\\"); return true;
      case '\n': append_text(o, "\\n"); return true;
      default: return false;
    }
  });
}

// Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
inline bool valid_prometheus_metric_name(std::string_view n) noexcept {
  if (n.empty()) return false;
  const auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
  };
  if (!ok(n.front(), true)) return false;
  return std::all_of(n.begin() + 1, n.end(), [&](char c) { return ok(c, false); });
}

// Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*.
inline bool valid_prometheus_label_name(std::string_view n) noexcept {
  return valid_prometheus_metric_name(n) && n.find(':') == std::string_view::npos;
}

}  // namespace detail
}  // namespace v1
}  // namespace resilience
