// resilience/detail/rate_limit_state.hpp: the four rate-limit algorithms as
// plain state machines over integer nanoseconds. Users name rate_limit.hpp,
// never this header.
//
// Every algorithm answers one question, reserve(now, n, deadline): can n
// permits be had no later than `deadline`, and if not, how long until a
// try_acquire(n) would succeed? Token and leaky bucket are one atomic
// compare-and-swap on a single 64-bit time; fixed window is one CAS on a
// packed (window index, count) word; the sliding log takes a mutex.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../clock.hpp"

namespace resilience {
inline namespace v1 {

/// Which algorithm a limiter runs (see rate_limit.hpp for the semantics of each).
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
struct rate_limit_config {
  double requests_per_second = 10.0;  ///< the sustained rate; finite, > 0 and <= 1e9
  std::int64_t burst_size = 20;       ///< bucket capacity / queue depth / permits per window; >= 1
  rate_limit_algorithm algorithm = rate_limit_algorithm::token_bucket;  ///< default: token bucket
  std::size_t max_partitions = 10'000;  ///< registry only: tenant limiters kept per key (idle ones evicted first); >= 1
  bool count_grants = true;  ///< keep the `allowed` total: one atomic add per grant (~10 ns); false for the leanest hot path
};

namespace detail {

inline constexpr std::int64_t ns_per_second = 1'000'000'000;
// The longest burst window accepted: keeps every sum of times far from int64 overflow.
inline constexpr std::int64_t max_window_ns = std::int64_t{100} * 365 * 24 * 3600 * ns_per_second;

// Validates a config; throws std::invalid_argument naming the field.
inline void validate(const rate_limit_config& c, std::string_view who) {
  const std::string w{who};
  if (!(c.requests_per_second > 0.0) || !std::isfinite(c.requests_per_second))
    throw std::invalid_argument{w + ": requests_per_second must be a finite number > 0"};
  if (c.requests_per_second > 1e9)
    throw std::invalid_argument{w + ": requests_per_second must be <= 1e9 (one permit per nanosecond)"};
  if (c.burst_size < 1 || c.burst_size > std::int64_t{std::numeric_limits<std::uint32_t>::max()})
    throw std::invalid_argument{w + ": burst_size must be between 1 and 4294967295"};
  if (c.algorithm == rate_limit_algorithm::sliding_window && c.burst_size > (std::int64_t{1} << 20))
    throw std::invalid_argument{w + ": burst_size must be <= 1048576 for sliding_window (it keeps one timestamp per permit)"};
  if (static_cast<int>(c.algorithm) > static_cast<int>(rate_limit_algorithm::sliding_window))
    throw std::invalid_argument{w + ": algorithm is not one of the four rate_limit_algorithm values"};
  const double interval = std::round(1e9 / c.requests_per_second);
  if (interval * static_cast<double>(c.burst_size) > static_cast<double>(max_window_ns))
    throw std::invalid_argument{w + ": requests_per_second is too small for burst_size (burst_size / requests_per_second must be under 100 years)"};
  if (c.max_partitions < 1) throw std::invalid_argument{w + ": max_partitions must be >= 1"};
}

// The answer of reserve().
struct reservation {
  bool granted = false;
  std::int64_t at = 0;           // when granted: the time (ns) the permits may be used
  std::int64_t retry_after = 0;  // when refused: ns until try_acquire(n) would succeed
  bool final = false;            // refused for good: waiting until the deadline would not help (buckets book ahead or refuse)
};

// One limiter's state. Not copyable, not movable: limiters hold it in place
// (in a shared_ptr, a registry entry or a tenant node).
class limiter_state {
 public:
  limiter_state(const rate_limit_config& c, time_point now)
      : config_{c},
        algorithm_{c.algorithm},
        interval_{std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(1e9 / c.requests_per_second)))},
        limit_{c.burst_size},
        tau_{interval_ * limit_},
        origin_{now.time_since_epoch().count()},
        count_bits_{static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(limit_)))} {
    switch (algorithm_) {
      // "Empty at now - tau" is a full bucket; "queue drains at now" an empty queue.
      case rate_limit_algorithm::token_bucket: word_.store(origin_ - tau_, std::memory_order_relaxed); break;
      case rate_limit_algorithm::leaky_bucket: word_.store(origin_, std::memory_order_relaxed); break;
      case rate_limit_algorithm::fixed_window: word_.store(0, std::memory_order_relaxed); break;
      case rate_limit_algorithm::sliding_window:
        // "Long ago", yet far enough from INT64_MIN that adding the window cannot overflow.
        log_.assign(static_cast<std::size_t>(limit_), std::numeric_limits<std::int64_t>::min() / 2);
        break;
    }
  }
  limiter_state(const limiter_state&) = delete;
  limiter_state& operator=(const limiter_state&) = delete;

  const rate_limit_config& config() const noexcept { return config_; }
  std::int64_t limit() const noexcept { return limit_; }
  // The emission interval 1/rate in ns (rounded to the nearest ns).
  std::int64_t interval() const noexcept { return interval_; }
  // The window (fixed, sliding) or bucket depth (token, leaky) in ns: burst_size * interval.
  std::int64_t window() const noexcept { return tau_; }

  // Throws when n permits can never be granted at once.
  void check_n(std::uint32_t n, std::string_view who) const {
    if (static_cast<std::int64_t>(n) > limit_)
      throw std::invalid_argument{std::string{who} + ": n (" + std::to_string(n) + ") exceeds burst_size (" + std::to_string(limit_) +
                                  "); it could never be granted"};
  }

  // Grants n permits at a time no later than `deadline` (both in ns), or
  // says how long until a try_acquire(n) at `now` would succeed. n <= limit().
  // Inlined into every caller (the switch folds into one CAS); only the
  // sliding log, which locks, stays out of line.
  [[gnu::always_inline]] reservation reserve(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    if (n == 0) return {true, now, 0};
    switch (algorithm_) {
      case rate_limit_algorithm::token_bucket: return reserve_token(now, n, deadline);
      case rate_limit_algorithm::leaky_bucket: return reserve_leaky(now, n, deadline);
      case rate_limit_algorithm::fixed_window: return reserve_fixed(now, n);
      case rate_limit_algorithm::sliding_window: return reserve_sliding(now, n);
    }
    return {};
  }

  // Gives back n permits reserved for the future but never used (a
  // cancelled wait). Only the buckets reserve ahead; windows grant at once.
  void refund(std::uint32_t n) noexcept {
    if (algorithm_ != rate_limit_algorithm::token_bucket && algorithm_ != rate_limit_algorithm::leaky_bucket) return;
    word_.fetch_sub(static_cast<std::int64_t>(n) * interval_, std::memory_order_acq_rel);
  }

  // Starts this (new, unpublished) state where `old` left off when both are
  // the same kind of bucket: tokens in hand carry over (converted to the new
  // rate, capped at the new burst); time already promised (permits booked
  // ahead, a hold) stays promised until the same instant. Windows restart.
  void carry_from(const limiter_state& old, std::int64_t now) noexcept {
    if (old.algorithm_ != algorithm_) return;
    const auto old_word = old.word_.load(std::memory_order_acquire);
    if (algorithm_ == rate_limit_algorithm::token_bucket) {
      if (old_word >= now) {
        word_.store(old_word, std::memory_order_relaxed);
      } else {
        const double tokens = std::min(static_cast<double>(limit_), old.available(now));
        word_.store(now - std::llround(tokens * static_cast<double>(interval_)), std::memory_order_relaxed);
      }
    } else if (algorithm_ == rate_limit_algorithm::leaky_bucket) {
      word_.store(std::max(old_word, now), std::memory_order_relaxed);
    }
  }

  // No permit before `until` (ns), e.g. because the upstream said so.
  // Buckets only; returns false for windows, which cannot express it.
  bool hold_until(std::int64_t until) noexcept {
    std::int64_t target;
    if (algorithm_ == rate_limit_algorithm::token_bucket)
      target = until - interval_;  // the first token appears one interval after "empty"
    else if (algorithm_ == rate_limit_algorithm::leaky_bucket)
      target = until;
    else
      return false;
    auto cur = word_.load(std::memory_order_acquire);
    while (cur < target && !word_.compare_exchange_weak(cur, target, std::memory_order_acq_rel, std::memory_order_acquire)) {
    }
    return true;
  }

  // Permits a try_acquire could take right now: tokens in the bucket, free
  // queue slots (leaky), or what is left of the window.
  double available(std::int64_t now) const noexcept {
    switch (algorithm_) {
      case rate_limit_algorithm::token_bucket: {
        const auto empty_at = std::max(word_.load(std::memory_order_acquire), now - tau_);
        return std::max(0.0, static_cast<double>(now - empty_at) / static_cast<double>(interval_));
      }
      case rate_limit_algorithm::leaky_bucket: {
        const auto ahead = std::max<std::int64_t>(0, word_.load(std::memory_order_acquire) - now);
        return static_cast<double>(std::max<std::int64_t>(0, tau_ - ahead) / interval_);
      }
      case rate_limit_algorithm::fixed_window: {
        const auto w = window_of(now, word_.load(std::memory_order_acquire));
        return static_cast<double>(limit_ - w.count);
      }
      case rate_limit_algorithm::sliding_window: {
        std::lock_guard lock{log_mutex_};
        const auto in_window = std::count_if(log_.begin(), log_.end(), [&](std::int64_t t) { return t + tau_ > now; });
        return static_cast<double>(limit_ - in_window);
      }
    }
    return 0.0;
  }

 private:
  // Token bucket, folly-style: word_ is the time the bucket was (or will be)
  // empty; the bucket holds (now - word_) / interval tokens, at most burst.
  // Taking n tokens moves that time n intervals later. A time after now is
  // debt taken by waiters who reserved future tokens.
  [[gnu::always_inline]] reservation reserve_token(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    auto cur = word_.load(std::memory_order_acquire);
    for (;;) {
      const auto next = std::max(cur, now - tau_) + static_cast<std::int64_t>(n) * interval_;
      if (next > deadline) return {false, 0, next - now, true};
      if (word_.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_acquire))
        return {true, std::max(next, now), 0};
    }
  }

  // Leaky bucket as a queue (GCRA's virtual scheduling with the theoretical
  // arrival time in word_): permits leave one interval apart, so output is
  // smooth; a waiter may book a slot at most burst_size permits ahead.
  [[gnu::always_inline]] reservation reserve_leaky(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    const auto cost = static_cast<std::int64_t>(n) * interval_;
    auto cur = word_.load(std::memory_order_acquire);
    for (;;) {
      const auto start = std::max(cur, now);
      if (start > deadline || start - now + cost > tau_) return {false, 0, start - now, true};
      if (word_.compare_exchange_weak(cur, start + cost, std::memory_order_acq_rel, std::memory_order_acquire)) return {true, start, 0};
    }
  }

  struct window_view {
    std::uint64_t index;  // masked window index
    std::int64_t count;
    std::int64_t end;  // when the window ends (ns)
  };

  // Reads the packed word for time `now`: high bits = window index (masked),
  // low count_bits_ = permits taken in it. A caller whose `now` is behind the
  // stored window (it read the clock before another thread) counts in the
  // newer window, which only ever refuses more.
  window_view window_of(std::int64_t now, std::uint64_t word) const noexcept {
    const std::uint64_t index_mask = ~std::uint64_t{0} >> count_bits_;
    const std::uint64_t my_index = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - origin_) / tau_);
    const std::uint64_t stored = word >> count_bits_;
    const std::uint64_t ahead = (stored - my_index) & index_mask;  // > 0: stored window is newer than mine
    const std::int64_t my_end = origin_ + static_cast<std::int64_t>(my_index + 1) * tau_;
    if (ahead == 0) return {stored, static_cast<std::int64_t>(word & ((std::uint64_t{1} << count_bits_) - 1)), my_end};
    if (ahead < (index_mask >> 1))
      return {stored, static_cast<std::int64_t>(word & ((std::uint64_t{1} << count_bits_) - 1)), my_end + static_cast<std::int64_t>(ahead) * tau_};
    return {my_index & index_mask, 0, my_end};
  }

  // Fixed window: the index has 64 - bit_width(burst) bits and a window is
  // at least burst nanoseconds long, so the index wraps after >= 2^63 ns
  // (292 years): a year of idle cannot alias an old window.
  [[gnu::always_inline]] reservation reserve_fixed(std::int64_t now, std::uint32_t n) noexcept {
    auto cur = static_cast<std::uint64_t>(word_.load(std::memory_order_acquire));
    for (;;) {
      const auto w = window_of(now, cur);
      if (w.count + static_cast<std::int64_t>(n) > limit_) return {false, 0, w.end - now};
      const auto next = (w.index << count_bits_) | static_cast<std::uint64_t>(w.count + n);
      auto expected = static_cast<std::int64_t>(cur);
      if (word_.compare_exchange_weak(expected, static_cast<std::int64_t>(next), std::memory_order_acq_rel, std::memory_order_acquire))
        return {true, now, 0};
      cur = static_cast<std::uint64_t>(expected);
    }
  }

  // Sliding window, exact: a ring of the last burst_size grant times, oldest
  // at head_. n permits fit when the n-th oldest grant has left the window
  // (t + window <= now).
  [[gnu::noinline]] reservation reserve_sliding(std::int64_t now, std::uint32_t n) noexcept {
    std::lock_guard lock{log_mutex_};
    now = std::max(now, last_);  // a caller that read the clock late still keeps the ring sorted
    const auto size = log_.size();
    const auto nth_oldest = log_[(head_ + n - 1) % size];
    if (nth_oldest + tau_ > now) return {false, 0, nth_oldest + tau_ - now};
    for (std::uint32_t i = 0; i < n; ++i) {
      log_[head_] = now;
      head_ = (head_ + 1) % size;
    }
    last_ = now;
    return {true, now, 0};
  }

  const rate_limit_config config_;
  const rate_limit_algorithm algorithm_;
  const std::int64_t interval_;
  const std::int64_t limit_;
  const std::int64_t tau_;
  const std::int64_t origin_;
  const unsigned count_bits_;
  alignas(64) std::atomic<std::int64_t> word_{0};
  mutable std::mutex log_mutex_;
  std::vector<std::int64_t> log_;
  std::size_t head_ = 0;
  std::int64_t last_ = std::numeric_limits<std::int64_t>::min() / 2;
};

}  // namespace detail
}  // namespace v1
}  // namespace resilience
