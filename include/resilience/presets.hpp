// resilience/presets.hpp: the recommended settings per operation type and
// environment, and one call that builds a whole resilient<> from them.
//
//   resilience::result_cache<std::string, double> factors;
//   auto lookup = resilience::presets::make(resilience::operation_type::factor_lookup,
//                                           resilience::environment::production, fetch_factor, factors);
//   double f = lookup("electricity");  // retried, timed out, rate limited, breaker-guarded, cached on failure
//
// The numbers are the seed's (production below; development retries twice
// from 0.5 s without jitter, doubles every timeout, allows 100 req/s on the
// rate-limited operations and opens breakers after 10 failures):
//
//   operation          retries  timeout  fallback  rate limit      breaker
//   factor_lookup      3        5 s      cached    10/s, burst 20  5 fails, 60 s
//   llm_inference      2        30 s     cached    5/s, burst 10   5 fails, 60 s
//   erp_api_call       5        10 s     cached    5/s, burst 10   5 fails, 60 s
//   database_query     3        10 s     none      none            5 fails, 60 s
//   report_generation  2        60 s     default   none            5 fails, 60 s
//   external_api       3        10 s     none      none            5 fails, 60 s
//
// Delays grow exponentially from base_delay (1 s in production, with full
// jitter). The seed gives no burst; presets allow two seconds' worth
// (burst = 2 x rate), as the ERP example's 5 req/s, burst 10 does.
//
// Not a policy but a composition header, like resilient.hpp: it builds
// resilient<> objects, so it includes resilient.hpp and every policy it uses.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "backoff.hpp"
#include "bulkhead.hpp"
#include "cache.hpp"
#include "circuit_breaker.hpp"
#include "clock.hpp"
#include "context.hpp"
#include "fallback.hpp"
#include "outcome.hpp"
#include "rate_limit.hpp"
#include "resilient.hpp"
#include "retry.hpp"
#include "timeout.hpp"

namespace resilience {
inline namespace v1 {

/// The operations of the seed services, each with its default timeout.
enum class operation_type : std::uint8_t {
  factor_lookup,      ///< emission-factor lookup over HTTP: 5 s
  llm_inference,      ///< LLM provider call: 30 s
  erp_api_call,       ///< ERP intake: 10 s
  database_query,     ///< database: 10 s
  report_generation,  ///< report generator: 60 s
  external_api,       ///< any other external API: 10 s
};

/// "factor_lookup", "llm_inference"...
constexpr std::string_view to_string(operation_type op) noexcept {
  switch (op) {
    case operation_type::factor_lookup: return "factor_lookup";
    case operation_type::llm_inference: return "llm_inference";
    case operation_type::erp_api_call: return "erp_api_call";
    case operation_type::database_query: return "database_query";
    case operation_type::report_generation: return "report_generation";
    case operation_type::external_api: return "external_api";
  }
  return "unknown";
}

/// The seed's default timeout of an operation type.
constexpr duration default_timeout(operation_type op) noexcept {
  using std::chrono::seconds;
  switch (op) {
    case operation_type::factor_lookup: return seconds{5};
    case operation_type::llm_inference: return seconds{30};
    case operation_type::erp_api_call: return seconds{10};
    case operation_type::database_query: return seconds{10};
    case operation_type::report_generation: return seconds{60};
    case operation_type::external_api: return seconds{10};
  }
  return seconds{10};
}

/// Where the code runs; presets relax limits for development.
enum class environment : std::uint8_t {
  development,  ///< fewer, shorter retries; doubled timeouts; 100 req/s; breakers open after 10 failures
  production,   ///< the seed's production numbers, with jitter
};

/// "development" or "production".
constexpr std::string_view to_string(environment e) noexcept {
  return e == environment::development ? "development" : "production";
}

namespace presets {

/// What replaces a failed call's result.
enum class fallback_kind : std::uint8_t {
  none,           ///< nothing: the failure reaches the caller
  cached,         ///< the last good result for the same arguments (a result_cache)
  default_value,  ///< a fixed value chosen by the caller
};

/// "none", "cached" or "default_value".
constexpr std::string_view to_string(fallback_kind k) noexcept {
  switch (k) {
    case fallback_kind::none: return "none";
    case fallback_kind::cached: return "cached";
    case fallback_kind::default_value: return "default_value";
  }
  return "unknown";
}

/// The recommended settings of one operation type in one environment.
struct settings {
  operation_type operation = operation_type::external_api;  ///< what they are for
  environment env = environment::production;                ///< where
  std::string_view name{};                 ///< the dependency's name: breaker, rate-limiter key and degradation service
  int max_retries = 3;                     ///< retries after the first attempt
  duration base_delay{};                   ///< first retry delay; later ones double (exponential backoff)
  jitter_mode jitter = jitter_mode::none;  ///< spread of the delays
  duration timeout{};                      ///< limit of each attempt
  fallback_kind fallback = fallback_kind::none;  ///< what replaces a failure
  double requests_per_second = 0;                ///< rate limit; 0 = not rate limited
  std::int64_t burst_size = 0;                   ///< permits available at once; 0 when not rate limited
  int fail_max = 5;                              ///< consecutive failures that open the breaker
  duration break_duration{};                     ///< how long the breaker stays open before a trial

  /// True when the operation is rate limited.
  constexpr bool rate_limited() const noexcept { return requests_per_second > 0; }
};

/// The dependency an operation type talks to ("factor_api", "llm_api",
/// "erp_api", "database", "report_generator", "external_api"): the names
/// degradation_manager registers by default, where they exist.
constexpr std::string_view dependency_name(operation_type op) noexcept {
  switch (op) {
    case operation_type::factor_lookup: return "factor_api";
    case operation_type::llm_inference: return "llm_api";
    case operation_type::erp_api_call: return "erp_api";
    case operation_type::database_query: return "database";
    case operation_type::report_generation: return "report_generator";
    case operation_type::external_api: return "external_api";
  }
  return "external_api";
}

/// The seed's settings for `op` in `env`.
constexpr settings get(operation_type op, environment env) noexcept {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  settings s;
  s.operation = op;
  s.env = env;
  s.name = dependency_name(op);
  s.timeout = default_timeout(op);
  s.break_duration = seconds{60};
  double rate = 0;
  switch (op) {
    case operation_type::factor_lookup:
      s.max_retries = 3;
      s.fallback = fallback_kind::cached;
      rate = 10;
      break;
    case operation_type::llm_inference:
      s.max_retries = 2;
      s.fallback = fallback_kind::cached;
      rate = 5;
      break;
    case operation_type::erp_api_call:
      s.max_retries = 5;
      s.fallback = fallback_kind::cached;
      rate = 5;
      break;
    case operation_type::database_query: s.max_retries = 3; break;
    case operation_type::report_generation:
      s.max_retries = 2;
      s.fallback = fallback_kind::default_value;
      break;
    case operation_type::external_api: s.max_retries = 3; break;
  }
  if (env == environment::production) {
    s.base_delay = seconds{1};
    s.jitter = jitter_mode::full;
    s.fail_max = 5;
  } else {
    s.max_retries = 2;
    s.base_delay = milliseconds{500};
    s.jitter = jitter_mode::none;
    s.timeout *= 2;
    s.fail_max = 10;
    if (rate > 0) rate = 100;
  }
  s.requests_per_second = rate;
  s.burst_size = static_cast<std::int64_t>(rate * 2);
  return s;
}

/// Every operation type, in declaration order (for tables and loops).
inline constexpr std::array<operation_type, 6> operation_types{
    operation_type::factor_lookup,  operation_type::llm_inference,     operation_type::erp_api_call,
    operation_type::database_query, operation_type::report_generation, operation_type::external_api};

/// Retry options from a preset: exponential backoff; retries user
/// exceptions, timeouts, rate-limit and bulkhead rejections, but not an open
/// breaker (its break is far longer than any retry delay: the fallback
/// answers at once instead) nor a degraded tier or a cancellation.
inline retry_options retry_settings(const settings& s) {
  return retry_options{
      .max_retries = s.max_retries,
      .base_delay = s.base_delay,
      .strategy = backoff_strategy::exponential,
      .jitter = s.jitter,
      .handle = failures::exceptions() | failures::rejections({timeout_kind, rate_limited_kind, bulkhead_full_kind})};
}

/// Timeout options from a preset (named after the dependency).
inline timeout_options timeout_settings(const settings& s) {
  return timeout_options{.limit = s.timeout, .name = std::string{s.name}};
}

/// Circuit-breaker options from a preset, on clock `clk`.
inline circuit_breaker_options breaker_settings(const settings& s, clock_ref clk = {}) {
  return circuit_breaker_options{
      .name = std::string{s.name}, .clock = std::move(clk), .fail_max = s.fail_max, .break_duration = s.break_duration};
}

/// Rate-limit configuration from a preset (precondition: s.rate_limited()).
inline limiter_options rate_limit_settings(const settings& s) {
  return limiter_options{.requests_per_second = s.requests_per_second, .burst_size = s.burst_size};
}

/// Where make() finds the shared breakers and rate limiters, and the clock
/// of its calls. The defaults are the process-wide registries and the steady
/// clock; tests pass their own. A rate_limiter keeps the clock it was built
/// with, so give a manual-clock test a rate_limiter on the same clock.
struct sources {
  circuit_breaker_registry* breakers = nullptr;  ///< default: global_circuit_breakers()
  rate_limiter* limits = nullptr;                ///< default: global_rate_limiter()
  clock_ref clock{};                             ///< the calls' clock, and the clock of breakers make() creates
};

namespace detail {

template <class T>
struct fallback_source_kind {
  static constexpr fallback_kind value = fallback_kind::default_value;  // a plain value becomes default_value
  static constexpr bool strategy = false;
};
template <class K, class T, class H, class E>
struct fallback_source_kind<result_cache<K, T, H, E>> {
  static constexpr fallback_kind value = fallback_kind::cached;
  static constexpr bool strategy = false;
};
template <class C, class K>
struct fallback_source_kind<cached<C, K>> {
  static constexpr fallback_kind value = fallback_kind::cached;
  static constexpr bool strategy = true;
};
template <class V>
struct fallback_source_kind<default_value<V>> {
  static constexpr fallback_kind value = fallback_kind::default_value;
  static constexpr bool strategy = true;
};

template <class Source>
auto to_strategy(Source&& source) {
  using S = std::remove_cvref_t<Source>;
  if constexpr (fallback_source_kind<S>::strategy) return S{std::forward<Source>(source)};
  else if constexpr (fallback_source_kind<S>::value == fallback_kind::cached)
    return cached<S>{std::forward<Source>(source)};
  else return default_value<S>{std::forward<Source>(source)};
}

// Runs a policy when there is one; passes the call straight through when
// not (database queries have no rate limit, so their pipeline still has the
// same type as the others).
template <class P>
class optional_policy {
 public:
  optional_policy() = default;
  explicit optional_policy(P p) : p_{std::move(p)} {}

  template <class Next, class Call>
  auto execute(call_context& ctx, Next&& next, const Call& call) const {
    if (!p_) return next(ctx);
    if constexpr (requires { p_->execute(ctx, next, call); }) return p_->execute(ctx, next, call);
    else return p_->execute(ctx, next);
  }

  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    return p_ ? p_->execute(ctx, next) : next(ctx);
  }

  /// The policy, if any.
  const std::optional<P>& get() const noexcept { return p_; }

 private:
  std::optional<P> p_;
};

inline settings checked(const settings& s, fallback_kind given) {
  if (s.fallback != fallback_kind::none && given != s.fallback)
    throw std::invalid_argument{"presets::make: " + std::string{to_string(s.operation)} + " falls back to " +
                                std::string{presets::to_string(s.fallback)} +
                                (s.fallback == fallback_kind::cached
                                     ? " results; pass a result_cache or a cached strategy"
                                     : "; pass the default value")};
  return s;
}

template <class F, class... Fallback>
auto build(const settings& s, F&& fn, const sources& src, Fallback&&... fb) {
  auto& breakers = src.breakers ? *src.breakers : global_circuit_breakers();
  auto& limits = src.limits ? *src.limits : global_rate_limiter();
  auto breaker = breakers.get_or_create(s.name, breaker_settings(s, src.clock));
  optional_policy<rate_limit> limit;
  if (s.rate_limited()) {
    // Somebody may have set this key's limit already: theirs wins.
    if (!limits.configured(s.name)) limits.configure(s.name, rate_limit_settings(s));
    limit = optional_policy<rate_limit>{rate_limit{limits, s.name}};
  }
  return resilient{std::forward<F>(fn), std::forward<Fallback>(fb)..., retry{retry_settings(s)}, std::move(breaker),
                   std::move(limit),    timeout{timeout_settings(s)}}
      .with_clock(src.clock)
      .with_operation(std::string{to_string(s.operation)});
}

}  // namespace detail

/// Builds the preset pipeline for an operation without a fallback:
/// resilient{fn, retry, circuit_breaker, rate_limit, timeout}, outermost
/// first (each attempt is timed out, rate limited and counted by the
/// breaker). The breaker is the registry's breaker named
/// dependency_name(op) (created from the preset on first use) and the rate
/// limit is that key of the rate_limiter (configured from the preset unless
/// it is already configured), so every pipeline for one dependency shares
/// them. As with any timeout, a callable taking a std::stop_token first runs
/// inline and is asked to stop at the limit; any other callable runs on the
/// executor while the caller waits (timeout_mode::automatic). Throws
/// std::invalid_argument when the preset asks for a fallback (pass its
/// source with the other overload).
template <class F>
auto make(operation_type op, environment env, F fn, const sources& src = {}) {
  return detail::build(detail::checked(get(op, env), fallback_kind::none), std::move(fn), src);
}

/// As above, with a fallback outermost: resilient{fn, fallback, retry,
/// circuit_breaker, rate_limit, timeout}. `fallback_source` is a
/// result_cache (cached results), a cached{...} or default_value{...}
/// strategy, or a plain value (the default value). Throws
/// std::invalid_argument when it is not the kind the preset names.
template <class F, class Source>
requires(!std::is_same_v<std::remove_cvref_t<Source>, sources>) auto make(operation_type op, environment env, F fn,
                                                                          Source fallback_source,
                                                                          const sources& src = {}) {
  const settings s = detail::checked(get(op, env), detail::fallback_source_kind<std::remove_cvref_t<Source>>::value);
  return detail::build(s, std::move(fn), src, fallback{detail::to_strategy(std::move(fallback_source))});
}

}  // namespace presets
}  // namespace v1
}  // namespace resilience
