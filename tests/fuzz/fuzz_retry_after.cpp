// Fuzzes parse_retry_after (retry_after.hpp) against a reference written here
// from RFC 9110 §5.6.7 and §10.2.3 alone, sharing no code with the library:
// its own tokenizer, its own calendar (days from civil date), its own
// weekday and two-digit-year rules, and arithmetic in 128-bit integers.
// The two must agree on every input: the same wait to the nanosecond, or
// both nothing.
//
// Input: byte 0 chooses the mode, bytes 1-8 a number x, the rest is text.
//  - mode & 1 == 0: `now` comes from x (any instant from 1920 to 2200) and
//    the text is parsed as it is;
//  - mode & 1 == 1, text is a date the reference reads: `now` is placed
//    from x within a day and two seconds around that date, so that the
//    range limits (past, exactly now, 24 h, leap second) are exercised;
//  - mode & 2: the text is ignored and a valid date x seconds after `now`
//    is written in one of the three forms (mode >> 2), so the accepting
//    paths are reached at every step, not only from the corpus.
#include <resilience/retry_after.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace {

using i64 = std::int64_t;
__extension__ typedef __int128 i128;  // exact for every product below
constexpr i64 ns_per_s = 1'000'000'000;
constexpr i64 day_s = 86'400;
constexpr i64 max_wait_s = day_s;  // RFC 9110 sets no limit; the library's documented one is 24 h

// Howard Hinnant's days_from_civil / civil_from_days, written out.
i64 days_from_civil(i64 y, i64 m, i64 d) {
  y -= m <= 2;
  const i64 era = (y >= 0 ? y : y - 399) / 400;
  const i64 yoe = y - era * 400;
  const i64 doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const i64 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}
i64 year_of_days(i64 z) {
  z += 719468;
  const i64 era = (z >= 0 ? z : z - 146096) / 146097;
  const i64 doe = z - era * 146097;
  const i64 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const i64 doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const i64 mp = (5 * doy + 2) / 153;
  const i64 m = mp + (mp < 10 ? 3 : -9);
  return yoe + era * 400 + (m <= 2);
}
i64 floor_div(i64 a, i64 b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
bool leap(i64 y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
i64 month_length(i64 y, i64 m) {
  static constexpr int len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : len[m - 1];
}
// 1970-01-01 was a Thursday; 0 = Sunday.
i64 weekday_of_days(i64 days) { return ((days % 7) + 7 + 4) % 7; }

const char* const wkday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
const char* const weekday_long[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
const char* const month_name[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
// The value of s[at, at+n) when all of it is digits, else -1.
i64 number(std::string_view s, std::size_t at, std::size_t n) {
  if (at + n > s.size()) return -1;
  i64 v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (!is_digit(s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}
// Index of the name in `names` equal to s[at, at+len), else -1.
template <std::size_t N>
int name_at(std::string_view s, std::size_t at, std::size_t len, const char* const (&names)[N]) {
  if (at + len > s.size()) return -1;
  for (std::size_t i = 0; i < N; ++i)
    if (s.substr(at, len) == names[i]) return static_cast<int>(i);
  return -1;
}

struct civil {
  i64 year, month, day, hour, minute, second, weekday;
};

// The date of an HTTP-date in one of its three forms, fields unchecked.
std::optional<civil> tokenize(std::string_view s, i64 now_year) {
  civil c{};
  // IMF-fixdate, fixed width: "Sun, 06 Nov 1994 08:49:37 GMT" (29 chars).
  if (s.size() == 29 && s.substr(3, 2) == ", " && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' && s[19] == ':' &&
      s[22] == ':' && s.substr(25) == " GMT") {
    c.weekday = name_at(s, 0, 3, wkday);
    c.day = number(s, 5, 2);
    c.month = name_at(s, 8, 3, month_name) + 1;
    c.year = number(s, 12, 4);
    c.hour = number(s, 17, 2), c.minute = number(s, 20, 2), c.second = number(s, 23, 2);
    if (c.weekday >= 0 && c.day >= 0 && c.month >= 1 && c.year >= 0 && c.hour >= 0 && c.minute >= 0 && c.second >= 0)
      return c;
    return std::nullopt;
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; the weekday's length varies.
  if (const auto comma = s.find(','); comma != std::string_view::npos && comma >= 6) {
    const std::string_view rest = s.substr(comma);  // ", 06-Nov-94 08:49:37 GMT" (24 chars)
    c.weekday = name_at(s, 0, comma, weekday_long);
    if (c.weekday >= 0 && rest.size() == 24 && rest.substr(0, 2) == ", " && rest[4] == '-' && rest[8] == '-' &&
        rest[11] == ' ' && rest[14] == ':' && rest[17] == ':' && rest.substr(20) == " GMT") {
      c.day = number(rest, 2, 2);
      c.month = name_at(rest, 5, 3, month_name) + 1;
      const i64 yy = number(rest, 9, 2);
      c.hour = number(rest, 12, 2), c.minute = number(rest, 15, 2), c.second = number(rest, 18, 2);
      if (c.day < 0 || c.month < 1 || yy < 0 || c.hour < 0 || c.minute < 0 || c.second < 0) return std::nullopt;
      // §5.6.7: a two-digit year that looks more than 50 years in the
      // future is the most recent past year with those digits.
      for (i64 century = now_year / 100 - 1; century <= now_year / 100 + 1; ++century) {
        const i64 y = century * 100 + yy;
        if (y > now_year - 50 && y <= now_year + 50) c.year = y;
      }
      return c;
    }
    return std::nullopt;
  }
  // asctime: "Sun Nov  6 08:49:37 1994" (24 chars), the day as 2DIGIT or SP DIGIT.
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[13] == ':' && s[16] == ':' && s[19] == ' ') {
    c.weekday = name_at(s, 0, 3, wkday);
    c.month = name_at(s, 4, 3, month_name) + 1;
    c.day = s[8] == ' ' ? number(s, 9, 1) : number(s, 8, 2);
    c.hour = number(s, 11, 2), c.minute = number(s, 14, 2), c.second = number(s, 17, 2);
    c.year = number(s, 20, 4);
    if (c.weekday >= 0 && c.month >= 1 && c.day >= 0 && c.hour >= 0 && c.minute >= 0 && c.second >= 0 && c.year >= 0)
      return c;
  }
  return std::nullopt;
}

// Seconds since the epoch of a valid HTTP-date, or nothing. Unchecked, it
// reads any date of the right shape (an hour 99, a wrong weekday...): the
// fuzzer places `now` near it so that the library's checks are the ones
// that decide, not this function's.
std::optional<i64> date_seconds(std::string_view s, i64 now_s, bool checked = true) {
  const auto c = tokenize(s, year_of_days(floor_div(now_s, day_s)));
  if (!c || c->month > 12) return std::nullopt;
  const i64 days = days_from_civil(c->year, c->month, c->day);
  if (checked) {
    if (c->day < 1 || c->day > month_length(c->year, c->month)) return std::nullopt;
    if (c->hour > 23 || c->minute > 59 || c->second > 60)
      return std::nullopt;  // 60: a leap second, as the library allows
    if (weekday_of_days(days) != c->weekday) return std::nullopt;
  }
  return days * day_s + c->hour * 3600 + c->minute * 60 + c->second;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The reference: the wait in nanoseconds, or nothing.
std::optional<i64> reference(std::string_view text, i64 now_ns) {
  const std::string_view s = trim(text);
  if (s.empty()) return std::nullopt;
  if (is_digit(s.front())) {  // delta-seconds = 1*DIGIT, leading zeros allowed
    for (char ch : s)
      if (!is_digit(ch)) return std::nullopt;
    const std::string_view significant = s.substr(std::min(s.find_first_not_of('0'), s.size()));
    if (significant.size() > 6) return std::nullopt;  // a million seconds or more
    const i64 v = significant.empty() ? 0 : number(significant, 0, significant.size());
    if (v > max_wait_s) return std::nullopt;
    return v * ns_per_s;
  }
  const auto when = date_seconds(s, floor_div(now_ns, ns_per_s));
  if (!when) return std::nullopt;
  const i128 wait = static_cast<i128>(*when) * ns_per_s - now_ns;
  if (wait < 0 || wait > static_cast<i128>(max_wait_s) * ns_per_s) return std::nullopt;
  return static_cast<i64>(wait);
}

// Writes the date at `when_s` in one of the three forms.
std::string format(i64 when_s, int form) {
  const i64 days = floor_div(when_s, day_s), secs = when_s - days * day_s;
  // civil date of `days`
  i64 y = year_of_days(days), m = 1;
  i64 d = days - days_from_civil(y, 1, 1) + 1;
  while (d > month_length(y, m)) d -= month_length(y, m++);
  const i64 wd = weekday_of_days(days), hh = secs / 3600, mm = secs / 60 % 60, ss = secs % 60;
  char buf[64];
  switch (form) {
    case 0:
      std::snprintf(buf, sizeof buf, "%s, %02lld %s %04lld %02lld:%02lld:%02lld GMT", wkday[wd],
                    static_cast<long long>(d), month_name[m - 1], static_cast<long long>(y), static_cast<long long>(hh),
                    static_cast<long long>(mm), static_cast<long long>(ss));
      break;
    case 1:
      std::snprintf(buf, sizeof buf, "%s, %02lld-%s-%02lld %02lld:%02lld:%02lld GMT", weekday_long[wd],
                    static_cast<long long>(d), month_name[m - 1], static_cast<long long>(y % 100),
                    static_cast<long long>(hh), static_cast<long long>(mm), static_cast<long long>(ss));
      break;
    default:
      std::snprintf(buf, sizeof buf, "%s %s %2lld %02lld:%02lld:%02lld %04lld", wkday[wd], month_name[m - 1],
                    static_cast<long long>(d), static_cast<long long>(hh), static_cast<long long>(mm),
                    static_cast<long long>(ss), static_cast<long long>(y));
      break;
  }
  return buf;
}

[[noreturn]] void mismatch(std::string_view text, i64 now_ns, const std::optional<std::chrono::nanoseconds>& got,
                           const std::optional<i64>& want) {
  std::fprintf(stderr, "parse_retry_after(\"%.*s\", now = %lld ns): library %s%lld, reference %s%lld\n",
               static_cast<int>(text.size()), text.data(), static_cast<long long>(now_ns), got ? "" : "nothing ",
               got ? static_cast<long long>(got->count()) : 0LL, want ? "" : "nothing ",
               want ? static_cast<long long>(*want) : 0LL);
  std::abort();
}

void check(std::string_view text, i64 now_ns) {
  const std::chrono::system_clock::time_point now{
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds{now_ns})};
  const auto got = resilience::parse_retry_after(text, now);
  const auto want = reference(text, now_ns);
  if (got.has_value() != want.has_value()) mismatch(text, now_ns, got, want);
  if (got && (got->count() != *want || *got < std::chrono::nanoseconds::zero() || *got > resilience::max_retry_after))
    mismatch(text, now_ns, got, want);
}

// 1920-01-01 and 2200-01-01 in seconds: the span fits int64 nanoseconds.
constexpr i64 first_now_s = -1'577'923'200, last_now_s = 7'258'118'400;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9) return 0;
  const std::uint8_t mode = data[0];
  std::uint64_t x = 0;
  std::memcpy(&x, data + 1, sizeof x);
  const std::string_view text{reinterpret_cast<const char*>(data + 9), size - 9};

  const i64 span_ns = (last_now_s - first_now_s) * ns_per_s;
  const i64 now_ns = first_now_s * ns_per_s + static_cast<i64>(x % static_cast<std::uint64_t>(span_ns));
  check(text, now_ns);

  if (mode & 1) {  // `now` near the date the text names, if it names one
    if (const auto when = date_seconds(trim(text), floor_div(now_ns, ns_per_s), false)) {
      const i64 offset = static_cast<i64>(x % static_cast<std::uint64_t>((day_s + 4) * ns_per_s)) - 2 * ns_per_s;
      if (*when > first_now_s && *when < last_now_s) check(text, *when * ns_per_s - offset);
    }
  }
  if (mode & 2) {  // a date the library must accept, when it is no more than 24 h ahead
    const i64 ahead_s = static_cast<i64>(x % (day_s + 4)) - 2;
    // `now` anywhere in the range (x mixed, so that it does not follow ahead_s)
    const std::uint64_t mixed = x * 0x9E3779B97F4A7C15u;
    const i64 near_now_ns =
        first_now_s * ns_per_s + static_cast<i64>(mixed % static_cast<std::uint64_t>(span_ns - 2 * day_s * ns_per_s));
    const i64 when_s = floor_div(near_now_ns, ns_per_s) + ahead_s;
    const std::string date = format(when_s, (mode >> 2) % 3);
    check(date, near_now_ns);
    const i128 expected = static_cast<i128>(when_s) * ns_per_s - near_now_ns;
    const bool in_range = expected >= 0 && expected <= static_cast<i128>(max_wait_s) * ns_per_s;
    if (reference(date, near_now_ns).has_value() != in_range) {
      std::fprintf(stderr, "reference rejects its own date \"%s\"\n", date.c_str());
      std::abort();
    }
  }
  return 0;
}
