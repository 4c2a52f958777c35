// The seed's Example 3: an intake agent pulling purchase orders from an ERP
// system, with 5 retries, a rate limit of 5 requests/s (burst 10), a 10 s
// timeout per attempt and the last good page as a fallback. The ERP is
// simulated and scripted; time is virtual (a sleep jumps the clock), so the
// story is the same every run and takes no real time.
#include <resilience/cache.hpp>
#include <resilience/fallback.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>

using namespace std::chrono_literals;

namespace {

resilience::manual_clock virtual_time{resilience::manual_clock::auto_advance};
const auto start = virtual_time.now();

double now_s() { return std::chrono::duration<double>(virtual_time.now() - start).count(); }

struct erp_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// HTTP 429 with a Retry-After header: retry waits at least that long.
struct erp_throttled : std::runtime_error, resilience::retry_after_hint {
  erp_throttled(const char* what, std::optional<resilience::duration> wait) : std::runtime_error{what}, wait_{wait} {}
  std::optional<resilience::duration> retry_after() const noexcept override { return wait_; }
  std::optional<resilience::duration> wait_;
};

// What the simulated ERP does for a page, request after request; a page
// with no script left simply answers.
enum class erp { ok, unavailable, throttled, hang };
std::map<int, std::deque<erp>> script;
int requests = 0;

std::string fetch_purchase_orders(std::stop_token stop, int page) {
  ++requests;
  auto& steps = script[page];
  const erp next = steps.empty() ? erp::ok : steps.front();
  if (!steps.empty()) steps.pop_front();
  std::printf("[t=%6.2fs]   GET /purchase-orders?page=%d -> ", now_s(), page);
  switch (next) {
    case erp::ok:
      std::printf("200\n");
      return "page " + std::to_string(page) + ": 50 purchase orders";
    case erp::unavailable:
      std::printf("503\n");
      throw erp_unavailable{"ERP: HTTP 503"};
    case erp::throttled: {
      const char* header = "7";  // the Retry-After header: delta-seconds, so the date passed below is unused
      std::printf("429, Retry-After: %s\n", header);
      throw erp_throttled{"ERP: HTTP 429", resilience::parse_retry_after(header, std::chrono::system_clock::time_point{})};
    }
    case erp::hang:
      std::printf("(no answer)\n");
      while (!stop.stop_requested()) virtual_time.sleep_until(virtual_time.now() + 1s, stop);
      throw erp_unavailable{"ERP: cancelled"};
  }
  return {};
}

}  // namespace

int main() {
  resilience::rate_limiter limits{virtual_time};
  limits.configure("erp_api", {.requests_per_second = 5, .burst_size = 10, .count_grants = true});  // printed at the end
  resilience::result_cache<int, std::string> last_good{{.ttl = 15min, .clock = virtual_time}};

  resilience::resilient fetch{
      fetch_purchase_orders,
      resilience::fallback{resilience::cached{last_good}, {.on_activated = [](const resilience::fallback_info& i) {
                             std::printf("             fallback: last good page, %.0f s old\n",
                                         std::chrono::duration<double>(*i.age).count());
                           }}},
      resilience::retry{{.max_retries = 5,
                         .base_delay = 1s,
                         .on_retry = [](int attempt, resilience::duration delay, const resilience::retry_failure& f) {
                           std::printf("             attempt %d failed (%s); retry in %.1f s\n", attempt, f.what().c_str(),
                                       std::chrono::duration<double>(delay).count());
                         }}},
      resilience::rate_limit{limits, "erp_api", {.max_wait = 5s}},  // wait for a permit rather than fail
      resilience::timeout{resilience::operation_type::erp_api_call}};  // 10 s per attempt
  fetch.with_clock(virtual_time);

  std::printf("[t=%6.2fs] 1. pulling 14 pages as fast as possible: 10 at once, then 5 per second\n", now_s());
  for (int page = 1; page <= 14; ++page) (void)fetch(page);
  std::printf("             %d requests\n", requests);

  virtual_time.advance(60s);
  std::printf("[t=%6.2fs] 2. page 7 again, while the ERP is down\n", now_s());
  script[7] = {erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable};
  std::printf("             => %s\n", fetch(7).c_str());

  std::printf("[t=%6.2fs] 3. page 15: throttled with Retry-After\n", now_s());
  script[15] = {erp::throttled};
  std::printf("             => %s\n", fetch(15).c_str());

  std::printf("[t=%6.2fs] 4. page 16: the first request hangs\n", now_s());
  script[16] = {erp::hang};
  std::printf("             => %s\n", fetch(16).c_str());

  std::printf("[t=%6.2fs] 5. page 17 was never fetched and the ERP stays down\n", now_s());
  script[17] = {erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable, erp::unavailable};
  auto r = fetch.try_call(17);
  std::printf("             => failed: %s\n", r.what().c_str());

  const auto stats = limits.stats("erp_api");
  std::printf("[t=%6.2fs] rate limiter: %llu permits granted, %llu refused\n", now_s(),
              static_cast<unsigned long long>(stats.allowed), static_cast<unsigned long long>(stats.rejected));
  return r.has_exception() ? 0 : 1;
}
