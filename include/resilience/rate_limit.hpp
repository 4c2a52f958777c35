// resilience/rate_limit.hpp: rate limiting — four algorithms, a per-key and
// per-tenant registry, and a rate_limit policy for resilient<>.
//
//   auto& limits = resilience::get_rate_limiter();
//   limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 20});
//   limits.check_limit("factor_api");                    // throws rate_limit_exceeded
//   resilience::resilient fetch{fetch_factor, resilience::rate_limit{limits, "factor_api"}};
//   auto r = fetch.try_call_with({.tenant = "acme"}, "electricity");  // per-tenant budget
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
//
// Reconfiguring a registry key changes its limiters in place, safely under
// traffic and without allocating (see rate_limiter::configure). Grants are
// counted only when asked (count_grants) or watched by a metrics_registry.
//
// Also here: adaptive_rate (lowers a key's rate on upstream 429s and gives it
// back gradually) and coarse_clock() (a cheaper clock for hot limiters).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cmath>
#include <limits>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "context.hpp"
#include "detail/rate_limit_state.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"
#include "retry_after.hpp"

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
    "rate_limit_violated", log_level::warning,
    {.source_key = "key", .tenant = true, .metrics = detail::rate_limit_violated_metrics}};

/// A rate limiter's rejection kind: "rate_limited"; the rejection's source is
/// the key, its `detail` the tenant (empty without tenants).
class rate_limited_kind_t final : public rejection_kind {
 public:
  constexpr rate_limited_kind_t() noexcept : rejection_kind{"rate_limited"} {}
  /// The tenant whose budget ran out; empty for a key without tenants.
  static constexpr std::string_view tenant(const rejection& r) noexcept { return r.detail; }
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a rate limiter's rejection.
inline constexpr rate_limited_kind_t rate_limited_kind{};

/// A rate limiter had no permit for the call.
class rate_limit_exceeded : public rejected_error {
 public:
  rate_limit_exceeded(std::string key, duration retry_after, std::string tenant = {})
      : rejected_error{rate_limited_kind, key, retry_after, text(key, retry_after, tenant)}, tenant_{std::move(tenant)} {}
  /// The limiter key.
  const std::string& key() const noexcept { return source(); }
  /// The tenant whose budget ran out; empty for a key without tenants.
  const std::string& tenant() const noexcept { return tenant_; }

 private:
  friend class rate_limited_kind_t;
  static std::string text(std::string_view key, duration retry_after, std::string_view tenant) {
    return detail::named("rate limit", key) + (tenant.empty() ? std::string{} : " for tenant '" + std::string{tenant} + "'") +
           " exceeded; retry after " + detail::seconds_text(retry_after);
  }
  std::string tenant_;
};

inline std::string rate_limited_kind_t::message(const rejection& r) const {
  return rate_limit_exceeded::text(r.source, r.retry_after, r.detail);
}
inline void rate_limited_kind_t::raise(const rejection& r) const {
  throw rate_limit_exceeded{std::string{r.source}, r.retry_after, std::string{r.detail}};
}

/// The answer of try_acquire / acquire.
struct rate_limit_decision {
  bool allowed = false;                     ///< the permits were granted
  duration retry_after = duration::zero();  ///< when refused: exact wait until try_acquire(n) succeeds (if nobody else takes them)
  explicit operator bool() const noexcept { return allowed; }
};

/// A snapshot of one limiter's (or one registry key's) counters.
struct rate_limit_stats {
  double available = 0.0;      ///< permits a try_acquire could take now (the key's own limiter, not its tenants)
  /// Requests granted, tenants included, while grant counting was on: from
  /// the start with rate_limit_config::count_grants = true, or from the
  /// moment a metrics_registry watched the limiter or registry
  /// (enable_grant_counting). 0 when never on: counting is off by default so
  /// that a grant costs nothing beyond its CAS.
  std::uint64_t allowed = 0;
  std::uint64_t rejected = 0;  ///< requests refused, tenants included (always counted: a refusal is the slow path)
  std::uint64_t violations = 0;  ///< episodes of limiting: refusals that followed a grant (or the first refusal)
  std::size_t partitions = 0;  ///< tenant limiters alive (registry keys only)
  rate_limit_config config{};  ///< the configuration in force; count_grants says whether grants are being counted now
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
    return time_point{duration{std::int64_t{ts.tv_sec} * ns_per_second + ts.tv_nsec}};
#else
    return steady_clock{}.now();
#endif
  }
  bool sleep_until(time_point deadline, std::stop_token stop) const override { return steady_clock{}.sleep_until(deadline, std::move(stop)); }
  timer_id call_at(time_point deadline, std::function<void()> fn) const override { return steady_clock{}.call_at(deadline, std::move(fn)); }
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
rate_limit_decision acquire_loop(const clock_ref& clk, duration max_wait, const std::stop_token& stop, Reserve&& reserve,
                                 Refund&& refund, bool& cancelled) {
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

// Hashing for heterogeneous lookup by string_view.
struct sv_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace detail

inline clock_ref coarse_clock() {
  static const auto source = std::make_shared<const detail::coarse_clock_source>();
  return clock_ref{source};
}

/// Options for the single-algorithm limiters.
struct rate_options {
  double requests_per_second = 10.0;  ///< the sustained rate; finite, > 0 and <= 1e9
  std::int64_t burst_size = 20;       ///< bucket capacity / queue depth / permits per window; >= 1
};

/// One rate limiter, any algorithm, on a clock. Copies share the state; all
/// members are thread-safe.
class limiter {
 public:
  /// Throws std::invalid_argument naming the bad field. `name` appears in
  /// events and rejections.
  explicit limiter(const rate_limit_config& config = {}, clock_ref clk = {}, std::string name = {})
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
  rate_limit_decision acquire(std::uint32_t n = 1, duration max_wait = duration::max(), std::stop_token stop = {}) const {
    auto& st = s_->state;
    st.check_n(n, "limiter::acquire");
    bool cancelled = false;
    const auto d = detail::acquire_loop(
        s_->clock, max_wait, stop, [&](std::int64_t now, std::int64_t deadline) { return st.reserve(now, n, deadline); },
        [&](std::int64_t cost) { st.refund(cost); }, cancelled);
    detail::record(d, s_->counters, &s_->hub, s_->name, {});
    return d;
  }

  /// Permits a try_acquire could take now.
  double available() const { return s_->state.available(detail::ns(s_->clock.now())); }
  /// Counters and configuration.
  rate_limit_stats stats() const {
    return {available(), s_->counters.allowed.load(std::memory_order_relaxed), s_->counters.rejected.load(std::memory_order_relaxed),
            s_->counters.violations.load(std::memory_order_relaxed), 0, config()};
  }
  /// Counts grants in stats().allowed from now on, whatever the config said
  /// (metrics_registry::watch calls it). Cannot be turned off again.
  void enable_grant_counting() const noexcept { s_->counters.count_grants.store(true, std::memory_order_relaxed); }
  /// This limiter's events (rate_limit_violated).
  event_hub& events() const noexcept { return s_->hub; }
  /// The configuration given at construction; count_grants says whether grants are being counted now.
  rate_limit_config config() const noexcept {
    auto c = s_->config;
    c.count_grants = s_->counters.count_grants.load(std::memory_order_relaxed);
    return c;
  }
  /// The name given at construction (stable while any copy lives).
  std::string_view name() const noexcept { return s_->name; }
  const clock_ref& clock() const noexcept { return s_->clock; }

 private:
  struct shared {
    shared(const rate_limit_config& c, clock_ref clk, std::string n)
        : clock{std::move(clk)}, name{std::move(n)}, config{c}, state{detail::shape_of(c), detail::ns(clock.now())} {
      counters.count_grants.store(c.count_grants, std::memory_order_relaxed);
    }
    clock_ref clock;
    std::string name;
    const rate_limit_config config;
    mutable event_hub hub;
    detail::rate_counters counters;
    detail::limiter_state state;
  };
  static std::shared_ptr<shared> make(const rate_limit_config& c, clock_ref clk, std::string name) {
    detail::validate(c, "rate limiter", name);
    return std::make_shared<shared>(c, std::move(clk), std::move(name));
  }
  std::shared_ptr<shared> s_;
};

/// Token bucket: burst_size tokens, refilled at requests_per_second; starts full.
class token_bucket : public limiter {
 public:
  explicit token_bucket(const rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::token_bucket}, std::move(clk), std::move(name)} {}
};

/// Leaky bucket (queue form, GCRA): one permit every 1/requests_per_second;
/// acquire() may queue up to burst_size permits ahead of schedule.
class leaky_bucket : public limiter {
 public:
  explicit leaky_bucket(const rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::leaky_bucket}, std::move(clk), std::move(name)} {}
};

/// Fixed window: burst_size permits per window of burst_size/requests_per_second.
class fixed_window : public limiter {
 public:
  explicit fixed_window(const rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::fixed_window}, std::move(clk), std::move(name)} {}
};

/// Exact sliding window: at most burst_size grants in any burst_size/requests_per_second.
class sliding_window : public limiter {
 public:
  explicit sliding_window(const rate_options& o = {}, clock_ref clk = {}, std::string name = {})
      : limiter{{o.requests_per_second, o.burst_size, rate_limit_algorithm::sliding_window}, std::move(clk), std::move(name)} {}
};

class rate_limit;

/// The registry of named limits (the seed's RateLimiter): one limiter per
/// key, and one per (key, tenant) created on first use. Lookups of a
/// configured key take no lock and allocate nothing. Thread-safe.
class rate_limiter {
 public:
  /// A registry whose limiters run on `clk` (default: the steady clock).
  explicit rate_limiter(clock_ref clk = {}) : clock_{std::move(clk)} { publish_table(16); }
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;
  ~rate_limiter() = default;

  /// Sets (or replaces) the limit of `key`. Safe while other threads use
  /// the key. A known key is changed in place, its own limiter and every
  /// tenant's: a change of rate or burst allocates nothing and keeps nothing
  /// of the old one, however often it happens (adaptive_rate does it on each
  /// step). What carries over:
  ///  - a bucket that stays the same kind of bucket keeps its fill level
  ///    (token bucket: the tokens in hand, converted to the new rate, rounded
  ///    down, capped at the new burst; leaky bucket: its booked queue), and
  ///    time already promised stays promised: a token bucket empty until a
  ///    later instant (booked permits) stays empty until then, an active
  ///    hold keeps the instant of its first permit, then the new rate runs;
  ///  - a fixed window keeps its current window's start and count; the new
  ///    rate sets its length and that of the windows after it. A sliding
  ///    window keeps its log of grants; only the window length changes;
  ///  - a change of algorithm starts afresh (a full bucket, an empty queue or
  ///    window), but for an active hold. It allocates only when the key
  ///    becomes a sliding window or a sliding window's burst changes (its log
  ///    of burst_size times);
  ///  - a change of max_partitions that changes the number of tenant shards
  ///    (max_partitions / 64, from 1 to 16) drops every tenant limiter (they
  ///    start afresh on their next call); otherwise the least recently used
  ///    ones beyond the new limit are dropped.
  /// A call in flight commits under either the old or the new limit, never a
  /// mix. Grants stay counted once a metrics_registry watches the registry,
  /// whatever config.count_grants says. Throws std::invalid_argument naming
  /// the bad field.
  void configure(std::string_view key, const rate_limit_config& config) {
    detail::validate(config, "rate_limiter: key", key);
    std::lock_guard lock{write_mutex_};
    const bool count = config.count_grants || count_all_grants_.load(std::memory_order_relaxed);
    const auto shape = detail::shape_of(config);
    auto* e = find(key);
    if (!e) {
      auto entry = std::make_unique<key_entry>(key, config, shape, detail::ns(clock_.now()));
      entry->counters.count_grants.store(count, std::memory_order_relaxed);
      e = entry.get();
      entries_.push_back(std::move(entry));
      insert(e);
      return;
    }
    std::lock_guard entry_lock{e->mutex};
    const auto now = detail::ns(clock_.now());
    e->counters.count_grants.store(count, std::memory_order_relaxed);
    e->state.reshape(shape, now);
    e->reshape_tenants(config, shape, now);
    e->config = config;
  }

  /// Holds back every permit of `key` for `wait` (at most 100 years), as an
  /// upstream's Retry-After asks, whatever the algorithm: its own limiter,
  /// every tenant's, and tenants first seen (or evicted and back) before the
  /// hold ends. A bucket grants its first permit when the hold ends (then
  /// refills); a window then grants what the window allows. Holds only extend.
  void hold(std::string_view key, duration wait) const {
    auto& e = entry(key);
    const auto until = detail::ns(saturating_add(clock_.now(), duration{std::clamp<std::int64_t>(wait.count(), 0, detail::max_window_ns)}));
    // Stored before the shards are locked: a tenant made after a shard's
    // turn reads it under that shard's lock (with_tenant).
    auto held = e.held_until.load(std::memory_order_relaxed);
    while (held < until && !e.held_until.compare_exchange_weak(held, until, std::memory_order_relaxed)) {
    }
    e.state.hold_until(until);
    for (auto& shard : e.shards) {
      std::lock_guard lock{shard.mutex};
      for (auto& node : shard.lru) node.state.hold_until(until);
    }
  }

  /// True when `key` has been configured.
  bool configured(std::string_view key) const noexcept { return find(key) != nullptr; }

  /// Takes a permit of `key` or throws rate_limit_exceeded (key, retry_after).
  /// Throws std::invalid_argument for an unknown key.
  void check_limit(std::string_view key) const {
    if (const auto d = try_acquire(key); !d) throw rate_limit_exceeded{std::string{key}, d.retry_after};
  }
  /// Takes a permit of (key, tenant) or throws rate_limit_exceeded (key, retry_after, tenant).
  void check_limit(std::string_view key, std::string_view tenant) const {
    if (const auto d = try_acquire(key, tenant); !d) throw rate_limit_exceeded{std::string{key}, d.retry_after, std::string{tenant}};
  }

  /// Takes n permits of `key` if they are there now.
  rate_limit_decision try_acquire(std::string_view key, std::uint32_t n = 1) const { return try_acquire_on(entry(key), n); }
  /// Takes n permits of (key, tenant) if they are there now; an empty tenant is the key's own limiter.
  rate_limit_decision try_acquire(std::string_view key, std::string_view tenant, std::uint32_t n = 1) const {
    return try_acquire_on(entry(key), tenant, n);
  }
  /// Takes a permit of `key`, waiting up to max_wait on the registry's clock.
  rate_limit_decision acquire(std::string_view key, duration max_wait, std::stop_token stop = {}) const {
    bool cancelled = false;
    return acquire_on(entry(key), {}, 1, max_wait, stop, cancelled);
  }
  /// Takes a permit of (key, tenant), waiting up to max_wait.
  rate_limit_decision acquire(std::string_view key, std::string_view tenant, duration max_wait, std::stop_token stop = {}) const {
    bool cancelled = false;
    return acquire_on(entry(key), tenant, 1, max_wait, stop, cancelled);
  }

  /// The counters of `key` (tenants included in the totals).
  rate_limit_stats stats(std::string_view key) const { return stats_of(entry(key)); }
  /// The configured keys, in configuration order.
  std::vector<std::string> keys() const {
    std::lock_guard lock{write_mutex_};
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& e : entries_) out.push_back(e->name);
    return out;
  }
  /// Calls fn(key, stats) for every key (for a metrics scrape).
  template <class Fn>
  void for_each_stats(Fn&& fn) const {
    std::vector<const key_entry*> all;
    {
      std::lock_guard lock{write_mutex_};
      for (const auto& e : entries_) all.push_back(e.get());
    }
    for (const auto* e : all) fn(std::string_view{e->name}, stats_of(*e));
  }
  /// Tenant limiters alive for `key`.
  std::size_t partitions(std::string_view key) const { return entry(key).partitions(); }

  /// Counts grants in stats().allowed for every key, present and future,
  /// from now on, whatever their config.count_grants says; a later
  /// configure() does not turn it off. metrics_registry::watch calls it.
  void enable_grant_counting() const {
    std::lock_guard lock{write_mutex_};
    count_all_grants_.store(true, std::memory_order_relaxed);
    for (const auto& e : entries_) e->counters.count_grants.store(true, std::memory_order_relaxed);
  }

  /// Events of every key (rate_limit_violated).
  event_hub& events() const noexcept { return hub_; }
  /// The registry's clock.
  const clock_ref& clock() const noexcept { return clock_; }

 private:
  friend class rate_limit;

  struct tenant_node {
    tenant_node(std::string_view t, const detail::limiter_shape& shape, std::int64_t now) : tenant{t}, state{shape, now} {}
    std::string tenant;
    detail::limiter_state state;
  };
  // One lock per shard; at most `capacity` tenants, least recently used evicted first.
  struct tenant_shard {
    std::mutex mutex;
    std::list<tenant_node> lru;  // front: most recently used
    std::unordered_map<std::string_view, std::list<tenant_node>::iterator, detail::sv_hash, std::equal_to<>> index;
    std::size_t capacity = 1;
    detail::limiter_shape shape;  // the key's, for new tenants
  };

  struct key_entry {
    static constexpr std::size_t max_shards = 16;

    key_entry(std::string_view k, const rate_limit_config& c, const detail::limiter_shape& s, std::int64_t now)
        : name{k}, hash{detail::sv_hash{}(k)}, state{s, now}, config{c} {
      const std::size_t count = shards_for(c.max_partitions);
      shard_count.store(count, std::memory_order_relaxed);
      for (std::size_t i = 0; i < max_shards; ++i) {
        shards[i].capacity = i < count ? c.max_partitions / count : 0;
        shards[i].shape = s;
      }
    }

    // One shard (an exact LRU) for small limits, up to 16 locks for large ones.
    static std::size_t shards_for(std::size_t max_partitions) { return std::clamp<std::size_t>(max_partitions / 64, 1, max_shards); }

    // Reshapes every tenant limiter in place (see configure). When the shard
    // layout changes they are dropped: they start afresh on their next call.
    void reshape_tenants(const rate_limit_config& config, const detail::limiter_shape& shape, std::int64_t now) {
      const std::size_t count = shards_for(config.max_partitions);
      const bool same_layout = count == shard_count.load(std::memory_order_relaxed);
      shard_count.store(count, std::memory_order_release);
      for (std::size_t i = 0; i < max_shards; ++i) {
        auto& shard = shards[i];
        std::lock_guard shard_lock{shard.mutex};
        shard.capacity = i < count ? config.max_partitions / count : 0;
        shard.shape = shape;
        if (!same_layout) {
          shard.index.clear();
          shard.lru.clear();
          continue;
        }
        while (shard.lru.size() > shard.capacity) {
          shard.index.erase(shard.lru.back().tenant);
          shard.lru.pop_back();
        }
        for (auto& node : shard.lru) node.state.reshape(shape, now);
      }
    }

    tenant_shard& shard_for(std::string_view tenant) {
      return shards[detail::sv_hash{}(tenant) % shard_count.load(std::memory_order_acquire)];
    }

    std::size_t partitions() const {
      std::size_t n = 0;
      for (auto& s : shards) {
        std::lock_guard shard_lock{s.mutex};
        n += s.lru.size();
      }
      return n;
    }

    const std::string name;
    const std::size_t hash;
    detail::limiter_state state;  // the key's own limiter, reshaped in place
    std::atomic<std::int64_t> held_until{std::numeric_limits<std::int64_t>::min()};  // the key's last hold (ns), for tenants made later
    detail::rate_counters counters;
    mutable std::mutex mutex;  // serializes reconfiguration; guards config
    rate_limit_config config;
    mutable tenant_shard shards[max_shards];
    std::atomic<std::size_t> shard_count{1};
  };

  // Open addressing, never shrinking; readers load the table pointer and
  // probe without a lock. A full table is copied into one twice as large and
  // the old one kept until the registry dies (geometric growth bounds that
  // at the size of the live table).
  struct key_table {
    explicit key_table(std::size_t capacity) : mask{capacity - 1}, slots{std::make_unique<std::atomic<key_entry*>[]>(capacity)} {}
    std::size_t mask;
    std::unique_ptr<std::atomic<key_entry*>[]> slots;
    std::size_t size = 0;
  };

  key_entry* find(std::string_view key) const noexcept {
    const auto h = detail::sv_hash{}(key);
    const key_table* t = table_.load(std::memory_order_acquire);
    for (std::size_t i = h & t->mask;; i = (i + 1) & t->mask) {
      key_entry* e = t->slots[i].load(std::memory_order_acquire);
      if (!e) return nullptr;
      if (e->hash == h && e->name == key) return e;
    }
  }

  key_entry& entry(std::string_view key) const {
    if (auto* e = find(key)) return *e;
    throw std::invalid_argument{"rate_limiter: unknown key '" + std::string{key} + "' (configure it first)"};
  }

  // Under write_mutex_.
  void insert(key_entry* e) {
    key_table* t = table_.load(std::memory_order_relaxed);
    if ((t->size + 1) * 2 > t->mask + 1) {
      publish_table((t->mask + 1) * 2);
      t = table_.load(std::memory_order_relaxed);
    }
    place(*t, e);
  }
  static void place(key_table& t, key_entry* e) {
    std::size_t i = e->hash & t.mask;
    while (t.slots[i].load(std::memory_order_relaxed)) i = (i + 1) & t.mask;
    t.slots[i].store(e, std::memory_order_release);
    ++t.size;
  }
  void publish_table(std::size_t capacity) {
    auto fresh = std::make_unique<key_table>(capacity);
    for (const auto& e : entries_) place(*fresh, e.get());
    table_.store(fresh.get(), std::memory_order_release);
    tables_.push_back(std::move(fresh));
  }

  rate_limit_decision try_acquire_on(key_entry& e, std::uint32_t n) const {
    auto& st = e.state;
    if (n > 1) st.check_n(n, "rate_limiter::try_acquire");
    const auto now = detail::ns(clock_.now());
    const auto r = st.reserve(now, n, now);
    const rate_limit_decision d{r.granted, duration{r.retry_after}};
    detail::record(d, e.counters, &hub_, e.name, {});
    return d;
  }

  // Runs fn(state) on the tenant's limiter under its shard lock, creating
  // it (and evicting the least recently used one if the shard is full).
  template <class Fn>
  auto with_tenant(key_entry& e, std::string_view tenant, Fn&& fn) const {
    tenant_shard* shard = &e.shard_for(tenant);
    std::lock_guard lock{shard->mutex};
    auto it = shard->index.find(tenant);
    if (it != shard->index.end()) {
      shard->lru.splice(shard->lru.begin(), shard->lru, it->second);
    } else {
      // A thread that read the shard count just before a reconfiguration
      // shrank it may land in a shard of capacity 0: it still gets a limiter
      // (one at most per such shard), dropped at the next reconfiguration.
      if (!shard->lru.empty() && shard->lru.size() >= shard->capacity) {
        shard->index.erase(shard->lru.back().tenant);
        shard->lru.pop_back();
      }
      const auto now = detail::ns(clock_.now());
      shard->lru.emplace_front(tenant, shard->shape, now);
      if (const auto held = e.held_until.load(std::memory_order_relaxed); held > now) shard->lru.front().state.hold_until(held);
      it = shard->index.emplace(shard->lru.front().tenant, shard->lru.begin()).first;
    }
    return fn(it->second->state);
  }

  rate_limit_decision try_acquire_on(key_entry& e, std::string_view tenant, std::uint32_t n) const {
    if (tenant.empty()) return try_acquire_on(e, n);
    const auto d = with_tenant(e, tenant, [&](detail::limiter_state& st) {
      if (n > 1) st.check_n(n, "rate_limiter::try_acquire");
      const auto now = detail::ns(clock_.now());
      const auto r = st.reserve(now, n, now);
      return rate_limit_decision{r.granted, duration{r.retry_after}};
    });
    detail::record(d, e.counters, &hub_, e.name, tenant);
    return d;
  }

  rate_limit_decision acquire_on(key_entry& e, std::string_view tenant, std::uint32_t n, duration max_wait, const std::stop_token& stop,
                                 bool& cancelled) const {
    rate_limit_decision d;
    if (tenant.empty()) {
      auto& st = e.state;
      st.check_n(n, "rate_limiter::acquire");
      d = detail::acquire_loop(
          clock_, max_wait, stop, [&](std::int64_t now, std::int64_t deadline) { return st.reserve(now, n, deadline); },
          [&](std::int64_t cost) { st.refund(cost); }, cancelled);
    } else {
      d = detail::acquire_loop(
          clock_, max_wait, stop,
          [&](std::int64_t now, std::int64_t deadline) {
            return with_tenant(e, tenant, [&](detail::limiter_state& st) {
              st.check_n(n, "rate_limiter::acquire");
              return st.reserve(now, n, deadline);
            });
          },
          [&](std::int64_t cost) { with_tenant(e, tenant, [&](detail::limiter_state& st) { st.refund(cost); }); }, cancelled);
    }
    detail::record(d, e.counters, &hub_, e.name, tenant);
    return d;
  }

  rate_limit_stats stats_of(const key_entry& e) const {
    rate_limit_config config;
    {
      std::lock_guard lock{e.mutex};
      config = e.config;
    }
    config.count_grants = e.counters.count_grants.load(std::memory_order_relaxed);
    return {e.state.available(detail::ns(clock_.now())), e.counters.allowed.load(std::memory_order_relaxed),
            e.counters.rejected.load(std::memory_order_relaxed), e.counters.violations.load(std::memory_order_relaxed), e.partitions(),
            config};
  }

  clock_ref clock_;
  mutable event_hub hub_;
  mutable std::mutex write_mutex_;
  std::vector<std::unique_ptr<key_entry>> entries_;
  std::vector<std::unique_ptr<key_table>> tables_;
  std::atomic<key_table*> table_{nullptr};
  mutable std::atomic<bool> count_all_grants_{false};
};

/// The process-wide registry (steady clock), created on first use.
inline rate_limiter& get_rate_limiter() {
  static rate_limiter registry;
  return registry;
}

/// Options of the rate_limit policy.
struct rate_limit_options {
  duration max_wait = duration::zero();  ///< wait up to this long for a permit (never past the call's deadline); default: reject at once
  bool per_tenant = true;                ///< use the call's tenant (call_options::tenant) as a partition of the key
};

/// A policy for resilient<>: takes a permit before the call, or rejects it
/// with rate_limited_kind (retry_after, the key, the tenant) — no
/// allocation, no throw on try_call.
///
///   resilience::resilient fetch{fetch_factor, resilience::rate_limit{registry, "factor_api", {.max_wait = 200ms}}};
class rate_limit {
 public:
  /// Limits by `key` of `registry` (which must outlive the policy). Throws
  /// std::invalid_argument when the key is not configured yet.
  rate_limit(const rate_limiter& registry, std::string_view key, rate_limit_options options = {})
      : registry_{&registry}, entry_{&registry.entry(key)}, options_{validated(options)}, clock_{&registry.clock()} {}
  /// Limits by a single limiter (shared with every copy of it); tenants are ignored.
  explicit rate_limit(limiter single, rate_limit_options options = {})
      : single_{std::move(single)}, options_{validated(options)}, clock_{&single_->clock()} {}

  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using T = typename std::invoke_result_t<Next&, call_context&>::value_type;
    const std::string_view tenant = options_.per_tenant && registry_ ? ctx.tenant : std::string_view{};
    const auto max_wait = std::min(options_.max_wait, std::max(ctx.remaining(), duration::zero()));
    bool cancelled = false;
    rate_limit_decision d;
    if (registry_) {
      d = max_wait > duration::zero() ? registry_->acquire_on(*entry_, tenant, 1, max_wait, ctx.stop, cancelled)
                                      : registry_->try_acquire_on(*entry_, tenant, 1);
    } else {
      d = max_wait > duration::zero() ? single_->acquire(1, max_wait, ctx.stop) : single_->try_acquire(1);
      cancelled = !d && ctx.stop.stop_requested();
    }
    if (d) return next(ctx);
    const std::string_view source = registry_ ? std::string_view{entry_->name} : single_->name();
    if (cancelled) return outcome<T>{rejection{.kind = &cancelled_kind, .source = source}};
    return outcome<T>{rejection{.kind = &rate_limited_kind, .retry_after = d.retry_after, .source = source, .detail = tenant}};
  }

  /// The events of the registry or limiter behind this policy.
  event_hub& events() const noexcept { return registry_ ? registry_->events() : single_->events(); }
  /// The key (or the limiter's name).
  std::string_view key() const noexcept { return registry_ ? std::string_view{entry_->name} : single_->name(); }
  /// The clock of the registry or limiter (a pipeline's clock must be the same).
  const clock_ref& clock() const noexcept { return *clock_; }

 private:
  static rate_limit_options validated(rate_limit_options o) {
    if (o.max_wait < duration::zero()) throw std::invalid_argument{"rate_limit: max_wait must be >= 0"};
    return o;
  }
  const rate_limiter* registry_ = nullptr;
  rate_limiter::key_entry* entry_ = nullptr;
  std::optional<limiter> single_;
  rate_limit_options options_;
  const clock_ref* clock_;  // the registry's, or in the limiter's shared state: stable across copies
};

/// Options of adaptive_rate.
struct adaptive_rate_options {
  double decrease_factor = 0.5;   ///< the rate is multiplied by this on each upstream 429; in (0, 1)
  double min_fraction = 0.05;     ///< the rate never drops below this fraction of the configured one; in (0, 1]
  double recovery_step = 0.1;     ///< fraction of the configured rate given back per quiet interval; > 0
  duration recovery_interval = std::chrono::seconds{5};  ///< a 429-free stretch that earns one step back; > 0, <= max_duration
};

/// Lowers a registry key's rate when the upstream answers 429 (multiplicative
/// decrease, and a hold for its Retry-After) and gives it back step by step
/// while the upstream stays quiet (additive increase), never above the rate
/// the key had when the helper was made. Each step is a rate-only
/// configure() of the key, done in place: no allocation, no memory kept,
/// however many steps. Copies share the state; thread-safe.
///
///   resilience::adaptive_rate adapt{limits, "factor_api"};
///   if (response.status == 429) adapt.on_throttled(resilience::parse_retry_after(header, system_now));
///   else adapt.on_success();
class adaptive_rate {
 public:
  /// Adapts `key` of `registry` (both must outlive the helper). Throws
  /// std::invalid_argument for an unknown key or a bad option.
  adaptive_rate(rate_limiter& registry, std::string_view key, adaptive_rate_options options = {})
      : s_{std::make_shared<shared>(registry, key, validated(options))} {}

  /// The upstream said 429: lower the rate now, and hold every permit for
  /// `retry_after` when the upstream gave one.
  void on_throttled(std::optional<duration> retry_after = std::nullopt) const {
    std::lock_guard lock{s_->mutex};
    const auto now = s_->registry->clock().now();
    set_rate(std::max(s_->target.requests_per_second * s_->options.min_fraction, s_->rate * s_->options.decrease_factor));
    // A Retry-After past max_duration (or below zero) is a server bug: clamped, so the sum below cannot wrap.
    const duration wait = std::clamp(retry_after.value_or(duration::zero()), duration::zero(), max_duration);
    if (retry_after) s_->registry->hold(s_->key, wait);
    s_->next_step_at.store(detail::ns(saturating_add(saturating_add(now, wait), s_->options.recovery_interval)), std::memory_order_release);
  }

  /// The upstream answered normally: after each quiet recovery_interval,
  /// give back one step of the rate. Costs one atomic load between steps.
  void on_success() const {
    const auto now = detail::ns(s_->registry->clock().now());
    if (now < s_->next_step_at.load(std::memory_order_acquire)) return;
    std::lock_guard lock{s_->mutex};
    if (now < s_->next_step_at.load(std::memory_order_relaxed) || s_->rate >= s_->target.requests_per_second) return;
    set_rate(std::min(s_->target.requests_per_second, s_->rate + s_->target.requests_per_second * s_->options.recovery_step));
    s_->next_step_at.store(detail::ns(saturating_add(time_point{duration{now}}, s_->options.recovery_interval)), std::memory_order_release);
  }

  /// The rate in force now.
  double rate() const {
    std::lock_guard lock{s_->mutex};
    return s_->rate;
  }

 private:
  struct shared {
    shared(rate_limiter& r, std::string_view k, const adaptive_rate_options& o)
        : registry{&r}, key{k}, options{o}, target{r.stats(k).config}, rate{target.requests_per_second} {}
    rate_limiter* registry;
    std::string key;
    adaptive_rate_options options;
    rate_limit_config target;
    std::mutex mutex;
    double rate;
    std::atomic<std::int64_t> next_step_at{std::numeric_limits<std::int64_t>::max()};
  };

  static adaptive_rate_options validated(const adaptive_rate_options& o) {
    if (!(o.decrease_factor > 0.0 && o.decrease_factor < 1.0)) throw std::invalid_argument{"adaptive_rate: decrease_factor must be in (0, 1)"};
    if (!(o.min_fraction > 0.0 && o.min_fraction <= 1.0)) throw std::invalid_argument{"adaptive_rate: min_fraction must be in (0, 1]"};
    if (!(o.recovery_step > 0.0) || !std::isfinite(o.recovery_step)) throw std::invalid_argument{"adaptive_rate: recovery_step must be a finite number > 0"};
    if (o.recovery_interval <= duration::zero()) throw std::invalid_argument{"adaptive_rate: recovery_interval must be > 0"};
    checked_duration(o.recovery_interval, "adaptive_rate: recovery_interval");
    return o;
  }

  // Under the mutex.
  void set_rate(double rate) const {
    if (rate == s_->rate) return;
    s_->rate = rate;
    auto config = s_->target;
    config.requests_per_second = rate;
    s_->registry->configure(s_->key, config);
  }

  std::shared_ptr<shared> s_;
};

namespace detail {

// One key's series; a key written already in this scrape (by a limiter or
// registry watched earlier) is not written again: the first watched wins.
inline void collect_limiter(metric_snapshot& s, std::string_view key, const rate_limit_stats& st) {
  using enum metric_type;
  if (!s.cover("rate_limiter", key)) return;
  s.add("rate_limiter_tokens", gauge, {}, {{"key", key}}, st.available);
  s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "allowed"}}, static_cast<double>(st.allowed));
  s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "rejected"}}, static_cast<double>(st.rejected));
  s.add("rate_limiter_violations_total", counter, {}, {{"key", key}}, static_cast<double>(st.violations));
}

}  // namespace detail

/// metrics_registry::watch(registry): every key at each scrape: tokens,
/// requests by result, violations (episodes of limiting, see
/// rate_limit_stats). Turns on grant counting for every key, present and
/// future (requests_total{result="allowed"} needs it; it is off by default):
/// grants are counted from this call on. The registry is not copyable: it
/// must outlive the metrics registry. Watching it again does nothing.
inline void watch_metrics(const rate_limiter& limits, metric_watch& w) {
  if (!w.claim("rate limiter registry", std::to_string(reinterpret_cast<std::uintptr_t>(&limits)), &limits)) return;
  limits.enable_grant_counting();
  w.collect([&limits](metric_snapshot& s) {
    limits.for_each_stats([&](std::string_view key, const rate_limit_stats& st) { detail::collect_limiter(s, key, st); });
  });
  w.count_events(limits.events());
}

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
