// examples/readable.hpp: durations and failures as a person reads them, for
// the examples' printouts: "0.25 ms", "250 ms", "59.4 s", "1 min 0 s",
// "2 h 5 min".
#pragma once

#include <resilience/errors.hpp>
#include <resilience/outcome.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

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

/// What a failure (a resilience::failure, an outcome...) says, with the
/// durations of a timeout or an open breaker written by readable(); the
/// library's own messages give exact seconds, for logs rather than people.
template <class Failure>
std::string explain(const Failure& f) {
  if (f.has_rejection()) {
    const resilience::rejection& r = f.rejection();
    const std::string name = r.source.empty() ? std::string{} : " '" + std::string{r.source} + "'";
    if (r.code == resilience::errc::circuit_open)
      return "circuit breaker" + name + " is open; next trial in " + readable(r.retry_after);
    if (r.code == resilience::errc::timeout) return "timeout" + name + ": no answer in " + readable(r.limit);
  }
  return f.what();
}

}  // namespace examples
