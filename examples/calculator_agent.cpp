// The seed's Example 1: a Scope 3 calculator that looks up emission factors
// over HTTP. The factor lookup is retried, timed out, guarded by a circuit
// breaker and by the degradation tier, and answered from a cache when all of
// that fails. The factor API is simulated: seeded failures (HTTP 503, slow
// answers) and a scripted outage, on virtual time, so the agent prints the
// same story every run, in a few milliseconds.
#include <resilience/cache.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/fallback.hpp>
#include <resilience/presets.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using resilience::tier;

namespace {

resilience::manual_clock virtual_time{resilience::manual_clock::auto_advance};
const auto start = virtual_time.now();

double now_s() { return std::chrono::duration<double>(virtual_time.now() - start).count(); }

struct http_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The simulated factor API: kgCO2e per unit. While flaky, a seeded
// generator decides (15% HTTP 503, 10% answers after 8 s); during an outage
// every request fails.
class factor_api {
 public:
  double fetch(std::stop_token stop, const std::string& activity) {
    ++requests;
    const auto roll = flaky ? rng_() % 100 : 99;
    if (outage || roll < 15) {
      std::printf("             GET /factors/%s -> 503\n", activity.c_str());
      throw http_error{"factor API: HTTP 503"};
    }
    const auto latency = roll < 25 ? 8s : std::chrono::milliseconds{100 + roll * 3};
    const auto done = virtual_time.now() + latency;
    while (virtual_time.now() < done && !stop.stop_requested())
      virtual_time.sleep_until(std::min(done, virtual_time.now() + 1s), stop);
    if (stop.stop_requested()) {
      std::printf("             GET /factors/%s -> no answer in 5 s\n", activity.c_str());
      throw http_error{"factor API: abandoned"};
    }
    std::printf("             GET /factors/%s -> 200 in %s\n", activity.c_str(),
                resilience::format_duration(latency).c_str());
    return factors_.at(activity);
  }

  bool flaky = true;
  bool outage = false;
  int requests = 0;

 private:
  std::mt19937 rng_{2024};  // the raw engine's sequence is fixed by the standard
  const std::map<std::string, double> factors_{{"electricity_kwh", 0.233}, {"diesel_litre", 2.68},
                                               {"natural_gas_m3", 2.02},   {"steel_kg", 1.85},
                                               {"air_travel_km", 0.158},   {"road_freight_tkm", 0.107}};
};

struct line_item {
  std::string activity;
  double quantity;
};

}  // namespace

int main() {
  const auto real_start = std::chrono::steady_clock::now();
  std::printf(
      "Time here is virtual: a manual_clock that jumps over every wait, so the\n"
      "11 minutes of this story (t= below, in seconds) take milliseconds.\n\n");
  factor_api api;
  resilience::degradation_manager health{{.clock = virtual_time}};
  health.on_tier_change([](tier from, tier to) {
    std::printf("[t=%6.1fs] *** degradation tier %s -> %s\n", now_s(), std::string{to_string(from)}.c_str(),
                std::string{to_string(to)}.c_str());
  });

  // The breaker reports for the factor API: while it is open, the platform
  // runs read-only (no external calls) and lookups come from the cache.
  resilience::circuit_breaker breaker{
      {.name = "factor_api", .clock = virtual_time, .fail_max = 5, .break_duration = 60s}};
  health.bind(breaker, "factor_api");

  resilience::result_cache<std::string, double> factor_cache{{.ttl = 1h, .clock = virtual_time}};
  std::string source;  // how the last lookup was answered, for the printout
  resilience::fallback from_cache{
      resilience::cached{factor_cache}, {.on_activated = [&](const resilience::fallback_info& i) {
        source = "cached " + resilience::format_duration(*i.age) + " ago, because: " + i.cause.what();
      }}};

  resilience::resilient lookup{
      [&api](std::stop_token stop, const std::string& activity) { return api.fetch(stop, activity); },
      from_cache,                                         // last: the cached factor
      resilience::degradation_guard{health, tier::core},  // no external calls below core
      resilience::retry{{.max_retries = 3,
                         .base_delay = 1s,
                         .jitter = resilience::jitter_mode::equal,
                         .random = resilience::seeded_random(7),
                         .handle = resilience::failures::exceptions() |
                                   resilience::failures::rejections(
                                       {resilience::timeout_kind})}},   // never retry into an open breaker
      breaker,                                                          // counts every attempt
      resilience::timeout{resilience::operation_type::factor_lookup}};  // 5 s per attempt
  lookup.with_clock(virtual_time);

  auto calculate = [&](const char* title, const std::vector<line_item>& lines) {
    std::printf("[t=%6.1fs] %s\n", now_s(), title);
    double total = 0;
    for (const auto& line : lines) {
      source = "live";
      auto factor = lookup.try_call(line.activity);
      if (factor) {
        total += line.quantity * *factor;
        std::printf("[t=%6.1fs]   %-17s %9.1f x %.3f = %9.1f kgCO2e  (%s)\n", now_s(), line.activity.c_str(),
                    line.quantity, *factor, line.quantity * *factor, source.c_str());
      } else {
        std::printf("[t=%6.1fs]   %-17s no factor: %s\n", now_s(), line.activity.c_str(), factor.what().c_str());
      }
    }
    std::printf("             total %.1f kgCO2e; breaker %s; tier %s\n", total,
                std::string{to_string(breaker.state())}.c_str(), std::string{to_string(health.current_tier())}.c_str());
  };

  const std::vector<line_item> invoices{{"electricity_kwh", 12000},
                                        {"diesel_litre", 800},
                                        {"natural_gas_m3", 1500},
                                        {"steel_kg", 20000},
                                        {"air_travel_km", 5400}};
  calculate("1. quarterly invoices, flaky factor API (seeded 503s and slow answers)", invoices);

  virtual_time.advance(10min);
  api.outage = true;
  calculate("2. the factor API goes down", {{"electricity_kwh", 9000},
                                            {"steel_kg", 4000},
                                            {"diesel_litre", 300},
                                            {"road_freight_tkm", 70000},
                                            {"natural_gas_m3", 1200}});

  virtual_time.advance(30s);
  api.outage = false;
  api.flaky = false;
  calculate("3. 30 s later the API is back (and steady), but the breaker's break is not over",
            {{"air_travel_km", 1200}});

  std::printf("[t=%6.1fs] waiting 30 s more for the break to end\n", now_s());
  virtual_time.advance(30s);
  calculate("4. the breaker lets a trial through; it succeeds and closes",
            {{"road_freight_tkm", 70000}, {"steel_kg", 4000}});

  std::printf("             %d requests to the factor API in all\n", api.requests);
  std::printf("             %s of virtual time in %s of real time\n",
              resilience::format_duration(virtual_time.now() - start).c_str(),
              resilience::format_duration(std::chrono::steady_clock::now() - real_start).c_str());
  return breaker.state() == resilience::circuit_state::closed && health.current_tier() == tier::full ? 0 : 1;
}
