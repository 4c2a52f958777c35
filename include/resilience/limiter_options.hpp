// resilience/limiter_options.hpp: how a rate limiter is configured — its
// algorithm and limiter_options, shared by single limiters (limiter.hpp), the
// registry's keys (rate_limit.hpp) and the lock-free state behind both.
//
//   resilience::limiter_options o{.requests_per_second = 10, .burst_size = 20,
//                                 .algorithm = resilience::rate_limit_algorithm::leaky_bucket};
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace resilience {
inline namespace v1 {

/// Which algorithm a limiter runs (see limiter.hpp for the semantics of each).
enum class rate_limit_algorithm : std::uint8_t {
  token_bucket,   ///< bursts up to burst_size, refilled at the rate (the default)
  leaky_bucket,   ///< smooth output: one permit every 1/rate, up to burst_size queued ahead
  fixed_window,   ///< burst_size permits per window of burst_size/rate seconds
  sliding_window  ///< exact rolling window: never more than burst_size in any burst_size/rate seconds
};

/// "token_bucket", "leaky_bucket", "fixed_window" or "sliding_window".
constexpr std::string_view to_string(rate_limit_algorithm a) noexcept {
  switch (a) {
    case rate_limit_algorithm::token_bucket: return "token_bucket";
    case rate_limit_algorithm::leaky_bucket: return "leaky_bucket";
    case rate_limit_algorithm::fixed_window: return "fixed_window";
    case rate_limit_algorithm::sliding_window: return "sliding_window";
  }
  return "unknown";
}

/// How a key (or a single limiter) is limited.
struct limiter_options {
  double requests_per_second = 10.0;  ///< the sustained rate; finite, > 0 and <= 1e9
  std::int64_t burst_size = 20;       ///< bucket capacity / queue depth / permits per window; >= 1
  rate_limit_algorithm algorithm = rate_limit_algorithm::token_bucket;  ///< default: token bucket
  std::size_t max_partitions = 10'000;  ///< registry only: tenant limiters kept per key (idle ones evicted first); >= 1
  /// Count grants in rate_limit_stats::allowed: one more atomic add per
  /// grant (~10 ns). Default false: with nobody watching, a grant costs its
  /// CAS and nothing else. metrics_registry::watch turns counting on for the
  /// limiter or registry it watches, for good (a later configure() with
  /// false does not turn it off). Refusals are always counted.
  bool count_grants = false;
};

}  // namespace v1
}  // namespace resilience
