// resilience/detail/breaker_counters.hpp: a circuit breaker's call counters,
// striped by thread, and the never-decreasing reads its stats() reports.
// Users name circuit_breaker.hpp, never this header.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace resilience {
inline namespace v1 {
namespace detail {

// Which stripe of a breaker's call counters this thread writes.
inline constexpr std::size_t no_stripe = ~std::size_t{0};
inline thread_local std::size_t thread_stripe = no_stripe;
inline std::atomic<std::size_t> next_stripe{0};

// Call counters, striped by thread so that threads calling one breaker
// do not fight over one cache line; stats() adds the stripes up.
struct alignas(64) breaker_call_counts {
  static constexpr std::size_t slow = 4;  // after the call_status values
  std::array<std::atomic<std::uint64_t>, 5> n{};
};
inline constexpr std::size_t breaker_stripes = 8;
inline std::size_t breaker_stripe() noexcept {
  if (thread_stripe == no_stripe) thread_stripe = next_stripe.fetch_add(1, std::memory_order_relaxed) % breaker_stripes;
  return thread_stripe;
}

// A counter read that can come out low for a moment, while calls move
// between the places it adds up, is held at the highest value reported
// before: it is a Prometheus counter and never goes down.
inline std::uint64_t monotonic(std::atomic<std::uint64_t>& seen, std::uint64_t now) noexcept {
  std::uint64_t best = seen.load(std::memory_order_relaxed);
  while (now > best && !seen.compare_exchange_weak(best, now, std::memory_order_relaxed)) {
  }
  return std::max(now, best);
}

}  // namespace detail
}  // namespace v1
}  // namespace resilience
