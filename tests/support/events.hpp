// tests/support/events.hpp: the library's events built as its policies build
// them, for tests that publish events directly (hubs, logger, metrics).
#pragma once

#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/events.hpp>
#include <resilience/fallback_event.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <string>
#include <string_view>

namespace support {

using resilience::circuit_state;
using resilience::duration;
using resilience::event;
using resilience::log_level;
using resilience::tier;

inline event retry_attempted(std::string_view operation, int attempt, duration delay, std::string failure) {
  event e{resilience::retry_attempted_event};
  e.with_operation(operation).with("attempt", attempt).with("delay", delay).with_text("failure", std::move(failure));
  return e;
}
inline event retries_exhausted(std::string_view operation, int attempts, std::string failure) {
  event e{resilience::retries_exhausted_event};
  e.with_operation(operation).with("attempts", attempts).with_text("failure", std::move(failure));
  return e;
}
inline event timeout_occurred(std::string_view operation, duration limit) {
  event e{resilience::timeout_occurred_event};
  e.with_operation(operation).with("limit", limit);
  return e;
}
inline event fallback_activated(std::string_view operation, std::string_view strategy, std::string reason) {
  event e{resilience::fallback_activated_event};
  e.with_operation(operation).with("strategy", strategy).with_text("reason", std::move(reason));
  return e;
}
inline event rate_limit_violated(std::string_view key, std::string_view tenant, duration retry_after) {
  event e{resilience::rate_limit_violated_event, key};
  e.with_tenant(tenant).with("retry_after", retry_after);
  return e;
}
inline event circuit_state_changed(std::string_view name, circuit_state from, circuit_state to) {
  event e{resilience::circuit_state_changed_event, name};
  e.with("from", to_string(from)).with("to", to_string(to));
  if (to == circuit_state::open) e.with_severity(log_level::error);
  return e;
}
inline event circuit_rejected(std::string_view name, circuit_state state, duration retry_after) {
  event e{resilience::circuit_rejected_event, name};
  e.with("state", to_string(state)).with("retry_after", retry_after);
  return e;
}
inline event bulkhead_rejected(std::string_view name, std::size_t max_concurrent_calls) {
  event e{resilience::bulkhead_rejected_event, name};
  e.with("max_concurrent_calls", max_concurrent_calls);
  return e;
}
inline event tier_changed(tier from, tier to, std::string_view cause) {
  event e{resilience::tier_changed_event};
  e.with("from", to_string(from)).with("to", to_string(to)).with("cause", cause);
  if (to == tier::maintenance) e.with_severity(log_level::error);
  else if (to > from) e.with_severity(log_level::warning);
  return e;
}
inline event service_health_changed(std::string_view service, bool healthy, duration response_time,
                                    std::string_view error) {
  event e{resilience::service_health_changed_event, service};
  e.with("healthy", healthy).with("response_time", response_time).with("error", error);
  if (!healthy) e.with_severity(log_level::warning);
  return e;
}

}  // namespace support
