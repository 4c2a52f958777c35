// resilience/rate_limit.hpp: rate limiting by name — a per-key and
// per-tenant registry of limiters, and a rate_limit policy for resilient<>.
// The four algorithms and single limiters are in limiter.hpp.
//
//   auto& limits = resilience::global_rate_limiter();
//   limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 20});
//   limits.check_limit("factor_api");                    // throws rate_limit_exceeded
//   resilience::resilient fetch{fetch_factor, resilience::rate_limit{limits, "factor_api"}};
//   auto r = fetch.try_call_with({.tenant = "acme"}, "electricity");  // per-tenant budget
//
// Reconfiguring a registry key changes its limiters in place, safely under
// traffic and without allocating (see rate_limiter::configure). Grants are
// counted only when asked (count_grants) or watched by a metrics_registry.
//
// Also here: adaptive_rate (lowers a key's rate on upstream 429s and gives it
// back gradually).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
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
#include "errors.hpp"
#include "events.hpp"
#include "limiter.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"
#include "retry_after.hpp"

namespace resilience {
inline namespace v1 {

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
      : rejected_error{rate_limited_kind, key, retry_after, text(key, retry_after, tenant)},
        tenant_{std::move(tenant)} {}
  /// The limiter key.
  const std::string& key() const noexcept { return source(); }
  /// The tenant whose budget ran out; empty for a key without tenants.
  const std::string& tenant() const noexcept { return tenant_; }

 private:
  friend class rate_limited_kind_t;
  static std::string text(std::string_view key, duration retry_after, std::string_view tenant) {
    return detail::named("rate limit", key) +
           (tenant.empty() ? std::string{} : " for tenant '" + std::string{tenant} + "'") + " exceeded; retry after " +
           detail::seconds_text(retry_after);
  }
  std::string tenant_;
};

inline std::string rate_limited_kind_t::message(const rejection& r) const {
  return rate_limit_exceeded::text(r.source, r.retry_after, r.detail);
}
inline void rate_limited_kind_t::raise(const rejection& r) const {
  throw rate_limit_exceeded{std::string{r.source}, r.retry_after, std::string{r.detail}};
}

namespace detail {

// Hashing for heterogeneous lookup by string_view.
struct sv_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace detail

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
  void configure(std::string_view key, const limiter_options& config) {
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
    const auto until = detail::ns(
        saturating_add(clock_.now(), duration{std::clamp<std::int64_t>(wait.count(), 0, detail::max_window_ns)}));
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
    if (const auto d = try_acquire(key, tenant); !d)
      throw rate_limit_exceeded{std::string{key}, d.retry_after, std::string{tenant}};
  }

  /// Takes n permits of `key` if they are there now.
  rate_limit_decision try_acquire(std::string_view key, std::uint32_t n = 1) const {
    return try_acquire_on(entry(key), n);
  }
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
  rate_limit_decision acquire(std::string_view key, std::string_view tenant, duration max_wait,
                              std::stop_token stop = {}) const {
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
    tenant_node(std::string_view t, const detail::limiter_shape& shape, std::int64_t now)
        : tenant{t}, state{shape, now} {}
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

    key_entry(std::string_view k, const limiter_options& c, const detail::limiter_shape& s, std::int64_t now)
        : name{k}, hash{detail::sv_hash{}(k)}, state{s, now}, config{c} {
      const std::size_t count = shards_for(c.max_partitions);
      shard_count.store(count, std::memory_order_relaxed);
      for (std::size_t i = 0; i < max_shards; ++i) {
        shards[i].capacity = i < count ? c.max_partitions / count : 0;
        shards[i].shape = s;
      }
    }

    // One shard (an exact LRU) for small limits, up to 16 locks for large ones.
    static std::size_t shards_for(std::size_t max_partitions) {
      return std::clamp<std::size_t>(max_partitions / 64, 1, max_shards);
    }

    // Reshapes every tenant limiter in place (see configure). When the shard
    // layout changes they are dropped: they start afresh on their next call.
    void reshape_tenants(const limiter_options& config, const detail::limiter_shape& shape, std::int64_t now) {
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
    std::atomic<std::int64_t> held_until{
        std::numeric_limits<std::int64_t>::min()};  // the key's last hold (ns), for tenants made later
    detail::rate_counters counters;
    mutable std::mutex mutex;  // serializes reconfiguration; guards config
    limiter_options config;
    mutable tenant_shard shards[max_shards];
    std::atomic<std::size_t> shard_count{1};
  };

  // Open addressing, never shrinking; readers load the table pointer and
  // probe without a lock. A full table is copied into one twice as large and
  // the old one kept until the registry dies (geometric growth bounds that
  // at the size of the live table).
  struct key_table {
    explicit key_table(std::size_t capacity)
        : mask{capacity - 1}, slots{std::make_unique<std::atomic<key_entry*>[]>(capacity)} {}
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
      if (const auto held = e.held_until.load(std::memory_order_relaxed); held > now)
        shard->lru.front().state.hold_until(held);
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

  rate_limit_decision acquire_on(key_entry& e, std::string_view tenant, std::uint32_t n, duration max_wait,
                                 const std::stop_token& stop, bool& cancelled) const {
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
          [&](std::int64_t cost) { with_tenant(e, tenant, [&](detail::limiter_state& st) { st.refund(cost); }); },
          cancelled);
    }
    detail::record(d, e.counters, &hub_, e.name, tenant);
    return d;
  }

  rate_limit_stats stats_of(const key_entry& e) const {
    limiter_options config;
    {
      std::lock_guard lock{e.mutex};
      config = e.config;
    }
    config.count_grants = e.counters.count_grants.load(std::memory_order_relaxed);
    return {e.state.available(detail::ns(clock_.now())),
            e.counters.allowed.load(std::memory_order_relaxed),
            e.counters.rejected.load(std::memory_order_relaxed),
            e.counters.violations.load(std::memory_order_relaxed),
            e.partitions(),
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
inline rate_limiter& global_rate_limiter() {
  static rate_limiter registry;
  return registry;
}

/// Options of the rate_limit policy.
struct rate_limit_options {
  duration max_wait = duration::zero();  ///< wait up to this long for a permit (never past the call's deadline);
                                         ///< default: reject at once
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
    return outcome<T>{
        rejection{.kind = &rate_limited_kind, .retry_after = d.retry_after, .source = source, .detail = tenant}};
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
  double decrease_factor = 0.5;  ///< the rate is multiplied by this on each upstream 429; in (0, 1)
  double min_fraction = 0.05;    ///< the rate never drops below this fraction of the configured one; in (0, 1]
  double recovery_step = 0.1;    ///< fraction of the configured rate given back per quiet interval; > 0
  duration recovery_interval =
      std::chrono::seconds{5};  ///< a 429-free stretch that earns one step back; > 0, <= max_duration
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
    set_rate(
        std::max(s_->target.requests_per_second * s_->options.min_fraction, s_->rate * s_->options.decrease_factor));
    // A Retry-After past max_duration (or below zero) is a server bug: clamped, so the sum below cannot wrap.
    const duration wait = std::clamp(retry_after.value_or(duration::zero()), duration::zero(), max_duration);
    if (retry_after) s_->registry->hold(s_->key, wait);
    s_->next_step_at.store(detail::ns(saturating_add(saturating_add(now, wait), s_->options.recovery_interval)),
                           std::memory_order_release);
  }

  /// The upstream answered normally: after each quiet recovery_interval,
  /// give back one step of the rate. Costs one atomic load between steps.
  void on_success() const {
    const auto now = detail::ns(s_->registry->clock().now());
    if (now < s_->next_step_at.load(std::memory_order_acquire)) return;
    std::lock_guard lock{s_->mutex};
    if (now < s_->next_step_at.load(std::memory_order_relaxed) || s_->rate >= s_->target.requests_per_second) return;
    set_rate(std::min(s_->target.requests_per_second,
                      s_->rate + s_->target.requests_per_second * s_->options.recovery_step));
    s_->next_step_at.store(detail::ns(saturating_add(time_point{duration{now}}, s_->options.recovery_interval)),
                           std::memory_order_release);
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
    limiter_options target;
    std::mutex mutex;
    double rate;
    std::atomic<std::int64_t> next_step_at{std::numeric_limits<std::int64_t>::max()};
  };

  static adaptive_rate_options validated(const adaptive_rate_options& o) {
    if (!(o.decrease_factor > 0.0 && o.decrease_factor < 1.0))
      throw std::invalid_argument{"adaptive_rate: decrease_factor must be in (0, 1)"};
    if (!(o.min_fraction > 0.0 && o.min_fraction <= 1.0))
      throw std::invalid_argument{"adaptive_rate: min_fraction must be in (0, 1]"};
    if (!(o.recovery_step > 0.0) || !std::isfinite(o.recovery_step))
      throw std::invalid_argument{"adaptive_rate: recovery_step must be a finite number > 0"};
    if (o.recovery_interval <= duration::zero())
      throw std::invalid_argument{"adaptive_rate: recovery_interval must be > 0"};
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
    limits.for_each_stats(
        [&](std::string_view key, const rate_limit_stats& st) { detail::collect_limiter(s, key, st); });
  });
  w.count_events(limits.events());
}

}  // namespace v1
}  // namespace resilience
