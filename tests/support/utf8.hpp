// A strict UTF-8 check (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF), written independently of the library's decoder, for tests
// and fuzzers that check what the library writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace support {

/// Decodes one strict UTF-8 character at s[i] into cp; returns its length, 0 when invalid.
inline std::size_t utf8_char(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  if (b < 0x80) {
    n = 1;
    cp = b;
  } else if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1Fu;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0Fu;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3Fu);
  }
  static constexpr std::uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/// True when all of `s` is strict UTF-8.
inline bool strict_utf8(std::string_view s) {
  std::uint32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_char(s, i, cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace support
