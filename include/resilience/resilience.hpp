// resilience/resilience.hpp: the whole library in one include (all but
// logging.hpp, which needs fmt; coro.hpp, which only coroutine code needs;
// config.hpp, which needs nlohmann-json; redis.hpp, which needs hiredis).
//
//   #include <resilience/resilience.hpp>
//   resilience::resilient fetch{fetch_emission_factor, resilience::retry{}};
#pragma once

#include "backoff.hpp"
#include "bulkhead.hpp"
#include "cache.hpp"
#include "circuit_breaker.hpp"
#include "clock.hpp"
#include "context.hpp"
#include "degradation.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "executor.hpp"
#include "failures.hpp"
#include "fallback.hpp"
#include "fallback_event.hpp"
#include "future.hpp"
#include "limiter.hpp"
#include "limiter_options.hpp"
#include "metric_snapshot.hpp"
#include "metrics.hpp"
#include "outcome.hpp"
#include "presets.hpp"
#include "rate_limit.hpp"
#include "resilient.hpp"
#include "resilient_function.hpp"
#include "retry.hpp"
#include "retry_after.hpp"
#include "timeout.hpp"
#include "version.hpp"
