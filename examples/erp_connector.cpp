// The seed's Example 3: an intake agent pulling purchase orders from an ERP
// system, with 5 retries (2 s, 4 s, 8 s...), a 10 s timeout per attempt, the
// last good page as a fallback, and the process's named rate limits: each
// request takes a permit of "erp_api" (5 requests/s, burst 10) with
// check_limit(), whose refusal the retry waits out. The ERP is simulated and
// scripted; time is virtual (a sleep jumps the clock), so the story is the
// same every run and takes no real time.
#include <resilience/cache.hpp>
#include <resilience/fallback.hpp>
#include <resilience/presets.hpp>
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

// The process's named rate limits, as resilience::global_rate_limiter() is, but
// on this story's virtual clock (the library's registry runs on the steady
// clock, which barely moves while virtual minutes pass).
resilience::rate_limiter& global_rate_limiter() {
  static resilience::rate_limiter registry{virtual_time};
  return registry;
}

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

// The seed's fetch_procurement_data: a permit of "erp_api" first, or a
// refusal (rate_limit_exceeded, which says when a permit will be free), then
// the request.
std::string fetch_purchase_orders(std::stop_token stop, int page) {
  global_rate_limiter().check_limit("erp_api");
  ++requests;
  auto& steps = script[page];
  const erp next = steps.empty() ? erp::ok : steps.front();
  if (!steps.empty()) steps.pop_front();
  std::printf("[t=%6.2fs]   GET /purchase-orders?page=%d -> ", now_s(), page);
  switch (next) {
    case erp::ok: std::printf("200\n"); return "page " + std::to_string(page) + ": 50 purchase orders";
    case erp::unavailable: std::printf("503\n"); throw erp_unavailable{"ERP: HTTP 503"};
    case erp::throttled: {
      const char* header = "7";  // the Retry-After header: delta-seconds, so the date passed below is unused
      std::printf("429, Retry-After: %s\n", header);
      throw erp_throttled{"ERP: HTTP 429",
                          resilience::parse_retry_after(header, std::chrono::system_clock::time_point{})};
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
  auto& limits = global_rate_limiter();
  limits.configure("erp_api",
                   {.requests_per_second = 5, .burst_size = 10, .count_grants = true});  // printed at the end
  resilience::result_cache<int, std::string> last_good{{.ttl = 15min, .clock = virtual_time}};

  resilience::resilient fetch{
      fetch_purchase_orders,
      resilience::fallback{resilience::cached{last_good},
                           {.on_activated =
                                [](const resilience::fallback_info& i) {
                                  std::printf("             fallback: last good page, %s old\n",
                                              resilience::format_duration(*i.age).c_str());
                                }}},
      resilience::retry{{.max_retries = 5,
                         .base_delay = 2s,
                         .on_retry =
                             [](int attempt, resilience::duration delay, const resilience::failure& f) {
                               std::printf("             attempt %d failed (%s); retry in %s\n", attempt,
                                           f.what().c_str(), resilience::format_duration(delay).c_str());
                             }}},
      resilience::timeout{resilience::operation_type::erp_api_call}};  // 10 s per attempt
  fetch.with_clock(virtual_time);

  std::printf("[t=%6.2fs] 1. pulling 14 pages as fast as possible: a burst of 10, then check_limit refuses\n", now_s());
  for (int page = 1; page <= 14; ++page) (void)fetch(page);
  std::printf("             %d requests\n", requests);

  virtual_time.advance(60s);
  std::printf("[t=%6.2fs] 2. page 7 again, while the ERP is down\n", now_s());
  script[7] = {erp::unavailable, erp::unavailable, erp::unavailable,
               erp::unavailable, erp::unavailable, erp::unavailable};
  std::printf("             => %s\n", fetch(7).c_str());

  std::printf("[t=%6.2fs] 3. page 15: throttled with Retry-After\n", now_s());
  script[15] = {erp::throttled};
  std::printf("             => %s\n", fetch(15).c_str());

  std::printf("[t=%6.2fs] 4. page 16: the first request hangs\n", now_s());
  script[16] = {erp::hang};
  std::printf("             => %s\n", fetch(16).c_str());

  std::printf("[t=%6.2fs] 5. page 17 was never fetched and the ERP stays down\n", now_s());
  script[17] = {erp::unavailable, erp::unavailable, erp::unavailable,
                erp::unavailable, erp::unavailable, erp::unavailable};
  auto r = fetch.try_call(17);
  std::printf("             => failed: %s\n", r.what().c_str());

  const auto stats = limits.stats("erp_api");
  std::printf("[t=%6.2fs] rate limiter: %llu permits granted, %llu refused\n", now_s(),
              static_cast<unsigned long long>(stats.allowed), static_cast<unsigned long long>(stats.rejected));
  return r.has_exception() ? 0 : 1;
}
