// Shared by the fuzz targets (tests/fuzz): CHECK_OR_TRAP, which traps so that
// libFuzzer (and the corpus replay) report the input, and `reader`, which
// takes the fuzz input apart into bytes and short strings.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#define CHECK_OR_TRAP(cond)        \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (false)

namespace support {

/// Reads the fuzz input front to back; past its end, bytes are 0 and strings empty.
struct reader {
  const std::uint8_t* p;
  std::size_t n;
  std::size_t max_string = 48;  ///< a string is shorter than this
  bool empty() const { return n == 0; }
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::string str() {
    const std::size_t len = std::min<std::size_t>(byte() % max_string, n);
    std::string s{reinterpret_cast<const char*>(p), len};
    p += len;
    n -= len;
    return s;
  }
};

}  // namespace support
