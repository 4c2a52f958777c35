// resilience/detail/breaker_word.hpp: a circuit breaker's state word — phase,
// "ready" bit and generation packed in 64 bits — and newer-than on wrapping
// generations. Users name circuit_breaker.hpp, never this header.
#pragma once

#include <cstdint>

namespace resilience {
inline namespace v1 {
namespace detail {

enum class cb_phase : std::uint8_t { closed = 0, open = 1, half_open = 2, isolated = 3 };

// The state word: generation (bumped by every transition) in the high 32
// bits, a "ready" bit, and the phase. A transition CASes the word to the new
// phase with ready clear, prepares the phase's data, tells listeners, then
// sets ready: one CAS decides the single thread that performs it, and the
// next transition cannot start before the listeners heard of this one.
struct cb_word {
  static constexpr std::uint64_t pack(std::uint32_t gen, cb_phase p, bool ready) noexcept {
    return (std::uint64_t{gen} << 32) | (ready ? 0x100u : 0u) | static_cast<std::uint64_t>(p);
  }
  static constexpr std::uint32_t gen(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
  static constexpr cb_phase phase(std::uint64_t w) noexcept { return static_cast<cb_phase>(w & 0xff); }
  static constexpr bool ready(std::uint64_t w) noexcept { return (w & 0x100u) != 0; }
  // Closed and ready, in one comparison: the test every admitted call makes.
  static constexpr bool closed_ready(std::uint64_t w) noexcept { return (w & 0x1ffu) == 0x100u; }
};

// Newer-than on wrapping generation counters.
constexpr bool gen_newer(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) > 0; }
constexpr bool gen16_newer(std::uint16_t a, std::uint16_t b) noexcept {
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(a - b)) > 0;
}

}  // namespace detail
}  // namespace v1
}  // namespace resilience
