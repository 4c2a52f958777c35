// resilience/limiter.hpp: single rate limiters — one algorithm, one budget,
// on a clock. The keyed registry with per-tenant partitions and the
// rate_limit policy are in rate_limit.hpp.
//
//   resilience::token_bucket bucket{{.requests_per_second = 10, .burst_size = 20}};
//   if (auto d = bucket.try_acquire(); !d) wait(d.retry_after);
//   resilience::limiter queue{{.requests_per_second = 5, .algorithm = resilience::rate_limit_algorithm::leaky_bucket}};
//   queue.acquire(1, 200ms);                              // waits on the limiter's clock
//
// Algorithms (all integer nanoseconds; the interval 1/rate is rounded to the
// nearest nanosecond once, so nothing drifts and a year of idle is harmless):
//  - token_bucket: starts full with burst_size tokens, refills at the rate.
//    One CAS on the time the bucket is empty.
//  - leaky_bucket: a queue that lets one permit out every 1/rate (smooth
//    output, no bursts); acquire() may book a slot up to burst_size permits
//    ahead. GCRA's virtual scheduling: one CAS on the theoretical arrival time.
//  - fixed_window: burst_size permits per window of burst_size/rate seconds
//    (windows start at the limiter's creation). Up to 2 x burst_size can pass
//    within an instant around a window boundary. One CAS on a packed word.
//  - sliding_window: exact rolling window (a log of the last burst_size grant
//    times, behind a mutex): no interval of burst_size/rate seconds ever
//    holds more than burst_size grants. Memory: 8 bytes per permit.
// The state machines are in detail/limiter_state.hpp. Grants are counted
// only when asked (count_grants) or watched by a metrics_registry. Also here:
// coarse_clock() (a cheaper clock for hot limiters).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "clock.hpp"
#include "detail/limiter_state.hpp"
#include "events.hpp"
#include "limiter_options.hpp"
#include "metric_snapshot.hpp"

namespace resilience {
inline namespace v1 {

/// A limiter's series (rate_limiter_*{key}): written when a metrics_registry
/// watches it; violations also come from its events for limiters nobody watches.
inline constexpr metric_family rate_limiter_tokens_family{"rate_limiter_tokens", metric_type::gauge,
                                                          "Permits a rate limiter could grant now.", 11};
inline constexpr metric_family rate_limiter_requests_family{"rate_limiter_requests_total", metric_type::counter,
                                                            "Requests seen by a rate limiter, by result.", 12};
inline constexpr metric_family rate_limiter_violations_family{"rate_limiter_violations_total", metric_type::counter,
                                                              "Rate limit violations.", 13};
inline const metric_families rate_limiter_metric_families{rate_limiter_tokens_family, rate_limiter_requests_family,
                                                          rate_limiter_violations_family};

namespace detail {
inline constexpr event_metric rate_limit_violated_metrics[] = {
    {&rate_limiter_violations_family, {{{"key", "source"}}}, nullptr, "rate_limiter"}};
}  // namespace detail

/// A rate limiter refused a permit. Source: the key. Tenant: the call's
/// (empty without tenants). Fields: retry_after.
inline constexpr event_kind rate_limit_violated_event{
    "rate_limit_violated",
    log_level::warning,
    {.source_key = "key", .tenant = true, .metrics = detail::rate_limit_violated_metrics}};

/// The answer of try_acquire / acquire.
struct rate_limit_decision {
  bool allowed = false;  ///< the permits were granted
  duration retry_after =
      duration::zero();  ///< when refused: exact wait until try_acquire(n) succeeds (if nobody else takes them)
  explicit operator bool() const noexcept { return allowed; }
};

/// A snapshot of one limiter's (or one registry key's) counters.
struct rate_limit_stats {
  double available = 0.0;  ///< permits a try_acquire could take now (the key's own limiter, not its tenants)
  /// Requests granted, tenants included, while grant counting was on: from
  /// the start with limiter_options::count_grants = true, or from the
  /// moment a metrics_registry watched the limiter or registry
  /// (enable_grant_counting). 0 when never on: counting is off by default so
  /// that a grant costs nothing beyond its CAS.
  std::uint64_t allowed = 0;
  std::uint64_t rejected = 0;    ///< requests refused, tenants included (always counted: a refusal is the slow path)
  std::uint64_t violations = 0;  ///< episodes of limiting: refusals that followed a grant (or the first refusal)
  std::size_t partitions = 0;    ///< tenant limiters alive (registry keys only)
  limiter_options config{};      ///< the configuration in force; count_grants says whether grants are being counted now
};

/// A clock_ref reading CLOCK_MONOTONIC_COARSE (Linux): a few ns instead of
/// ~20, with the kernel tick (1-4 ms) as resolution. Same time line as the
/// steady clock; where the coarse clock does not exist it is the steady clock.
inline clock_ref coarse_clock();

namespace detail {

struct coarse_clock_source final : clock_source {
  time_point now() const noexcept override {
#ifdef CLOCK_MONOTONIC_COARSE
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point{duration { std::int64_t{ts.tv_sec} * ns_per_second + ts.tv_nsec }};
#else
    return steady_clock{}.now();
#endif
  }
  bool sleep_until(time_point deadline, std::stop_token stop) const override {
    return steady_clock{}.sleep_until(deadline, std::move(stop));
  }
  timer_id call_at(time_point deadline, std::function<void()> fn) const override {
    return steady_clock{}.call_at(deadline, std::move(fn));
  }
  bool cancel(timer_id id) const noexcept override { return steady_clock{}.cancel(id); }
  bool reads_steady_time() const noexcept override { return true; }
};

// Grant/refusal counters. Kept on their own cache line, apart from the CAS word.
struct rate_counters {
  alignas(64) std::atomic<std::uint64_t> allowed{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> violations{0};
  std::atomic<bool> limiting{false};
  std::atomic<bool> count_grants{false};

  void on_allowed() noexcept {
    if (count_grants.load(std::memory_order_relaxed)) allowed.fetch_add(1, std::memory_order_relaxed);
    if (limiting.load(std::memory_order_relaxed)) limiting.store(false, std::memory_order_relaxed);
  }
  void on_rejected() noexcept {
    rejected.fetch_add(1, std::memory_order_relaxed);
    if (!limiting.load(std::memory_order_relaxed) && !limiting.exchange(true, std::memory_order_relaxed))
      violations.fetch_add(1, std::memory_order_relaxed);
  }
};

inline std::int64_t ns(time_point t) noexcept { return t.time_since_epoch().count(); }

// Counts a final decision and publishes a refusal.
inline void record(const rate_limit_decision& d, rate_counters& counters, const event_hub* hub, std::string_view key,
                   std::string_view tenant) noexcept {
  if (d.allowed) {
    counters.on_allowed();
    return;
  }
  counters.on_rejected();
  detail::emit(hub, [&] {
    event e{rate_limit_violated_event, key};
    e.with_tenant(tenant).with("retry_after", d.retry_after);
    return e;
  });
}

// The blocking acquire on any state: books permits no later than
// now + max_wait and sleeps on the clock until they are due. Gives up at once
// (without sleeping) when they cannot be had in time. `cancelled` reports a
// stop request.
template <class Reserve, class Refund>
rate_limit_decision acquire_loop(const clock_ref& clk, duration max_wait, const std::stop_token& stop,
                                 Reserve&& reserve, Refund&& refund, bool& cancelled) {
  auto now = clk.now();
  const auto deadline = saturating_add(now, std::max(max_wait, duration::zero()));
  for (;;) {
    const reservation r = reserve(ns(now), ns(deadline));
    if (r.granted) {
      const time_point at{duration{r.at}};
      bool reached = at <= now;
      try {
        reached = reached || clk.sleep_until(at, stop);
      } catch (...) {
        refund(r.cost);  // a throwing clock must not keep the booked permits
        throw;
      }
      if (reached) return {true, duration::zero()};
      refund(r.cost);
      cancelled = true;
      return {false, duration::zero()};
    }
    const duration wait{r.retry_after};
    if (r.final || wait > saturating_sub(deadline, now)) return {false, wait};
    if (!clk.sleep_until(saturating_add(now, wait), stop)) {
      cancelled = true;
      return {false, wait};
    }
    now = clk.now();
  }
}

}  // namespace detail

inline clock_ref coarse_clock() {
  static const auto source = std::make_shared<const detail::coarse_clock_source>();
  return clock_ref{source};
}

/// Options for the single-algorithm limiters.
struct limiter_rate_options {
  double requests_per_second = 10.0;  ///< the sustained rate; finite, > 0 and <= 1e9
  std::int64_t burst_size = 20;       ///< bucket capacity / queue depth / permits per window; >= 1
};

/// One rate limiter, any algorithm, on a clock. Copies share the state; all
/// members are thread-safe.
class limiter {
 public:
  /// Throws std::invalid_argument naming the bad field. `name` appears in
  /// events and rejections.
  explicit limiter(const limiter_options& config = {}, clock_ref clk = {}, std::string name = {})
      : s_{make(config, std::move(clk), std::move(name))} {}

  /// Takes n permits if they are there now; never waits. Throws
  /// std::invalid_argument when n > burst_size (it could never succeed).
  rate_limit_decision try_acquire(std::uint32_t n = 1) const {
    auto& st = s_->state;
    if (n > 1) st.check_n(n, "limiter::try_acquire");
    const auto now = detail::ns(s_->clock.now());
    const auto r = st.reserve(now, n, now);
    const rate_limit_decision d{r.granted, duration{r.retry_after}};
    detail::record(d, s_->counters, &s_->hub, s_->name, {});
    return d;
  }

  /// Takes n permits, waiting on the clock while they can be had within
  /// max_wait (default: forever); refuses at once otherwise, with the exact
  /// retry_after. A stop request ends the wait with a refusal. Throws
  /// std::invalid_argument when n > burst_size.
  rate_limit_decision acquire(std::uint32_t n = 1, duration max_wait = duration::max(),
                              std::stop_token stop = {}) const {
    auto& st = s_->state;
    st.check_n(n, "limiter::acquire");
    bool cancelled = false;
    const auto d = detail::acquire_loop(
        s_->clock, max_wait, stop,
        [&](std::int64_t now, std::int64_t deadline) { return st.reserve(now, n, deadline); },
        [&](std::int64_t cost) { st.refund(cost); }, cancelled);
    detail::record(d, s_->counters, &s_->hub, s_->name, {});
    return d;
  }

  /// Permits a try_acquire could take now.
  double available() const { return s_->state.available(detail::ns(s_->clock.now())); }
  /// Counters and configuration.
  rate_limit_stats stats() const {
    return {available(),
            s_->counters.allowed.load(std::memory_order_relaxed),
            s_->counters.rejected.load(std::memory_order_relaxed),
            s_->counters.violations.load(std::memory_order_relaxed),
            0,
            config()};
  }
  /// Counts grants in stats().allowed from now on, whatever the config said
  /// (metrics_registry::watch calls it). Cannot be turned off again.
  void enable_grant_counting() const noexcept { s_->counters.count_grants.store(true, std::memory_order_relaxed); }
  /// This limiter's events (rate_limit_violated).
  event_hub& events() const noexcept { return s_->hub; }
  /// The configuration given at construction; count_grants says whether grants are being counted now.
  limiter_options config() const noexcept {
    auto c = s_->config;
    c.count_grants = s_->counters.count_grants.load(std::memory_order_relaxed);
    return c;
  }
  /// The name given at construction (stable while any copy lives).
  std::string_view name() const noexcept { return s_->name; }
  const clock_ref& clock() const noexcept { return s_->clock; }

 private:
  struct shared {
    shared(const limiter_options& c, clock_ref clk, std::string n)
        : clock{std::move(clk)}, name{std::move(n)}, config{c}, state{detail::shape_of(c), detail::ns(clock.now())} {
      counters.count_grants.store(c.count_grants, std::memory_order_relaxed);
    }
    clock_ref clock;
    std::string name;
    const limiter_options config;
    mutable event_hub hub;
    detail::rate_counters counters;
    detail::limiter_state state;
  };
  static std::shared_ptr<shared> make(const limiter_options& c, clock_ref clk, std::string name) {
    detail::validate(c, "rate limiter", name);
    return std::make_shared<shared>(c, std::move(clk), std::move(name));
  }
  std::shared_ptr<shared> s_;
};

/// Token bucket: burst_size tokens, refilled at requests_per_second; starts full.
class token_bucket : public limiter {
 public:
  explicit token_bucket(const limiter_rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::token_bucket},
                std::move(clk),
                std::move(name)} {}
};

/// Leaky bucket (queue form, GCRA): one permit every 1/requests_per_second;
/// acquire() may queue up to burst_size permits ahead of schedule.
class leaky_bucket : public limiter {
 public:
  explicit leaky_bucket(const limiter_rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::leaky_bucket},
                std::move(clk),
                std::move(name)} {}
};

/// Fixed window: burst_size permits per window of burst_size/requests_per_second.
class fixed_window : public limiter {
 public:
  explicit fixed_window(const limiter_rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::fixed_window},
                std::move(clk),
                std::move(name)} {}
};

/// Exact sliding window: at most burst_size grants in any burst_size/requests_per_second.
class sliding_window : public limiter {
 public:
  explicit sliding_window(const limiter_rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::sliding_window},
                std::move(clk),
                std::move(name)} {}
};

namespace detail {

// One key's series; a key written already in this scrape (by a limiter or
// registry watched earlier) is not written again: the first watched wins.
inline void collect_limiter(metric_snapshot& s, std::string_view key, const rate_limit_stats& st) {
  using enum metric_type;
  if (!s.cover("rate_limiter", key)) return;
  s.add("rate_limiter_tokens", gauge, {}, {{"key", key}}, st.available);
  s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "allowed"}},
        static_cast<double>(st.allowed));
  s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "rejected"}},
        static_cast<double>(st.rejected));
  s.add("rate_limiter_violations_total", counter, {}, {{"key", key}}, static_cast<double>(st.violations));
}

}  // namespace detail

/// metrics_registry::watch(limiter): one stand-alone limiter (token_bucket,
/// sliding_window...) at each scrape, labelled key="<its name>". Turns on its
/// grant counting, as for a registry. Watching the same limiter again does
/// nothing; another limiter with the same name throws std::invalid_argument naming it.
inline void watch_metrics(const limiter& l, metric_watch& w) {
  // name() points into the state copies share: equal pointers, same limiter.
  if (!w.claim("limiter", l.name(), l.name().data())) return;
  l.enable_grant_counting();
  auto keep = std::make_shared<const limiter>(l);
  w.collect([keep](metric_snapshot& s) { detail::collect_limiter(s, keep->name(), keep->stats()); });
  w.count_events(keep->events());
  w.keep(keep);
}

}  // namespace v1
}  // namespace resilience
