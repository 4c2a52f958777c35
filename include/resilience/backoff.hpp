// resilience/backoff.hpp: how long to wait before each retry (pure; no clock,
// no sleeping).
//
// A backoff turns "retry number n" into a delay: a strategy (exponential,
// linear, constant, fibonacci, decorrelated jitter), a cap and optional
// jitter drawn from an injected random source.
//
//   resilience::backoff b{{.strategy = resilience::backoff_strategy::fibonacci, .base_delay = 100ms}};
//   b.delay(1);  // 100 ms, then 100, 200, 300, 500 ms for retries 2..5
//
//   resilience::backoff j{{.base_delay = 1s, .jitter = resilience::jitter_mode::full,
//                          .random = resilience::seeded_random(42)}};  // reproducible draws
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

/// How the delay grows from one retry to the next (n = 1 for the first retry).
enum class backoff_strategy : std::uint8_t {
  exponential,          ///< base * multiplier^(n-1): 1, 2, 4, 8... s with the defaults
  linear,               ///< base * n: 1, 2, 3, 4... s
  constant,             ///< base: 1, 1, 1... s
  fibonacci,            ///< base * fib(n): 1, 1, 2, 3, 5, 8... s
  decorrelated_jitter,  ///< AWS "decorrelated jitter": min(max_delay, random(base, previous * 3))
};

/// How randomness spreads the delay of the non-decorrelated strategies, so
/// that many clients failing together do not retry together.
enum class jitter_mode : std::uint8_t {
  none,   ///< the exact delay
  full,   ///< uniform in [0, delay)
  equal,  ///< delay/2 + uniform in [0, delay/2)
};

namespace detail {

// splitmix64's output function: a full-avalanche bijection on 64 bits.
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline constexpr std::uint64_t splitmix64_gamma = 0x9e3779b97f4a7c15ULL;

inline std::uint64_t seed_from_random_device() noexcept {
  try {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ std::uint64_t{rd()};
  } catch (...) {
    // No entropy source: distinct per thread is all jitter needs.
    static std::atomic<std::uint64_t> fallback{0x2545f4914f6cdd1dULL};
    return fallback.fetch_add(splitmix64_gamma, std::memory_order_relaxed);
  }
}

// The default generator: one splitmix64 state per thread, seeded on first use.
inline std::uint64_t thread_local_random() noexcept {
  thread_local std::uint64_t state = seed_from_random_device();
  state += splitmix64_gamma;
  return splitmix64_mix(state);
}

// A double ns count as a duration, saturating instead of overflowing.
inline duration saturate_ns(double ns) noexcept {
  if (!(ns > 0.0)) return duration::zero();  // also NaN
  if (ns >= static_cast<double>(duration::max().count())) return duration::max();
  return duration{static_cast<duration::rep>(ns)};
}

// a * n without overflow (both non-negative).
inline duration saturating_mul(duration a, std::int64_t n) noexcept {
  if (n != 0 && a.count() > duration::max().count() / n) return duration::max();
  return a * n;
}

}  // namespace detail

/// Where jitter comes from. The default draws from a generator local to each
/// thread, seeded once per thread from std::random_device; seeded_random()
/// gives a reproducible sequence. Thread-safe; copies share one sequence.
class random_source {
 public:
  /// The per-thread generator (no shared state, no lock).
  random_source() noexcept = default;

  /// A uniformly distributed 64-bit number.
  std::uint64_t next() const noexcept {
    if (!counter_) return detail::thread_local_random();
    // splitmix64 over an atomic counter: one relaxed fetch_add per draw, so
    // concurrent draws never repeat and a single thread sees a fixed sequence.
    return detail::splitmix64_mix(counter_->fetch_add(detail::splitmix64_gamma, std::memory_order_relaxed) +
                                  detail::splitmix64_gamma);
  }

  /// A uniformly distributed number in [0, 1).
  double uniform() const noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// True when built by seeded_random().
  bool seeded() const noexcept { return counter_ != nullptr; }

 private:
  friend random_source seeded_random(std::uint64_t seed);
  std::shared_ptr<std::atomic<std::uint64_t>> counter_;
};

/// A deterministic random source: the same seed gives the same draws.
inline random_source seeded_random(std::uint64_t seed) {
  random_source r;
  r.counter_ = std::make_shared<std::atomic<std::uint64_t>>(seed);
  return r;
}

/// The settings of a backoff; defaults match retry_options.
struct backoff_options {
  backoff_strategy strategy = backoff_strategy::exponential;  ///< default: exponential
  duration base_delay = std::chrono::seconds{1};              ///< the first delay; default 1 s, in [0, max_duration]
  double multiplier = 2.0;                                    ///< growth factor of exponential; default 2, must be >= 1
  duration max_delay =
      std::chrono::minutes{5};             ///< cap on every computed delay; default 5 min (duration::max(): no cap)
  jitter_mode jitter = jitter_mode::none;  ///< default none (production presets turn it on)
  random_source random{};                  ///< jitter's random numbers; default per-thread generator
};

/// Computes retry delays. Immutable after construction, so safe to share
/// between threads; huge retry numbers saturate at max_delay.
class backoff {
 public:
  /// Validates the options; throws std::invalid_argument naming the bad field.
  explicit backoff(backoff_options options = {}) : backoff{std::move(options), "backoff"} {}
  /// As above; error messages start with `who` ("retry: base_delay must be >= 0").
  backoff(backoff_options options, const char* who) : o_{std::move(options)} { validate(o_, who); }

 private:
  static void validate(const backoff_options& o, const char* who) {
    auto fail = [who](const char* what) { throw std::invalid_argument{std::string{who} + ": " + what}; };
    if (o.base_delay < duration::zero()) fail("base_delay must be >= 0");
    checked_duration(o.base_delay, std::string{who} + ": base_delay");
    if (o.max_delay < duration::zero()) fail("max_delay must be >= 0");
    if (o.max_delay < o.base_delay) fail("max_delay must be >= base_delay");
    if (!(o.multiplier >= 1.0) || !std::isfinite(o.multiplier)) fail("multiplier must be finite and >= 1");
    if (o.strategy > backoff_strategy::decorrelated_jitter) fail("strategy is not a backoff_strategy");
    if (o.jitter > jitter_mode::equal) fail("jitter is not a jitter_mode");
  }

 public:
  /// The delay before retry number `n` (1 = the first retry), jitter applied.
  /// `previous` is the delay before the previous retry (zero for the first);
  /// only decorrelated_jitter uses it.
  duration delay(int n, duration previous = duration::zero()) const noexcept {
    if (o_.strategy == backoff_strategy::decorrelated_jitter) return decorrelated(previous);
    const duration d = nominal(n);
    switch (o_.jitter) {
      case jitter_mode::none: return d;
      case jitter_mode::full: return detail::saturate_ns(o_.random.uniform() * static_cast<double>(d.count()));
      case jitter_mode::equal: {
        const duration half = d / 2;
        return (d - half) + detail::saturate_ns(o_.random.uniform() * static_cast<double>(half.count()));
      }
    }
    return d;
  }

  /// The delay before retry number `n` without jitter, capped at max_delay.
  /// For decorrelated_jitter: the cap on its draw, base * 3^(n-1).
  duration nominal(int n) const noexcept {
    if (n < 1) n = 1;
    const duration base = o_.base_delay;
    const duration cap = o_.max_delay;
    duration d = base;
    switch (o_.strategy) {
      case backoff_strategy::exponential:
        d = detail::saturate_ns(static_cast<double>(base.count()) * std::pow(o_.multiplier, n - 1));
        break;
      case backoff_strategy::linear: d = detail::saturating_mul(base, n); break;
      case backoff_strategy::constant: d = base; break;
      case backoff_strategy::fibonacci: {
        if (base == duration::zero()) return duration::zero();
        // Stop as soon as base * fib passes the cap: fib grows past any cap
        // within ~90 steps, so even n = INT_MAX loops briefly and never overflows.
        const auto limit = static_cast<std::uint64_t>(cap.count() / base.count());
        std::uint64_t a = 0, b = 1;
        for (int i = 1; i < n && b <= limit; ++i) {
          const std::uint64_t c = a + b;
          a = b;
          b = c;
        }
        d = b > limit ? cap : base * static_cast<duration::rep>(b);
        break;
      }
      case backoff_strategy::decorrelated_jitter:
        d = detail::saturate_ns(static_cast<double>(base.count()) * std::pow(3.0, n - 1));
        break;
    }
    return d < cap ? d : cap;
  }

  /// The options this backoff was built with.
  const backoff_options& options() const noexcept { return o_; }

 private:
  duration decorrelated(duration previous) const noexcept {
    const duration base = o_.base_delay;
    if (previous < base) previous = base;
    const duration hi = detail::saturating_mul(previous, 3);
    // Saturating: the draw rounds up to duration::max() when hi is near it.
    const duration d =
        saturating_add(base, detail::saturate_ns(o_.random.uniform() * static_cast<double>((hi - base).count())));
    return d < o_.max_delay ? d : o_.max_delay;
  }

  backoff_options o_;
};

}  // namespace v1
}  // namespace resilience
