// resilience/events.hpp: typed events policies emit, and the hubs that deliver them.
//
// Every policy instance owns an event_hub; global_events() sees the events of
// all of them. With no listener anywhere, emitting costs two relaxed loads
// and builds nothing.
//
//   breaker.events().subscribe([](const resilience::event& e) {
//     if (auto* c = std::get_if<resilience::circuit_state_changed>(&e)) alert(c->name, c->to);
//   });
//   resilience::global_events().subscribe(resilience::json_logger{stderr});  // logging.hpp
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "clock.hpp"
#include "errors.hpp"

namespace resilience {
inline namespace v1 {

/// The three states of a circuit breaker.
enum class circuit_state : std::uint8_t { closed = 0, open = 1, half_open = 2 };

/// "closed", "open" or "half_open".
constexpr std::string_view to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed: return "closed";
    case circuit_state::open: return "open";
    case circuit_state::half_open: return "half_open";
  }
  return "unknown";
}

// The string views in events are valid only during the listener call; copy
// what you keep.

/// A retry policy is about to wait `delay` and try again.
struct retry_attempted {
  std::string_view operation;  ///< the call's operation name, if any
  int attempt;                 ///< the attempt that failed (1 = first try)
  duration delay;              ///< the wait before the next attempt
  std::string failure;         ///< what the failed attempt threw or why it was rejected
};

/// A retry policy gave up: attempts ran out, the deadline was near, or the failure was not retryable.
struct retries_exhausted {
  std::string_view operation;
  int attempts;         ///< attempts made in all
  std::string failure;  ///< the last failure, returned to the caller
};

/// A timeout policy abandoned a call.
struct timeout_occurred {
  std::string_view operation;
  duration limit;
};

/// A fallback replaced a failure.
struct fallback_activated {
  std::string_view operation;
  std::string_view strategy;  ///< "cached", "default", "function", "none", "chained"...
  std::string reason;         ///< the failure it replaced
};

/// A rate limiter refused a permit.
struct rate_limit_violated {
  std::string_view key;
  std::string_view tenant;  ///< empty without tenants
  duration retry_after;
};

/// A circuit breaker changed state (emitted once per transition).
struct circuit_state_changed {
  std::string_view name;
  circuit_state from;
  circuit_state to;
};

/// A circuit breaker refused a call.
struct circuit_rejected {
  std::string_view name;
  circuit_state state;
  duration retry_after;
};

/// A bulkhead refused a call.
struct bulkhead_rejected {
  std::string_view name;
  std::size_t max_concurrent_calls;
};

/// The degradation tier changed.
struct tier_changed {
  tier from;
  tier to;
  std::string_view cause;  ///< the service whose health report caused it
};

/// A service's health changed (healthy <-> unhealthy).
struct service_health_changed {
  std::string_view service;
  bool healthy;
  duration response_time;
  std::string_view error;  ///< the reported error, if any
};

/// Any event.
using event = std::variant<retry_attempted, retries_exhausted, timeout_occurred, fallback_activated, rate_limit_violated,
                           circuit_state_changed, circuit_rejected, bulkhead_rejected, tier_changed, service_health_changed>;

/// The name of an event's type ("retry_attempted").
inline std::string_view event_name(const event& e) noexcept {
  constexpr std::string_view names[] = {"retry_attempted",       "retries_exhausted", "timeout_occurred",
                                        "fallback_activated",    "rate_limit_violated", "circuit_state_changed",
                                        "circuit_rejected",      "bulkhead_rejected", "tier_changed",
                                        "service_health_changed"};
  return names[e.index()];
}

/// A set of listeners. Thread-safe; listeners run on the emitting thread, and
/// a listener that throws is ignored (the observed call goes on).
class event_hub {
 public:
  using listener = std::function<void(const event&)>;
  /// Identifies a subscription for unsubscribe.
  using subscription = std::uint64_t;

  event_hub() = default;
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  /// Adds a listener; returns its id.
  subscription subscribe(listener fn) {
    std::lock_guard lock{mutex_};
    auto next = std::make_shared<std::vector<entry>>(listeners_ ? *listeners_ : std::vector<entry>{});
    next->push_back({++last_id_, std::make_shared<listener>(std::move(fn))});
    listeners_ = std::move(next);
    active_.store(true, std::memory_order_release);
    return last_id_;
  }

  /// Removes a listener; false when it was not there.
  bool unsubscribe(subscription id) {
    std::lock_guard lock{mutex_};
    if (!listeners_) return false;
    auto next = std::make_shared<std::vector<entry>>(*listeners_);
    const auto before = next->size();
    std::erase_if(*next, [id](const entry& e) { return e.id == id; });
    if (next->size() == before) return false;
    active_.store(!next->empty(), std::memory_order_release);
    listeners_ = std::move(next);
    return true;
  }

  /// True when at least one listener is subscribed (a relaxed load).
  bool active() const noexcept { return active_.load(std::memory_order_relaxed); }

  /// Delivers e to every listener; never throws.
  void publish(const event& e) const noexcept {
    std::shared_ptr<const std::vector<entry>> snapshot;
    {
      std::lock_guard lock{mutex_};
      snapshot = listeners_;
    }
    if (!snapshot) return;
    for (const auto& l : *snapshot) {
      try {
        (*l.fn)(e);
      } catch (...) {
        // A listener's failure must not break the call it observes.
      }
    }
  }

 private:
  struct entry {
    subscription id;
    std::shared_ptr<listener> fn;
  };
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<entry>> listeners_;
  subscription last_id_ = 0;
  std::atomic<bool> active_{false};
};

/// The process-wide hub: it receives every event of every policy.
inline event_hub& global_events() {
  static event_hub hub;
  return hub;
}

namespace detail {

// Builds the event only when someone listens, then publishes it to the
// instance's hub (may be null) and the global one. Never throws.
template <class MakeEvent>
void emit(const event_hub* local, MakeEvent&& make) noexcept {
  const bool to_local = local != nullptr && local->active();
  const bool to_global = global_events().active();
  if (!to_local && !to_global) return;
  try {
    const event e{std::forward<MakeEvent>(make)()};
    if (to_local) local->publish(e);
    if (to_global) global_events().publish(e);
  } catch (...) {
    // Building the event failed (out of memory): observability never breaks a call.
  }
}

}  // namespace detail

}  // namespace v1
}  // namespace resilience
