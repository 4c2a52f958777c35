// resilience/errors.hpp: the exceptions the library throws at its API edge.
//
// Inside a pipeline a rejection travels as a value (see outcome.hpp); only
// operator() turns it into one of these. All rejections share one base:
//
//   try { fetch("electricity"); }
//   catch (const resilience::circuit_open_error& e) { use_cache(e.retry_after()); }  // circuit_breaker.hpp
//   catch (const resilience::rejected_error& e) { log(e.kind().name(), e.source(), e.what()); }
//
// Each policy's own exception type and rejection kind live in its header.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

class rejection_kind;  // outcome.hpp: what kind of refusal a rejection is

/// Base of every exception the library itself throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Base of every policy rejection: the policy refused or abandoned the call.
/// Each policy derives its own type (circuit_open_error in circuit_breaker.hpp...).
class rejected_error : public error {
 public:
  rejected_error(const rejection_kind& kind, std::string source, duration retry_after, const std::string& message)
      : error{message}, kind_{&kind}, source_{std::move(source)}, retry_after_{retry_after} {}

  /// Which kind of rejection this is (compare with `== resilience::circuit_open_kind`).
  const rejection_kind& kind() const noexcept { return *kind_; }
  /// The name of the policy instance that rejected (a breaker's name, a limiter key...).
  const std::string& source() const noexcept { return source_; }
  /// How long to wait before a new attempt may succeed; zero when unknown.
  duration retry_after() const noexcept { return retry_after_; }

 private:
  const rejection_kind* kind_;
  std::string source_;
  duration retry_after_;
};

/// A duration as a person reads it, for messages: three significant digits
/// below a minute ("850 ns", "12.5 us", "200 ms", "59.4 s"), then whole
/// units ("10 min 12 s", "2 h 5 min", "3 d 4 h"). Exact values stay in the
/// exceptions' fields (retry_after(), limit()).
inline std::string format_duration(duration d) {
  using u64 = unsigned long long;
  if (d == duration::zero()) return "0 s";
  const bool negative = d < duration::zero();
  // |d| as unsigned: duration::min() has no positive counterpart in rep.
  const u64 ns = negative ? u64{0} - static_cast<u64>(d.count()) : static_cast<u64>(d.count());
  const char* sign = negative ? "-" : "";
  char text[48];
  struct unit {
    u64 ns;
    const char* name;
  };
  static constexpr unit small[] = {{1, "ns"}, {1'000, "us"}, {1'000'000, "ms"}, {1'000'000'000, "s"}};
  for (const unit& u : small) {
    const double v = static_cast<double>(ns) / static_cast<double>(u.ns);
    // Move on where %.3g would round up to the next unit ("1e+03 ms", "60 s").
    if (v < (u.ns == 1'000'000'000 ? 59.95 : 999.5)) {
      std::snprintf(text, sizeof text, "%s%.3g %s", sign, v, u.name);
      return text;
    }
  }
  constexpr u64 second = 1'000'000'000, minute = 60 * second, hour = 60 * minute, day = 24 * hour;
  // Rounded to the smaller of two units, then split: "10 min 12 s".
  const auto two_units = [&](u64 little, u64 big, const char* little_name, const char* big_name) {
    const u64 n = ns / little + (ns % little >= little / 2 ? 1 : 0);
    std::snprintf(text, sizeof text, "%s%llu %s %llu %s", sign, n / (big / little), big_name, n % (big / little),
                  little_name);
    return std::string{text};
  };
  if (ns / second + (ns % second >= second / 2 ? 1 : 0) < 3600) return two_units(second, minute, "s", "min");
  if (ns / minute + (ns % minute >= minute / 2 ? 1 : 0) < 1440) return two_units(minute, hour, "min", "h");
  return two_units(hour, day, "h", "d");
}

namespace detail {
inline std::string seconds_text(duration d) { return format_duration(d); }
inline std::string named(std::string_view what, std::string_view name) {
  std::string s{what};
  if (!name.empty()) s.append(" '").append(name).append("'");
  return s;
}
}  // namespace detail

/// Implement this in your own exception types to carry a server's
/// Retry-After; retry then waits at least that long before the next attempt.
///
///   struct http_429 : std::runtime_error, resilience::retry_after_hint {
///     std::optional<resilience::duration> retry_after() const noexcept override { return wait; }
///   };
class retry_after_hint {
 public:
  virtual ~retry_after_hint() = default;
  /// The wait the server asked for, if it asked.
  virtual std::optional<duration> retry_after() const noexcept = 0;

 protected:
  retry_after_hint() = default;
  retry_after_hint(const retry_after_hint&) = default;
  retry_after_hint& operator=(const retry_after_hint&) = default;
};

}  // namespace v1
}  // namespace resilience
