// resilience/detail/breaker_windows.hpp: the layouts of a circuit breaker's
// rate windows — the time window's buckets, the count window's totals and
// slots — and the values its window code passes around. The windows' logic
// lives in breaker_state (circuit_breaker.hpp), beside the state word it
// moves. Users name circuit_breaker.hpp, never this header.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace resilience {
inline namespace v1 {
namespace detail {

// A time-based bucket: [stamp:22 | calls:14 | failures:14 | slow:14]. The
// stamp is the bucket's epoch (time / bucket width) modulo 2^22; a bucket
// whose stamp is not the epoch a reader expects holds old data and counts as
// empty. A full bucket (16383 calls) drops further samples, which keeps its
// rates.
struct bucket_word {
  static constexpr std::uint64_t mask14 = (1u << 14) - 1;
  static constexpr std::uint64_t mask22 = (1u << 22) - 1;
  static constexpr std::uint64_t stamp(std::uint64_t w) noexcept { return w >> 42; }
  static constexpr std::uint64_t calls(std::uint64_t w) noexcept { return (w >> 28) & mask14; }
  static constexpr std::uint64_t failures(std::uint64_t w) noexcept { return (w >> 14) & mask14; }
  static constexpr std::uint64_t slow(std::uint64_t w) noexcept { return w & mask14; }
  static constexpr std::uint64_t pack(std::uint64_t s, std::uint64_t c, std::uint64_t f, std::uint64_t sl) noexcept {
    return ((s & mask22) << 42) | (c << 28) | (f << 14) | sl;
  }
};

// The count-based totals: [gen:16 | calls:16 | failures:16 | slow:16], each
// count kept modulo 2^16 (a slot may be subtracted a moment before it was
// added; the sum settles right after). A slot is [gen:16 | code:8].
struct totals_word {
  static constexpr std::uint16_t gen(std::uint64_t w) noexcept { return static_cast<std::uint16_t>(w >> 48); }
  static constexpr std::uint16_t field(std::uint64_t w, int i) noexcept {
    return static_cast<std::uint16_t>(w >> (48 - 16 * i));
  }
  static constexpr std::uint64_t pack(std::uint16_t g, std::uint16_t c, std::uint16_t f, std::uint16_t s) noexcept {
    return (std::uint64_t{g} << 48) | (std::uint64_t{c} << 32) | (std::uint64_t{f} << 16) | s;
  }
};

inline constexpr std::uint8_t slot_recorded = 1, slot_failure = 2, slot_slow = 4;

// A count-window slot: [gen:16 | code:8].
constexpr std::uint32_t slot_code(std::uint32_t gen, bool failure, bool slow) noexcept {
  const auto g = static_cast<std::uint16_t>(gen);
  return (std::uint32_t{g} << 8) | slot_recorded | (failure ? slot_failure : 0u) | (slow ? slot_slow : 0u);
}

// What a window holds: calls, failures and slow calls.
struct window_totals {
  std::uint64_t calls = 0, failures = 0, slow = 0;
};

// A count-window position taken by a call: its slot and what the slot held then.
struct window_slot {
  std::size_t index;
  std::uint32_t seen;  // what the slot held when its position was taken
};

// A bucket read ahead of time: its epoch and what it held.
struct bucket_hint {
  bucket_hint() noexcept : epoch{~std::uint64_t{0}}, word{0} {}
  bucket_hint(std::uint64_t e, std::size_t mask, const std::atomic<std::uint64_t>* buckets) noexcept
      : epoch{e}, word{buckets[e & mask].load(std::memory_order_relaxed)} {}
  std::uint64_t epoch;
  std::uint64_t word;
};

}  // namespace detail
}  // namespace v1
}  // namespace resilience
