// Drives every policy through the scenarios a Scope 3 platform sees (a
// failing ERP API, a throttled factor API, a slow LLM, a database outage)
// on virtual time, then prints the metrics text on stdout. ctest pipes it
// into `promtool check metrics`, which must report no problem.
// GCC 12 at -O2 reports a false -Wmaybe-uninitialized inside std::stop_source
// when timeout.hpp's cooperative path is inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/fallback.hpp>
#include <resilience/metrics.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <stop_token>
#include <string>

using namespace resilience;
using namespace std::chrono_literals;

int main() {
  manual_clock clk;
  rate_limiter limits{clk};
  degradation_manager health{{.clock = clk}};
  metrics_registry metrics;  // counts global_events(): every policy below
  metrics.watch(global_circuit_breakers());
  metrics.watch(limits);
  metrics.watch(health);

  // Circuit breaker: the ERP API fails twice, the breaker opens and rejects,
  // then a trial after the break closes it again.
  auto erp = global_circuit_breakers().get_or_create("erp_api", {.clock = clk, .fail_max = 2, .break_duration = 60s});
  metrics.watch(erp, call_durations::always);  // watched now, so its call durations count from the first call
  auto pull_orders = [&](bool fail) -> int {
    clk.advance(fail ? 10s : 120ms);
    if (fail) throw std::runtime_error{"ERP 502"};
    return 42;
  };
  (void)erp.try_call(pull_orders, false);
  (void)erp.try_call(pull_orders, true);
  (void)erp.try_call(pull_orders, true);
  (void)erp.try_call(pull_orders, false);  // rejected
  clk.advance(60s);
  (void)erp.try_call(pull_orders, false);  // trial: closes

  // A breaker name with every character the format escapes.
  auto odd = global_circuit_breakers().get_or_create("sap \"prod\"\\eu\nwest", {.clock = clk, .fail_max = 1});
  (void)odd.try_call([]() -> int { throw std::runtime_error{"down"}; });
  // Names that are not valid UTF-8 (a byte 0xff, an overlong form, a
  // surrogate, a truncated sequence): promtool rejected the whole scrape.
  auto latin1 =
      global_circuit_breakers().get_or_create("caf\xe9 \xc0\xaf \xed\xa0\x80 \xe2\x82", {.clock = clk, .fail_max = 1});
  (void)latin1.try_call([]() -> int { throw std::runtime_error{"down"}; });

  // Rate limiting: the factor API allows bursts of 3, per tenant too.
  limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 3});
  limits.configure("llm_api", {.requests_per_second = 5, .burst_size = 5});
  auto lookup = resilient{[] { return 0.233; }, rate_limit{limits, "factor_api"}};
  for (int i = 0; i < 5; ++i) (void)lookup.try_call();
  for (int i = 0; i < 2; ++i) (void)lookup.try_call_with({.tenant = "acme"});
  (void)limits.try_acquire("llm_api");

  // Timeout: the LLM takes 31 s of a 30 s budget.
  auto explain = resilient{[&](std::stop_token) {
                             clk.advance(31s);
                             return std::string{"because"};
                           },
                           timeout{{.limit = 30s, .mode = timeout_mode::cooperative}}}
                     .with_clock(clk);
  (void)explain.try_call_with({.operation = "llm_inference"});

  // Fallback: the report falls back to a default when the database fails.
  auto report = resilient{[]() -> std::string { throw std::runtime_error{"database unavailable"}; },
                          fallback{default_value{std::string{"report queued"}}}};
  (void)report.try_call_with({.operation = "report_generation"});
  (void)report.try_call_with({.operation = "report\xff"});

  // Bulkhead: one report at a time; a second one is refused while the first runs.
  bulkhead reports{{.name = "report_generator", .max_concurrent_calls = 1}};
  metrics.watch(reports);
  auto render_report = resilient{[] { return std::string{"scope3.pdf"}; }, reports};
  {
    auto running = reports.try_acquire();
    (void)render_report.try_call_with({.operation = "report_generation"});  // refused
  }
  (void)render_report.try_call_with({.operation = "report_generation"});  // runs

  // Degradation: the LLM is slow (tier core), then the database goes down.
  health.update_health("llm_api", false, 31s, "inference timed out");
  health.update_health("database", false, 0s, "connection refused");

  const std::string text = metrics.render();
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
