// A client of an emission-factor API that honours the server's 429s.
//
// The server answers "429 Too Many Requests" with `Retry-After: 7`, then with
// an HTTP-date three seconds ahead, then 200. The client turns each 429 into
// an exception carrying the parsed wait (retry_after_hint), so retry waits at
// least that long; an adaptive_rate halves the client's own rate limit and
// holds it for the same wait, so that other callers of the key back off too.
// Everything runs on virtual time: the program finishes at once.
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
namespace rs = resilience;

namespace {

struct http_response {
  int status = 200;
  std::string retry_after;  // the Retry-After header, if any
  double factor = 0.0;      // kg CO2e per kWh, on 200
};

// An upstream 429, carrying the server's Retry-After as a hint for retry.
class too_many_requests : public std::runtime_error, public rs::retry_after_hint {
 public:
  explicit too_many_requests(std::optional<rs::duration> wait)
      : std::runtime_error{"HTTP 429 Too Many Requests"}, wait_{wait} {}
  std::optional<rs::duration> retry_after() const noexcept override { return wait_; }

 private:
  std::optional<rs::duration> wait_;
};

// RFC 9110's IMF-fixdate, for the fake server.
std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[64];
  std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return text;
}

}  // namespace

int main() {
  rs::manual_clock clock{rs::manual_clock::auto_advance};
  const auto start = clock.now();
  // The server's wall clock: a fixed date plus the virtual time elapsed.
  const auto wall_start = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};
  auto wall_now = [&] {
    return wall_start + std::chrono::duration_cast<std::chrono::system_clock::duration>(clock.now() - start);
  };
  auto elapsed = [&] { return std::chrono::duration<double>(clock.now() - start).count(); };

  int requests = 0;
  auto factor_server = [&](const std::string& activity) {
    ++requests;
    if (requests == 1) return http_response{429, "7"};
    if (requests == 2) return http_response{429, http_date(wall_now() + 3s)};
    return http_response{200, {}, activity == "electricity" ? 0.233 : 0.0};
  };

  rs::rate_limiter limits{clock};
  limits.configure("factor_api",
                   {.requests_per_second = 10, .burst_size = 10, .count_grants = true});  // printed at the end
  rs::adaptive_rate adapt{limits, "factor_api"};

  auto fetch_factor = [&](const std::string& activity) {
    const http_response r = factor_server(activity);
    if (r.status == 429) {
      const auto wait = rs::parse_retry_after(r.retry_after, wall_now());
      std::printf("t=%.0fs 429, Retry-After: %s\n", elapsed(), r.retry_after.c_str());
      adapt.on_throttled(wait);
      std::printf("factor_api limited to %.1f req/s\n", adapt.rate());
      throw too_many_requests{wait};
    }
    adapt.on_success();
    std::printf("t=%.0fs 200\n", elapsed());
    return r.factor;
  };

  rs::resilient fetch{fetch_factor,
                      rs::retry{{.max_retries = 3,
                                 .base_delay = 1s,
                                 .on_retry =
                                     [](int attempt, rs::duration delay, const rs::failure&) {
                                       std::printf("attempt %d failed; retrying in %.0fs\n", attempt,
                                                   std::chrono::duration<double>(delay).count());
                                     }}},
                      rs::rate_limit{limits, "factor_api"}};
  fetch.with_clock(clock);

  const double factor = fetch(std::string{"electricity"});
  std::printf("electricity: %.3f kg CO2e/kWh after %d requests, %.0f s\n", factor, requests, elapsed());

  const auto stats = limits.stats("factor_api");
  std::printf("factor_api: %llu allowed, %llu rejected\n", static_cast<unsigned long long>(stats.allowed),
              static_cast<unsigned long long>(stats.rejected));
  return factor == 0.233 && requests == 3 ? 0 : 1;
}
