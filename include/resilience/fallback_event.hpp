// resilience/fallback_event.hpp: the event a fallback emits when it replaces
// a failure, and the series it drives. Its own header because two policies
// emit it: fallback, and degradation_guard when it serves its fallback value.
#pragma once

#include "events.hpp"
#include "metric_snapshot.hpp"

namespace resilience {
inline namespace v1 {

/// fallback_activations_total{operation,strategy}, driven by fallback_activated_event.
inline constexpr metric_family fallback_activations_family{"fallback_activations_total", metric_type::counter,
                                                           "Failures replaced by a fallback.", 20};
inline const metric_families fallback_metric_families{fallback_activations_family};

namespace detail {
inline constexpr event_metric fallback_activated_metrics[] = {
    {&fallback_activations_family, {{{"operation", "operation"}, {"strategy", "strategy"}}}}};
}  // namespace detail

/// A fallback replaced a failure. Fields: strategy ("cached", "default",
/// "function", "none", "chained", "degraded"...), reason (the failure it replaced).
inline constexpr event_kind fallback_activated_event{
    "fallback_activated", log_level::warning, {.operation = true, .metrics = detail::fallback_activated_metrics}};

}  // namespace v1
}  // namespace resilience
