// examples/readable.hpp: durations and failures as a person reads them, for
// the examples' printouts: "0.25 ms", "250 ms", "59.4 s", "1 min 0 s",
// "2 h 5 min".
#pragma once

#include <resilience/errors.hpp>
#include <resilience/outcome.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

namespace examples {

/// A duration rounded to what matters at its size: hundredths of a ms below
/// a millisecond, ms below a second, tenths
/// of a second below a minute, then minutes and seconds, then hours and minutes.
inline std::string readable(resilience::duration d) {
  using namespace std::chrono;
  char text[48];
  const char* sign = d < resilience::duration::zero() ? "-" : "";
  const auto ns = d < resilience::duration::zero() ? -duration_cast<nanoseconds>(d).count() : duration_cast<nanoseconds>(d).count();
  const std::int64_t ms = (ns + 500'000) / 1'000'000, tenths = (ns + 50'000'000) / 100'000'000, s = (ns + 500'000'000) / 1'000'000'000;
  if (ns < 999'500) {  // under a millisecond: a real duration, not a virtual one
    std::snprintf(text, sizeof text, "%s%.2f ms", sign, static_cast<double>(ns) / 1e6);
  } else if (ms < 1000) {
    std::snprintf(text, sizeof text, "%s%lld ms", sign, static_cast<long long>(ms));
  } else if (tenths < 600) {  // "7 s", "59.4 s"
    if (tenths % 10 == 0)
      std::snprintf(text, sizeof text, "%s%lld s", sign, static_cast<long long>(tenths / 10));
    else
      std::snprintf(text, sizeof text, "%s%lld.%lld s", sign, static_cast<long long>(tenths / 10), static_cast<long long>(tenths % 10));
  } else if (s < 3600) {
    std::snprintf(text, sizeof text, "%s%lld min %lld s", sign, static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    const std::int64_t min = (s + 30) / 60;
    std::snprintf(text, sizeof text, "%s%lld h %lld min", sign, static_cast<long long>(min / 60), static_cast<long long>(min % 60));
  }
  return text;
}

/// What a failure (a resilience::failure, a retry_failure, an outcome...)
/// says, with the durations of a timeout, an open breaker or a rate limit
/// written by readable(); the library's own messages give exact seconds, for
/// logs rather than people.
template <class Failure>
std::string explain(const Failure& f) {
  const auto named = [](std::string_view what, std::string_view name) {
    return std::string{what} + (name.empty() ? "" : " '" + std::string{name} + "'");
  };
  if (f.has_rejection()) {  // a policy's refusal, as a value
    const resilience::rejection& r = f.rejection();
    if (r.code == resilience::errc::circuit_open)
      return named("circuit breaker", r.source) + " is open; next trial in " + readable(r.retry_after);
    if (r.code == resilience::errc::timeout) return named("timeout", r.source) + ": no answer in " + readable(r.limit);
    if (r.code == resilience::errc::rate_limited)
      return named("rate limit", r.source) + " exceeded; retry after " + readable(r.retry_after);
  } else if (f.has_exception()) {  // the same refusals thrown, by check_limit() for one
    try {
      std::rethrow_exception(f.exception());
    } catch (const resilience::circuit_open_error& e) {
      return named("circuit breaker", e.source()) + " is open; next trial in " + readable(e.retry_after());
    } catch (const resilience::timeout_error& e) {
      return named("timeout", e.source()) + ": no answer in " + readable(e.limit());
    } catch (const resilience::rate_limit_exceeded& e) {
      return named("rate limit", e.key()) + " exceeded; retry after " + readable(e.retry_after());
    } catch (...) {
    }
  }
  return f.what();
}

}  // namespace examples
