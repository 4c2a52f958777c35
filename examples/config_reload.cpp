// Configuration from a file: an ERP connector's rate limit and circuit
// breaker come from resilience.json; halfway through, operations raise the
// rate and tighten the breaker, and the file is reloaded while requests keep
// flowing. The limiter keeps its permits and the breaker its failure count;
// a later bad edit is rejected whole, every problem named, nothing applied.
// Runs on a manual clock (virtual time), so the output is exact.
#include <resilience/config.hpp>
#include <resilience/resilient.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <unistd.h>

using namespace std::chrono_literals;

namespace {

resilience::manual_clock virtual_time;

void write_file(const std::filesystem::path& path, const char* text) {
  const auto tmp = path.string() + ".tmp";
  std::ofstream{tmp} << text;
  std::filesystem::rename(tmp, path);  // a reader sees the old file or the new one, never half of one
}

// The ERP API: answers, except during an outage.
bool erp_down = false;
int fetch_purchase_orders() {
  if (erp_down) throw std::runtime_error{"502 Bad Gateway"};
  return 12;
}

// Sends a request every 100 ms of virtual time for `period`; prints what happened.
template <class Pipeline>
void traffic(Pipeline& sync_orders, resilience::duration period, const char* label) {
  int ok = 0, limited = 0, failed = 0, open = 0;
  for (auto t = 0ms; t < period; t += 100ms) {
    const auto r = sync_orders.try_call();
    if (r) ++ok;
    else if (r.has_rejection() && r.rejection().is(resilience::rate_limited_kind)) ++limited;
    else if (r.has_rejection() && r.rejection().is(resilience::circuit_open_kind)) ++open;
    else ++failed;
    virtual_time.advance(100ms);
  }
  std::printf("%-28s ok %2d  rate-limited %2d  failed %d  breaker-open %d\n", label, ok, limited, failed, open);
}

}  // namespace

int main() {
  const auto file = std::filesystem::temp_directory_path() / ("config_reload-" + std::to_string(::getpid()) + ".json");
  write_file(file, R"({
    "limiters": {"erp_api": {"requests_per_second": 5, "burst_size": 5}},
    "breakers": {"erp_api": {"fail_max": 5, "break_duration": "30s"}},
    "retries":  {"erp_api": {"max_retries": 2, "base_delay": "200ms"}}
  })");

  // [config_reload]
  resilience::rate_limiter limits{virtual_time};
  resilience::circuit_breaker_registry breakers;
  resilience::config_defaults defaults;
  defaults.breaker.clock = virtual_time;  // breakers the file creates run on this clock
  resilience::config_loader settings{file, defaults, {.limiters = &limits, .breakers = &breakers}};
  settings.reload();  // at start-up; again whenever the file changes (SIGHUP, inotify...)

  resilience::resilient sync_orders{fetch_purchase_orders, *breakers.find("erp_api"),
                                    resilience::rate_limit{limits, "erp_api"}};
  sync_orders.with_clock(virtual_time);
  // [config_reload]

  // Every reload is an event (and the config_reloads_total{result} metric).
  settings.events().subscribe([](const resilience::event& e) {
    std::printf("event %s: %s, %lld problems\n", std::string{e.name()}.c_str(),
                std::string{e.get<std::string_view>("result")}.c_str(),
                static_cast<long long>(e.get<std::int64_t>("problems")));
  });

  traffic(sync_orders, 2s, "limit 5 req/s:");
  erp_down = true;
  traffic(sync_orders, 800ms, "ERP outage begins:");
  const auto breaker = *breakers.find("erp_api");
  std::printf("breaker: failures in a row %d, fail_max %d\n", breaker.stats().consecutive_failures,
              breaker.options().fail_max);

  write_file(file, R"({
    "limiters": {"erp_api": {"requests_per_second": 20, "burst_size": 5}},
    "breakers": {"erp_api": {"fail_max": 3, "break_duration": "10s"}},
    "retries":  {"erp_api": {"max_retries": 2, "base_delay": "200ms"}}
  })");
  const double permits_before = limits.stats("erp_api").available;
  settings.reload();
  std::printf("reloaded: erp_api %.0f req/s, fail_max %d, break %.0f s (reloads: %llu)\n",
              limits.stats("erp_api").config.requests_per_second, breaker.options().fail_max,
              std::chrono::duration<double>(breaker.options().break_duration).count(),
              static_cast<unsigned long long>(settings.reloads()));
  std::printf("breaker kept its count: failures in a row %d\n", breaker.stats().consecutive_failures);
  std::printf("limiter kept its permits: %.0f before, %.0f after\n", permits_before, limits.stats("erp_api").available);

  traffic(sync_orders, 500ms, "outage, after the reload:");
  erp_down = false;
  virtual_time.advance(10s);
  traffic(sync_orders, 2s, "limit 20 req/s, recovered:");

  write_file(file, R"({
    "limiters": {"erp_api": {"requests_per_second": -1, "burst": 10}},
    "breakers": {"erp_api": {"fail_max": 0}}
  })");
  try {
    settings.reload();
  } catch (const resilience::config_error& e) {
    std::printf("%s\n", e.what());
  }
  std::printf("still in force: erp_api %.0f req/s, fail_max %d (rejected reloads: %llu)\n",
              limits.stats("erp_api").config.requests_per_second, breaker.options().fail_max,
              static_cast<unsigned long long>(settings.failures()));
  std::filesystem::remove(file);
}
