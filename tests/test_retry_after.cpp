#include <resilience/retry_after.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

using namespace resilience;
using namespace std::chrono_literals;
using duration = std::chrono::nanoseconds;  // resilience::duration, without clock.hpp

namespace {
using sys = std::chrono::system_clock;
// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
const sys::time_point rfc_example = std::chrono::sys_days{std::chrono::year{1994} / 11 / 6} + 8h + 49min + 37s;
}  // namespace

TEST_CASE("parse_retry_after reads delta-seconds and IMF-fixdates", "[retry_after]") {
  const auto now = rfc_example - 37s;  // 08:49:00
  struct good {
    const char* text;
    sys::time_point now;
    duration expected;
  };
  const good table[] = {
      {"0", now, 0s},
      {"120", now, 120s},
      {"  120\t", now, 120s},
      {"000042", now, 42s},
      {"86400", now, 24h},
      {"Sun, 06 Nov 1994 08:49:37 GMT", now, 37s},
      {"Sun, 06 Nov 1994 08:49:37 GMT", rfc_example, 0s},
      {"Sun, 06 Nov 1994 08:49:37 GMT", rfc_example - 500ms, 500ms},
      {"Sun, 06 Nov 1994 08:49:37 GMT", rfc_example - 24h, 24h},
      {" Mon, 07 Nov 1994 08:49:37 GMT ", rfc_example, 24h},
      {"Thu, 01 Jan 2026 00:00:00 GMT", std::chrono::sys_days{std::chrono::year{2025} / 12 / 31} + 23h + 59min + 30s,
       30s},
      {"Thu, 29 Feb 2024 12:00:00 GMT", std::chrono::sys_days{std::chrono::year{2024} / 2 / 29} + 11h, 1h},
      {"Tue, 31 Dec 1996 23:59:60 GMT", std::chrono::sys_days{std::chrono::year{1996} / 12 / 31} + 23h + 59min, 60s},
      // The obsolete forms RFC 9110 still asks recipients to accept.
      {"Sunday, 06-Nov-94 08:49:37 GMT", now, 37s},
      {"Sun Nov  6 08:49:37 1994", now, 37s},
      {"Sun Nov 06 08:49:37 1994", now, 37s},
      // A two-digit year is the one within 50 years ahead, else the century before.
      {"Thursday, 01-Jan-26 00:00:00 GMT", std::chrono::sys_days{std::chrono::year{2025} / 12 / 31} + 23h + 59min + 30s,
       30s},
      {"Saturday, 01-Jan-00 00:00:00 GMT", std::chrono::sys_days{std::chrono::year{1999} / 12 / 31} + 23h + 59min + 30s,
       30s},
  };
  for (const auto& row : table) {
    INFO(row.text);
    const auto got = parse_retry_after(row.text, row.now);
    REQUIRE(got.has_value());
    CHECK(*got == row.expected);
  }
}

TEST_CASE("parse_retry_after rejects malformed, negative and absurd values", "[retry_after]") {
  const auto now = rfc_example - 37s;
  using namespace std::string_view_literals;
  const std::string_view bad[] = {
      ""sv,
      "   "sv,
      "-1"sv,
      "+5"sv,
      "1.5"sv,
      "12a"sv,
      "a12"sv,
      "5 s"sv,
      "1 2"sv,
      "0x10"sv,
      "86401"sv,                          // longer than max_retry_after
      "99999999999999999999999999999"sv,  // would overflow any integer
      "5\0"sv,                            // an embedded NUL
      "\xd9\xa1\xd9\xa2"sv,               // Arabic-Indic digits
      "Sun, 06 Nov 1994 08:48:59 GMT"sv,  // in the past
      "Mon, 06 Nov 1994 08:49:37 GMT"sv,  // wrong weekday
      "sun, 06 Nov 1994 08:49:37 GMT"sv,  // names are case-sensitive
      "Sun, 06 nov 1994 08:49:37 GMT"sv,
      "Sun, 06 Nov 1994 08:49:37 gmt"sv,
      "Sun, 06 Nov 1994 08:49:37 UTC"sv,
      "Sun, 06 Nov 1994 08:49:37"sv,       // no zone
      "Sun, 6 Nov 1994 08:49:37 GMT"sv,    // one-digit day
      "Sun, 06 Nov 94 08:49:37 GMT"sv,     // two-digit year
      "Sun,  06 Nov 1994 08:49:37 GMT"sv,  // extra space
      "Sun, 06 Nov 1994 24:00:00 GMT"sv,   // hour out of range
      "Sun, 06 Nov 1994 08:60:00 GMT"sv,   // minute out of range
      "Sun, 06 Nov 1994 08:49:61 GMT"sv,   // second out of range
      "Sun, 06 Nov 1994 8:49:37 GMT"sv,    // one-digit hour, wrong width
      "Wed, 31 Feb 1994 08:49:37 GMT"sv,   // no such day
      "Sun, 00 Nov 1994 08:49:37 GMT"sv,
      "Sun, 06 Xyz 1994 08:49:37 GMT"sv,
      "Sun, 06 Nov 1994 08:49:37 GMT trailing"sv,
      "Sun, 06 Nov 1994 08-49-37 GMT"sv,
      "Sun, 06-Nov-94 08:49:37 GMT"sv,       // RFC 850 form with a short day name
      "Monday, 06-Nov-94 08:49:37 GMT"sv,    // RFC 850 form, wrong weekday
      "Sunday, 06-Nov-1994 08:49:37 GMT"sv,  // RFC 850 form with a four-digit year
      "Sunday, 06 Nov 1994 08:49:37 GMT"sv,  // IMF-fixdate with a long day name
      "Sunday, 06-Nov-94 08:49:37"sv,        // RFC 850 form without its zone
      "Sunday, 06-Nov-50 08:49:37 GMT"sv,    // 1950: in the past
      "Sun Nov 6 08:49:37 1994"sv,           // asctime form needs two columns for the day
      "Sun Nov  6 08:49:37 94"sv,            // asctime form with a two-digit year
      "Sun Nov  6 08:49:37 1994 GMT"sv,      // asctime form has no zone
      "Sat Nov  6 08:49:37 1994"sv,          // asctime form, wrong weekday
      "Mon, 07 Nov 1994 08:49:38 GMT"sv,     // one second beyond 24 h
      "Fri, 31 Dec 9999 23:59:59 GMT"sv,     // far future: absurd, and no overflow
      "Sat, 01 Jan 0000 00:00:00 GMT"sv,     // far past
  };
  STATIC_REQUIRE(std::size(bad) >= 20);
  for (const auto text : bad) {
    INFO('"' << std::string{text} << '"');
    CHECK_FALSE(parse_retry_after(text, now).has_value());
  }
  STATIC_REQUIRE(noexcept(parse_retry_after("", now)));
}

TEST_CASE("parse_retry_after with the real system clock", "[retry_after]") {
  // [parse-retry-after]
  std::optional<duration> wait = parse_retry_after("120", std::chrono::system_clock::now());
  // [parse-retry-after]
  CHECK(wait == duration{120s});
}
