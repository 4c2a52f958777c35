// resilience/retry_after.hpp: the HTTP Retry-After parser (RFC 9110
// §10.2.3), shared by retry (a failure's retry_after hint) and rate limiting
// (adaptive_rate::on_throttled).
//
//   std::optional<resilience::duration> wait = resilience::parse_retry_after(header, std::chrono::system_clock::now());
//
// Standard headers only, and no clock.hpp: the wait is std::chrono::nanoseconds,
// the same type as resilience::duration, so a header that only parses
// Retry-After stays cheap to compile.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace resilience {
inline namespace v1 {

/// The largest wait parse_retry_after accepts: 24 hours. A longer one is
/// taken for a server bug (or a date meant for another clock), not advice.
inline constexpr std::chrono::nanoseconds max_retry_after = std::chrono::hours{24};

namespace detail {

// Reads fixed-format text left to right; any mismatch poisons it for good.
class date_cursor {
 public:
  explicit date_cursor(std::string_view text) noexcept : rest_{text} {}

  void literal(std::string_view s) noexcept {
    if (ok_ && rest_.substr(0, s.size()) == s) rest_.remove_prefix(s.size());
    else ok_ = false;
  }
  // Exactly n decimal digits.
  int digits(std::size_t n) noexcept {
    if (!ok_ || rest_.size() < n) return fail();
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (rest_[i] < '0' || rest_[i] > '9') return fail();
      v = v * 10 + (rest_[i] - '0');
    }
    rest_.remove_prefix(n);
    return v;
  }
  // The index of the name the text starts with (names are case-sensitive).
  template <std::size_t N>
  int one_of(const std::string_view (&names)[N]) noexcept {
    for (std::size_t i = 0; ok_ && i < N; ++i) {
      if (rest_.substr(0, names[i].size()) == names[i]) {
        rest_.remove_prefix(names[i].size());
        return static_cast<int>(i);
      }
    }
    return fail();
  }
  char peek() const noexcept { return ok_ && !rest_.empty() ? rest_.front() : '\0'; }
  // True when everything matched and nothing is left.
  bool done() const noexcept { return ok_ && rest_.empty(); }

 private:
  int fail() noexcept {
    ok_ = false;
    return -1;
  }
  std::string_view rest_;
  bool ok_ = true;
};

inline constexpr std::string_view short_days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
inline constexpr std::string_view long_days[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                 "Thursday", "Friday", "Saturday"};
inline constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct http_date {
  int weekday = -1, day = -1, month = -1, year = -1, hour = -1, minute = -1, second = -1;
};

inline void read_time_of_day(date_cursor& c, http_date& d) noexcept {
  d.hour = c.digits(2);
  c.literal(":");
  d.minute = c.digits(2);
  c.literal(":");
  d.second = c.digits(2);
}

// The three HTTP-date forms of RFC 9110 §5.6.7; nullopt unless one matches exactly.
inline std::optional<http_date> read_http_date(std::string_view text, std::chrono::year this_year) noexcept {
  {  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    date_cursor c{text};
    http_date d;
    d.weekday = c.one_of(short_days);
    c.literal(", ");
    d.day = c.digits(2);
    c.literal(" ");
    d.month = c.one_of(months);
    c.literal(" ");
    d.year = c.digits(4);
    c.literal(" ");
    read_time_of_day(c, d);
    c.literal(" GMT");
    if (c.done()) return d;
  }
  {  // obsolete RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    date_cursor c{text};
    http_date d;
    d.weekday = c.one_of(long_days);
    c.literal(", ");
    d.day = c.digits(2);
    c.literal("-");
    d.month = c.one_of(months);
    c.literal("-");
    const int yy = c.digits(2);
    c.literal(" ");
    read_time_of_day(c, d);
    c.literal(" GMT");
    if (c.done()) {
      // RFC 9110: a two-digit year more than 50 years ahead is in the past
      // century; so the year is the one within (now - 50, now + 50].
      const int now = static_cast<int>(this_year);
      d.year = now - now % 100 + yy;
      if (d.year > now + 50) d.year -= 100;
      if (d.year <= now - 50) d.year += 100;
      return d;
    }
  }
  {  // obsolete asctime: "Sun Nov  6 08:49:37 1994"
    date_cursor c{text};
    http_date d;
    d.weekday = c.one_of(short_days);
    c.literal(" ");
    d.month = c.one_of(months);
    c.literal(" ");
    if (c.peek() == ' ') {
      c.literal(" ");
      d.day = c.digits(1);
    } else {
      d.day = c.digits(2);
    }
    c.literal(" ");
    read_time_of_day(c, d);
    c.literal(" ");
    d.year = c.digits(4);
    if (c.done()) return d;
  }
  return std::nullopt;
}

}  // namespace detail

/// Parses an HTTP Retry-After value (RFC 9110 §10.2.3) relative to `now`:
/// delta-seconds ("120") or an HTTP-date — the IMF-fixdate
/// "Sun, 06 Nov 1994 08:49:37 GMT", or the obsolete forms every recipient
/// must still accept, "Sunday, 06-Nov-94 08:49:37 GMT" and
/// "Sun Nov  6 08:49:37 1994" — with names case-sensitive and the weekday
/// matching the date. Returns nothing for anything malformed, for a date in
/// the past, or for a wait longer than max_retry_after. Never throws.
inline std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view text,
                                                                 std::chrono::system_clock::time_point now) noexcept {
  using namespace std::chrono;
  using duration = nanoseconds;
  auto is_ows = [](char c) { return c == ' ' || c == '\t'; };
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  if (text.empty()) return std::nullopt;

  if (text.front() >= '0' && text.front() <= '9') {
    std::int64_t secs = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return std::nullopt;
      secs = secs * 10 + (c - '0');
      if (seconds{secs} > max_retry_after) return std::nullopt;  // stops before any overflow
    }
    return seconds{secs};
  }

  const auto now_s = floor<seconds>(now);
  const auto d = detail::read_http_date(text, year_month_day{floor<days>(now_s)}.year());
  if (!d || d->hour > 23 || d->minute > 59 || d->second > 60) return std::nullopt;  // 60: a leap second
  const year_month_day date{std::chrono::year{d->year}, std::chrono::month{static_cast<unsigned>(d->month + 1)},
                            std::chrono::day{static_cast<unsigned>(d->day)}};
  if (!date.ok()) return std::nullopt;
  const sys_days midnight{date};
  if (std::chrono::weekday{midnight}.c_encoding() != static_cast<unsigned>(d->weekday)) return std::nullopt;
  const sys_seconds when = midnight + hours{d->hour} + minutes{d->minute} + seconds{d->second};
  // Compare in whole seconds first: a year-9999 date in nanoseconds would overflow.
  if (when < now_s || when - now_s > ceil<seconds>(max_retry_after) + seconds{1}) return std::nullopt;
  const duration wait = duration_cast<duration>(when - now_s) - duration_cast<duration>(now - now_s);
  if (wait < duration::zero() || wait > max_retry_after) return std::nullopt;
  return wait;
}

}  // namespace v1
}  // namespace resilience
