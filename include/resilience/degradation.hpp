// resilience/degradation.hpp: tier-based graceful degradation.
//
// A degradation_manager knows which services the application depends on and
// which tier the loss of each one implies (llm_api -> core, factor_api and
// erp_api -> read_only, database -> maintenance by default). Health reports
// move the current tier; a degradation_guard lets a call through only while
// the tier is good enough, and otherwise returns a fallback value or rejects
// with degraded_error.
//
//   resilience::degradation_manager health;
//   resilience::resilient explain{ask_llm,
//                                 resilience::degradation_guard{health, resilience::tier::full,
//                                                               std::string{"[LLM unavailable]"}}};
//   health.update_health("llm_api", false, 31s, "inference timed out");  // tier -> core
//   explain("why is my footprint up?");                                  // "[LLM unavailable]"
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "context.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "fallback_event.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"
#include "policy.hpp"

namespace resilience {
inline namespace v1 {

/// Graceful-degradation tiers; a larger number is a worse tier.
enum class tier : std::uint8_t {
  full = 1,         ///< everything works
  core = 2,         ///< no LLM features
  read_only = 3,    ///< no writes, no external API calls
  maintenance = 4,  ///< the database is down
};

/// "full", "core", "read_only" or "maintenance".
constexpr std::string_view to_string(tier t) noexcept {
  switch (t) {
    case tier::full: return "full";
    case tier::core: return "core";
    case tier::read_only: return "read_only";
    case tier::maintenance: return "maintenance";
  }
  return "unknown";
}

/// The tier named by to_string() (full for any other text): reads a tier_changed_event's from/to.
constexpr tier tier_of(std::string_view name) noexcept {
  return name == "core"          ? tier::core
         : name == "read_only"   ? tier::read_only
         : name == "maintenance" ? tier::maintenance
                                 : tier::full;
}

/// The degradation series: written when a metrics_registry watches a
/// manager, and from its events otherwise.
inline constexpr metric_family degradation_tier_family{
    "degradation_tier", metric_type::gauge, "Current degradation tier: 1 full, 2 core, 3 read_only, 4 maintenance.",
    14};
inline constexpr metric_family service_health_family{
    "service_health", metric_type::gauge, "Service health as the degradation manager sees it: 1 healthy, 0 unhealthy.",
    15};
inline constexpr metric_family degradation_tier_changes_family{"degradation_tier_changes_total", metric_type::counter,
                                                               "Degradation tier changes.", 16};
inline const metric_families degradation_metric_families{degradation_tier_family, service_health_family,
                                                         degradation_tier_changes_family};

namespace detail {
inline constexpr event_metric tier_changed_metrics[] = {
    {&degradation_tier_changes_family, {{{"from", "from"}, {"to", "to"}}}},
    {&degradation_tier_family,
     {},
     [](const event& e) { return static_cast<double>(static_cast<int>(tier_of(e.get<std::string_view>("to")))); },
     "degradation"}};
inline constexpr event_metric service_health_changed_metrics[] = {
    {&service_health_family,
     {{{"service", "source"}}},
     [](const event& e) { return e.get<bool>("healthy") ? 1.0 : 0.0; },
     "degradation"}};
}  // namespace detail

/// The degradation tier changed. Source: the manager's name (not logged).
/// Fields: from, to (to_string(tier)), cause (the service whose report caused
/// it). An error into maintenance, a warning to a worse tier, info otherwise.
inline constexpr event_kind tier_changed_event{
    "tier_changed", log_level::info, {.metrics = detail::tier_changed_metrics}};
/// A service's health changed (healthy <-> unhealthy). Source: the service.
/// Fields: healthy, response_time, error (the reported error, if any). A
/// warning when it turns unhealthy, info otherwise.
inline constexpr event_kind service_health_changed_event{
    "service_health_changed",
    log_level::info,
    {.source_key = "service", .metrics = detail::service_health_changed_metrics}};

/// A degradation policy's rejection kind: "degraded"; the rejection's `code`
/// holds the tier at the time and the tier the call needed (see of()).
class degraded_kind_t final : public rejection_kind {
 public:
  constexpr degraded_kind_t() noexcept : rejection_kind{"degraded"} {}
  /// The `code` of a rejection for a call that needs `required` at tier `current`.
  static constexpr std::uint32_t code_of(tier current, tier required) noexcept {
    return static_cast<std::uint32_t>(current) << 8 | static_cast<std::uint32_t>(required);
  }
  /// The tier at the time of the rejection.
  static constexpr tier current(const rejection& r) noexcept { return static_cast<tier>(r.code >> 8 & 0xff); }
  /// The tier the call needed.
  static constexpr tier required(const rejection& r) noexcept { return static_cast<tier>(r.code & 0xff); }
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a degradation policy's rejection.
inline constexpr degraded_kind_t degraded_kind{};

/// The current degradation tier is worse than the call requires.
class degraded_error : public rejected_error {
 public:
  degraded_error(tier current, tier required, std::string source = {})
      : rejected_error{degraded_kind, source, duration::zero(),
                       "service degraded to tier '" + std::string{to_string(current)} + "'; call requires '" +
                           std::string{to_string(required)} + "' or better"},
        current_{current},
        required_{required} {}
  tier current() const noexcept { return current_; }
  tier required() const noexcept { return required_; }

 private:
  tier current_;
  tier required_;
};

inline std::string degraded_kind_t::message(const rejection& r) const {
  return "service degraded to tier '" + std::string{to_string(current(r))} + "'; call requires '" +
         std::string{to_string(required(r))} + "' or better";
}
inline void degraded_kind_t::raise(const rejection& r) const {
  throw degraded_error{current(r), required(r), std::string{r.source}};
}

/// True when a call that needs `required` may run at tier `current`
/// (a smaller tier number is a better tier).
constexpr bool tier_allows(tier current, tier required) noexcept {
  return static_cast<std::uint8_t>(current) <= static_cast<std::uint8_t>(required);
}

/// The worse of two tiers.
constexpr tier worse_tier(tier a, tier b) noexcept { return tier_allows(a, b) ? b : a; }

/// A response slower than this counts as unhealthy, for a service registered
/// without its own threshold (the seed's timeout for an external API).
inline constexpr duration default_slow_threshold = std::chrono::seconds{10};

/// How a degradation_manager is configured. The defaults are the seed's.
struct degradation_options {
  /// Names the manager in degraded_error and rejections (their `source`).
  std::string name = "degradation";
  /// Registers llm_api (-> core, slow after 30 s), factor_api (-> read_only,
  /// 5 s), erp_api (-> read_only, 10 s) and database (-> maintenance, 10 s).
  bool register_defaults = true;
  /// Recovery hysteresis, part 1: an unhealthy service counts as healthy
  /// again only after this many consecutive healthy reports (>= 1). The
  /// default 3 keeps one lucky probe between failures from flipping the tier
  /// back and forth; 1 turns this part off.
  int recover_after_reports = 3;
  /// Recovery hysteresis, part 2: ...and only once the first of those
  /// healthy reports is at least this old (>= 0; zero, the default, turns
  /// this part off). Both parts must hold, so setting one alone gives
  /// "K healthy reports" or "healthy for a duration".
  duration recover_after_time = duration::zero();
  /// What update_health does with a service nobody registered: with no value
  /// (the default) it throws std::invalid_argument naming the service, so a
  /// typo cannot silently report on a service that moves no tier; with a
  /// tier, it registers the service first, implying that tier.
  std::optional<tier> unknown_service_tier = std::nullopt;
  /// The clock of health timestamps and of recover_after_time.
  clock_ref clock{};
};

/// One service as the manager sees it (see degradation_manager::snapshot).
struct service_health {
  std::string name;                                  ///< the service's name
  tier implies = tier::full;                         ///< the tier its loss implies
  duration slow_threshold = default_slow_threshold;  ///< a slower response counts as unhealthy
  bool healthy = true;  ///< counts as healthy now (hysteresis applied; an open bound breaker also makes it false)
  bool last_report_healthy = true;                 ///< what the latest report said (after the slowness check)
  int open_breakers = 0;                           ///< bound circuit breakers currently open
  int consecutive_healthy = 0;                     ///< healthy reports since the last unhealthy one
  duration last_response_time = duration::zero();  ///< from the latest report
  std::string last_error;                   ///< from the latest unhealthy report; kept until the service recovers
  time_point since{};                       ///< when `healthy` last changed (registration time at first)
  std::optional<time_point> last_report{};  ///< when the latest report came; none before the first
};

/// Every service's health and the tier they imply, taken at one instant.
struct health_snapshot {
  tier current = tier::full;             ///< the current tier
  time_point taken_at{};                 ///< the manager clock's time of the snapshot
  std::vector<service_health> services;  ///< sorted by name
};

namespace detail {

struct degradation_state {
  struct service {
    service_health h;
    std::optional<time_point> streak_start;  // first healthy report of the current streak
  };
  // Work for the thread that delivers notifications (see deliver_pending).
  struct notice {
    bool is_tier = false;
    tier from = tier::full;
    tier to = tier::full;
    std::string service;
    bool healthy = true;
    duration response_time = duration::zero();
    std::string error;
  };
  using tier_listener = std::function<void(tier from, tier to)>;
  struct listener_entry {
    std::uint64_t id;
    std::shared_ptr<tier_listener> fn;
  };

  explicit degradation_state(degradation_options o) : opts{std::move(o)} {}
  degradation_state(const degradation_state&) = delete;
  degradation_state& operator=(const degradation_state&) = delete;
  ~degradation_state();

  degradation_options opts;
  std::atomic<tier> current{tier::full};
  mutable event_hub hub;

  std::mutex mutex;  // guards everything below
  using service_map = std::map<std::string, service, std::less<>>;
  service_map services;
  std::deque<notice> pending;
  bool delivering = false;
  std::shared_ptr<const std::vector<listener_entry>> listeners;
  std::uint64_t last_listener_id = 0;
  std::vector<std::shared_ptr<struct breaker_binding>> bindings;
  std::uint64_t last_binding_id = 0;
};

// A circuit breaker bound to a service. The manager owns it (and through it
// a handle to the breaker); the breaker's listener and timers hold only weak
// pointers, so neither keeps the other alive.
struct breaker_binding {
  std::uint64_t id = 0;
  std::string service;
  std::string breaker_name;
  std::function<bool()> is_open;             // the breaker's state() is open (state() applies a due open -> half_open)
  std::function<duration()> break_duration;  // the length of the breaker's current opening
  std::function<void()> unsubscribe;         // ends the breaker-side listener
  clock_ref clock;                           // the breaker's clock, for the end-of-break timer
  // Serializes "read the breaker's state, apply it", so the last notification
  // applies the latest state. Recursive: reading the state may run a due
  // transition whose notification comes back on the same thread.
  std::recursive_mutex mutex;
  bool active = true;      // false once unbound: a late notification must not hold again
  bool holding = false;    // this binding counts in the service's open_breakers
  time_point timer_for{};  // the latest end-of-break check scheduled
};

inline degradation_state::~degradation_state() {
  for (auto& b : bindings)
    if (b->unsubscribe) b->unsubscribe();
}

}  // namespace detail

/// Tracks service health and the degradation tier it implies. Copies share
/// one state; every member function is thread-safe.
///
/// Notifications (on_tier_change listeners, tier_changed and
/// service_health_changed events) are delivered one at a time, in the order
/// of the changes, exactly once each. The thread that made a change delivers
/// it before update_health returns, unless another thread is delivering at
/// that moment (that thread then delivers it) or the call comes from inside a
/// listener (the outer delivery does it after the listener returns), so a
/// listener may call back into the manager freely.
class degradation_manager {
 public:
  /// Identifies an on_tier_change listener.
  using listener_id = std::uint64_t;

  /// A manager with the default services (see degradation_options).
  degradation_manager() : degradation_manager(degradation_options{}) {}

  /// A manager configured by `options`; throws std::invalid_argument naming a bad field.
  explicit degradation_manager(degradation_options options) {
    if (options.recover_after_reports < 1)
      throw std::invalid_argument{"degradation_manager: recover_after_reports must be >= 1"};
    if (options.recover_after_time < duration::zero())
      throw std::invalid_argument{"degradation_manager: recover_after_time must be >= 0"};
    checked_duration(options.recover_after_time, "degradation_manager: recover_after_time");
    if (options.unknown_service_tier) check_tier(*options.unknown_service_tier, "unknown_service_tier");
    const bool defaults = options.register_defaults;
    state_ = std::make_shared<detail::degradation_state>(std::move(options));
    if (defaults) {
      using std::chrono::seconds;
      register_service("llm_api", tier::core, seconds{30});
      register_service("factor_api", tier::read_only, seconds{5});
      register_service("erp_api", tier::read_only, seconds{10});
      register_service("database", tier::maintenance, seconds{10});
    }
  }

  /// Registers `name`, whose loss implies tier `implies`; a response slower
  /// than `slow_threshold` counts as unhealthy. Registering a known name
  /// again changes its tier and threshold and keeps its health.
  void register_service(std::string_view name, tier implies, duration slow_threshold = default_slow_threshold) {
    check_name(name, "register_service");
    check_tier(implies, "implies");
    if (slow_threshold <= duration::zero())
      throw std::invalid_argument{"degradation_manager: slow_threshold of '" + std::string{name} + "' must be > 0"};
    checked_duration(slow_threshold, "degradation_manager: slow_threshold of '" + std::string{name} + "'");
    std::unique_lock lock{state_->mutex};
    auto it = state_->services.find(name);
    if (it == state_->services.end()) it = add_service(name, implies, slow_threshold, state_->opts.clock.now());
    it->second.h.implies = implies;
    it->second.h.slow_threshold = slow_threshold;
    recompute(name);
    deliver_pending(lock);
  }

  /// Forgets a service (and with it the tier its loss implied); false when unknown.
  bool unregister_service(std::string_view name) {
    std::unique_lock lock{state_->mutex};
    auto it = state_->services.find(name);
    if (it == state_->services.end()) return false;
    state_->services.erase(it);
    recompute(name);
    deliver_pending(lock);
    return true;
  }

  /// True when `name` is registered.
  bool has_service(std::string_view name) const {
    std::lock_guard lock{state_->mutex};
    return state_->services.contains(name);
  }

  /// Records a health report: `healthy` false, or a response slower than the
  /// service's threshold, marks it unhealthy at once; recovery follows the
  /// hysteresis options. `error` describes the failure (kept in the
  /// snapshot). Returns the tier after the report. An unknown service throws
  /// std::invalid_argument unless options.unknown_service_tier is set.
  tier update_health(std::string_view name, bool healthy, duration response_time = duration::zero(),
                     std::string_view error = {}) {
    check_name(name, "update_health");
    const time_point now = state_->opts.clock.now();
    std::unique_lock lock{state_->mutex};
    auto it = state_->services.find(name);
    if (it == state_->services.end()) {
      if (!state_->opts.unknown_service_tier)
        throw std::invalid_argument{"degradation_manager: unknown service '" + std::string{name} +
                                    "' (register_service it first, or set unknown_service_tier)"};
      it = add_service(name, *state_->opts.unknown_service_tier, default_slow_threshold, now);
    }
    auto& s = it->second;
    const bool was = effective(s);
    const bool ok = healthy && response_time <= s.h.slow_threshold;
    s.h.last_report_healthy = ok;
    s.h.last_response_time = response_time;
    s.h.last_report = now;
    if (!ok) {
      s.h.consecutive_healthy = 0;
      s.streak_start.reset();
      s.h.healthy = false;
      if (!error.empty()) s.h.last_error.assign(error);
      else if (healthy) s.h.last_error = "slower than its threshold";
      else s.h.last_error = "reported unhealthy";
    } else {
      ++s.h.consecutive_healthy;
      if (!s.streak_start) s.streak_start = now;
      if (!s.h.healthy && s.h.consecutive_healthy >= state_->opts.recover_after_reports &&
          saturating_sub(now, *s.streak_start) >= state_->opts.recover_after_time) {
        s.h.healthy = true;
        s.h.last_error.clear();
      }
    }
    health_changed(s, was, now);
    const tier after = recompute(name);
    deliver_pending(lock);
    return after;
  }

  /// The worst tier implied by any unhealthy service (full when all are
  /// healthy). One atomic load: cheap enough for every call.
  tier current_tier() const noexcept { return state_->current.load(std::memory_order_acquire); }

  /// True when a call that needs `required` may run now.
  bool allows(tier required) const noexcept { return tier_allows(current_tier(), required); }

  /// Every service's health and the current tier, taken under one lock.
  health_snapshot snapshot() const {
    health_snapshot snap;
    std::lock_guard lock{state_->mutex};
    snap.current = current_tier();
    snap.taken_at = state_->opts.clock.now();
    snap.services.reserve(state_->services.size());
    for (const auto& [name, s] : state_->services) snap.services.push_back(view(s));
    return snap;
  }

  /// One service's health; nothing when the name is unknown.
  std::optional<service_health> health(std::string_view name) const {
    std::lock_guard lock{state_->mutex};
    auto it = state_->services.find(name);
    if (it == state_->services.end()) return std::nullopt;
    return view(it->second);
  }

  /// Calls fn(from, to) once for every tier change from now on, in order.
  listener_id on_tier_change(std::function<void(tier from, tier to)> fn) {
    auto shared = std::make_shared<detail::degradation_state::tier_listener>(std::move(fn));
    std::lock_guard lock{state_->mutex};
    auto next = std::make_shared<std::vector<detail::degradation_state::listener_entry>>(
        state_->listeners ? *state_->listeners : std::vector<detail::degradation_state::listener_entry>{});
    next->push_back({++state_->last_listener_id, std::move(shared)});
    state_->listeners = std::move(next);
    return state_->last_listener_id;
  }

  /// Removes an on_tier_change listener; false when it was not there. A
  /// delivery already under way may still call it once.
  bool remove_tier_listener(listener_id id) {
    std::lock_guard lock{state_->mutex};
    if (!state_->listeners) return false;
    auto next = std::make_shared<std::vector<detail::degradation_state::listener_entry>>(*state_->listeners);
    const auto before = next->size();
    std::erase_if(*next, [id](const auto& e) { return e.id == id; });
    if (next->size() == before) return false;
    state_->listeners = std::move(next);
    return true;
  }

  /// Identifies a binding made by bind.
  using binding_id = std::uint64_t;

  /// Binds a circuit breaker to a service: while `breaker` is open, `service`
  /// counts as unhealthy, whatever its health reports say. When the break
  /// ends (half-open) the hold is released with no hysteresis, so trial calls
  /// get past guards that the hold was closing; a failed trial reopens the
  /// breaker and the hold returns. The manager schedules a check on the
  /// breaker's clock at the end of each break, so the release happens even
  /// when no call touches the breaker. Works with circuit_breaker or any type
  /// with state(), on_state_change(fn), events(), name(), options().clock and
  /// stats().break_duration. `service` must be registered (or
  /// unknown_service_tier set). The binding lasts until unbind or the
  /// manager's last copy is gone.
  template <class Breaker>
  binding_id bind(const Breaker& breaker, std::string_view service) {
    check_name(service, "bind");
    {
      std::lock_guard lock{state_->mutex};
      if (!state_->services.contains(service)) {
        if (!state_->opts.unknown_service_tier)
          throw std::invalid_argument{"degradation_manager: bind: unknown service '" + std::string{service} + "'"};
        add_service(service, *state_->opts.unknown_service_tier, default_slow_threshold, state_->opts.clock.now());
      }
    }
    auto b = std::make_shared<detail::breaker_binding>();
    b->service = std::string{service};
    b->breaker_name = std::string{breaker.name()};
    b->is_open = [breaker] { return breaker.state() == decltype(breaker.state())::open; };
    b->break_duration = [breaker] { return breaker.stats().break_duration; };
    b->clock = breaker.options().clock;
    std::weak_ptr<detail::degradation_state> ws = state_;
    std::weak_ptr<detail::breaker_binding> wb = b;
    const auto sub = breaker.on_state_change([ws, wb](auto, auto) { refresh(ws, wb); });
    b->unsubscribe = [breaker, sub] { breaker.events().unsubscribe(sub); };
    {
      std::lock_guard lock{state_->mutex};
      b->id = ++state_->last_binding_id;
      state_->bindings.push_back(b);
    }
    refresh(ws, wb);
    return b->id;
  }

  /// Ends a binding, releasing its hold on the service; false when unknown.
  bool unbind(binding_id id) {
    std::shared_ptr<detail::breaker_binding> b;
    {
      std::lock_guard lock{state_->mutex};
      auto it =
          std::find_if(state_->bindings.begin(), state_->bindings.end(), [id](const auto& x) { return x->id == id; });
      if (it == state_->bindings.end()) return false;
      b = std::move(*it);
      state_->bindings.erase(it);
    }
    b->unsubscribe();
    std::lock_guard guard{b->mutex};
    b->active = false;
    apply_hold(*b, false);
    return true;
  }

  /// This manager's events: tier_changed and service_health_changed.
  event_hub& events() const noexcept { return state_->hub; }

  /// The manager's name (the `source` of its rejections).
  std::string_view name() const noexcept { return state_->opts.name; }

  /// The manager's clock.
  const clock_ref& clock() const noexcept { return state_->opts.clock; }

 private:
  explicit degradation_manager(std::shared_ptr<detail::degradation_state> s) noexcept : state_{std::move(s)} {}

  // The one rule for a service name, checked by every entry point that can
  // register one (register_service, update_health, bind): not empty.
  // Lookups (has_service, health, unregister_service) just find no "".
  static void check_name(std::string_view name, const char* where) {
    if (name.empty())
      throw std::invalid_argument{std::string{"degradation_manager: "} + where + ": service name must not be empty"};
  }

  static void check_tier(tier t, const char* field) {
    const auto v = static_cast<std::uint8_t>(t);
    if (v < static_cast<std::uint8_t>(tier::full) || v > static_cast<std::uint8_t>(tier::maintenance))
      throw std::invalid_argument{std::string{"degradation_manager: "} + field + " is not a valid tier"};
  }

  static bool effective(const detail::degradation_state::service& s) noexcept {
    return s.h.healthy && s.h.open_breakers == 0;
  }

  // What a user sees: `healthy` folds in the bound breakers.
  static service_health view(const detail::degradation_state::service& s) {
    service_health h = s.h;
    h.healthy = effective(s);
    return h;
  }

  // Caller holds the lock.
  detail::degradation_state::service_map::iterator add_service(std::string_view name, tier implies,
                                                               duration slow_threshold, time_point now) {
    detail::degradation_state::service s;
    s.h.name = std::string{name};
    s.h.implies = implies;
    s.h.slow_threshold = slow_threshold;
    s.h.since = now;
    return state_->services.emplace(std::string{name}, std::move(s)).first;
  }

  // Reads a bound breaker's state and applies it; arms the end-of-break check.
  static void refresh(const std::weak_ptr<detail::degradation_state>& ws,
                      const std::weak_ptr<detail::breaker_binding>& wb) {
    auto st = ws.lock();
    auto b = wb.lock();
    if (!st || !b) return;
    std::lock_guard guard{b->mutex};
    if (!b->active) return;
    degradation_manager m{std::move(st)};
    const bool open = b->is_open();
    if (open) {
      const time_point due = saturating_add(b->clock.now(), b->break_duration());
      if (due > b->timer_for) {
        b->timer_for = due;
        b->clock.call_at(due, [ws, wb] { refresh(ws, wb); });
      }
    }
    m.apply_hold(*b, open);
  }

  // Caller holds b.mutex.
  void apply_hold(detail::breaker_binding& b, bool open) {
    std::unique_lock lock{state_->mutex};
    if (b.holding == open) return;
    b.holding = open;
    auto it = state_->services.find(b.service);
    if (it == state_->services.end()) return;
    auto& s = it->second;
    const bool was = effective(s);
    if (open) ++s.h.open_breakers;
    else if (s.h.open_breakers > 0) --s.h.open_breakers;
    if (open) s.h.last_error = "circuit breaker '" + b.breaker_name + "' is open";
    else if (effective(s)) s.h.last_error.clear();
    health_changed(s, was, state_->opts.clock.now());
    recompute(b.service);
    deliver_pending(lock);
  }

  // Caller holds the lock: queues a service_health_changed notice when the
  // effective health moved.
  void health_changed(detail::degradation_state::service& s, bool was, time_point now) {
    const bool is = effective(s);
    if (was == is) return;
    s.h.since = now;
    if (!listening()) return;
    detail::degradation_state::notice n;
    n.service = s.h.name;
    n.healthy = is;
    n.response_time = s.h.last_response_time;
    n.error = s.h.last_error;
    state_->pending.push_back(std::move(n));
  }

  // Caller holds the lock: recomputes the tier and queues a change.
  tier recompute(std::string_view cause) {
    tier worst = tier::full;
    for (const auto& [name, s] : state_->services)
      if (!effective(s)) worst = worse_tier(worst, s.h.implies);
    const tier before = state_->current.load(std::memory_order_relaxed);
    if (worst != before) {
      state_->current.store(worst, std::memory_order_release);
      detail::degradation_state::notice n;
      n.is_tier = true;
      n.from = before;
      n.to = worst;
      n.service = std::string{cause};
      state_->pending.push_back(std::move(n));
    }
    return worst;
  }

  bool listening() const noexcept { return state_->hub.active() || global_events().active(); }

  // Called with the lock held; returns with it held. Exactly one thread at a
  // time drains the queue, so notices go out in the order they were made.
  void deliver_pending(std::unique_lock<std::mutex>& lock) {
    auto& st = *state_;
    if (st.delivering) return;
    st.delivering = true;
    while (!st.pending.empty()) {
      auto n = std::move(st.pending.front());
      st.pending.pop_front();
      auto listeners = st.listeners;
      lock.unlock();
      if (n.is_tier) {
        if (listeners)
          for (const auto& l : *listeners) {
            try {
              (*l.fn)(n.from, n.to);
            } catch (...) {
              // A listener's failure must not stop the others or the report.
            }
          }
        detail::emit(&st.hub, [&] {
          event e{tier_changed_event, st.opts.name};
          e.at(st.opts.clock.now())
              .with("from", to_string(n.from))
              .with("to", to_string(n.to))
              .with("cause", std::string_view{n.service});
          if (n.to == tier::maintenance) e.with_severity(log_level::error);
          else if (n.to > n.from) e.with_severity(log_level::warning);
          return e;
        });
      } else {
        detail::emit(&st.hub, [&] {
          event e{service_health_changed_event, n.service};
          e.at(st.opts.clock.now()).with("healthy", n.healthy).with("response_time", n.response_time);
          e.with("error", std::string_view{n.error});
          if (!n.healthy) e.with_severity(log_level::warning);
          return e;
        });
      }
      lock.lock();
    }
    st.delivering = false;
  }

  template <class Fallback>
  friend class degradation_guard;

  std::shared_ptr<detail::degradation_state> state_;
};

/// The process-wide manager (default services, steady clock). Tests should
/// build their own.
inline degradation_manager& global_degradation_manager() {
  static degradation_manager m;
  return m;
}

/// Marks a degradation_guard without a fallback value.
struct no_fallback {};

/// A policy (the seed's degradation_handler): runs the call only while the
/// manager's tier is `min_tier` or better; otherwise returns the fallback
/// value, or without one rejects with degraded_kind (degraded_error at the
/// API edge, carrying the current and required tier). The check is one
/// atomic load; a rejection allocates nothing and throws nothing.
///
///   resilience::degradation_guard needs_llm{health, resilience::tier::full, std::string{"[LLM unavailable]"}};
///   resilience::degradation_guard writes{health, resilience::tier::core};  // rejects from read_only on
template <class Fallback = no_fallback>
class degradation_guard {
 public:
  /// Guards with the process-wide manager; rejects below `min_tier`.
  explicit degradation_guard(tier min_tier) requires std::is_same_v<Fallback, no_fallback>
      : degradation_guard(global_degradation_manager(), min_tier) {}

  /// Guards with `manager`; rejects below `min_tier`.
  degradation_guard(degradation_manager manager, tier min_tier) requires std::is_same_v<Fallback, no_fallback>
      : manager_{std::move(manager)}, min_tier_{min_tier}, events_{std::make_shared<event_hub>()} {
    degradation_manager::check_tier(min_tier, "degradation_guard: min_tier");
  }

  /// Guards with `manager`; returns `fallback` below `min_tier`.
  degradation_guard(degradation_manager manager, tier min_tier,
                    Fallback fallback) requires(!std::is_same_v<Fallback, no_fallback>)
      : manager_{std::move(manager)},
        min_tier_{min_tier},
        fallback_{std::move(fallback)},
        events_{std::make_shared<event_hub>()} {
    degradation_manager::check_tier(min_tier, "degradation_guard: min_tier");
  }

  /// Never waits or blocks: a coroutine's co_call runs it on the awaiting thread (coro.hpp).
  static constexpr bool never_waits = true;

  /// The policy step.
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using R = typename std::invoke_result_t<Next&, call_context&>::value_type;
    const tier current = manager_.current_tier();
    if (tier_allows(current, min_tier_)) return next(ctx);
    return refused<R>(ctx, current);
  }

  /// The async step (resilient::async): an admitted call goes on
  /// asynchronously; a refused one completes at once.
  template <class Next, class Call, class T>
  void execute_async(call_context& ctx, Next&& next, const Call&, async_callback<T> done) const {
    const tier current = manager_.current_tier();
    if (tier_allows(current, min_tier_)) next(ctx, std::move(done));
    else done(refused<T>(ctx, current));
  }

  /// The worst tier at which calls still run.
  tier min_tier() const noexcept { return min_tier_; }
  /// The manager whose tier this guard reads.
  const degradation_manager& manager() const noexcept { return manager_; }
  /// This guard's events: fallback_activated when it serves its fallback.
  event_hub& events() const noexcept { return *events_; }

 private:
  template <class R>
  outcome<R> refused(const call_context& ctx, tier current) const {
    if constexpr (std::is_same_v<Fallback, no_fallback>) {
      return outcome<R>{rejection{
          .kind = &degraded_kind, .source = manager_.name(), .code = degraded_kind_t::code_of(current, min_tier_)}};
    } else {
      static_assert(!std::is_void_v<R>, "degradation_guard: a fallback value needs a callable that returns a value");
      static_assert(std::is_constructible_v<R, const Fallback&>,
                    "degradation_guard: the fallback must convert to the call's result");
      detail::emit(events_.get(), [&] {
        event e{fallback_activated_event};
        e.at(ctx.now()).with_operation(ctx.operation).with("strategy", "degraded");
        e.with_text("reason", "tier '" + std::string{to_string(current)} + "' is below '" +
                                  std::string{to_string(min_tier_)} + "'");
        return e;
      });
      return outcome<R>{std::in_place, fallback_};
    }
  }

  degradation_manager manager_;
  tier min_tier_;
  [[no_unique_address]] Fallback fallback_{};
  std::shared_ptr<event_hub> events_;
};

degradation_guard(tier)->degradation_guard<no_fallback>;
degradation_guard(degradation_manager, tier)->degradation_guard<no_fallback>;
template <class F>
degradation_guard(degradation_manager, tier, F) -> degradation_guard<std::decay_t<F>>;

/// A manager's series: its tier and every service's health.
inline void collect_metrics(const degradation_manager& manager, metric_snapshot& s) {
  const auto snap = manager.snapshot();
  s.cover("degradation", {});
  s.add("degradation_tier", metric_type::gauge, {}, {}, static_cast<double>(static_cast<int>(snap.current)));
  for (const auto& svc : snap.services)
    s.add("service_health", metric_type::gauge, {}, {{"service", svc.name}}, svc.healthy ? 1.0 : 0.0);
}

/// metrics_registry::watch(manager): tier and every service's health at each
/// scrape. One manager per registry (degradation_tier has no labels); a
/// second one throws std::logic_error.
inline void watch_metrics(const degradation_manager& manager, metric_watch& w) {
  if (!w.claim("degradation manager", {}, nullptr, true))
    throw std::logic_error{"metrics_registry: already watching a degradation_manager"};
  auto keep = std::make_shared<const degradation_manager>(manager);
  w.collect([keep](metric_snapshot& s) { collect_metrics(*keep, s); });
  w.count_events(keep->events());
  w.keep(keep);
}

}  // namespace v1
}  // namespace resilience
